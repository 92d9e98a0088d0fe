"""Quality benchmark on the UCI Online Retail reference protocol (../shared/data/README.md).

Every model is fitted on the same binary train matrix, recommends 10 items per test user with the
user's train items excluded, and is scored by ``encore.job.evaluate`` in the same run. Adding a model is
one ``Entry`` line in ``entries()``. Fit and recommend wall times are measured with BLAS/OpenMP
limited to one thread and reported as the best of ``--repeat`` runs (so numba compilation is not
counted), so the rows compare like with like.

    .venv/bin/python benchmarks/quality.py              # test window (2011-11-09 on)
    .venv/bin/python benchmarks/quality.py --validate   # last 30 train days as validation, for tuning
    .venv/bin/python benchmarks/quality.py --write      # also refresh the table in docs/quality.md

Data: Chen, D. (2015). Online Retail. UCI Machine Learning Repository, doi:10.24432/C5BW33 (CC BY 4.0).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from encore.io.uci import item_map, read_uci, to_interactions
from encore.job.evaluate import UCI_CUT, Protocol, markdown_table, protocol_uci, segment_users, split_time

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "online_retail_uci.csv.gz"
DOC = ROOT / "docs" / "quality.md"
HALF_LIFE_DAYS = 60.0  # chosen on the validation window (7 to 365 days tried)
NEW_DAYS = 30  # an item first bought in the last NEW_DAYS before the cut is "new" (segment "NDCG new")
START, END = "<!-- quality-table:start -->", "<!-- quality-table:end -->"


class MostPopular:
    """Baseline: items by number of distinct train buyers, ties by item index, implicit's API."""

    def fit(self, user_items: Any, show_progress: bool = False) -> MostPopular:
        """Count distinct buyers per item column."""
        self.popularity_ = np.diff(user_items.tocsc().indptr)
        return self

    def recommend(self, userids: np.ndarray, user_items: Any, N: int = 10, **_: Any) -> tuple:
        """Top-N most popular items per row of ``user_items`` that the user does not have yet."""
        seen = user_items.toarray() > 0
        order = np.argsort(np.where(seen, 1, -self.popularity_), axis=1, kind="stable")[:, :N]
        return order, self.popularity_[order]


@dataclass(frozen=True)
class Entry:
    """A model row: its label and a factory for an unfitted model with implicit's API (encore's models
    follow it too: ``fit(X, show_progress=False)``, ``recommend(userids, user_items[userids], N=k)``).

    ``weighted`` models fit on 0/1 but score purchase histories decayed with a half-life of
    ``HALF_LIFE_DAYS`` (fitting on them was worse).
    """

    name: str
    make: Callable[[], Any]
    weighted: bool = False


def entries() -> list[Entry]:
    """The models of the table: baselines, implicit 0.7.3, and encore's models when importable."""
    from implicit.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

    rows = [
        Entry("most popular (distinct buyers)", MostPopular),
        Entry("implicit Cosine K=50", lambda: CosineRecommender(K=50, num_threads=1)),
        Entry("implicit BM25 K=100", lambda: BM25Recommender(K=100, num_threads=1)),
        Entry(
            "implicit ALS f=64 it=15",
            lambda: AlternatingLeastSquares(factors=64, iterations=15, random_state=42, num_threads=1),
        ),
    ]
    if importlib.util.find_spec("encore.core.itemknn") is not None:
        from encore.core.als import ALS
        from encore.core.ease import EASE
        from encore.core.itemknn import ItemKNN
        from encore.core.sparse_ease import SparseEASE

        rows += [
            Entry("encore ItemKNN K=50", lambda: ItemKNN(K=50, weighting="none", alpha=0.5)),
            Entry("encore ItemKNN K=100 bm25 cosine", lambda: ItemKNN(K=100, alpha=0.5)),
            Entry("encore ItemKNN K=50 bm25 dot", lambda: ItemKNN(K=50)),
            Entry("encore ItemKNN K=50 bm25 dot, recency", lambda: ItemKNN(K=50), weighted=True),
            Entry("encore ItemKNN K=50 bm25 k1=0.5 b=1 dot, recency",  # K1, B chosen on the validation window
                  lambda: ItemKNN(K=50, K1=0.5, B=1.0), weighted=True),
            Entry("encore EASE λ=250", lambda: EASE(lam=250.0)),
            Entry("encore EASE λ=250, recency", lambda: EASE(lam=250.0), weighted=True),
            Entry("encore EASE λ=250 γ=0.15, recency", lambda: EASE(lam=250.0, popularity_power=0.15), weighted=True),
            Entry("encore EDLAE λ=150 p=0.1, recency",  # the best EDLAE of two validation windows (noise: +0.0003)
                  lambda: EASE(lam=150.0, dropout=0.1), weighted=True),
            Entry("encore SparseEASE λ=400 K=50 support 100 fill 2, recency",  # chosen on two validation windows
                  lambda: SparseEASE(lam=400.0, K=50, max_support=100, fill=2.0), weighted=True),
            Entry("encore SparseEASE fill 0 (kNN-sparsified Gram), recency",
                  lambda: SparseEASE(lam=400.0, K=50, max_support=100, fill=0.0), weighted=True),
            Entry("encore ALS f=64 it=15 (implicit's, recomputed users), recency",
                  lambda: ALS(factors=64, iterations=15, random_state=42, num_threads=1), weighted=True),
        ]
        if importlib.util.find_spec("sansa") is not None:
            from encore.core.sansa import SANSA

            rows.append(Entry("encore SANSA (sansa package) λ=250 density 0.01, recency",
                              lambda: SANSA(lam=250.0, density=0.01), weighted=True))
    return rows


