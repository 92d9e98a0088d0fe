"""The publish guard: a run is checked against the published one before ``LATEST`` moves to it.

Each check compares a figure of today's run with its limit (settings ``guard.*``, documented in
docs/runs.md); a run that fails any is written in full but not published, and ``encore publish RUN_ID
--force`` publishes it after a person looked. Checks that need the published run are skipped before the
first one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from encore.config import GuardSettings


@dataclass
class Check:
    """One check's outcome: its figure, its limit, and a line for a person saying what it means."""

    name: str
    passed: bool
    value: float | None
    limit: float
    message: str


def _ratio(name: str, what: str, today: float, before: float | None, limit: float) -> Check | None:
    """``today`` against ``before``: fails below ``limit`` times it (skipped without a figure before)."""
    if not before:
        return None
    ratio = today / before
    return Check(name, ratio >= limit, round(ratio, 4), limit,
                 f"{what} {today:,.4g} against {before:,.4g} in the published run ({ratio:.0%}; limit {limit:.0%})")


def newest_day_bids(daily: pd.DataFrame | None, window: list[str] | None) -> int | None:
    """Valid bids on the window's newest day (None without dates)."""
    if daily is None or window is None:
        return None
    newest = pd.Timestamp(window[1]) - pd.Timedelta(days=1)
    return int(daily.loc[pd.to_datetime(daily["date"]) == newest, "bids"].sum())


def evaluate(today: dict[str, Any], published: dict[str, Any] | None, overlap: float | None,
             newest_bids: int | None, settings: GuardSettings) -> list[Check]:
    """Every applicable check of today's figures (``recommendations``, ``coverage``) against the published
    run's, the mean list overlap with it, and the bids of the newest day."""
    before = published or {}
    checks = [
        _ratio("recommendations", "recommendation rows", today["recommendations"], before.get("recommendations"),
               settings.min_rows_ratio),
        _ratio("coverage", "catalogue coverage", today["coverage"], before.get("coverage"), settings.min_coverage_ratio),
    ]
    if overlap is not None:
        checks.append(Check("overlap", overlap >= settings.min_overlap, round(overlap, 4), settings.min_overlap,
                            f"mean list overlap (Jaccard) with the published run {overlap:.3f} "
                            f"(limit {settings.min_overlap:.3f})"))
    if settings.newest_day_bids and newest_bids is not None:
        checks.append(Check("newest_day_bids", newest_bids > 0, newest_bids, 1,
                            f"{newest_bids:,} valid bids on the window's newest day (a missing or broken "
                            "extract leaves none)"))
    return [c for c in checks if c is not None]


def summary(checks: list[Check]) -> dict[str, Any]:
    """The guard's result as the manifest, ``status.json`` and the report carry it."""
    failed = [c for c in checks if not c.passed]
    return {"passed": not failed, "failed": [c.name for c in failed], "checks": [asdict(c) for c in checks]}
