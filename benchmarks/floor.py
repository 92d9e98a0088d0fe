"""The scatter-add floor of item-item similarity: the least work any kernel over the same index stream does.

For every item i, for every user u of i, for every item j of u: ``acc[j] += w_ui · w_uj``, then the
accumulator is cleared. That is the Gustavson row-by-row product the similarity kernel runs (Σ deg(u)² pair
visits) without its top-K selection, counts or normalisation, so a kernel's time printed next to it says how
far above the floor it is. No visit takes a branch. Three ways to clear are timed and the fastest is the
floor: ``touched`` (each row remembers what it touched branch-free, the list's length advancing by the
comparison, and clears only that), ``hybrid`` (rows with ``visits · DENSE_FRACTION >= n_items``, the kernel's
own rule, zero the whole accumulator instead) and ``zero`` (every row zeroes it; catalogues up to
``ZERO_MAX_ITEMS`` only). Single thread, numba, the same popularity-first column order as
``encore.core.itemknn``; thread CPU seconds, so that other jobs on a shared machine count less. Usage::

    python benchmarks/floor.py --sizes S,heavy [--kernel]

``--kernel`` also times ``encore.core.itemknn.item_topk`` (in-process, K=50, cosine) on the same matrix and
prints it as a multiple of the floor.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numba import njit

sys.path.insert(0, str(Path(__file__).parent))
from _matrices import SIZES, cached_matrix, load_matrix

from encore.core.kernels import DENSE_FRACTION

STRATEGIES = {"touched": 0, "hybrid": 1, "zero": 2}
ZERO_MAX_ITEMS = 100_000  # zeroing n_items floats per row costs n_items² writes


@njit(nogil=True, cache=True)
def scatter_add(xt_indptr, xt_indices, xt_data, x_indptr, x_indices, x_data, visits, n_items, strategy):
    """Σ over items of the scatter-add of their co-occurrences, cleared by ``strategy`` (see
    ``STRATEGIES``); returns a checksum (so the work cannot be optimised away) and the number of pair visits."""
    acc = np.zeros(n_items, np.float32)
    touched = np.empty(n_items + 1, np.int32)
    total, n_visits = 0.0, 0
    for i in range(n_items):
        if strategy == 2 or (strategy == 1 and visits[i] * DENSE_FRACTION >= n_items):
            for p in range(xt_indptr[i], xt_indptr[i + 1]):
                u, w = xt_indices[p], xt_data[p]
                for q in range(x_indptr[u], x_indptr[u + 1]):
                    acc[x_indices[q]] += w * x_data[q]
            total += acc[i]
            acc[:] = 0.0
        else:
            n_touched = 0
            for p in range(xt_indptr[i], xt_indptr[i + 1]):
                u, w = xt_indices[p], xt_data[p]
                for q in range(x_indptr[u], x_indptr[u + 1]):
                    j = x_indices[q]
                    touched[n_touched] = j
                    n_touched += acc[j] == 0.0
                    acc[j] += w * x_data[q]
            for t in range(n_touched):
                total += acc[touched[t]]
                acc[touched[t]] = 0.0
        n_visits += visits[i]
    return total, n_visits


def floor_arrays(X) -> tuple:
    """The floor's arguments for ``X``: item × user and user × item CSR arrays with columns popularity-first
    (as the kernel orders them), each row's pair visits and the number of items."""
    from encore.core.itemknn import csr_arrays, popular_first, row_visits

    Xp, _ = popular_first(X)
    Xt = Xp.T.tocsr()
    Xt.sort_indices()
    return (*csr_arrays(Xt), *csr_arrays(Xp), row_visits(Xp), Xp.shape[1])


def floor_seconds(X) -> tuple[float, int, dict[str, float]]:
    """CPU seconds of the scatter-add floor on ``X`` (its fastest strategy), its pair visits and the seconds
    of every strategy tried."""
    small = floor_arrays(X[:1000])
    args = floor_arrays(X)
    seconds, visits = {}, 0
    for name, strategy in STRATEGIES.items():
        if strategy == STRATEGIES["zero"] and X.shape[1] > ZERO_MAX_ITEMS:
            continue
        scatter_add(*small, strategy)  # compile or load the cache outside the timing
        start = time.thread_time()
        _, visits = scatter_add(*args, strategy)
        seconds[name] = time.thread_time() - start
    return min(seconds.values()), int(visits), seconds


def kernel_seconds(X) -> float:
    """CPU seconds of encore's in-process item-item top-K (K=50, cosine) on ``X``."""
    from encore.core.itemknn import item_topk

    item_topk(X[:1000], k=50)
    start = time.thread_time()
    item_topk(X, k=50)
    return time.thread_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="S,heavy", help=f"comma-separated, of {', '.join(SIZES)}")
    parser.add_argument("--kernel", action="store_true", help="also time encore's kernel against the floor")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "encore-bench"))
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        for name in args.sizes.split(","):
            X = load_matrix(cached_matrix(name, Path(args.cache)))
            seconds, visits, tried = floor_seconds(X)
            strategies = ", ".join(f"{k} {v:.2f} s" for k, v in tried.items())
            line = (f"{name}: {X.shape[0]:,} x {X.shape[1]:,}, nnz {X.nnz:,}, {visits:,} pair visits; "
                    f"floor {seconds:.2f} s ({visits / seconds / 1e6:.0f} M visits/s; {strategies})")
            if args.kernel:
                kernel = kernel_seconds(X)
                line += f"; item_topk {kernel:.2f} s = {kernel / seconds:.2f}x the floor"
            print(line, flush=True)


if __name__ == "__main__":
    main()
