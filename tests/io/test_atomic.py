"""The one atomic writer: real files on local disk and in fsspec's memory filesystem, no mocks."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from encore.io import atomic, lake

STRICT = pa.schema([pa.field("x", pa.int64(), nullable=False)])


@pytest.fixture(params=["local", "memory"])
def where(request, tmp_path) -> Iterator[tuple[fsspec.AbstractFileSystem, str]]:
    """A filesystem and an empty folder on it: a local tmp folder, or a fresh folder in ``memory://``."""
    url = str(tmp_path / "out") if request.param == "local" else f"memory://atomic-{uuid.uuid4().hex}"
    fs, root = lake.filesystem(url)
    yield fs, root
    if request.param == "memory" and fs.exists(root):
        fs.rm(root, recursive=True)


def files_under(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    """Every file below ``root`` (hidden ones too), relative to it."""
    return sorted(p[len(root.rstrip("/")) + 1:] for p in fs.find(root, withdirs=False))


def half_bad_table() -> pa.Table:
    """100,000 good rows, then a batch with a null in a non-nullable column: Parquet writes the first row
    group, then raises on the second."""
    good = pa.record_batch([pa.array(range(100_000))], schema=STRICT)
    bad = pa.record_batch([pa.array([1, None, 3])], schema=STRICT)
    return pa.Table.from_batches([good, bad], schema=STRICT)


def test_bytes_and_tables_are_stored_with_their_parents_and_nothing_else(where):
    fs, root = where
    assert atomic.write_bytes(fs, f"{root}/a/b/note.json", b'{"ok": true}') == 12
    frame = pd.DataFrame({"x": [3, 1, 2]}, index=[7, 8, 9])
    assert atomic.write_table(fs, f"{root}/t/part-0.parquet", frame, pa.schema([("x", pa.int32())])) == 3
    assert fs.cat_file(f"{root}/a/b/note.json") == b'{"ok": true}'
    stored = pq.read_table(fs.open(f"{root}/t/part-0.parquet", "rb"))
    assert stored.schema.names == ["x"] and stored.schema.field("x").type == pa.int32()  # no index column
    assert stored.column("x").to_pylist() == [3, 1, 2]
    assert files_under(fs, root) == ["a/b/note.json", "t/part-0.parquet"]


def test_chunks_are_joined_in_order(where):
    fs, root = where
    assert atomic.write_bytes(fs, f"{root}/c.bin", (bytes([i]) * 1000 for i in range(5))) == 5000
    assert fs.cat_file(f"{root}/c.bin") == b"".join(bytes([i]) * 1000 for i in range(5))


def assert_left_as_it_was(fs, root: str, target: str, existing: bytes | None) -> None:
    """After a failed write: ``target`` absent (or holding ``existing``) and nothing else under ``root``."""
    if existing is None:
        assert not fs.exists(target)
    else:
        assert fs.cat_file(target) == existing
    relpath = target[len(root):].lstrip("/")
    assert files_under(fs, root) == ([] if existing is None else [relpath])


@pytest.mark.parametrize("existing", [None, b"the previous version"])
def test_table_write_failing_midway_leaves_the_target_as_it_was(where, existing):
    fs, root = where
    target = f"{root}/day/part-0.parquet"
    if existing is not None:
        atomic.write_bytes(fs, target, existing)
    with pytest.raises(pa.ArrowInvalid, match="non-nullable"):
        atomic.write_table(fs, target, half_bad_table())
    assert_left_as_it_was(fs, root, target, existing)


@pytest.mark.parametrize("existing", [None, b"old"])
def test_chunks_that_raise_midway_store_nothing(where, existing):
    fs, root = where
    target = f"{root}/LATEST"
    if existing is not None:
        atomic.write_bytes(fs, target, existing)

    def chunks() -> Iterator[bytes]:
        yield b"x" * 100_000
        yield b"y" * 100_000
        raise OSError("source went away")

    with pytest.raises(OSError, match="source went away"):
        atomic.write_bytes(fs, target, chunks())
    assert_left_as_it_was(fs, root, target, existing)


def test_local_write_goes_through_a_hidden_temp_file_beside_the_target(tmp_path):
    fs, root = lake.filesystem(str(tmp_path))
    seen: list[list[str]] = []

    def chunks() -> Iterator[bytes]:
        yield b"first half "
        seen.append(sorted(os.listdir(tmp_path / "bids")))  # mid-write: what a lister sees
        yield b"second half"

    atomic.write_bytes(fs, f"{root}/bids/part-0.parquet", chunks())
    [[temp]] = seen
    assert temp.startswith(".part-0.parquet.") and temp.endswith(".tmp")  # hidden: lake readers skip it
    assert os.listdir(tmp_path / "bids") == ["part-0.parquet"]
    assert (tmp_path / "bids" / "part-0.parquet").read_bytes() == b"first half second half"


def test_local_replace_swaps_the_file_and_an_open_reader_keeps_the_old_one(tmp_path):
    fs = fsspec.filesystem("file")
    target = tmp_path / "LATEST"
    atomic.write_bytes(fs, str(target), b"run-1" * 1000)
    before = target.stat().st_ino
    with open(target, "rb") as reader:
        atomic.write_bytes(fs, str(target), b"run-2")
        assert reader.read() == b"run-1" * 1000  # the old file, whole
    assert target.read_bytes() == b"run-2" and target.stat().st_ino != before
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # umask, not a private temp mode
    assert sorted(os.listdir(tmp_path)) == ["LATEST", "plain"]


def test_a_concurrent_reader_sees_the_old_or_the_new_file_never_a_mix(tmp_path):
    fs = fsspec.filesystem("file")
    target = tmp_path / "manifest.json"
    versions = [bytes([65 + i % 2]) * 256_000 for i in range(2)]
    atomic.write_bytes(fs, str(target), versions[0])
    done = threading.Event()
    reads: list[bytes] = []

    def read_all() -> None:
        while not done.is_set():
            reads.append(target.read_bytes())

    reader = threading.Thread(target=read_all)
    reader.start()
    try:
        for i in range(60):
            atomic.write_bytes(fs, str(target), versions[i % 2])
    finally:
        done.set()
        reader.join()
    assert reads and set(reads) <= set(versions)
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_failed_rename_removes_the_temp_file_and_leaves_the_target(tmp_path):
    fs, root = lake.filesystem(str(tmp_path))
    (tmp_path / "part-0.parquet").mkdir()  # a folder where the file belongs: the rename fails
    (tmp_path / "part-0.parquet" / "keep").write_bytes(b"k")
    with pytest.raises(OSError):
        atomic.write_table(fs, f"{root}/part-0.parquet", pa.table({"x": [1]}))
    assert sorted(os.listdir(tmp_path)) == ["part-0.parquet"]
    assert os.listdir(tmp_path / "part-0.parquet") == ["keep"]
