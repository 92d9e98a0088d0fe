"""``encore evaluate --rules``: the rules on and off, scored on held-out days of a synthetic marketplace."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from encore.cli import main
from encore.job.auction_eval import as_of, evaluate_rules, variants
from tests.helpers import small_settings


def test_every_variant_is_scored_and_the_serving_time_rule_removes_unbuyable_listings(tmp_path, client):
    settings = small_settings(tmp_path, synth={"users": 400, "days": 10, "seed": 3})
    rows, split = evaluate_rules(settings, k=10, test_days=1, client=client)
    by = {r["model"]: r for r in rows}
    assert list(by) == list(variants(settings)) and split["test_users"] > 20
    for row in rows:
        assert 0 <= row["NDCG@10"] <= 1 and 0 <= row["coverage"] <= 1 and 0 < row["top seller share"] <= 1
    assert by["rules (defaults)"]["ends unbuyable"] == 0 == by["only serve time"]["ends unbuyable"]
    assert by["only seller cap"]["most of a seller"] <= 3 < by["rules off"]["most of a seller"]
    assert by["only seller cap"]["top seller share"] <= by["rules off"]["top seller share"]
    assert by["only outbid slots 2"]["NDCG@10"] > by["rules off"]["NDCG@10"]  # outbid buyers come back
    assert by["rules off"]["dNDCG@10"] == 0.0 and by["only MMR 0.5"]["se"] > 0


def test_the_catalogue_is_taken_as_it_stood_at_the_cut():
    cut = pd.Timestamp("2026-11-20")
    listings = pd.DataFrame({"listing_id": [1, 2, 3], "status": ["sold", "live", "sold"],
                             "starts_at": pd.to_datetime(["2026-11-18", "2026-11-21", "2026-11-10"]),
                             "ends_at": pd.to_datetime(["2026-11-22", "2026-11-30", "2026-11-15"])})
    assert as_of(listings, cut)["status"].tolist() == ["live", "unsold", "sold"]


def test_cli_writes_the_comparison(tmp_path):
    settings = small_settings(tmp_path, synth={"users": 200, "days": 8, "seed": 4})
    tree = settings.model_dump(mode="json")
    tree["cluster"] = {"processes": False, "n_workers": 1}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(tree))
    res = CliRunner().invoke(main, ["--config", str(cfg), "-q", "evaluate", "--rules", "--test-days", "1"])
    assert res.exit_code == 0, res.output
    assert "rules off" in res.output and "ends unbuyable" in res.output
    folder = next((Path(settings.output.path) / "evaluations").iterdir())
    results = json.loads((folder / "results.json").read_text())
    assert results["split"]["kind"] == "rules" and (folder / "results.md").exists()
