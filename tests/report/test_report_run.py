"""The report of a real run: files in the run folder, no personal data anywhere, and a page that opens in Chromium."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from matplotlib.image import imread

from encore.cli import main
from encore.io.store import RecommendationStore
from encore.job import report as report_stage
from encore.job.pipeline import run
from encore.job.report import rebuild
from tests.helpers import requires_chromium, small_settings
from tests.report.browser import load_page

SECRETS = {"key": "AKIAFAKE", "secret": "s3cr3t-value"}


@pytest.fixture(scope="module")
def published(tmp_path_factory, client) -> tuple[Path, object]:
    """One small synthetic marketplace run through the real pipeline (the report stage included), with
    credentials in its storage options (the local filesystem ignores them)."""
    root = tmp_path_factory.mktemp("report_run")
    settings = small_settings(root, lake={"storage_options": SECRETS})
    result = run(settings, client=client)
    return Path(result.output) / "runs" / result.run_id / "report", settings


def report_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_run_writes_the_report_and_times_it(published):
    folder, settings = published
    names = {p.relative_to(folder).as_posix() for p in report_files(folder)}
    assert {"report.html", "summary.json", "tables/categories.parquet", "tables/daily_activity.parquet",
            "figures/activity.png", "figures/lift.png"} <= names
    manifest = RecommendationStore(settings.output.path).manifest
    assert "report" in manifest["timings"] and "report/report.html" in manifest["files"]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["activity"]["days"] == 10 and summary["attribution"] is None


def test_no_uid_or_user_name_in_any_report_file(published):
    folder, settings = published
    users = pd.read_parquet(Path(settings.lake.path) / "users")
    secrets = [s.strip() for s in pd.concat([users["uid"], users["user_name"]]).dropna().astype(str) if s.strip()]
    assert len(secrets) > 300
    for path in report_files(folder):
        data = path.read_bytes()
        text = data.decode("utf-8", errors="ignore") + data.decode("latin-1")
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{path.name} contains {leaked[:3]}"
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            assert "uid" not in frame.columns and "user_name" not in frame.columns


def test_no_secret_or_user_name_in_any_report_file(published):
    folder, settings = published
    assert settings.lake.storage_options == SECRETS
    names = pd.read_parquet(Path(settings.lake.path) / "users")["user_name"].dropna().astype(str).str.strip()
    names = [n for n in names if len(n) >= 4]
    assert len(names) > 300
    files = report_files(folder)
    assert {p.name for p in files} >= {"report.html", "summary.json"}
    for path in files:
        data = path.read_bytes()
        text = data.decode("utf-8", errors="ignore") + data.decode("latin-1")
        assert not [s for s in SECRETS.values() if s in text], path.name
        assert not [n for n in names if n in text], path.name


def test_legacy_extract_degrades_without_dates(tmp_path, client, legacy_csv):
    settings = small_settings(tmp_path, lake={"legacy_csv": str(legacy_csv)})
    result = run(settings, client=client)
    folder = Path(result.output) / "runs" / result.run_id / "report"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["activity"] is None and summary["input"]["kind"] == "legacy"
    page = (folder / "report.html").read_text()
    assert "no bid dates" in page and not (folder / "figures" / "activity.png").exists()
    raw = pd.read_csv(legacy_csv, dtype=str)
    secrets = {s.strip() for s in pd.concat([raw["uid"], raw["userName"]]).dropna()}
    for path in report_files(folder):
        text = path.read_bytes().decode("latin-1")
        assert not [s for s in secrets if s in text], path.name


def test_report_command_rebuilds_a_published_run(published, client):
    folder, settings = published
    before = json.loads((folder / "summary.json").read_text())
    summary = rebuild(settings, client=client)
    assert summary["run_id"] == before["run_id"]
    for section in ("overview", "activity", "concentration", "engagement", "recommendations"):
        assert summary[section] == before[section], section
    result = CliRunner().invoke(main, ["report", "--help"])
    assert result.exit_code == 0 and "Example:" in result.output and "--run" in result.output


@requires_chromium
def test_page_opens_in_headless_chromium(published):
    folder, _ = published
    page = load_page(folder / "report.html")
    assert not page.failed, page.failed
    assert all(u.startswith(("file://", "data:")) for u in page.requests), "the page asked for an external asset"
    n_png = len(list((folder / "figures").glob("*.png")))
    assert len(page.images) == n_png >= 9
    assert all(done and w > 0 and h > 0 for done, w, h in page.images), page.images
    shot = imread(io.BytesIO(page.screenshot), format="png")
    assert shot.shape[0] > 2000 and float(np.std(shot[..., :3])) > 0.05, "the screenshot is blank"


def test_a_failed_rebuild_leaves_the_published_run_as_it_was(published, client, monkeypatch):
    folder, settings = published
    run_folder = folder.parent
    before = {p: p.read_bytes() for p in run_folder.rglob("*") if p.is_file()}

    def fails_half_way(writer, inp, mapper=None):
        writer.write_bytes("report/summary.json", b"{}")
        raise OSError("disk full")

    monkeypatch.setattr(report_stage, "build_report", fails_half_way)
    with pytest.raises(OSError, match="disk full"):
        rebuild(settings, client=client)
    assert {p: p.read_bytes() for p in run_folder.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in run_folder.parent.iterdir()) == [run_folder.name]  # no staging folder left


def test_a_rebuild_takes_synthetic_and_the_warnings_from_the_manifest(published, client):
    folder, settings = published
    path = folder.parent / "manifest.json"
    manifest = json.loads(path.read_text())
    synthetic = not manifest["input"].get("synthetic", False)  # the opposite of what the run wrote
    manifest["input"]["synthetic"], manifest["warnings"] = synthetic, ["0 live listings at run time"]
    path.write_text(json.dumps(manifest))
    summary = rebuild(settings, client=client)
    on_disk = json.loads((folder / "summary.json").read_text())
    assert summary["synthetic"] is on_disk["synthetic"] is synthetic
    assert summary["notes"] == on_disk["notes"] == ["0 live listings at run time"]
    page = (folder / "report.html").read_text()
    assert ("Synthetic data: this run read a generated marketplace" in page) is synthetic
    assert "Run notes" in page and "0 live listings at run time" in page
