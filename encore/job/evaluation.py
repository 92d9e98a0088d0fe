"""``encore evaluate``: train models on the past of the configured input, score them on its future.

The input (lake or legacy CSV) is ingested as the daily run would; the interactions are split by a
global time cut ``test_days`` before the last bid when dates exist, else by a seeded per-user
fraction. Every model is fitted on the training side and ranked on ``encore.job.evaluate``'s protocol
(users with a train history, train items, truth = new items of the test side), overall and by segment
(test users with 1-2, 3-10 and > 10 history items; the items first bid on in the ``test_days`` before the
cut, "new"). Results go to
``<output>/evaluations/<id>/`` as ``results.md``, ``results.json`` and ``ndcg_coverage.png``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from encore.config import Settings
from encore.core.base import Recommender
from encore.core.itemknn import ItemKNN
from encore.core.make import make_model, with_model
from encore.core.popularity import Trending
from encore.dist.fit import fit as fit_on
from encore.io import atomic, lake
from encore.job.evaluate import (
    Protocol,
    holdout_protocol,
    markdown_table,
    segment_users,
    split_fraction,
    split_time,
)
from encore.job.matrix import build_matrix


@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate: :func:`encore.make_model` of ``kind`` on the settings with ``changes`` to their
    model section, and whether it scores weighted histories.

    ``weighted`` models see ``encore.job.matrix`` interaction weights (bids, spend, won, recency decay
    with ``model.half_life_days``) when they score a user's history; the others see 0/1.
    """

    kind: str = "itemknn"
    changes: dict[str, Any] = field(default_factory=dict)
    weighted: bool = False

    def make(self, settings: Settings) -> Recommender:
        """The unfitted model for ``settings``."""
        return make_model(with_model(settings, **self.changes), self.kind)


MODELS: dict[str, ModelSpec] = {
    "popularity": ModelSpec("popularity"),
    "trending": ModelSpec("trending"),
    "itemknn": ModelSpec(weighted=True),
    "itemknn-binary": ModelSpec(),
    "itemknn-cosine": ModelSpec(changes={"weighting": "none", "alpha": 0.5}),
    "itemknn-bm25-cosine": ModelSpec(changes={"weighting": "bm25", "alpha": 0.5}),
    "itemknn-k100": ModelSpec(changes={"k": 100}, weighted=True),
    "itemknn-shrink10": ModelSpec(changes={"shrinkage": 10.0}, weighted=True),
    "ease": ModelSpec("ease", weighted=True),
    "sparse_ease": ModelSpec("sparse_ease", weighted=True),
    "als": ModelSpec("als", weighted=True),
    "sansa": ModelSpec("sansa", weighted=True),  # needs encore[sansa]
}
DEFAULT_MODELS = ("popularity", "trending", "itemknn-cosine", "itemknn-bm25-cosine", "itemknn-binary", "itemknn",
                  "itemknn-k100", "itemknn-shrink10", "ease", "sparse_ease", "als")


def split_interactions(inter: pd.DataFrame, test_days: int, frac: float = 0.2,
                       seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp | None]:
    """(train, test, cut): a global cut ``test_days`` before the last bid, else a per-user fraction."""
    if "first_at" in inter and inter["first_at"].notna().all():
        cut = pd.Timestamp(inter["last_at"].max()).normalize() - pd.Timedelta(days=test_days - 1)
        train, test = split_time(inter, cut)
        return train, test, cut
    train, test = split_fraction(inter, frac, seed)
    return train, test, None


def weighted_history(train: pd.DataFrame, proto: Protocol, settings: Settings, now: pd.Timestamp | None) -> csr_matrix:
    """The train interactions weighted as the daily run weights them, rows and columns as ``proto.X``."""
    m = build_matrix(train, np.zeros(0, np.int64), settings.model, now)
    if not (m.users.equals(pd.Index(proto.users.astype(str))) and np.array_equal(m.items, proto.items)):
        raise ValueError("weighted history and evaluation protocol index users or items differently")
    return m.X


def recent_windows(train: pd.DataFrame, proto: Protocol, cut: pd.Timestamp | None,
                   days: int) -> tuple[csr_matrix, csr_matrix | None]:
    """Binary matrices of the last ``days`` before the cut and of the ``days`` before that (trending)."""
    if cut is None:
        return proto.X, None
    last = pd.to_datetime(train["last_at"])
    rows = np.searchsorted(proto.users, train["uid"].to_numpy())
    cols = np.searchsorted(proto.items, train["item_id"].to_numpy())

    def window(lo: pd.Timestamp, hi: pd.Timestamp) -> csr_matrix:
        keep = ((last >= lo) & (last < hi)).to_numpy()
        return csr_matrix((np.ones(keep.sum(), np.float32), (rows[keep], cols[keep])), shape=proto.X.shape)

    step = pd.Timedelta(days=days)
    return window(cut - step, cut), window(cut - 2 * step, cut - step)


