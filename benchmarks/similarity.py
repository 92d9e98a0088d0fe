"""Item-item top-K cosine similarity: encore vs implicit 0.7.3 vs sparse_dot_topn, side by side.

Each contender runs in its own subprocess on the same cached matrix, after a warm-up on a small
slice (numba cache load, thread pools), so that time and peak RSS (ru_maxrss, workers included for
Dask) belong to it alone. Besides wall seconds it records the process's CPU seconds over the timed call
(for the Dask contenders that is the client's only), which other jobs on a shared machine inflate less.
Usage: python benchmarks/similarity.py [--sizes S,M,L] [--k 50] [--contenders encore,implicit]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Self

import numpy as np
from scipy.sparse import csr_matrix

sys.path.insert(0, str(Path(__file__).parent))
from _matrices import cached_matrix, load_matrix

CONTENDERS = ("encore", "encore-dask-1", "encore-dask-2", "implicit", "sdtn-1", "sdtn-2")


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Clock:
    """Wall and CPU seconds of a ``with`` block: ``.taken`` is (wall, cpu)."""

    def __enter__(self) -> Self:
        self.start = (time.perf_counter(), _cpu_seconds())
        return self

    def __exit__(self, *exc) -> None:
        self.taken = (time.perf_counter() - self.start[0], _cpu_seconds() - self.start[1])


def _rss_mb() -> float:
    """Peak resident set size of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _normalised_columns(X: csr_matrix) -> csr_matrix:
    """X with each item column scaled to unit L2 norm."""
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=0)).ravel())
    return csr_matrix(X.multiply(1 / np.maximum(norms, 1e-30)).astype(np.float32))


