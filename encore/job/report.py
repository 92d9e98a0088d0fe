"""The report stage: the run's aggregates handed to ``encore.report``, its figures drawn on the cluster, and
the rebuild of a published run's report."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

import fsspec
import pandas as pd

from encore.config import Settings
from encore.dist.blocks import current_client, map_blocks
from encore.dist.cluster import session
from encore.io import atomic, lake
from encore.io.store import MANIFEST, RecommendationStore, RunWriter, complete_runs
from encore.job.ingest import ingest
from encore.job.validate import IngestResult
from encore.report import ReportInput, attribution_for, build_report, interaction_figures, tables
from encore.report.build import HISTORY_COLUMNS, Mapper

HISTORY_RUNS = 14  # past complete runs drawn as trends beside this one

def report_input(res: IngestResult, figures: dict[str, Any], lists: tables.ListDigest, timings: dict[str, float],
                 run_id: str, attribution: str | None, *, synthetic: bool = False,
                 notes: Iterable[str] = (), changes: dict[str, Any] | None = None,
                 guard: dict[str, Any] | None = None, history: pd.DataFrame | None = None) -> ReportInput:
    """The report input of a run: ingest result, its interaction figures, the digest of its lists, the
    stage times so far, whether the input is synthetic and what the run warned about, and how it compares
    with the published run and the runs before it."""
    window = None if res.window is None else [str(res.window.start), str(res.window.end)]
    return ReportInput(figures, res.listings, lists, res.counts, dict(timings), res.daily, window, run_id,
                       attribution, bool(synthetic), [str(note) for note in notes], changes, history, guard)


def history_row(run_id: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """One run's row of the history (:data:`~encore.report.build.HISTORY_COLUMNS`), from its manifest: counts
    and timings only, so a row holds aggregates and nothing about a user."""
    counts = manifest.get("counts") or {}
    timings = manifest.get("timings") or {}
    rows_in, rejected = counts.get("rows_in"), counts.get("rows_rejected")
    return {"run_id": run_id, "created_at": manifest.get("created_at"),
            "recommendations": counts.get("recommendations"), "users": counts.get("users"),
            "coverage": counts.get("coverage"), "rows_in": rows_in,
            "rejected_ratio": rejected / rows_in if rows_in and rejected is not None else None,
            "seconds": float(sum(timings.values()))}


def read_manifest(fs: fsspec.AbstractFileSystem, root: str, run_id: str) -> Any:
    """A run's manifest as parsed, or None when it is missing or not JSON (that run is left out of the
    history: a damaged old run must not stop today's report)."""
    try:
        with fs.open(lake.join(root, "runs", run_id, MANIFEST), "rb") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def history(fs: fsspec.AbstractFileSystem, root: str, run_id: str, today: dict[str, Any],
            runs: int = HISTORY_RUNS) -> pd.DataFrame:
    """The newest ``runs`` readable complete runs before ``run_id`` under ``root``, oldest first, then
    ``today`` (this run's :func:`history_row`)."""
    past: list[dict[str, Any]] = []
    for before in reversed([r for r in complete_runs(fs, root) if r < run_id]):
        if len(past) == runs:
            break
        manifest = read_manifest(fs, root, before)
        try:
            past.append(history_row(before, manifest))
        except (AttributeError, TypeError, ValueError):  # no manifest, or counts and timings not as written
            continue
    return pd.DataFrame([*reversed(past), today], columns=HISTORY_COLUMNS)


def today_row(run_id: str, res: IngestResult, lists: tables.ListDigest, timings: dict[str, float]) -> dict[str, Any]:
    """This run's history row, counted as the manifest will count it: rows of the lists, users with a list,
    distinct listings recommended over the catalogue, stage times so far (the report's own not yet)."""
    listings = int(res.listings["listing_id"].nunique()) if "listing_id" in res.listings else len(res.listings)
    counts = {**res.counts, "recommendations": lists.rows, "users": lists.users,
              "coverage": len(lists.item_rows) / max(1, listings)}
    return history_row(run_id, {"created_at": pd.Timestamp.now(tz="UTC").isoformat(), "counts": counts,
                                "timings": timings})


