"""Distinct (user, category) pairs with summed bids, the report's building block: encore vs pandas and numpy.

``encore.report.tables.user_pairs`` (one numba pass over rows sorted by user) against a pandas groupby
on the two columns and a numpy sort of packed keys (what encore did before), on interactions shaped
like a ladder rung's: rows sorted by user, ~11 rows per user, categories and sub-categories as in the
synthetic marketplace. Usage: python benchmarks/report_pairs.py [--rows 9000000] [--repeat 3]
"""

import argparse
import time

import numpy as np
import pandas as pd

from encore.report.tables import user_pairs


def interactions(rows: int, groups: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, group, bids) sorted by user, ~11 rows per user, groups skewed like categories."""
    rng = np.random.default_rng(seed)
    user = np.sort(rng.integers(0, rows // 11, rows))
    group = np.minimum(rng.zipf(1.3, rows) - 1, groups - 1)
    return user, group, rng.integers(1, 5, rows).astype(np.float64)


def with_pandas(user: np.ndarray, group: np.ndarray, bids: np.ndarray, n_groups: int) -> tuple:
    """The pandas way: groupby on both columns, summed."""
    out = pd.DataFrame({"u": user, "g": group, "w": bids}).groupby(["u", "g"], sort=True)["w"].sum()
    return out.index.get_level_values(0).to_numpy(), out.index.get_level_values(1).to_numpy(), out.to_numpy()


def with_numpy_sort(user: np.ndarray, group: np.ndarray, bids: np.ndarray, n_groups: int) -> tuple:
    """The numpy way (encore before session 6): stable argsort of user * n_groups + group, then bincount."""
    key = user * n_groups + group
    order = np.argsort(key, kind="stable")
    key = key[order]
    start = np.ones(len(key), dtype=bool)
    start[1:] = key[1:] != key[:-1]
    keys = key[start]
    return keys // n_groups, keys % n_groups, np.bincount(np.cumsum(start) - 1, bids[order], len(keys))


def best_of(fn, repeat: int, *args) -> tuple[float, tuple]:
    """Fastest of ``repeat`` calls and the last result."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=9_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    user_pairs(np.zeros(2, np.int64), np.zeros(2, np.int64), 1)  # compile (or load the cache) outside the timing
    print(f"{'groups':>6} {'rows':>10} {'pairs':>10} {'encore s':>9} {'numpy sort s':>13} {'pandas s':>9} {'vs pandas':>9}")
    for groups in (12, 120):
        user, group, bids = interactions(args.rows, groups)
        t_enc, ours = best_of(user_pairs, args.repeat, user, group, groups, bids)
        t_np, sorted_way = best_of(with_numpy_sort, args.repeat, user, group, bids, groups)
        t_pd, pandas_way = best_of(with_pandas, args.repeat, user, group, bids, groups)
        for a, b, c in zip(ours, sorted_way, pandas_way, strict=True):
            np.testing.assert_allclose(a, b)
            np.testing.assert_allclose(a, c)
        print(f"{groups:>6} {args.rows:>10,} {len(ours[0]):>10,} {t_enc:>9.3f} {t_np:>13.3f} {t_pd:>9.3f} "
              f"{t_pd / t_enc:>8.1f}x")


if __name__ == "__main__":
    main()