def new_items(train: pd.DataFrame, proto: Protocol, cut: pd.Timestamp | None, days: int) -> np.ndarray | None:
    """Train items first bid on in the ``days`` before the cut (the "new" segment); None without dates."""
    if cut is None:
        return None
    first = train.groupby("item_id")["first_at"].min().reindex(proto.items)
    return (pd.to_datetime(first) >= cut - pd.Timedelta(days=days)).to_numpy()


def score_model(name: str, settings: Settings, proto: Protocol, histories: dict[bool, csr_matrix],
                windows: tuple, k: int, client=None, new: np.ndarray | None = None) -> dict[str, Any]:
    """Fit one model on the train side and score its top-k for the protocol's test users, overall and by
    segment (:meth:`Protocol.segments`: history length and, with ``new``, the new items)."""
    spec = MODELS[name]
    model = spec.make(settings)
    history = histories[spec.weighted]
    if isinstance(model, Trending):
        model.fit(windows[0], show_progress=False, previous=windows[1])
    elif isinstance(model, ItemKNN):
        fit_on(model, history, client)
    else:
        model.fit(history, show_progress=False)
    rows = proto.test_rows
    items, _ = model.recommend(rows, history[rows], N=k, filter_already_liked_items=True)
    return {"model": name, **proto.score(np.asarray(items), k), **proto.segments(np.asarray(items), k, new)}


def evaluate_interactions(inter: pd.DataFrame, settings: Settings, models: tuple[str, ...], k: int = 10,
                          test_days: int = 7, client=None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Split, fit and score every model; returns the result rows and a description of the split."""
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise ValueError(f"unknown models {unknown}; choose from {sorted(MODELS)}")
    inter = inter.assign(uid=inter["uid"].astype(str))
    train, test, cut = split_interactions(inter, test_days, seed=settings.synth.seed)
    proto = holdout_protocol(train, test)
    if proto.test_rows.size == 0:
        raise ValueError("no test user has a new item on the test side: widen --test-days")
    histories = {False: proto.X, True: weighted_history(train, proto, settings, cut)}
    windows = recent_windows(train, proto, cut, settings.model.trending_days)
    new = new_items(train, proto, cut, test_days)
    rows = [score_model(name, settings, proto, histories, windows, k, client, new) for name in models]
    split = {"kind": "time" if cut is not None else "per-user fraction", "cut": None if cut is None else str(cut),
             "train_users": int(proto.X.shape[0]), "train_items": int(proto.X.shape[1]),
             "test_users": int(proto.test_rows.size), "k": k,
             "segment_users": segment_users(proto.truth, proto.history, new)}
    return rows, split


def figure_png(rows: list[dict[str, Any]], k: int) -> bytes:
    """A bar chart of NDCG@k and catalogue coverage per model, as PNG bytes (Agg, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 0.9 * len(rows)), 4.0))
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r[f"NDCG@{k}"] for r in rows], 0.4, label=f"NDCG@{k}")
    ax.bar(x + 0.2, [r["coverage"] for r in rows], 0.4, label="coverage")
    ax.set_xticks(x, [r["model"] for r in rows], rotation=30, ha="right")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def write_evaluation(settings: Settings, rows: list[dict[str, Any]], split: dict[str, Any],
                     run_id: str | None = None) -> str:
    """Write results.md, results.json and the figure to ``<output>/evaluations/<id>/``; return it."""
    run_id = run_id or pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
    fs, root = lake.filesystem(settings.output.path, settings.output_storage_options())
    folder = f"{root.rstrip('/')}/evaluations/{run_id}"
    table = markdown_table(rows)
    atomic.write_bytes(fs, f"{folder}/results.md",
                       f"# Offline evaluation {run_id}\n\nSplit: {json.dumps(split)}\n\n{table}\n".encode())
    atomic.write_bytes(fs, f"{folder}/results.json",
                       json.dumps({"id": run_id, "split": split, "results": rows}, indent=2).encode())
    atomic.write_bytes(fs, f"{folder}/ndcg_coverage.png", figure_png(rows, split["k"]))
    return f"{settings.output.path.rstrip('/')}/evaluations/{run_id}"


def run_evaluation(settings: Settings, models: tuple[str, ...] = DEFAULT_MODELS, k: int = 10, test_days: int = 7,
                   client=None) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """Ingest the configured input, evaluate ``models`` and write the results; returns rows, split, folder."""
    from encore.dist.cluster import session
    from encore.job import ingest as ingest_mod
    from encore.job.prepare import ensure_lake

    ensure_lake(settings)
    with session(settings, client) as active:
        res = ingest_mod.ingest(settings)
        rows, split = evaluate_interactions(res.interactions, settings, models, k, test_days, active)
    return rows, split, write_evaluation(settings, rows, split)
