"""The report stage: the report input of a run, and the settings a rebuild re-reads its input with."""

from __future__ import annotations

import pandas as pd

from encore.config import MASK
from encore.job.report import report_input, run_settings
from encore.job.validate import IngestResult
from encore.report.build import assemble
from tests.helpers import small_settings
from tests.report.test_run_notes import NOTES
from tests.report.test_tables import hand_made, hand_made_inter


def test_report_input_carries_synthetic_and_notes():
    inter, listings = hand_made_inter()
    base = hand_made()
    res = IngestResult(inter, listings, pd.DataFrame(), base.counts, None)
    kept = report_input(res, base.figures, base.lists, {"ingest": 1.0}, "run-2", None)
    assert kept.synthetic is False and kept.notes == []
    inp = report_input(res, base.figures, base.lists, {"ingest": 1.0}, "run-2", None, synthetic=True,
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
