"""The daily job, stage by stage: prepare → ingest → matrix → models → recommend → store → report → publish.

Each stage is a module of ``encore.job`` with a ``run`` returning a typed result; :func:`run` calls them in
order, times each into the manifest, and releases what no later stage reads (:func:`release`). Nothing becomes
visible to readers until the last step writes ``LATEST``; any failure before that leaves the previous
published run as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

import encore
from encore.config import Settings, redact
from encore.dist.blocks import Held, put, where_held
from encore.dist.cluster import session
from encore.errors import EmptyRunError, GuardError, RejectRatioError
from encore.io.store import LATEST, RecommendationStore, RunWriter, write_status
from encore.job import (
    backtest,
    checks,
    diff,
    guard,
    ingest,
    matrix,
    models,
    prepare,
    recommend,
    report,
    rules,
    store,
)
from encore.job.validate import check_reject_ratio

log = logging.getLogger("encore")


@dataclass
class RunResult:
    """What a finished run produced (for scripts, notebooks and tests)."""

    run_id: str
    output: str
    manifest: dict[str, Any]
    store: RecommendationStore
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def recommendations(self) -> pd.DataFrame:
        """Every published list of the run, read back from its shards (small runs; use ``store`` for big ones)."""
        return self.store.recommendations()


class Timer:
    """Collects per-stage wall times (a stage entered twice adds up) and logs each stage as it ends.

    ``on_start`` is called with a stage's name as it starts: the CLI points it at a progress display.
    """

    def __init__(self, on_start: Callable[[str], None] | None = None) -> None:
        self.timings: dict[str, float] = {}
        self.on_start = on_start or (lambda name: None)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        log.info("[%s] started", name)
        self.on_start(name)
        start = time.perf_counter()
        yield
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 3)
        log.info("[%s] done in %.2fs", name, self.timings[name])


def release(holder: Any, *names: str) -> None:
    """Drop what no later stage reads: each named attribute of ``holder`` becomes an empty copy of itself
    (a frame or array of 0 rows; a 0-row view would keep the arrays alive), anything else None."""
    for name in names:
        value = getattr(holder, name)
        if isinstance(value, pd.DataFrame):
            setattr(holder, name, value.iloc[:0].copy())
        elif isinstance(value, np.ndarray):
            setattr(holder, name, value[:0].copy())
        else:
            setattr(holder, name, None)


def run(settings: Settings, client=None, run_id: str | None = None, extract_first: bool = False,
        on_stage: Callable[[str], None] | None = None) -> RunResult:
    """Run the whole daily job and publish it; returns the run id, manifest and recommendations.

    With ``extract_first`` the PostgreSQL extract fills the lake before anything else; ``on_stage`` is
    called with each stage's name as it starts (progress displays).
    """
    timer = Timer(on_stage)
    extracted = None
    if extract_first:
        from encore.io.extract import extract

        with timer.stage("extract"):
            extracted = extract(settings).to_dict()
    with timer.stage("prepare"):
        source = prepare.run(settings)
    with session(settings, client, ingest.input_bytes(settings)) as active:
        with timer.stage("ingest"):
            res = ingest.ingest(settings, frame=settings.evaluate.daily_holdout)  # the backtest reads the frame
        holdout = None
        if settings.evaluate.daily_holdout:
            with timer.stage("backtest"):  # before the matrix stage releases the interactions
                holdout = backtest.run(res.interactions, settings, active)
        writer = RunWriter(settings.output.path, settings.output_storage_options(), run_id)
        rejects = writer.write_table("rejects/part-0.parquet", res.rejects)
        try:
            check_reject_ratio(res.counts, settings.ingest.max_reject_ratio, writer.fs.unstrip_protocol(rejects))
        except RejectRatioError as exc:  # stopped before any output: status.json still says so
            write_status(writer.fs, writer.root, {"run_id": writer.run_id, "published": False, "error": str(exc),
                                                  "counts": {k: v for k, v in res.counts.items() if k.startswith("rows")}})
            raise
        now = res.window.end if res.window else None
        with timer.stage("report"):
            figures = report.figures(res)  # before the matrix, so the interactions go before the models
        with timer.stage("matrix"):
            mats, bids, listed = matrices(res, settings, now, active)
            release(res, "interactions", "rows")
            release(mats.m, "recency")
        with timer.stage("models"):
            live = recommend.live_mask(res.listings, mats.m.items, now)
            ruled = rules.run(settings, mats.full, listed, live, now, bids, active)  # made beside the fits
            fitted = models.run(mats, listed, live, settings, active)
            del listed
            release(mats, "X_sim")
        with timer.stage("recommend"):
            release(mats, "whole")
            del bids
            lists = recommend.run(mats.m, fitted, settings, writer, active, ruled)
            release(fitted, "model", "similar")  # the fit's inputs on the client and workers, and the neighbour lists
        with timer.stage("store"):
            store.run(fitted, mats.m, res.listings, settings, writer)
        published = checks.published_counts(settings)
        warnings = checks.run_warnings(int(fitted.live.sum()), lists, mats.m.shape[0],
                                       published and published.get("recommendations"))
        notes = checks.input_notes(res.counts)
        figures_today = {"recommendations": lists.rows, "coverage": len(lists.item_rows) / max(1, mats.m.shape[1])}
        with timer.stage("diff"):
            changes = diff.compare(writer.fs, published["folder"], writer.folder) if published else None
        held = guard.summary(guard.evaluate(
            figures_today, published, changes and changes["jaccard_mean"],
            guard.newest_day_bids(res.daily, window_of(res)), settings.guard)) if settings.guard.enabled else None
        if held and not held["passed"]:
            notes = [f"publish guard: {c['message']}" for c in held["checks"] if not c["passed"]] + notes
        for line in warnings:
            log.warning("warning: %s", line)
        for line in notes:
            log.info("note: %s", line)
        with timer.stage("report"):
            report.run(res, figures, lists, timer.timings, writer, settings, source.synthetic, warnings + notes,
                       active, changes=changes, guard=held)
    manifest = {
        "encore_version": encore.__version__,
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "settings": settings.public_dict(),
        "input": {"fingerprint": source.fingerprint, "synthetic": source.synthetic,
                  "generated_synthetic": source.generated, "extract": redact(extracted), "window": window_of(res)},
        "warnings": warnings,
        "notes": notes,
        "guard": held,
        "diff": changes,
        "backtest": holdout,
        "counts": {**res.counts, "users": mats.m.shape[0], "items": mats.m.shape[1],
                   "interactions": mats.interactions, "recommendations": lists.rows,
                   "coverage": round(figures_today["coverage"], 6), **mats.visits,
                   "recommendation_sources": lists.source_rows.sort_index().to_dict(),
                   "rules": dict(sorted(lists.rules.items()))},
        "timings": timer.timings,
    }
    if settings.output.strict and warnings:
        hold(writer, manifest)
        raise EmptyRunError(f"run {writer.run_id} written to {writer.folder} but not published (output.strict): "
                            f"{warnings[0]}; {LATEST} still names the previous run")
    if held and not held["passed"]:
        hold(writer, manifest)
        first = next(c for c in held["checks"] if not c["passed"])
        raise GuardError(f"run {writer.run_id} written to {writer.folder} but not published: the publish guard's "
                         f"{first['name']} check failed ({first['message']}); look at it, then "
                         f"`encore publish {writer.run_id} --force` publishes it")
    writer.publish(manifest)
    write_status(writer.fs, writer.root, status_of(manifest, writer.run_id, published=True))
    writer.prune(settings.output.keep_runs)
    log.info("published run %s", writer.run_id)
    reader = RecommendationStore(settings.output.path, settings.output_storage_options(), writer.run_id)
    return RunResult(writer.run_id, settings.output.path, {**manifest, "run_id": writer.run_id}, reader,
                     timer.timings)


def matrices(res: ingest.IngestResult, settings: Settings, now: pd.Timestamp | None, client
             ) -> tuple[matrix.Matrices, Any, Any]:
    """The matrices, the auction rules' bid state (None with the rules off) and the listings as the model and
    rule tasks read them: built where ingest left the matrix rows (held on the cluster, see
    :func:`encore.job.matrix.held`; the listings, less the titles no task reads, are then put there once), or
    here from the gathered interactions (legacy input, the backtest)."""
    rows = res.rows
    if rows is None:
        mats = matrix.run(res.interactions, res.listings, settings, now)
        return mats, rules.bid_state(res.interactions, mats.m) if settings.rules.enabled else None, res.listings
    listed = put(client, res.listings.drop(columns="title", errors="ignore")) if isinstance(rows, Held) else res.listings
    mats = matrix.held(rows, listed, settings, now, client)
    bids = where_held(client, rules.bid_state_of_rows, rows, mats.full) if settings.rules.enabled else None
    return mats, bids, listed


def window_of(res: ingest.IngestResult) -> list[str] | None:
    """The run window as [start, end) timestamps in text (None for input without dates)."""
    return None if res.window is None else [str(res.window.start), str(res.window.end)]


def status_of(manifest: dict[str, Any], run_id: str, published: bool) -> dict[str, Any]:
    """What ``status.json`` says of a run: id, time, published or held and why, counts, timings."""
    return {"run_id": run_id, "created_at": manifest["created_at"], "published": published,
            "guard": manifest.get("guard"), "warnings": manifest.get("warnings", []),
            "counts": {k: v for k, v in manifest["counts"].items() if not isinstance(v, dict | list)},
            "timings": manifest["timings"]}


def hold(writer: RunWriter, manifest: dict[str, Any]) -> None:
    """Write the run in full but leave ``LATEST`` where it is; ``status.json`` says it was held."""
    writer.write_unpublished(manifest)
    write_status(writer.fs, writer.root, status_of(manifest, writer.run_id, published=False))


__all__ = ["RunResult", "release", "run"]
