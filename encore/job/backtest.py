"""The daily holdout backtest: the run's model fitted on its window minus the newest day, scored on that day.

It is ``encore evaluate --models <model.kind> --test-days 1`` on the run's own interactions, through the same
functions (:func:`encore.job.evaluation.split_interactions`, :func:`encore.job.evaluate.holdout_protocol`,
:func:`encore.job.evaluation.score_model`), so its figures match an offline evaluation of the same window
and can be compared run over run. The model is ``encore.make_model(settings)``, the daily job's.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from encore.config import Settings
from encore.job.evaluate import holdout_protocol
from encore.job.evaluation import score_model, split_interactions, weighted_history


def model_name(settings: Settings) -> str:
    """The ``encore.job.evaluation.MODELS`` entry that is ``encore.make_model(settings)`` (``model.kind``) scored
    on weighted histories: each daily kind has an entry of its own name."""
    return settings.model.kind


def has_dates(inter: pd.DataFrame) -> bool:
    """Every interaction has its first-bid time (lake input; the legacy CSV has none)."""
    return "first_at" in inter and bool(inter["first_at"].notna().all()) and len(inter) > 0


def run(interactions: pd.DataFrame, settings: Settings, client=None) -> dict[str, Any] | None:
    """Fit on the interactions first seen before the newest day, score that day at ``settings.evaluate.k``.

    Returns the model name, NDCG@k, hit rate@k, catalogue coverage (of the train items), the number of
    test users, the day scored and the seconds taken; the figures are None when no user with a history
    bid on a new, known item that day. None for input without dates (legacy CSV).
    """
    if not has_dates(interactions):
        return None
    start = time.perf_counter()
    k = settings.evaluate.k
    inter = interactions.assign(uid=interactions["uid"].astype(str))
    train, test, cut = split_interactions(inter, test_days=1, seed=settings.synth.seed)
    proto = holdout_protocol(train, test)
    figures: dict[str, float | None] = {"ndcg": None, "hit_rate": None, "coverage": None}
    if proto.test_rows.size:
        histories = {True: weighted_history(train, proto, settings, cut)}
        row = score_model(model_name(settings), settings, proto, histories, (), k, client)
        figures = {"ndcg": row[f"NDCG@{k}"], "hit_rate": row[f"hit@{k}"], "coverage": row["coverage"]}
    return {"model": model_name(settings), **figures, "k": k, "test_users": int(proto.test_rows.size), "day": str(cut.date()),
            "seconds": round(time.perf_counter() - start, 3)}
