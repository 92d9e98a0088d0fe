"""Seeded synthetic user × item matrices for the benchmarks: power-law item popularity and user activity.

User activity is log-normal (σ = 1, capped at 500 like the pipeline's history cap); items are drawn
from a Zipf-like popularity (weight ∝ (rank + 10)^-0.9) with item ids shuffled so that popularity
does not follow the index. Repeat draws of a (user, item) pair add up, giving count-valued weights.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix, load_npz, save_npz


@dataclass(frozen=True)
class Size:
    """A benchmark size: shape and the number of (user, item) draws before deduplication."""

    n_users: int
    n_items: int
    draws: int


SIZES = {
    "S": Size(100_000, 20_000, 2_150_000),
    "M": Size(100_000, 50_000, 5_300_000),
    "L": Size(1_000_000, 100_000, 19_000_000),
}
HISTORY_CAP = 500


def synthetic_matrix(size: Size, seed: int = 0) -> csr_matrix:
    """A float32 user × item CSR of interaction counts with power-law users and items."""
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.0, size.n_users)
    deg = np.minimum(np.maximum(1, np.round(activity * size.draws / activity.sum())), HISTORY_CAP)
    deg = deg.astype(np.int64)
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
