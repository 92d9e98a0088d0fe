"""The publish guard: each check trips on a crafted bad input, a held run leaves LATEST where it was,
``encore publish --force`` publishes it, and ``status.json`` / ``encore status --json`` say what happened."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from encore.cli import main
from encore.config import GuardSettings
from encore.errors import GuardError
from encore.io import lake
from encore.io.store import LATEST, STATUS
from encore.job import guard
from encore.job.pipeline import run
from tests.helpers import small_settings


def test_each_check_trips_below_its_limit_and_needs_a_published_run():
    limits = GuardSettings()
    fine = {"recommendations": 1000, "coverage": 0.4}
    assert guard.evaluate(fine, None, None, None, limits) == []  # nothing to compare with yet
    ok = guard.evaluate(fine, {"recommendations": 1100, "coverage": 0.45}, 0.8, 30, limits)
    assert [c.name for c in ok] == ["recommendations", "coverage", "overlap", "newest_day_bids"]
    assert all(c.passed for c in ok)
    bad = guard.evaluate({"recommendations": 400, "coverage": 0.1}, {"recommendations": 1000, "coverage": 0.4},
                         0.01, 0, limits)
    assert [c.name for c in bad if not c.passed] == ["recommendations", "coverage", "overlap", "newest_day_bids"]
    assert bad[0].value == 0.4 and "40%" in bad[0].message
    assert guard.summary(bad)["failed"] == ["recommendations", "coverage", "overlap", "newest_day_bids"]
    off = GuardSettings(newest_day_bids=False)
    assert [c.name for c in guard.evaluate(fine, None, None, 0, off)] == []


def test_newest_day_bids_counts_the_windows_last_day():
    daily = pd.DataFrame({"date": pd.to_datetime(["2026-11-25", "2026-11-26"]), "bids": [10, 3]})
    assert guard.newest_day_bids(daily, ["2026-11-17 00:00:00", "2026-11-27 00:00:00"]) == 3
    assert guard.newest_day_bids(daily, ["2026-11-18 00:00:00", "2026-11-28 00:00:00"]) == 0
    assert guard.newest_day_bids(None, None) is None


@pytest.fixture
def published(tmp_path, client):
    settings = small_settings(tmp_path, ingest={"max_reject_ratio": 1.0})
    first = run(settings, client=client)
    return settings, first


def broken_copy(settings, tmp_path: Path, how: str):
    """A copy of the run's lake with a known fault, and settings reading it."""
    source = Path(settings.lake.path)
    target = tmp_path / f"lake-{how}"
    shutil.copytree(source, target)
    fs, root = lake.filesystem(str(target))
    days = lake.bid_days(fs, root)
    if how == "empty_newest_day":
        path = next(Path(lake.bids_partition(root, days[-1])).glob("*.parquet"))
        table = pq.read_table(path)
        pq.write_table(table.slice(0, 0), path)
    elif how == "broken_listing_join":  # most users' bids point at listings the catalogue lacks
        for day in days:
            path = next(Path(lake.bids_partition(root, day)).glob("*.parquet"))
            frame = pd.read_parquet(path)
            broken = frame["uid"].map(hash) % 10 < 7
            frame.loc[broken, "listing_id"] = frame.loc[broken, "listing_id"] + 10**9
            frame.to_parquet(path, index=False)
    tree = settings.model_dump(mode="json")
    tree["lake"] = {**tree["lake"], "path": str(target), "synthetic": False}
    return type(settings).model_validate(tree)


@pytest.mark.parametrize(("how", "check"), [("empty_newest_day", "newest_day_bids"),
                                            ("broken_listing_join", "recommendations")])
def test_a_crafted_bad_input_is_held_and_latest_stays(published, tmp_path, client, how, check):
    settings, first = published
    bad = broken_copy(settings, tmp_path, how)
    with pytest.raises(GuardError, match=f"{check} check failed") as info:
        run(bad, client=client)
    out = Path(settings.output.path)
    assert (out / LATEST).read_text() == first.run_id
    status = json.loads((out / STATUS).read_text())
    held = status["run_id"]
    assert status["published"] is False and check in status["guard"]["failed"] and held in str(info.value)
    assert json.loads((out / "runs" / held / "manifest.json").read_text())["published"] is False
    assert not (out / "runs" / held / "_SUCCESS").exists()
    summary = json.loads((out / "runs" / held / "report" / "summary.json").read_text())
    assert any(note.startswith("publish guard:") for note in summary["notes"])  # the report says why

    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"output": {"path": str(out)}}))
    runner = CliRunner()
    shown = json.loads(runner.invoke(main, ["--config", str(cfg), "-q", "status", "--json"]).output)
    assert shown["run_id"] == first.run_id and shown["newest_run"]["run_id"] == held
    table = runner.invoke(main, ["--config", str(cfg), "-q", "status"]).output
    assert "held back" in table and f"encore publish {held} --force" in table
    forced = runner.invoke(main, ["--config", str(cfg), "-q", "publish", held, "--force"])
    assert forced.exit_code == 0, forced.output
    assert (out / LATEST).read_text() == held and (out / "runs" / held / "_SUCCESS").exists()
    assert json.loads((out / STATUS).read_text())["published"] is True


def test_no_guard_publishes_and_a_good_run_writes_its_status(published, tmp_path, client):
    settings, first = published
    out = Path(settings.output.path)
    status = json.loads((out / STATUS).read_text())
    assert status["run_id"] == first.run_id and status["published"] is True and status["guard"]["passed"] is True
    assert status["counts"]["recommendations"] == first.manifest["counts"]["recommendations"]
    bad = broken_copy(settings, tmp_path, "empty_newest_day")
    cfg = tmp_path / "c.yaml"
    tree = bad.model_dump(mode="json")
    tree["cluster"] = {"processes": False, "n_workers": 1}
    cfg.write_text(json.dumps(tree))
    held = CliRunner().invoke(main, ["--config", str(cfg), "-q", "run"])
    assert held.exit_code == 4 and "encore publish" in held.output
    forced = CliRunner().invoke(main, ["--config", str(cfg), "-q", "run", "--no-guard"])
    assert forced.exit_code == 0, forced.output
    assert (out / LATEST).read_text() != first.run_id
