"""imap_blocks on a real in-process cluster: order, and which failures are retried."""

from __future__ import annotations

import pytest

from encore.models.base import imap_blocks, map_blocks

CALLS: list[int] = []


def scaled(block: int, factor: int, offset: int) -> int:
    CALLS.append(block)
    return block * factor + offset


def full_disk(block: int, factor: int, offset: int) -> int:
    CALLS.append(block)
    raise OSError("No space left on device")


def test_blocks_come_back_in_order_with_or_without_a_cluster(client):
    blocks = [5, 1, 4, 2, 3]
    assert list(imap_blocks(client, scaled, blocks, (10,), (1,))) == [51, 11, 41, 21, 31]
    assert map_blocks(None, scaled, blocks, (10,), (1,)) == [51, 11, 41, 21, 31]


def test_a_task_that_fails_by_itself_is_raised_not_retried(client):
    """An OSError from the task (a full disk, a dead S3) is not a lost worker: rerunning it cannot help."""
    CALLS.clear()
    with pytest.raises(OSError, match="No space left"):
        list(imap_blocks(client, full_disk, [7], (10,), (1,)))
    assert CALLS == [7]


def test_a_window_keeps_only_that_many_blocks_taken_from_a_generator(client):
    taken: list[int] = []

    def blocks():
        for b in range(6):
            taken.append(b)
            yield b

    results = imap_blocks(client, scaled, blocks(), (2,), (0,), window=2)
    assert next(results) == 0 and taken == [0, 1, 2]  # two submitted, then one more as the first came back
    assert list(results) == [2, 4, 6, 8, 10] and taken == list(range(6))