def _topk_sets(S: csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """n_items × k (neighbours, scores) from a similarity CSR: self removed, best first, padded -1 / 0."""
    S = S.tocoo()
    keep = S.row != S.col
    rows, cols, vals = S.row[keep], S.col[keep], S.data[keep]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    rank = np.arange(rows.size) - np.searchsorted(rows, rows)
    nbr = np.full((S.shape[0], k), -1, np.int32)
    scores = np.zeros((S.shape[0], k), np.float32)
    ok = rank < k
    nbr[rows[ok], rank[ok]] = cols[ok]
    scores[rows[ok], rank[ok]] = vals[ok]
    return nbr, scores


def _run_encore(X: csr_matrix, k: int, n_workers: int) -> tuple[tuple, float, float]:
    """encore item_topk in-process (n_workers=0) or on a process LocalCluster.

    Returns ((neighbours, scores), seconds, peak MB of the workers).
    """
    from encore.dist.fit import item_topk

    if n_workers == 0:
        item_topk(X[:2000], k, client=None)
        with Clock() as clock:
            nbr, scores, _ = item_topk(X, k, client=None)
        return (nbr, scores), clock.taken, 0.0
    from distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, Client(cluster) as client:
        item_topk(X[:2000], k, client=client)
        with Clock() as clock:
            nbr, scores, _ = item_topk(X, k, client=client)
        worker_rss = client.run(_rss_mb)
    return (nbr, scores), clock.taken, sum(worker_rss.values())


def _run_implicit(X: csr_matrix, k: int) -> tuple[tuple, float, float]:
    """implicit CosineRecommender with one thread; K=k+1 because implicit keeps each item itself."""
    from implicit.nearest_neighbours import CosineRecommender

    CosineRecommender(K=k + 1, num_threads=1).fit(X[:2000], show_progress=False)
    model = CosineRecommender(K=k + 1, num_threads=1)
    with Clock() as clock:
        model.fit(X, show_progress=False)
    return _topk_sets(model.similarity, k), clock.taken, 0.0


def _run_sdtn(X: csr_matrix, k: int, n_threads: int) -> tuple[tuple, float, float]:
    """sparse_dot_topn sp_matmul_topn(Xn.T, Xn) with top_n=k+1 (self included), normalisation timed."""
    from sparse_dot_topn import sp_matmul_topn

    sp_matmul_topn(X[:2000].T.tocsr(), X[:2000], top_n=k + 1, n_threads=n_threads)
    with Clock() as clock:
        B = _normalised_columns(X)
        S = sp_matmul_topn(B.T.tocsr(), B, top_n=k + 1, sort=True, n_threads=n_threads)
    return _topk_sets(S, k), clock.taken, 0.0


def run_contender(name: str, matrix: Path, k: int, out: Path) -> None:
    """Child process: run one contender, save its neighbours and print a JSON line of figures."""
    warnings.filterwarnings("ignore")
    X = load_matrix(matrix)
    base = _rss_mb()
    if name.startswith("encore"):
        n_workers = int(name.rsplit("-", 1)[1]) if "dask" in name else 0
        topk, (seconds, cpu), extra = _run_encore(X, k, n_workers)
    elif name == "implicit":
        topk, (seconds, cpu), extra = _run_implicit(X, k)
    else:
        topk, (seconds, cpu), extra = _run_sdtn(X, k, int(name.rsplit("-", 1)[1]))
    np.savez(out, nbr=topk[0], scores=topk[1])
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_mb": _rss_mb() - base + extra}))


def _agreement(a: dict, b: dict) -> tuple[float, float]:
    """(fraction of items with identical top-K sets, with top-K score vectors equal within 1e-5).

    Sets differ mostly by ties at the K-th place (count data has many equal cosines); equal score
    vectors show that both found an equally good top-K.
    """
    same_sets = sum(set(ra[ra >= 0]) == set(rb[rb >= 0]) for ra, rb in zip(a["nbr"], b["nbr"], strict=True))
    same_scores = np.isclose(a["scores"], b["scores"], rtol=1e-5, atol=1e-6).all(axis=1).mean()
    return same_sets / len(a["nbr"]), float(same_scores)


def bench_size(name: str, k: int, workdir: Path, contenders: tuple[str, ...] = CONTENDERS) -> list[dict]:
    """Run ``contenders`` (the first is the reference of the ratios) on size ``name``; one row of figures each."""
    from encore.core.weighting import pair_visits

    matrix = cached_matrix(name, workdir)
    X = load_matrix(matrix)
    visits = pair_visits(X)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows, neighbours = [], {}
    for contender in contenders:
        out = workdir / f"nbr_{name}_{contender}.npz"
        cmd = [
            sys.executable,
            __file__,
            "--run",
            contender,
            "--matrix",
            str(matrix),
            "--k",
            str(k),
            "--out",
            str(out),
        ]
        result = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
        neighbours[contender] = dict(np.load(out))
        rows.append(
            {"size": name, "contender": contender, "shape": X.shape, "nnz": X.nnz, "visits": visits, **result}
        )
        print(
            f"  {name} {contender:14s} {result['seconds']:7.2f} s  CPU {result['cpu_seconds']:7.2f} s  "
            f"peak +{result['peak_mb']:7.0f} MB",
            flush=True,
        )
    reference = rows[0]
    for row in rows:
        row["same_sets_vs_encore"], row["same_scores_vs_encore"] = _agreement(
            neighbours[row["contender"]], neighbours[reference["contender"]]
        )
        row["speedup_of_encore"] = row["seconds"] / reference["seconds"]
        row["cpu_speedup_of_encore"] = row["cpu_seconds"] / reference["cpu_seconds"]
    return rows


def print_table(rows: list[dict]) -> None:
    """Print the figures as a Markdown table."""
    print(
        "| size | users × items | nnz | Σdeg² | contender | time s | CPU s | Mvisits/s | peak MB | encore speed-up "
        "| encore CPU speed-up | same top-K sets | same top-K scores |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['size']} | {r['shape'][0]:,} × {r['shape'][1]:,} | {r['nnz']:,} | {r['visits']:,} | {r['contender']} "
            f"| {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['visits'] / r['seconds'] / 1e6:.0f} "
            f"| {r['peak_mb']:.0f} | {r['speedup_of_encore']:.2f}× | {r['cpu_speedup_of_encore']:.2f}× "
            f"| {r['same_sets_vs_encore']:.3f} | {r['same_scores_vs_encore']:.3f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="S,M")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--contenders", default=",".join(CONTENDERS),
                        help=f"comma-separated, the first being the reference, of {', '.join(CONTENDERS)}")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "encore-bench")
    parser.add_argument("--run", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--matrix", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run_contender(args.run, args.matrix, args.k, args.out)
        return
    contenders = tuple(args.contenders.split(","))
    unknown = set(contenders) - set(CONTENDERS)
    if unknown:
        parser.error(f"--contenders: unknown {', '.join(sorted(unknown))}; choose from {', '.join(CONTENDERS)}")
    rows = [row for name in args.sizes.split(",") for row in bench_size(name, args.k, args.workdir, contenders)]
    print_table(rows)


if __name__ == "__main__":
    main()
