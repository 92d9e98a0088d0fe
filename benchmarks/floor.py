"""The scatter-add floor of item-item similarity: the least work any kernel over the same index stream does.

For every item i, for every user u of i, for every item j of u: ``acc[j] += w_ui · w_uj``, then a pass
that clears what was touched. That is the Gustavson row-by-row product the similarity kernel runs
(Σ deg(u)² pair visits), without its top-K selection, counts or normalisation, so a kernel's time printed
next to it says how far above the floor it is. Single thread, numba, the same popularity-first column
order as ``encore.core.itemknn``. Usage::

    python benchmarks/floor.py --sizes S,heavy [--kernel]

``--kernel`` also times ``encore.core.itemknn.item_topk`` (in-process, K=50) on the same matrix and
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


@njit(nogil=True, cache=True)
def scatter_add(xt_indptr, xt_indices, xt_data, x_indptr, x_indices, x_data, n_items):
    """Σ over items of the scatter-add of their co-occurrences, with the clearing pass; returns a checksum
    (so the work cannot be optimised away) and the number of pair visits."""
    acc = np.zeros(n_items, np.float32)
    touched = np.empty(n_items, np.int32)
    total, visits = 0.0, 0
    for i in range(n_items):
        n_touched = 0
        for p in range(xt_indptr[i], xt_indptr[i + 1]):
            u, w = xt_indices[p], xt_data[p]
            for q in range(x_indptr[u], x_indptr[u + 1]):
                j = x_indices[q]
                if acc[j] == 0.0:
                    touched[n_touched] = j
                    n_touched += 1
                acc[j] += w * x_data[q]
            visits += x_indptr[u + 1] - x_indptr[u]
        for t in range(n_touched):
            total += acc[touched[t]]
            acc[touched[t]] = 0.0
    return total, visits


def floor_seconds(X) -> tuple[float, int]:
    """Seconds of the scatter-add floor on ``X`` (columns popularity-first, as the kernel orders them)."""
    from encore.core.itemknn import popular_first

    Xp, _ = popular_first(X)
    Xt = Xp.T.tocsr()
    args = (Xt.indptr.astype(np.int64), Xt.indices.astype(np.int32), Xt.data.astype(np.float32),
            Xp.indptr.astype(np.int64), Xp.indices.astype(np.int32), Xp.data.astype(np.float32), Xp.shape[1])
    small = Xp[:1000]
    small_t = small.T.tocsr()
    scatter_add(small_t.indptr.astype(np.int64), small_t.indices.astype(np.int32), small_t.data.astype(np.float32),
                small.indptr.astype(np.int64), small.indices.astype(np.int32), small.data.astype(np.float32),
                small.shape[1])  # compile or load the cache outside the timing
    start = time.perf_counter()
    _, visits = scatter_add(*args)
    return time.perf_counter() - start, int(visits)


def kernel_seconds(X) -> float:
    """Seconds of encore's in-process item-item top-K (K=50, cosine) on ``X``."""
    from encore.core.itemknn import item_topk

    item_topk(X[:1000], k=50)
    start = time.perf_counter()
    item_topk(X, k=50)
    return time.perf_counter() - start


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
            seconds, visits = floor_seconds(X)
            line = (f"{name}: {X.shape[0]:,} x {X.shape[1]:,}, nnz {X.nnz:,}, {visits:,} pair visits; "
                    f"floor {seconds:.2f} s ({visits / seconds / 1e6:.0f} M visits/s)")
            if args.kernel:
                kernel = kernel_seconds(X)
                line += f"; item_topk {kernel:.2f} s = {kernel / seconds:.2f}x the floor"
            print(line, flush=True)


if __name__ == "__main__":
    main()
