"""``encore evaluate`` on a small synthetic marketplace: a time split, every model scored, files written."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from encore.cli import main
from encore.job.evaluation import MODELS, evaluate_interactions, split_interactions
from tests.helpers import small_settings


@pytest.fixture
def config(tmp_path):
    settings = small_settings(tmp_path)
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    return settings, path


def test_evaluate_writes_table_json_and_figure(config, client):
    settings, path = config
    result = CliRunner().invoke(main, ["-q", "--config", str(path), "evaluate", "--k", "5", "--test-days", "3",
                                       "--models", "popularity", "--models", "trending", "--models", "itemknn",
                                       "--models", "ease"])
    assert result.exit_code == 0, result.output
    assert "| itemknn |" in result.output and '"kind": "time"' in result.output
    runs = list((Path(settings.output.path) / "evaluations").iterdir())
    assert len(runs) == 1
    payload = json.loads((runs[0] / "results.json").read_text())
    assert [r["model"] for r in payload["results"]] == ["popularity", "trending", "itemknn", "ease"]
    assert all(0 <= r["NDCG@5"] <= 1 for r in payload["results"])
    assert (runs[0] / "results.md").read_text().count("\n|") >= 5
    assert (runs[0] / "ndcg_coverage.png").read_bytes()[:4] == b"\x89PNG"


def test_unknown_model_is_one_line_error(config):
    _, path = config
    result = CliRunner().invoke(main, ["--config", str(path), "evaluate", "--models", "nope"])
    assert result.exit_code == 1 and "unknown models ['nope']" in result.output


def interactions(with_dates: bool) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 400
    at = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 20, n), unit="D")
    return pd.DataFrame({
        "uid": rng.integers(0, 40, n).astype(str), "item_id": rng.integers(0, 30, n), "n_bids": 1,
        "spend": 1.0, "price": 1.0, "won": False,
        "first_at": at if with_dates else pd.NaT, "last_at": at if with_dates else pd.NaT,
    }).drop_duplicates(["uid", "item_id"])


def test_time_split_keeps_test_after_cut():
    inter = interactions(with_dates=True)
    train, test, cut = split_interactions(inter, test_days=5)
    assert cut == pd.Timestamp("2024-01-16")
    assert (train["first_at"] < cut).all() and (test["first_at"] >= cut).all()
    assert len(train) + len(test) == len(inter)


def test_without_dates_falls_back_to_per_user_fraction(tmp_path):
    inter = interactions(with_dates=False)
    names = tuple(m for m in MODELS if m != "sansa" or importlib.util.find_spec("sansa"))  # encore[sansa] optional
    rows, split = evaluate_interactions(inter, small_settings(tmp_path), names, k=5)
    assert split["kind"] == "per-user fraction" and split["cut"] is None
    assert [r["model"] for r in rows] == list(names)


def test_variants_are_the_configured_model_with_one_field_changed(tmp_path):
    """Every variant comes from make_model: the configured fields it does not change reach it."""
    settings = small_settings(tmp_path, model={"k": 7, "min_support": 2, "weighting": "iuf", "alpha": 0.3})
    params = {name: spec.make(settings).get_params() for name, spec in MODELS.items() if spec.kind == "itemknn"}
    configured = {"K": 7, "min_support": 2, "weighting": "iuf", "alpha": 0.3, "shrinkage": 0.0}
    assert params["itemknn"] == params["itemknn-binary"] and params["itemknn"].items() >= configured.items()
    assert params["itemknn-k100"] == {**params["itemknn"], "K": 100}
    assert params["itemknn-shrink10"] == {**params["itemknn"], "shrinkage": 10.0}
    assert params["itemknn-cosine"] == {**params["itemknn"], "weighting": "none", "alpha": 0.5}
    assert params["itemknn-bm25-cosine"] == {**params["itemknn"], "weighting": "bm25", "alpha": 0.5}
    assert MODELS["trending"].make(settings).smoothing == settings.model.trending_smoothing
