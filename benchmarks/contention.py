"""Do two worker processes slow each other down? The similarity kernel on each half of the items, alone and
at once, on one matrix.

On a 2-core box the scale ladder gains only ~1.3x from 1 to 2 workers although the client mostly waits on
them. This isolates the kernel: each half runs in its own process, first alone, then both together. With
``--popular-first`` the columns are ordered by popularity first, as ``item_topk`` does.

    python benchmarks/contention.py --matrix L
    python benchmarks/contention.py --rung 10M [--popular-first]
    python benchmarks/contention.py --rung 10M --order
    python benchmarks/contention.py --machine

``--machine`` asks the same of the box itself, with no encore code: a pure-Python loop, a numpy sort, a
scipy sparse product and a numpy streaming sum, each run alone and then in two processes at once. Its
slowdowns bound what any 2-process job can gain on the two cores.

``--rung`` builds the rung's capped matrix from the ladder's lake (``data/bench/<rung>/lake``, made by
``benchmarks/pipeline.py``) and caches it beside the lake as ``capped.npz``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from multiprocessing import Process, Queue
from pathlib import Path

import numpy as np
from _matrices import cached_matrix
from scipy.sparse import load_npz, save_npz

REPO = Path(__file__).resolve().parents[1]


def capped_matrix(rung: str) -> Path:
    """The rung's history-capped user x item matrix, as the pipeline fits it (built once, then cached)."""
    from distributed import Client, LocalCluster

    from encore.config import load_settings
    from encore.core.weighting import cap_history
    from encore.job import ingest
    from encore.job.matrix import build_matrix

    lake = REPO / "data" / "bench" / rung / "lake"
    path = lake.parent / "capped.npz"
    if not path.exists():
        settings = load_settings(overrides={"lake": {"path": str(lake)}, "ingest": {"window_days": 30}}, environ={})
        with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster, Client(cluster):
            res = ingest.ingest(settings)
        m = build_matrix(res.interactions, res.listings["listing_id"].to_numpy(), settings.model, res.window.end)
        save_npz(path, cap_history(m.X, m.recency, settings.model.history_cap), compressed=False)
    return path


def half(path: str, popular: bool, which: int, out: Queue) -> None:
    """Time the kernel on one half of the items, halves of equal pair-visits (after a warm-up on ten items)."""
    from encore.core.base import check_user_items
    from encore.core.itemknn import _normalised, csr_arrays, popular_first, row_visits
    from encore.core.kernels import cosine_topk_block

    X = check_user_items(load_npz(path).tocsr())
    X, ids = popular_first(X) if popular else (X, np.arange(X.shape[1], dtype=np.int32))
    Xt, X, norms = _normalised(X, 0.5)
    arrays = (*csr_arrays(Xt), *csr_arrays(X), norms, ids, row_visits(X), 50, 1, 0.0)
    deg = np.diff(X.indptr)
    cost = np.cumsum(np.bincount(X.indices, weights=np.repeat(deg, deg), minlength=X.shape[1]))
    middle = int(np.searchsorted(cost, cost[-1] / 2))  # halves of equal pair-visits, as item_topk's blocks
    lo, hi = (0, middle) if which == 0 else (middle, X.shape[1])
    cosine_topk_block(0, 10, *arrays)
    start = time.perf_counter()
    cosine_topk_block(lo, hi, *arrays)
    out.put((which, round(time.perf_counter() - start, 2)))


def order_ab(path: str, rounds: int = 2) -> None:
    """``item_topk`` in this process with popularity-ordered columns and in catalogue order, alternated."""
    from encore.core import itemknn

    X = load_npz(path).tocsr()
    orders = {"popular first": itemknn.popular_first,
              "catalogue order": lambda X: (X, np.arange(X.shape[1], dtype=np.int32))}
    itemknn.item_topk(X[:, :1000], k=50)  # numba cache load
    try:
        for _ in range(rounds):
            for name, order in orders.items():
                itemknn.popular_first = order
                start = time.perf_counter()
                itemknn.item_topk(X, k=50)
                print(f"{name}: item_topk {time.perf_counter() - start:.2f} s", flush=True)
    finally:
        itemknn.popular_first = orders["popular first"]


def python_loop() -> None:
    """Integer arithmetic in the interpreter: registers and L1 only."""
    x = 0
    for i in range(20_000_000):
        x += i * i % 7


def numpy_sort() -> None:
    """Sorting 4 M doubles (32 MB) 30 times: the memory traffic of the ingest's argsorts."""
    values = np.random.default_rng(0).random(4_000_000)
    for _ in range(30):
        np.sort(values)


def sparse_product() -> None:
    """X.T @ X of a 200 K x 50 K matrix with 2 M entries, 3 times: scattered reads like the kernels."""
    from scipy.sparse import csr_matrix

    rng = np.random.default_rng(0)
    n = 2_000_000
    X = csr_matrix((np.ones(n), (rng.integers(0, 200_000, n), rng.integers(0, 50_000, n))), shape=(200_000, 50_000))
    for _ in range(3):
        X.T @ X


def stream_sum() -> None:
    """Summing 400 MB 10 times: memory bandwidth."""
    values = np.ones(50_000_000)
    for _ in range(10):
        values.sum()


def timed(work: Callable[[], None], which: int, out: Queue) -> None:
    """Run one reference workload and report its wall time."""
    start = time.perf_counter()
    work()
    out.put((which, time.perf_counter() - start))


def run_apart_and_together(target, args_of, label: str) -> None:
    """``target(*args_of(h), h, queue)`` for h = 0 alone, 1 alone, then both at once; prints the times."""
    for halves in ([0], [1], [0, 1]):
        out: Queue = Queue()
        procs = [Process(target=target, args=(*args_of(h), h, out)) for h in halves]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        times = dict(sorted(out.get() for _ in halves))
        when = "alone   " if len(halves) == 1 else "together"
        print(f"{label} {when} " + "  ".join(f"#{h}: {t:.2f} s" for h, t in times.items()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matrix", help="a benchmarks/_matrices size (S, M, L)")
    parser.add_argument("--rung", help="a ladder rung whose lake exists (1M, 5M, 10M, 100M)")
    parser.add_argument("--popular-first", action="store_true")
    parser.add_argument("--order", action="store_true", help="instead: item_topk in one process, popularity-"
                        "ordered columns against catalogue order, alternated")
    parser.add_argument("--machine", action="store_true", help="instead: reference workloads, no encore code")
    args = parser.parse_args()
    if args.machine:
        for work in (python_loop, numpy_sort, sparse_product, stream_sum):
            run_apart_and_together(timed, lambda h, w=work: (w,), f"{work.__name__:15s}")
        return
    if args.rung:
        path = capped_matrix(args.rung)
    else:
        path = cached_matrix(args.matrix or "L", Path(tempfile.gettempdir()) / "encore-bench")
    if args.order:
        order_ab(str(path))
        return
    run_apart_and_together(half, lambda h: (str(path), args.popular_first), f"{args.rung or args.matrix or 'L'} half")


if __name__ == "__main__":
    main()
