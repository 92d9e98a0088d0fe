"""Quality benchmark on the UCI Online Retail reference protocol (../shared/data/README.md).

Every model is fitted on the same binary train matrix, recommends 10 items per test user with the
user's train items excluded, and is scored by ``encore.evaluate`` in the same run. Adding a model is
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
from threadpoolctl import threadpool_limits

from encore.evaluate import UCI_CUT, Protocol, markdown_table, protocol_uci, split_time
from encore.io.uci import read_uci

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "online_retail_uci.csv.gz"
DOC = ROOT / "docs" / "quality.md"
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
    """A model row: its label, a factory for an unfitted model, and which API it follows.

    ``implicit_api`` models take ``show_progress`` in ``fit`` and ``user_items[userids]`` in
    ``recommend``; encore models take the full matrix and row ids.
    """

    name: str
    make: Callable[[], Any]
    implicit_api: bool = True


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
    if importlib.util.find_spec("encore.models.itemknn") is not None:
        from encore.models.itemknn import ItemKNN

        rows += [
            Entry("encore ItemKNN K=50", lambda: ItemKNN(k=50), implicit_api=False),
            Entry("encore ItemKNN K=100 bm25", lambda: ItemKNN(k=100, weighting="bm25"), implicit_api=False),
        ]
    return rows


def fit_recommend(entry: Entry, X: Any, rows: np.ndarray, k: int) -> tuple[np.ndarray, float, float]:
    """Fit a fresh model and recommend k items to ``rows``; returns items and fit / recommend seconds."""
    model = entry.make()
    t0 = time.perf_counter()
    model.fit(X, show_progress=False) if entry.implicit_api else model.fit(X)
    t1 = time.perf_counter()
    user_items = X[rows] if entry.implicit_api else X
    items, _ = model.recommend(rows, user_items, N=k, filter_already_liked_items=True)
    return np.asarray(items), t1 - t0, time.perf_counter() - t1


def run(entry: Entry, proto: Protocol, k: int, repeat: int) -> dict[str, Any]:
    """Score one model; times are the best of ``repeat`` runs on one thread (excludes JIT warm-up)."""
    with threadpool_limits(1):
        runs = [fit_recommend(entry, proto.X, proto.test_rows, k) for _ in range(repeat)]
    items = runs[-1][0]
    metrics = proto.score(items, k, item_features=proto.X.T.tocsr())
    return {
        "model": entry.name,
        **metrics,
        "fit s": min(r[1] for r in runs),
        "rec s": min(r[2] for r in runs),
    }


def load(validate: bool, days: int) -> tuple[Protocol, str]:
    """The protocol to score on: the test window, or the last ``days`` of train as validation."""
    events, _ = read_uci(DATA)
    if not validate:
        return protocol_uci(events), f"test window from {UCI_CUT}"
    train_events, _ = split_time(events, UCI_CUT, time_col="at")
    cut = pd.Timestamp(UCI_CUT) - pd.Timedelta(days=days)
    return protocol_uci(train_events, cut), f"validation window {cut.date()} to {UCI_CUT} (test untouched)"


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
    parser.add_argument("--repeat", type=int, default=2, help="runs per model; times are the best")
    parser.add_argument("--write", action="store_true", help=f"refresh the table in {DOC.name}")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Method expects CSR input")  # raised inside implicit's kNN fit
    proto, window = load(args.validate, args.days)
    rows = [run(entry, proto, args.k, args.repeat) for entry in entries()]
    table = markdown_table(rows)
    n_users, n_items = proto.X.shape
    print(f"UCI Online Retail, {window}: {n_users} train users x {n_items} items, k={args.k}\n\n{table}")
    if args.write and not args.validate:
        write_table(table)


if __name__ == "__main__":
    main()
