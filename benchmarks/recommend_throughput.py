"""Recommend N=20 items for every user: encore vs implicit's batch recommend on the same neighbours.

encore fits a cosine ItemKNN (K=50); implicit's ItemItemRecommender is given exactly those neighbours as its
similarity matrix, so both score the same model. Besides wall time it records the process's CPU seconds for
the two single-threaded contenders, which other jobs on a shared machine inflate less. Usage:
python benchmarks/recommend_throughput.py [--sizes S,M] [--n 20]
"""

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix

sys.path.insert(0, str(Path(__file__).parent))
from _matrices import cached_matrix, load_matrix

K = 50


def implicit_model(neighbours: np.ndarray, scores: np.ndarray):
    """An implicit ItemItemRecommender whose similarity matrix holds encore's neighbour lists."""
    from implicit.nearest_neighbours import ItemItemRecommender, NearestNeighboursScorer

    n_items = neighbours.shape[0]
    valid = neighbours >= 0
    rows = np.broadcast_to(np.arange(n_items)[:, None], neighbours.shape)[valid]
    similarity = csr_matrix((scores[valid], (rows, neighbours[valid])), shape=(n_items, n_items))
    model = ItemItemRecommender(K=K, num_threads=1)
    model.similarity = similarity
    model.scorer = NearestNeighboursScorer(similarity)
    return model


def bench_size(name: str, n: int, workdir: Path) -> dict:
    """Users/s of encore (in-process and on a 2-worker process cluster) and implicit for one size."""
    from distributed import Client, LocalCluster

    from encore.core.itemknn import ItemKNN
    from encore.dist.fit import score_users

    X = load_matrix(cached_matrix(name, workdir))
    users = np.arange(X.shape[0])
    model = ItemKNN(K=K, weighting="none", alpha=0.5).fit(X)
    model.recommend(users[:1000], X[:1000], n)
    start, cpu = time.perf_counter(), time.process_time()
    items, _ = model.recommend(users, X[users], n)
    encore_s, encore_cpu = time.perf_counter() - start, time.process_time() - cpu
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        score_users(users[:1000], X, model.neighbours_, model.scores_, n, client=client, rank=model.rank_)
        start = time.perf_counter()
        score_users(users, X, model.neighbours_, model.scores_, n, client=client, rank=model.rank_)
        dask_s = time.perf_counter() - start
    reference = implicit_model(model.neighbours_, model.scores_)
    reference.recommend(users[:1000], X[:1000], N=n)
    start, cpu = time.perf_counter(), time.process_time()
    ref_items, _ = reference.recommend(users, X[users], N=n)
    implicit_s, implicit_cpu = time.perf_counter() - start, time.process_time() - cpu
    same = np.mean([set(a[a >= 0]) == set(b[b >= 0]) for a, b in zip(items, ref_items, strict=True)])
    return {
        "size": name,
        "users": X.shape[0],
        "nnz": X.nnz,
        "encore": encore_s,
        "dask2": dask_s,
        "implicit": implicit_s,
        "encore_cpu": encore_cpu,
        "implicit_cpu": implicit_cpu,
        "same": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="S,M")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "encore-bench")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print(
        "| size | users | nnz | encore users/s | encore Dask 2 workers users/s | implicit users/s "
        "| encore ÷ implicit | encore ÷ implicit, CPU s | same top-N sets |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.sizes.split(","):
        r = bench_size(name, args.n, args.workdir)
        u = r["users"]
        print(
            f"| {name} | {u:,} | {r['nnz']:,} | {u / r['encore']:,.0f} | {u / r['dask2']:,.0f} "
            f"| {u / r['implicit']:,.0f} | {r['implicit'] / r['encore']:.1f}× "
            f"| {r['implicit_cpu'] / r['encore_cpu']:.1f}× | {r['same']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
