"""Build the consumer-behaviour report of a run and write it into the run folder.

The tables are computed in the client, where the interactions already are; the figures are drawn as
tasks on the Dask cluster. Written under ``report/``:
``summary.json``, ``tables/*.parquet``, ``figures/*.png`` and one self-contained ``report.html``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

import encore
from encore.cluster import session
from encore.config import Settings
from encore.io import lake
from encore.models.base import current_client, map_blocks
from encore.report import figures, html, tables, text
from encore.store import MANIFEST, RecommendationStore, RunWriter, replace_file
from encore.validate import IngestResult

log = logging.getLogger("encore")

UCI_ATTRIBUTION = (
    "Data: Chen, D. (2015). Online Retail. UCI Machine Learning Repository, doi:10.24432/C5BW33, "
    "licensed CC BY 4.0; Chen, D., Sain, S. L. & Guo, K. (2012). Data mining for the online retail industry, "
    "Journal of Database Marketing & Customer Strategy Management 19(3):197-208.")
_UCI_INPUT = re.compile(r"online_retail|(^|/)uci([_.-][^/]*)?(/|$)", re.IGNORECASE)
SCALAR_SECTIONS = ("activity", "concentration", "engagement", "recommendations")


@dataclass
class ReportInput:
    """Everything the report reads: interaction figures, catalogue, per-day activity, lists, run health."""

    figures: dict[str, Any]  # from :func:`interaction_figures`
    listings: pd.DataFrame
    lists: tables.ListDigest
    counts: dict[str, Any]
    timings: dict[str, float]
    daily: pd.DataFrame | None = None
    window: list[str] | None = None
    run_id: str | None = None
    attribution: str | None = None

    @classmethod
    def from_ingest(cls, res: IngestResult, figures: dict[str, Any], lists: tables.ListDigest,
                    timings: dict[str, float], run_id: str, attribution: str | None) -> ReportInput:
        """The report input of a run: ingest result, its interaction figures, the digest of its lists and
        the stage times so far."""
        window = None if res.window is None else [str(res.window.start), str(res.window.end)]
        return cls(figures, res.listings, lists, res.counts, dict(timings), res.daily, window, run_id, attribution)


def attribution_for(settings: Settings) -> str | None:
    """The UCI attribution when the input is the UCI Online Retail data (detected by its file name)."""
    sources = [settings.lake.legacy_csv or "", settings.lake.path]
    return UCI_ATTRIBUTION if any(_UCI_INPUT.search(s) for s in sources) else None


def interaction_figures(inter: pd.DataFrame, listings: pd.DataFrame) -> dict[str, Any]:
    """Every table and figure of the report that reads the interactions, computed in the client.

    The pipeline calls this as soon as ingest ends, so the interactions can be dropped before the
    models (100 M bids: ~4 GB). Scattering them to the workers instead cost twice the computing
    itself (5M rung: 8.1 s on 2 workers against 4.0 s in the client).
    """
    ent = tables.category_entropy(inter)
    listings_bid_on = tables.listing_counts(inter)
    pop, per_listing = listings_bid_on["bidders"], listings_bid_on["bids"]
    per_user = tables.user_bids(inter)
    categories = tables.category_shares(inter, ["category"])
    return {
        "categories": categories,
        "sub_categories": tables.category_shares(inter, ["category", "sub_category"], within=categories),
        "prices": tables.price_distribution(listings), "overbid": tables.overbid(inter),
        "lorenz": tables.lorenz_curves(per_user, per_listing), "bids_per_user": tables.bids_per_user(per_user),
        "entropy": tables.entropy_histogram(ent), "lift": tables.category_lift(inter),
        "_overview": tables.overview(inter, listings, listings_bid_on),
        "_concentration": tables.concentration(per_user, per_listing),
        "_engagement": tables.entropy_summary(ent), "_popularity": pop,
        "_history_popularity": float((pop ** 2).sum() / pop.sum()) if len(pop) else float("nan"),
    }


def compute(inp: ReportInput) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """The summary (scalars) and the aggregate tables."""
    done = {name: value for name, value in inp.figures.items() if name not in ("_popularity", "_history_popularity")}
    done["recommendation_sources"] = tables.recommendation_sources(inp.lists)
    done["_recommendations"] = tables.recommendation_summary(inp.lists, inp.figures["_popularity"],
                                                             inp.figures["_history_popularity"], inp.listings)
    out = {name: frame for name, frame in done.items() if not name.startswith("_")}
    out["rejects"] = tables.reject_reasons(inp.counts)
    out["stage_times"] = tables.stage_times(inp.timings)
    activity = None
    if inp.daily is not None:
        out["daily_activity"] = tables.daily_activity(inp.daily)
        activity = tables.activity_summary(inp.daily)
    summary = {"overview": done["_overview"], "activity": activity, "concentration": done["_concentration"],
               "engagement": done["_engagement"], "recommendations": done["_recommendations"],
               "run_health": {k: int(inp.counts[k]) for k in ("rows_in", "rows_accepted", "rows_rejected")}}
    return json_ready(summary), out


def json_ready(value: Any) -> Any:
    """Plain JSON types: numpy scalars unwrapped, NaN as null, nested dicts and lists converted."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def suppressed_keys(summary: dict[str, Any]) -> list[str]:
    """Dotted names of the summary figures left null because they describe fewer than 5 users."""
    return [f"{section}.{key}" for section in SCALAR_SECTIONS for key, v in (summary[section] or {}).items()
            if v is None]


