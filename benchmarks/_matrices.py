"""Seeded synthetic user × item matrices for the benchmarks, generated in one place: power-law item
popularity and user activity.

S, M, L: user activity is log-normal (σ = 1, capped at 500 like the pipeline's history cap); items are
drawn from a Zipf-like popularity (weight ∝ (rank + 10)^-0.9) with item ids shuffled so that popularity
does not follow the index. ``heavy``: uncapped Zipf user activity (∝ rank^-0.7), a few very heavy users as
real marketplaces have. ``catalogue``: the 10M ladder rung's shape (820k users × 470k items), so the
accumulators outgrow the caches. Repeat draws of a (user, item) pair add up, giving count-valued weights.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix, load_npz, save_npz


@dataclass(frozen=True)
class Size:
    """A benchmark size: shape, the number of (user, item) draws before deduplication, and how user
    activity is spread: log-normal capped at ``cap``, or Zipf with exponent ``zipf`` (no cap)."""

    n_users: int
    n_items: int
    draws: int
    zipf: float | None = None
    cap: int | None = 500


SIZES = {
    "S": Size(100_000, 20_000, 2_150_000),
    "M": Size(100_000, 50_000, 5_300_000),
    "L": Size(1_000_000, 100_000, 19_000_000),
    "heavy": Size(100_000, 50_000, 5_000_000, zipf=0.7, cap=None),
    "catalogue": Size(820_000, 470_000, 10_000_000),
}


def synthetic_matrix(size: Size, seed: int = 0) -> csr_matrix:
    """A float32 user × item CSR of interaction counts with power-law users and items."""
    rng = np.random.default_rng(seed)
    if size.zipf is None:
        activity = rng.lognormal(0.0, 1.0, size.n_users)
    else:
        activity = rng.permutation((np.arange(size.n_users) + 1.0) ** -size.zipf)
    deg = np.maximum(1, np.round(activity * size.draws / activity.sum()))
    deg = (deg if size.cap is None else np.minimum(deg, size.cap)).astype(np.int64)
    popularity = (np.arange(size.n_items) + 10.0) ** -0.9
    item_of_rank = rng.permutation(size.n_items)
    ranks = rng.choice(size.n_items, size=int(deg.sum()), p=popularity / popularity.sum())
    rows = np.repeat(np.arange(size.n_users), deg)
    data = np.ones(rows.size, np.float32)
    X = csr_matrix((data, (rows, item_of_rank[ranks])), shape=(size.n_users, size.n_items))
    X.sum_duplicates()
    return X


def cached_matrix(name: str, cache_dir: Path, seed: int = 0) -> Path:
    """Path of the size ``name`` matrix saved as .npz in ``cache_dir`` (generated on first use)."""
    path = cache_dir / f"matrix_{name}_{seed}.npz"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        save_npz(path, synthetic_matrix(SIZES[name], seed), compressed=False)
    return path


def load_matrix(path: Path) -> csr_matrix:
    """Load a cached matrix as float32 CSR with sorted indices."""
    X = load_npz(path).tocsr().astype(np.float32)
    X.sort_indices()
    return X
