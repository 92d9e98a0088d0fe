"""Partitioned frames on the cluster: files read as partitions, plain functions mapped over them, one shuffle
by key, and results brought back without holding them twice.

The functions mapped are the job's own pandas functions; this module only says where they run. Without a
client everything runs on local threads, whatever Dask's global scheduler setting says.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import futures_of

from encore.dist.blocks import current_client, retrying, scatter

IN_PROCESS = "_encore_in_process"  # set on a client whose cluster runs a small input in this process


def _on_cluster() -> Any:
    """The current client, or None when frames are computed on local threads: without a client, or with one
    whose cluster runs in this process for a small input (:func:`encore.dist.cluster.use_processes`), where
    the distributed scheduler's cost per task exceeds the work of a small partition."""
    client = current_client()
    return None if client is None or getattr(client, IN_PROCESS, False) else client


def _scheduler() -> dict[str, Any]:
    """Compute on the cluster (:func:`_on_cluster`), else on local threads (never on a stale global setting)."""
    return {} if _on_cluster() is not None else {"scheduler": "threads"}


def compute_each(fn: Callable, calls: Iterable[tuple]) -> list:
    """``[fn(*args) for args in calls]``, one Dask task each."""
    return list(dask.compute(*[dask.delayed(fn)(*args) for args in calls], **_scheduler()))


class Later:
    """A call started now on the cluster (a future) or kept for later in this process; :meth:`result` ends it."""

    def __init__(self, fn: Callable, *args: Any) -> None:
        client = current_client()
        self._future = client.submit(fn, *args, pure=False) if client is not None else None
        self._call = (fn, args)

    def result(self) -> Any:
        if self._future is not None:
            return self._future.result()
        fn, args = self._call
        return fn(*args)


def from_files(read: Callable[..., pd.DataFrame], files: list[str], meta: pd.DataFrame, **kwargs: Any
               ) -> dd.DataFrame:
    """One partition per file: ``read(file, number, **kwargs)``, with ``meta`` as the partitions' shape."""
    return dd.from_map(read, files, range(len(files)), meta=meta, enforce_metadata=False, **kwargs)


def map_parts(frame: dd.DataFrame, fn: Callable[..., pd.DataFrame], *args: Any, meta: Any = None) -> dd.DataFrame:
    """``fn(partition, *args)`` on every partition; numpy arrays among ``args`` go into the graph once, not
    once per partition."""
    args = tuple(dask.delayed(a) if isinstance(a, np.ndarray) else a for a in args)
    return frame.map_partitions(fn, *args, **({} if meta is None else {"meta": meta}))


def by_key(frame: dd.DataFrame, key: str, span: tuple[int, int]) -> dd.DataFrame:
    """Rows moved so that each partition holds one contiguous range of ``key`` (int64 spread over ``span``),
    partitions in key order, by one task-based shuffle (p2p's start-up costs more than it saves here). On local
    threads (:func:`_on_cluster`) the rows are one partition sorted by key: a small input's shuffle tasks cost
    more than the sort."""
    lo, hi = span
    if _on_cluster() is None:
        frame = frame.repartition(npartitions=1)
    divisions = [lo + (hi - lo) * i // frame.npartitions for i in range(frame.npartitions + 1)]
    with dask.config.set({"dataframe.shuffle.method": "tasks"}):
        return frame.set_index(key, divisions=divisions).reset_index()


def reduce_parts(frame: dd.DataFrame, fn: Callable[..., Any], merge: Callable[[Any, Any], Any], *args: Any,
                 split_every: int = 8) -> Any:
    """The lazy ``merge`` of ``fn(partition, *args)`` over every partition, by a tree reduction on the cluster
    (``split_every`` results merged per task, in partition order), so only the one merged result reaches the
    caller. ``args`` go into the graph once, not once per partition."""
    args = tuple(dask.delayed(a) for a in args)
    meta = pd.DataFrame({"value": pd.Series([], dtype=object)})

    def one(part: pd.DataFrame, *extra: Any) -> pd.DataFrame:
        return pd.DataFrame({"value": pd.Series([fn(part, *extra)], dtype=object)})

    def combine(parts: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"value": pd.Series([aggregate(parts)], dtype=object)})

    def aggregate(parts: pd.DataFrame) -> Any:
        return functools.reduce(merge, parts["value"])

    return frame.map_partitions(one, *args, meta=meta).reduction(
        _same, aggregate=aggregate, combine=combine, split_every=split_every, meta=meta)


