"""Run notes and the synthetic-data banner in summary.json and the page, and the settings a rebuild re-reads with."""

from __future__ import annotations

from html.parser import HTMLParser

import pandas as pd

from encore.config import MASK
from encore.job.validate import IngestResult
from encore.report import html
from encore.report.build import ReportInput, assemble, run_settings
from tests.conftest import small_settings
from tests.report.test_tables import hand_made, hand_made_inter

NOTES = ["0 live listings at run time: nothing but the cold-start list can be served",
         "created_at mixed time zones; normalised to UTC", "a <b>tagged</b> note & more"]


class Outline(HTMLParser):
    """The page's text in order, and the text inside each element carrying a class."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.by_class: dict[str, list[str]] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        if tag not in ("img", "meta", "br"):
            self._open.append(dict(attrs).get("class"))

    def handle_endtag(self, tag):
        if tag not in ("img", "meta", "br") and self._open:
            self._open.pop()

    def handle_data(self, data):
        self.texts.append(data)
        for cls in filter(None, self._open):
            self.by_class.setdefault(cls, []).append(data)


def outline(page: str) -> Outline:
    parsed = Outline()
    parsed.feed(page)
    return parsed


def test_synthetic_banner_and_run_notes_sit_at_the_top_of_the_page_and_in_the_summary():
    inp = hand_made()
    inp.synthetic, inp.notes = True, list(NOTES)
    summary, frames = assemble(inp)
    assert summary["synthetic"] is True and summary["notes"] == NOTES
    page = html.render(summary, frames, {})
    parsed = outline(page)
    assert "".join(parsed.by_class["synthetic"]) == html.SYNTHETIC_BANNER
    assert "generated marketplace, not real bids" in html.SYNTHETIC_BANNER
    box = parsed.by_class["runnotes"]
    assert box[0] == "Run notes" and box[1:] == NOTES  # each note whole, as text: the markup in one is escaped
    assert "<b>tagged</b>" not in page and "a &lt;b&gt;tagged&lt;/b&gt; note &amp; more" in page
    order = "".join(parsed.texts)
    assert order.index(html.SYNTHETIC_BANNER) < order.index("Run notes") < order.index(NOTES[0]) \
        < order.index("Activity over time")  # near the top: before the first section


def test_a_real_run_without_notes_shows_neither_box():
    summary, frames = assemble(hand_made())
    assert summary["synthetic"] is False and summary["notes"] == []
    parsed = outline(html.render(summary, frames, {}))
    assert "synthetic" not in parsed.by_class and "runnotes" not in parsed.by_class
    assert summary["privacy"] in "".join(parsed.texts)  # the suppression rule is stated on every page


def test_legacy_input_adds_its_own_note_after_the_runs():
    inp = hand_made()
    inp.daily, inp.window, inp.notes = None, None, NOTES[:1]
    summary, frames = assemble(inp)
    assert summary["notes"][0] == NOTES[0] and "no dates" in summary["notes"][1]
    assert outline(html.render(summary, frames, {})).by_class["runnotes"][1:] == summary["notes"]


def test_from_ingest_carries_synthetic_and_notes():
    inter, listings = hand_made_inter()
    base = hand_made()
    res = IngestResult(inter, listings, pd.DataFrame(), base.counts, None)
    kept = ReportInput.from_ingest(res, base.figures, base.lists, {"ingest": 1.0}, "run-2", None)
    assert kept.synthetic is False and kept.notes == []
    inp = ReportInput.from_ingest(res, base.figures, base.lists, {"ingest": 1.0}, "run-2", None, synthetic=True,
                                  notes=tuple(NOTES))
    assert inp.synthetic is True and inp.notes == NOTES and inp.window is None and inp.run_id == "run-2"
    assert assemble(inp)[0]["notes"][:3] == NOTES


def test_run_settings_keep_the_current_storage_options_and_take_the_rest_from_the_manifest(tmp_path):
    secrets = {"key": "AKIAFAKE", "secret": "s3cr3t-value", "endpoint_url": "http://127.0.0.1:9000"}
    ran = small_settings(tmp_path / "then", lake={"storage_options": secrets, "legacy_csv": "old/extract.csv"},
                         ingest={"window_days": 3}, model={"k": 7})
    manifest = {"settings": ran.public_dict(), "input": {"window": ["2026-11-01 00:00:00", "2026-11-04 00:00:00"]}}
    assert manifest["settings"]["lake"]["storage_options"]["secret"] == MASK  # what a manifest holds
    now = small_settings(tmp_path / "now", lake={"storage_options": {"key": "CURRENT", "secret": "current"}})
    again = run_settings(now, manifest)
    assert again.lake.storage_options == {"key": "CURRENT", "secret": "current"}
    assert again.lake.path == ran.lake.path and again.lake.legacy_csv == "old/extract.csv"
    assert again.ingest.window_days == 3 and str(again.ingest.run_date) == "2026-11-03" and again.model.k == 7
    assert again.output.path == now.output.path
    bare = run_settings(small_settings(tmp_path / "now"), manifest)
    assert bare.lake.storage_options == {}  # never the manifest's, even when the current settings have none
