"""Run health: what the input went through and what makes a run serve nothing, each as one line for a person."""

from __future__ import annotations

from typing import Any

from encore.config import Settings
from encore.errors import NoPublishedRun
from encore.io.store import RecommendationStore
from encore.report.tables import ListDigest

COLLAPSE = 0.5  # a run whose recommendations fall below this share of the published run's is suspicious


def published_counts(settings: Settings) -> dict[str, Any] | None:
    """The counts of the run ``LATEST`` names now, and its folder (None when nothing is published yet)."""
    try:
        store = RecommendationStore(settings.output.path, settings.output_storage_options())
        return {**store.manifest["counts"], "folder": store.folder}
    except (NoPublishedRun, FileNotFoundError, KeyError, ValueError):
        return None


def input_notes(counts: dict[str, Any]) -> list[str]:
    """What ingest did to the input that a reader of the run should know, each in one line."""
    notes = []
    if counts.get("files_unreadable") or counts.get("files_schema_mismatch"):
        notes.append(f"{counts.get('files_unreadable', 0)} unreadable and {counts.get('files_schema_mismatch', 0)} "
                     "mismatched bid files were left out (one reject row each, in rejects/)")
    zones = counts.get("timezones") or {}
    if zones.get("aware_files") and (zones.get("naive_files") or zones.get("text_files")):
        notes.append(f"timestamps mixed time zones ({zones['aware_files']} files with a time zone, "
                     f"{zones.get('naive_files', 0) + zones.get('text_files', 0)} without): all normalised to UTC, "
                     "those without taken as UTC")
    if counts.get("ignored_future_days"):
        days = counts["ignored_future_days"]
        notes.append(f"{len(days)} day folders dated in the future were ignored ({', '.join(days[:3])}"
                     f"{', …' if len(days) > 3 else ''}): see ingest.future_tolerance_days")
    return notes


def run_warnings(live: int, lists: ListDigest, users: int, previous: int | None) -> list[str]:
    """What makes a run serve nothing or far less than the run before, each in one line for a person."""
    notes = []
    if live == 0:
        notes.append("0 live listings at run time (every listing is sold, ended or not yet started): "
                     "no list can be served")
    if users == 0:
        notes.append("0 users with a valid bid in the window: only the cold-start list can be served")
    elif lists.rows == 0:
        notes.append(f"0 recommendations for {users:,} users")
    if previous and lists.rows < COLLAPSE * previous:
        notes.append(f"{lists.rows:,} recommendations against {previous:,} in the published run "
                     f"(below {COLLAPSE:.0%} of it)")
    return notes