def fit_recommend(entry: Entry, X: Any, history: Any, rows: np.ndarray, k: int) -> tuple[np.ndarray, float, float]:
    """Fit a fresh model on ``X``, recommend k items to ``rows`` from ``history`` (same pattern as X,
    possibly weighted); returns items and fit / recommend seconds."""
    model = entry.make()
    t0 = time.perf_counter()
    model.fit(X, show_progress=False)
    t1 = time.perf_counter()
    items, _ = model.recommend(rows, history[rows], N=k, filter_already_liked_items=True)
    return np.asarray(items), t1 - t0, time.perf_counter() - t1


def run(entry: Entry, proto: Protocol, weighted: Any, k: int, repeat: int,
        new_items: np.ndarray | None = None) -> dict[str, Any]:
    """Score one model, overall and by segment (``Protocol.segments``: history length, ``new_items``); times
    are the best of ``repeat`` runs on one thread (excludes JIT warm-up)."""
    history = weighted if entry.weighted else proto.X
    with threadpool_limits(1):
        runs = [fit_recommend(entry, proto.X, history, proto.test_rows, k) for _ in range(repeat)]
    items = runs[-1][0]
    metrics = proto.score(items, k, item_features=proto.X.T.tocsr())
    return {
        "model": entry.name,
        **metrics,
        "fit s": min(r[1] for r in runs),
        "rec s": min(r[2] for r in runs),
        **proto.segments(items, k, new_items),
    }


def new_items(events: pd.DataFrame, proto: Protocol, cut: pd.Timestamp, days: int = NEW_DAYS) -> np.ndarray:
    """Items of ``proto`` first bought in the ``days`` before ``cut``: the "new" segment."""
    train = events[events["at"] < cut]
    ids = item_map(events).reindex(train["stock_code"]).to_numpy()
    first = pd.Series(train["at"].to_numpy()).groupby(ids).min()
    return (first.reindex(proto.items) >= cut - pd.Timedelta(days=days)).to_numpy()


def recency_weighted(events: pd.DataFrame, proto: Protocol, cut: pd.Timestamp) -> sp.csr_matrix:
    """Train pairs of ``proto.X`` weighted 0.5^(age at the cut / HALF_LIFE_DAYS) of their last purchase."""
    inter, _ = to_interactions(events[events["at"] < cut], item_map(events))
    decay = np.power(0.5, (cut - inter["last_at"]).dt.total_seconds().to_numpy() / 86400.0 / HALF_LIFE_DAYS)
    rows = np.searchsorted(proto.users, inter["uid"].to_numpy())
    cols = np.searchsorted(proto.items, inter["item_id"].to_numpy())
    return sp.csr_matrix((decay.astype(np.float32), (rows, cols)), shape=proto.X.shape)


def load(validate: bool, days: int, window: int = 1) -> tuple[Protocol, sp.csr_matrix, str, np.ndarray]:
    """The protocol to score on (the test window, or validation window ``window``: the ``days`` before the
    test window, 2 the ``days`` before those), its recency-weighted train matrix, a description and the
    "new" items."""
    events, _ = read_uci(DATA)
    if not validate:
        proto = protocol_uci(events)
        cut = pd.Timestamp(UCI_CUT)
        return proto, recency_weighted(events, proto, cut), f"test window from {UCI_CUT}", new_items(events, proto, cut)
    end = pd.Timestamp(UCI_CUT) - pd.Timedelta(days=days * (window - 1))
    train_events, _ = split_time(events, end, time_col="at")
    cut = end - pd.Timedelta(days=days)
    proto = protocol_uci(train_events, cut)
    text = f"validation window {window}: {cut.date()} to {end.date()} (test untouched)"
    return proto, recency_weighted(train_events, proto, cut), text, new_items(train_events, proto, cut)


def write_table(table: str, path: Path = DOC) -> None:
    """Replace the text between the table markers of ``docs/quality.md`` with ``table``."""
    text = path.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{table}\n{END}{tail}")


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run every model on the chosen window and print one Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--validate", action="store_true", help="score on the last --days of train")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--window", type=int, default=1, help="validation window: 1 the last --days of train, "
                        "2 the --days before them (average both before adopting a gain under 0.003)")
    parser.add_argument("--only", default="", help="run only the models whose name contains this text")
    parser.add_argument("--repeat", type=int, default=2, help="runs per model; times are the best")
    parser.add_argument("--write", action="store_true", help=f"refresh the table in {DOC.name}")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Method expects CSR input")  # raised inside implicit's kNN fit
    proto, weighted, window, new = load(args.validate, args.days, args.window)
    rows = [run(entry, proto, weighted, args.k, args.repeat, new) for entry in entries() if args.only in entry.name]
    table = markdown_table(rows)
    n_users, n_items = proto.X.shape
    users = segment_users(proto.truth, proto.history, new)
    print(f"UCI Online Retail, {window}: {n_users} train users x {n_items} items, k={args.k}; test users by "
          f"segment {users}\n\n{table}")
    if args.write and not args.validate and not args.only:
        write_table(table)


if __name__ == "__main__":
    main()