def figures(res: IngestResult) -> dict[str, Any]:
    """The report's figures that read the interactions, computed as soon as ingest ends so the interactions
    can be released before the models (a thread beside the fit would keep them alive): from the partial
    aggregates ingest combined on the cluster when it made them (the lake), else from the interactions."""
    partial, catalogue = getattr(res, "report", None), getattr(res, "catalogue", None)
    if partial is not None and catalogue is not None:
        return tables.partial_figures(partial, catalogue, res.listings)
    return interaction_figures(res.interactions, res.listings)


def run(res: IngestResult, interaction: dict[str, Any], lists: tables.ListDigest, timings: dict[str, float],
        writer: RunWriter, settings: Settings, synthetic: bool, notes: list[str], client=None, *,
        changes: dict[str, Any] | None = None, guard: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build and write the run's report; its figures are drawn as tasks on ``client``. ``changes`` and
    ``guard`` are the comparison with the published run and the publish guard's result (None: first run,
    guard off); the trends read the last complete runs under the output root. Returns the summary."""
    past = history(writer.fs, writer.root, writer.run_id, today_row(writer.run_id, res, lists, timings))
    inp = report_input(res, interaction, lists, timings, writer.run_id, attribution_for(settings),
                       synthetic=synthetic, notes=notes, changes=changes, guard=guard, history=past)
    return build_report(writer, inp, cluster_mapper(client))


def cluster_mapper(client=None) -> Mapper:
    """A report :data:`~encore.report.build.Mapper` drawing one figure per task on ``client`` (or the current one)."""
    client = current_client(client)
    return lambda fn, blocks, shared: map_blocks(client, fn, blocks, shared, ())


def run_settings(settings: Settings, manifest: dict[str, Any]) -> Settings:
    """Settings that re-read a published run's input: its lake path (or legacy CSV), ingest and model
    sections, its window pinned.

    Every other lake field, the storage options above all, stays the current one: a manifest holds
    them redacted ("***"), and credentials belong to whoever rebuilds, not to the run.
    """
    ran = manifest["settings"]
    ingest = dict(ran["ingest"])
    window = manifest["input"].get("window")
    if window:
        ingest["run_date"] = str((pd.Timestamp(window[1]) - pd.Timedelta(days=1)).date())
    current = settings.model_dump()
    lake_section = {**current["lake"], "path": ran["lake"]["path"], "legacy_csv": ran["lake"].get("legacy_csv")}
    return Settings.model_validate({**current, "lake": lake_section, "ingest": ingest, "model": ran["model"]})


def rebuild(settings: Settings, run_id: str | None = None, client=None) -> dict[str, Any]:
    """Recompute the report of a published run (default: LATEST) from its input and its published lists.

    The input is re-ingested with the run's own settings and window (:func:`run_settings`); whether it
    is synthetic, the run's warnings, its comparison with the run published before it ("diff") and its
    guard result come from the manifest; the trends are the complete runs before it and its own manifest. The new report is written into a
    folder of its own first, then moved over the run's report files, and the run's manifest is replaced
    by a complete new one: a rebuild that fails leaves the published run as it was. Returns the summary.
    """
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
            inp = report_input(res, figures(res), lists,
                               manifest["timings"], store.run_id, attribution_for(again),
                               synthetic=bool(manifest.get("input", {}).get("synthetic", False)),
                               notes=[*manifest.get("warnings", []), *manifest.get("notes", [])],
                               changes=manifest.get("diff"), guard=manifest.get("guard"),
                               history=history(store.fs, store.root, store.run_id,
                                               history_row(store.run_id, manifest)))
            summary = build_report(staging, inp, cluster_mapper(active))
        for relpath in sorted(staging.files):
            target = lake.join(store.folder, relpath)
            store.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            store.fs.mv(lake.join(staging.folder, relpath), target)
    finally:
        if store.fs.exists(staging.folder):
            store.fs.rm(staging.folder, recursive=True)
    manifest["files"] = dict(sorted({**manifest.get("files", {}), **staging.files}.items()))
    atomic.write_bytes(store.fs, lake.join(store.folder, MANIFEST), json.dumps(manifest, indent=2, default=str).encode())
    return summary
