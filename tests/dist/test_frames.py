"""Partitioned frames: the same results with a cluster and without, whatever Dask's global setting says."""

from itertools import pairwise

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from encore.dist import frames


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"key": np.arange(5_000, dtype=np.int64)[::-1], "n": np.arange(5_000, dtype=np.int32),
                         "at": pd.date_range("2026-11-01", periods=5_000, freq="min").astype("datetime64[us]"),
                         "flag": (np.arange(5_000) % 3 == 0).astype(np.int8)})


def test_gather_frame_gives_what_compute_gives_in_partition_order(client):
    frame = _frame()
    got = frames.gather_frame(client, dd.from_pandas(frame, npartitions=7, sort=False).persist())
    pd.testing.assert_frame_equal(got, frame)


def _plus(a: int, b: int) -> int:
    return a + b


def test_without_a_client_work_runs_on_threads_even_with_a_stale_setting():
    # a closed client can leave "dask.distributed" as the global scheduler; nothing here may depend on it
    with dask.config.set(scheduler="dask.distributed"):
        assert frames.compute_each(_plus, [(1, 2), (3, 4)]) == [3, 7]
        assert frames.Later(_plus, 5, 6).result() == 11
        small, big = frames.collect({"rows": frames.count_rows(dd.from_pandas(_frame(), npartitions=3))},
                                    dd.from_pandas(_frame(), npartitions=3))
    assert small["rows"] == 5_000 and len(big) == 5_000


def test_by_key_puts_each_key_range_in_one_partition_in_order(client, monkeypatch):
    keys = np.random.default_rng(0).integers(-(2**62), 2**62, 3_000)
    frame = dd.from_pandas(pd.DataFrame({"ukey": keys, "v": np.arange(3_000)}), npartitions=4)
    with client.as_current():  # on a cluster: shuffled into 4 key ranges
        moved = frames.by_key(frame, "ukey", (-(2**63), 2**63 - 1))
        parts = [p for p in dask.compute(*moved.to_delayed()) if len(p)]
    assert sum(map(len, parts)) == 3_000 and len(parts) > 1
    assert all(a["ukey"].max() < b["ukey"].min() for a, b in pairwise(parts))
    monkeypatch.setattr(client, frames.IN_PROCESS, True, raising=False)  # as a cluster run in this process is
    with client.as_current():  # frames run on local threads: one sorted partition, no shuffle
        alone = frames.by_key(frame, "ukey", (-(2**63), 2**63 - 1))
        only = alone.compute(scheduler="threads")
    assert alone.npartitions == 1
    assert only["ukey"].is_monotonic_increasing and sorted(only["v"]) == list(range(3_000))
    monkeypatch.undo()
    with client.as_current():
        assert frames.compute_each(_plus, [(1, 1)]) == [2] and frames.Later(_plus, 2, 2).result() == 4


def _values(part: pd.DataFrame, scale: int) -> list[int]:
    return [int(v) * scale for v in part["n"]]


def _joined(a: list[int], b: list[int]) -> list[int]:
    return a + b


def test_reduce_parts_merges_every_partition_in_order_alone_and_beside_a_persisted_frame(client):
    frame = dd.from_pandas(_frame(), npartitions=19, sort=False)  # more than two levels of 4
    want = [2 * v for v in range(5_000)]
    assert dask.compute(frames.reduce_parts(frame, _values, _joined, 2, split_every=4))[0] == want
    with dask.config.set(scheduler="threads"):
        small, _ = frames.collect({"all": frames.reduce_parts(frame, _values, _joined, 2, split_every=3)}, frame)
    assert small["all"] == want


def _keys_times(part: pd.DataFrame, scale: np.ndarray) -> np.ndarray:
    return part["key"].to_numpy() * scale[0]


def test_collect_mapped_runs_on_the_partitions_in_order_once_the_small_results_are_known(client):
    frame = dd.from_pandas(_frame(), npartitions=7, sort=False)

    def then(small: dict) -> tuple:
        return _keys_times, (np.array([small["rows"]]),)

    small, pieces = frames.collect_mapped({"rows": frames.count_rows(frame)}, frame, then)
    assert small["rows"] == 5_000 and len(pieces) == 7
    np.testing.assert_array_equal(np.concatenate(pieces), _frame()["key"].to_numpy() * 5_000)
    setattr(client, frames.IN_PROCESS, True)  # a cluster in this process: the frame is computed here, mapped once
    try:
        _, whole = frames.collect_mapped({"rows": frames.count_rows(frame)}, frame, then)
    finally:
        delattr(client, frames.IN_PROCESS)
    assert len(whole) == 1
    np.testing.assert_array_equal(whole[0], np.concatenate(pieces))
