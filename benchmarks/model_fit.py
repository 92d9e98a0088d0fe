"""Fit time of the daily job's model kinds against item-kNN's, on a synthetic matrix (``_matrices.py``).

Fits alternate A/B/A/B (item-kNN, then each other kind) in one process and one thread, after one warm-up
fit of each on a small matrix so numba compilation is not counted; the figure is each kind's median fit
time as a multiple of item-kNN's median. The daily job fits its item-kNN anyway (similar items) and
``sparse_ease`` solves on those same lists, so its extra cost in the job is the solve alone, printed too.

    .venv/bin/python benchmarks/model_fit.py --matrix catalogue --repeat 3
    .venv/bin/python benchmarks/model_fit.py --matrix S --kinds sparse_ease als
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
from _matrices import SIZES, cached_matrix, synthetic_matrix
from scipy.sparse import load_npz
from threadpoolctl import threadpool_limits

from encore.config import Settings
from encore.core.make import make_model
from encore.core.sparse_ease import SparseEASE, binary


def timed(call) -> float:
    """Seconds ``call()`` takes."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, fit item-kNN and the other kinds alternately, print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", default="catalogue", choices=sorted(SIZES))
    parser.add_argument("--kinds", nargs="+", default=["sparse_ease"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "encore-bench")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    X = load_npz(cached_matrix(args.matrix, args.cache)).tocsr().astype(np.float32)
    settings = Settings()
    small = synthetic_matrix(SIZES["S"].__class__(2000, 500, 20_000))
    with threadpool_limits(1):
        for kind in ["itemknn", *args.kinds]:
            make_model(settings, kind).fit(small, show_progress=False)  # compile numba, load libraries
        times: dict[str, list[float]] = {kind: [] for kind in ["itemknn", *args.kinds]}
        solve: list[float] = []
        for _ in range(args.repeat):
            for kind in ["itemknn", *args.kinds]:
                times[kind].append(timed(lambda kind=kind: make_model(settings, kind).fit(X, show_progress=False)))
            if "sparse_ease" in args.kinds:
                B = binary(X)
                knn = make_model(settings, "itemknn").fit(B)
                model = make_model(settings, "sparse_ease")
                assert isinstance(model, SparseEASE)
                popularity = np.bincount(B.indices, minlength=B.shape[1])
                solve.append(timed(partial(model.solve, knn, popularity, B.shape[0])))
    base = statistics.median(times["itemknn"])
    print(f"matrix {args.matrix}: {X.shape[0]} users x {X.shape[1]} items, {X.nnz} interactions; one thread, "
          f"median of {args.repeat}")
    print("| kind | fit s (median) | × item-kNN |\n|---|---|---|")
    for kind, values in times.items():
        print(f"| {kind} | {statistics.median(values):.2f} | {statistics.median(values) / base:.2f} |")
    if solve:
        print(f"| sparse_ease solve on the job's kNN lists | {statistics.median(solve):.2f} | "
              f"{statistics.median(solve) / base:.2f} |")


if __name__ == "__main__":
    main()