def assemble(inp: ReportInput) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """The full summary.json content (figures, readings, notes, provenance) and the tables."""
    summary, frames = compute(inp)
    notes = [(f"Cells describing fewer than {tables.MIN_USERS} users are suppressed, and so is a second row beside "
              "a lone suppressed row of a table whose rows add up to a published total (else the total minus the "
              "rows shown gives it back): null in summary.json and the tables (flag column `suppressed`), "
              f"'{html.HIDDEN}' in the page.")]
    if inp.daily is None:
        notes.append("The input has no dates (legacy extract): activity over time is not available.")
    summary = {"run_id": inp.run_id, "encore_version": encore.__version__,
               "generated_at": pd.Timestamp.now(tz="UTC").isoformat(),
               "input": {"kind": "lake" if inp.daily is not None else "legacy", "window": inp.window},
               "attribution": inp.attribution, "min_users_per_cell": tables.MIN_USERS, **summary,
               "suppressed": suppressed_keys(summary), "notes": notes,
               "readings": text.readings(summary, frames), "tables": sorted(frames)}
    return summary, frames


def render_figures(frames: dict[str, pd.DataFrame], client=None) -> dict[str, bytes]:
    """Every drawable figure as PNG bytes, one task per figure (worker processes draw in parallel)."""
    names = list(figures.drawable(frames))
    return dict(zip(names, map_blocks(current_client(client), figures.render, names, (frames,), ()), strict=True))


def build_report(writer: RunWriter, inp: ReportInput, client=None) -> dict[str, Any]:
    """Compute the report and write every file under ``report/`` through the run writer; returns the summary."""
    summary, frames = assemble(inp)
    pngs = render_figures(frames, client)
    writer.write_bytes("report/summary.json", json.dumps(summary, indent=2, default=str).encode())
    for name, frame in frames.items():
        writer.write_table(f"report/tables/{name}.parquet", frame)
    for name, data in pngs.items():
        writer.write_bytes(f"report/figures/{name}.png", data)
    writer.write_bytes("report/report.html", html.render(summary, frames, pngs).encode())
    log.info("report: %d tables, %d figures", len(frames), len(pngs))
    return summary


def run_settings(settings: Settings, manifest: dict[str, Any]) -> Settings:
    """Settings that re-read a published run's input: its lake, ingest and model sections, its window pinned."""
    ran = manifest["settings"]
    ingest = dict(ran["ingest"])
    window = manifest["input"].get("window")
    if window:
        ingest["run_date"] = str((pd.Timestamp(window[1]) - pd.Timedelta(days=1)).date())
    return Settings.model_validate({**settings.model_dump(), "lake": ran["lake"], "ingest": ingest,
                                    "model": ran["model"]})


def rebuild(settings: Settings, run_id: str | None = None, client=None) -> dict[str, Any]:
    """Recompute the report of a published run (default: LATEST) from its input and its published lists.

    The input is re-ingested with the run's own settings and window. The new report is written into a
    folder of its own first, then moved over the run's report files, and the run's manifest is replaced
    by a complete new one: a rebuild that fails leaves the published run as it was. Returns the summary.
    """
    from encore.ingest import ingest

    opts = settings.output_storage_options()
    store = RecommendationStore(settings.output.path, opts, run_id)
    manifest = store.manifest
    again = run_settings(settings, manifest)
    staging = RunWriter(settings.output.path, opts, f"{store.run_id}.report-{uuid.uuid4().hex[:8]}")
    try:
        with session(again, client) as active:
            res = ingest(again)
            lists = tables.ListDigest()
            for shard in store.recommendation_shards():
                lists.add(shard)
            inp = ReportInput.from_ingest(res, interaction_figures(res.interactions, res.listings), lists,
                                          manifest["timings"], store.run_id, attribution_for(again))
            summary = build_report(staging, inp, client=active)
        for relpath in sorted(staging.files):
            target = lake.join(store.folder, relpath)
            store.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            store.fs.mv(lake.join(staging.folder, relpath), target)
    finally:
        if store.fs.exists(staging.folder):
            store.fs.rm(staging.folder, recursive=True)
    manifest["files"] = dict(sorted({**manifest.get("files", {}), **staging.files}.items()))
    replace_file(store.fs, lake.join(store.folder, MANIFEST), json.dumps(manifest, indent=2, default=str).encode())
    return summary
