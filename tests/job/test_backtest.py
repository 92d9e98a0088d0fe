"""The daily holdout backtest on a small synthetic run's interactions, against the evaluation code run by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import encore
import encore.core.make
from encore.job import backtest
from encore.job.evaluate import holdout_protocol
from encore.job.evaluation import MODELS, evaluate_interactions, split_interactions, weighted_history
from encore.job.ingest import ingest
from encore.job.prepare import ensure_lake
from tests.helpers import small_settings


@pytest.fixture(scope="module")
def run_input(tmp_path_factory, client):
    """Settings with the daily holdout on (model item-kNN, whatever the default kind), and the interactions
    their run ingests."""
    settings = small_settings(tmp_path_factory.mktemp("backtest"), evaluate={"daily_holdout": True, "k": 5},
                              model={"kind": "itemknn"})
    ensure_lake(settings)
    return settings, ingest(settings).interactions


def test_equals_the_evaluation_of_the_newest_day(run_input, client):
    settings, inter = run_input
    result = backtest.run(inter, settings, client)
    rows, split = evaluate_interactions(inter, settings, ("itemknn",), k=5, test_days=1, client=client)
    assert result["ndcg"] == rows[0]["NDCG@5"]
    assert result["hit_rate"] == rows[0]["hit@5"]
    assert result["coverage"] == rows[0]["coverage"]
    assert result["test_users"] == split["test_users"] > 0
    assert result["day"] == str(pd.Timestamp(inter["last_at"].max()).date()) == split["cut"][:10]


def test_scores_the_newest_day_with_the_daily_model(run_input, client):
    settings, inter = run_input
    result = backtest.run(inter, settings, client)
    train, test, cut = split_interactions(inter.assign(uid=inter["uid"].astype(str)), 1)
    assert (train["first_at"] < cut).all() and (test["first_at"] >= cut).all() and len(train) + len(test) == len(inter)
    proto = holdout_protocol(train, test)
    model = encore.make_model(settings)
    assert vars(MODELS[backtest.model_name(settings)].make(settings)) == vars(model)
    history = weighted_history(train, proto, settings, cut)
    model.fit(history, show_progress=False)
    items, _ = model.recommend(proto.test_rows, history[proto.test_rows], N=5, filter_already_liked_items=True)
    by_hand = proto.score(np.asarray(items), 5)
    assert result["ndcg"] == pytest.approx(by_hand["NDCG@5"], abs=1e-12)
    assert result["hit_rate"] == pytest.approx(by_hand["hit@5"], abs=1e-12)
    assert result["coverage"] == pytest.approx(by_hand["coverage"], abs=1e-12)
    assert result["model"] == "itemknn" and result["k"] == 5


def test_follows_the_daily_model_kind(run_input, client):
    settings, inter = run_input
    sparse = encore.core.make.with_model(settings, kind="sparse_ease")
    result = backtest.run(inter, sparse, client)
    rows, _ = evaluate_interactions(inter, sparse, ("sparse_ease",), k=5, test_days=1, client=client)
    assert result["model"] == "sparse_ease" and result["ndcg"] == rows[0]["NDCG@5"]
    assert result["ndcg"] != backtest.run(inter, settings, client)["ndcg"]


def test_is_deterministic_and_in_unit_range(run_input, client):
    settings, inter = run_input
    first, second = backtest.run(inter, settings, client), backtest.run(inter, settings, client)
    figures = ("ndcg", "hit_rate", "coverage", "test_users", "day")
    assert {f: first[f] for f in figures} == {f: second[f] for f in figures}
    for name in ("ndcg", "hit_rate", "coverage"):
        assert 0.0 <= first[name] <= 1.0
    assert 0.0 < first["hit_rate"] and first["ndcg"] <= first["hit_rate"]
    assert first["seconds"] >= 0


def test_legacy_input_without_dates_gives_none(run_input, client):
    settings, inter = run_input
    legacy = inter.assign(first_at=pd.NaT, last_at=pd.NaT)
    assert backtest.run(legacy, settings, client) is None
    assert backtest.run(inter.drop(columns=["first_at"]), settings, client) is None


def test_a_window_of_one_day_has_no_figures(run_input, client):
    settings, inter = run_input
    one_day = inter[inter["first_at"] >= pd.Timestamp(inter["last_at"].max()).normalize()]
    result = backtest.run(one_day, settings, client)
    assert len(one_day) > 0 and result["test_users"] == 0
    assert result["ndcg"] is None and result["hit_rate"] is None and result["coverage"] is None


def test_off_by_default(tmp_path):
    assert small_settings(tmp_path).evaluate.daily_holdout is False
    assert small_settings(tmp_path).evaluate.k == 10
