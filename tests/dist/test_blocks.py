"""scatter and imap_blocks on a real in-process cluster: where values land, order, and which failures are
retried (a worker killed mid-scatter is in tests/test_multiprocess.py)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from distributed import Future

from encore.dist.blocks import Remade, computed, imap_blocks, map_blocks, put, scatter

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


def test_scatter_puts_every_value_on_every_worker_and_passes_futures_through(client):
    """Tasks that follow may then run on any worker without a transfer, as after a broadcast."""
    on_cluster = client.submit(np.arange, 3, pure=False)
    client.amm.stop()  # its default policy drops replicas that no task waits for, every 2 s
    try:
        out = scatter(client, (np.ones(10), "uids", on_cluster))
        who_has = client.who_has(out[:2])
    finally:
        client.amm.start()
    assert out[2] is on_cluster
    workers = set(client.scheduler_info(n_workers=-1)["workers"])
    assert len(workers) == 2 and all(set(who_has[f.key]) == workers for f in out[:2]), who_has
    assert client.gather(out[1]) == "uids" and client.gather(out[0]).sum() == 10


def test_a_remade_value_is_made_again_once_cancelled_and_reused_while_alive(client):
    """A model whose scattered inputs were lost with their worker is cancelled: retries must fit again."""
    made: list[int] = []

    def make():
        made.append(len(made))
        return client.submit(np.arange, len(made), pure=False), []

    value = Remade(make)
    first = scatter(client, (value, 5))[0]
    assert scatter(client, (value,))[0] is first and made == [0]
    first.cancel()
    second = scatter(client, (value,))[0]
    assert second is not first and made == [0, 1] and client.gather(second).tolist() == [0, 1]
    key = second.key
    del first, second
    value.release()  # let go: the cluster frees it, and asking again makes it again
    for _ in range(100):
        if key not in client.run_on_scheduler(lambda dask_scheduler: set(dask_scheduler.tasks)):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("a released value stayed on the cluster")
    assert computed(value) is value and value.future().status == "finished" and made == [0, 1, 2]


def test_a_value_put_on_the_cluster_is_read_there_and_is_itself_without_a_client(client):
    frame = pd.DataFrame({"a": np.arange(5)})
    assert put(None, frame) is frame
    held = put(client, frame)
    assert isinstance(held, Future)
    assert client.submit(lambda f: int(f["a"].sum()), held).result() == 10
    pd.testing.assert_frame_equal(held.result(), frame)