def _same(part: pd.DataFrame) -> pd.DataFrame:
    return part


def count_rows(frame: dd.DataFrame) -> Any:
    """The lazy number of rows of ``frame``."""
    return frame.map_partitions(len).sum()


def collect(small: dict[str, Any], big: dd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame]:
    """Compute the ``small`` results and the ``big`` frame in one pass over their common inputs.

    On a cluster ``big`` is persisted with the others and then gathered one partition at a time
    (:func:`gather_frame`), so it is never held twice; nothing else is persisted.
    """
    client = _on_cluster()
    if client is None:
        *values, frame = dask.compute(*small.values(), big, **_scheduler())
        return dict(zip(small, values, strict=True)), frame
    *lazy, frame = dask.persist(*small.values(), big)
    values = dask.compute(*lazy)
    return dict(zip(small, values, strict=True)), gather_frame(client, frame)


def collect_mapped(small: dict[str, Any], big: dd.DataFrame, then: Callable[[dict[str, Any]], tuple[Callable, tuple]],
                   keep: bool = False) -> tuple[dict[str, Any], list]:
    """Like :func:`collect`, but ``big`` never reaches the client: once the ``small`` results are known,
    ``then(small)`` names a function and its arguments, which run on every partition of ``big`` where it is,
    and only their results come back, in partition order, one at a time. With ``keep`` the results stay on
    the workers: their futures come back, in partition order (the arguments travel as one task's result, so
    a result lost with a worker is recomputed from its lineage).

    Without a cluster ``big`` is computed here and the function runs once over the whole of it, so it must
    give for a frame what it gives for its partitions joined.
    """
    client = _on_cluster()
    if client is None:
        *values, frame = dask.compute(*small.values(), big, **_scheduler())
        done = dict(zip(small, values, strict=True))
        fn, args = then(done)
        return done, [fn(frame, *args)]
    *lazy, frame = dask.persist(*small.values(), big)
    done = dict(zip(small, dask.compute(*lazy), strict=True))
    fn, args = then(done)
    futures = sorted(futures_of(frame), key=lambda f: f.key[1])  # keys are (name, partition number)
    if keep:
        held = client.submit(_packed, *args, pure=False)
        held_args = [client.submit(operator.getitem, held, i, pure=False) for i in range(len(args))]
        return done, client.map(fn, futures, *[[a] * len(futures) for a in held_args], pure=False)

    def each() -> list:  # again from the start when a lost worker cancels it (the partitions are recomputed)
        shared = scatter(client, args)
        mapped = client.map(fn, futures, *[[a] * len(futures) for a in shared], pure=False)
        results = []
        for i in range(len(mapped)):
            results.append(mapped[i].result())
            mapped[i] = None
        return results

    return done, retrying(each)


def _packed(*args: Any) -> tuple:
    return args


def gather_frame(client, frame: dd.DataFrame) -> pd.DataFrame:
    """A persisted Dask frame of plain numpy columns into the client, one partition at a time.

    ``compute`` holds every partition twice, as pieces and as their concatenation, on the workers
    while sending and in the client while joining, so a big frame can take a worker past its memory
    limit. Here each partition is copied into preallocated columns and released at once.
    """
    futures = sorted(futures_of(frame), key=lambda f: f.key[1])  # keys are (name, partition number)
    sizes = client.gather(client.map(len, futures, pure=False))
    columns = {name: np.empty(sum(sizes), dtype) for name, dtype in frame.dtypes.items()}
    at = 0
    for i, size in enumerate(sizes):
        part, futures[i] = futures[i].result(), None
        for name, values in columns.items():
            values[at:at + size] = part[name].to_numpy()
        at += size
        del part
    return pd.DataFrame(columns, copy=False)
