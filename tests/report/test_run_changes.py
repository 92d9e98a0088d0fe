"""The report's "Since the published run" section: run-over-run changes, the publish guard, run trends."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from encore.io import lake
from encore.io.store import MANIFEST, SUCCESS, RunWriter
from encore.job.report import HISTORY_RUNS, history, history_row, today_row
from encore.job.validate import IngestResult
from encore.report import figures, html
from encore.report.build import HISTORY_COLUMNS, assemble, build_report, history_table, render_figures
from tests.report.test_run_notes import outline
from tests.report.test_tables import hand_made, hand_made_inter

CHANGES = {
    "yesterday": "20261126T131500Z-1a2b3c", "today": "20261127T131500Z-3f9a1c",
    "users_gained": 7, "users_lost": 2, "users_in_both": 51, "jaccard_mean": 0.8125, "rbo_mean": 0.9031,
    "new_listing_share": 0.05,
    "figures": {"recommendations": {"today": 120, "yesterday": 100, "change": 20},
                "coverage": {"today": 0.5, "yesterday": 0.625, "change": -0.125},
                "score.p50": {"today": 0.31416, "yesterday": None, "change": None}},
}
GUARD = {"passed": False, "failed": ["overlap"], "checks": [
    {"name": "recommendations", "passed": True, "value": 1.2, "limit": 0.5,
     "message": "recommendation rows 120 against 100 in the published run (120%; limit 50%)"},
    {"name": "overlap", "passed": False, "value": 0.1234, "limit": 0.2,
     "message": "mean list overlap (Jaccard) with the published run 0.123 (limit 0.200)"}]}


def runs(n: int) -> pd.DataFrame:
    """``n`` runs of made-up aggregates, one a day, the figures growing with the day."""
    return pd.DataFrame([{"run_id": f"202611{d + 1:02d}T131500Z-abc{d:03d}",
                          "created_at": f"2026-11-{d + 1:02d}T13:15:00+00:00", "recommendations": 100 + d,
                          "users": 50 + d, "coverage": 0.5 + d / 100, "rows_in": 1000 * (d + 1),
                          "rejected_ratio": 0.01 * d, "seconds": 30.0 + d} for d in range(n)],
                        columns=HISTORY_COLUMNS)


def with_changes(n_history: int = 3):
    inp = hand_made()
    inp.changes, inp.guard, inp.history = CHANGES, GUARD, runs(n_history)
    return inp


def section(page: str) -> str:
    """The text of the page from the section's heading to the next section's."""
    text = "".join(outline(page).texts)
    start = text.index("Since the published run")
    return text[start:text.index("Run health", start)]


def test_the_section_shows_today_yesterday_change_and_every_guard_check():
    summary, frames = assemble(with_changes())
    page = html.render(summary, frames, render_figures(frames))
    text = section(page)
    assert CHANGES["yesterday"] in text and CHANGES["today"] in text
    assert "figuretodayyesterdaychange" in text
    assert "recommendations12010020" in text and "coverage0.50.625-0.125" in text
    assert "score.p500.3142" in text  # a figure yesterday lacked: empty cells, not the suppression marker
    assert "users gained" in text and "0.81" in text and "5.0%" in text
    assert "The publish guard failed: overlap." in text
    assert "recommendationspassed1.20.5" in text and "overlapfailed0.12340.2" in text
    assert GUARD["checks"][1]["message"] in text
    classes = outline(page).by_class
    assert classes["failed"] == ["failed"] and classes["passed"] == ["passed"]
    assert "The last 3 runs" in text
    for alt in ("recommendations per run", "catalogue coverage per run", "input rows per run",
                "rejected input rows per run"):
        assert re.search(f'<img src="data:image/png;base64,[^"]+" alt="{alt}">', page)


def test_first_run_and_guard_off_say_so_and_draw_no_trend_without_history():
    summary, frames = assemble(hand_made())
    assert summary["changes"] is None and summary["guard"] is None and summary["history"] == []
    assert "run_history" not in frames
    pngs = render_figures(frames)
    assert not set(figures.TRENDS) & set(pngs)
    text = section(html.render(summary, frames, pngs))
    assert html.FIRST_RUN in text and html.GUARD_OFF in text
    assert "figure" not in text and "The last" not in text


def test_summary_json_carries_changes_guard_and_history(tmp_path):
    writer = RunWriter(str(tmp_path), run_id="run-1")
    build_report(writer, with_changes(2))
    summary = json.loads((tmp_path / "runs/run-1/report/summary.json").read_text())
    assert summary["changes"] == CHANGES and summary["guard"] == GUARD
    assert summary["history"] == runs(2).to_dict("records")
    assert pd.read_parquet(tmp_path / "runs/run-1/report/tables/run_history.parquet").equals(history_table(runs(2)))
    for name in figures.TRENDS:
        assert (tmp_path / f"runs/run-1/report/figures/{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("n", [0, 1, 14])
def test_trend_figures_draw_with_0_1_and_14_runs(n):
    frames = {"run_history": history_table(runs(n))}
    for name in figures.TRENDS:
        assert figures.render(name, frames)[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = set(figures.TRENDS) & set(figures.drawable(frames))
    assert drawn == (set(figures.TRENDS) if n else set())  # no run at all: the page leaves the trends out


def test_trend_figures_draw_gaps_and_runs_without_a_time():
    h = runs(4)
    h.loc[1, ["coverage", "rejected_ratio"]] = None  # an old manifest without coverage
    h.loc[2, "created_at"] = None
    frames = {"run_history": history_table(h)}
    assert figures.run_labels(frames["run_history"]["created_at"], frames["run_history"]["run_id"])[1:3] == \
        ["11-02 13:15", "20261103T131500"]
    for name in figures.TRENDS:
        assert figures.render(name, frames)[:4] == b"\x89PNG"


def test_no_uid_or_user_name_reaches_the_page_or_the_summary():
    inp = with_changes(14)
    inp.history = inp.history.assign(uid="user-007", user_name="Alice Example")  # a caller's stray columns
    summary, frames = assemble(inp)
    assert list(frames["run_history"].columns) == HISTORY_COLUMNS
    page = html.render(summary, frames, render_figures(frames))
    dumped = json.dumps(summary)
    for secret in ("user-0", "Alice Example"):
        assert secret not in page and secret not in dumped


def write_run(root, run_id: str, manifest: object, complete: bool = True) -> None:
    folder = root / "runs" / run_id
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    if complete:
        (folder / SUCCESS).write_bytes(b"")


def manifest_of(day: int) -> dict:
    return {"created_at": f"2026-11-{day:02d}T13:15:00+00:00",
            "counts": {"rows_in": 200, "rows_rejected": day, "recommendations": 10 * day, "users": day,
                       "coverage": day / 100, "sources": {"bids": {}}},
            "timings": {"ingest": 1.5, "recommend": float(day)}}


def test_history_is_the_newest_readable_complete_runs_before_this_one_then_today(tmp_path):
    for day in range(1, 18):
        write_run(tmp_path, f"202611{day:02d}T131500Z-000000", manifest_of(day))
    write_run(tmp_path, "20261116T200000Z-broken", "{not json")
    write_run(tmp_path, "20261116T210000Z-oddity", {"counts": [1, 2], "timings": {}})
    write_run(tmp_path, "20261116T220000Z-held", manifest_of(16), complete=False)
    fs, root = lake.filesystem(str(tmp_path))
    today = history_row("20261117T131500Z-000000", manifest_of(17))
    frame = history(fs, root, "20261117T131500Z-000000", today)
    assert list(frame.columns) == HISTORY_COLUMNS and len(frame) == HISTORY_RUNS + 1
    assert list(frame["run_id"]) == [f"202611{d:02d}T131500Z-000000" for d in range(2, 18)][-HISTORY_RUNS - 1:]
    assert frame.iloc[-1].to_dict() == today
    first = frame.iloc[0]
    assert first["recommendations"] == 30 and first["users"] == 3 and first["coverage"] == 0.03
    assert first["rejected_ratio"] == 3 / 200 and first["seconds"] == 4.5 and first["rows_in"] == 200


def test_history_of_the_first_run_is_today_alone(tmp_path):
    fs, root = lake.filesystem(str(tmp_path))
    today = history_row("run-1", {"counts": {"rows_in": 0, "rows_rejected": 0}})
    frame = history(fs, root, "run-1", today)
    assert frame.to_dict("records") == [today] and today["rejected_ratio"] is None and today["seconds"] == 0.0


def test_today_row_counts_the_lists_as_the_manifest_does():
    inter, listings = hand_made_inter()
    base = hand_made()
    res = IngestResult(inter, listings, pd.DataFrame(), base.counts, None)
    row = today_row("run-2", res, base.lists, {"ingest": 1.5, "store": 0.5})
    assert row["recommendations"] == 120 and row["users"] == 60
    assert row["coverage"] == 4 / 8  # listings 1, 3, 5, 7 recommended of 8 in the catalogue
    assert row["rows_in"] == 120 and row["rejected_ratio"] == 3 / 120 and row["seconds"] == 2.0
    assert pd.Timestamp(row["created_at"]).tzinfo is not None
