"""The daily job, stage by stage: ingest → matrix → models → recommend → store → report.

Each stage is timed and counted into the manifest. Nothing becomes visible to readers until the last
step writes ``LATEST``; any failure before that leaves the previous published run as it was.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

import encore
from encore.config import Settings, redact
from encore.core.itemknn import ItemKNN
from encore.core.weighting import cap_history, pair_visits
from encore.dist.blocks import imap_blocks
from encore.dist.cluster import session
from encore.dist.fit import fit_on_cluster
from encore.errors import EmptyRunError, NoPublishedRun
from encore.io import lake, legacy, synth
from encore.io.store import CATALOGUE, LATEST, RecommendationStore, RunWriter, ShardWriter
from encore.job import ingest as ingest_mod
from encore.job.matrix import Matrix, build_matrix
from encore.job.recommend import build_backoff, cold_start, live_mask, recommend_shards
from encore.job.report import cluster_mapper, report_input
from encore.job.validate import check_reject_ratio
from encore.report import attribution_for, build_report, interaction_figures
from encore.report.tables import ListDigest

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


def ensure_lake(settings: Settings) -> bool:
    """Generate the synthetic marketplace when the settings call the lake synthetic and its folder does not
    exist at all; True if it did.

    Any other lake is input, never written to: a missing or incomplete one is an
    :class:`~encore.errors.InputError` naming what is missing, before any work starts.
    """
    if settings.lake.legacy_csv:
        return False
    fs, root = lake.filesystem(settings.lake.path, settings.lake.storage_options)
    if settings.lake.synthetic and not fs.exists(root):
        log.info("%s does not exist: generating a synthetic marketplace there (%d users, %d days)",
                 settings.lake.path, settings.synth.users, settings.synth.days)
        synth.write_lake(settings.synth, fs, root)
        return True
    lake.check_lake(fs, root)
    return False


def is_synthetic(settings: Settings) -> bool:
    """Whether the run reads a marketplace encore generated (its lake carries the synthetic marker)."""
    if settings.lake.legacy_csv:
        return False
    fs, root = lake.filesystem(settings.lake.path, settings.lake.storage_options)
    return synth.is_synthetic(fs, root)


def plan(settings: Settings) -> dict[str, Any]:
    """What a run would read, where it would compute and write, without computing anything."""
    inputs: dict[str, Any]
    if settings.lake.legacy_csv:
        fs, path = lake.filesystem(settings.lake.legacy_csv, settings.lake.storage_options)
        inputs = {"legacy_csv": settings.lake.legacy_csv, "exists": fs.exists(path)}
    else:
        fs, root = lake.filesystem(settings.lake.path, settings.lake.storage_options)
        generate = settings.lake.synthetic and not fs.exists(root)
        if not generate:
            lake.check_lake(fs, root)
        found = [] if generate else lake.bid_days(fs, root)
        days = [d for d in found if d <= ingest_mod.latest_day(settings)]
        inputs = {"lake": settings.lake.path, "bid_days": len(days),
                  "first_day": str(days[0]) if days else None, "last_day": str(days[-1]) if days else None,
                  "ignored_future_days": [str(d) for d in found if d not in days],
                  "synthetic": generate or synth.is_synthetic(fs, root),
                  "action": f"generate a synthetic marketplace ({settings.synth.users} users)" if generate else "read"}
        if days:
            window = ingest_mod.resolve_window(settings, days)
            inputs["window"] = [str(window.start.date()), str((window.end - pd.Timedelta(days=1)).date())]
    out_fs, out_root = lake.filesystem(settings.output.path, settings.output_storage_options())
    latest = lake.join(out_root, "LATEST")
    cluster = settings.cluster.model_dump(include={"kind", "address", "n_workers", "threads_per_worker"})
    return redact({"inputs": inputs, "cluster": cluster,
                   "output": {"path": settings.output.path, "shards": settings.output.shards,
                              "strict": settings.output.strict,
                              "current_latest": out_fs.cat(latest).decode() if out_fs.exists(latest) else None}})


def fingerprint(settings: Settings) -> str:
    """A hash of the input files' names and checksums (the legacy CSV's bytes), so a manifest says exactly
    what was read."""
    if settings.lake.legacy_csv:  # read whole (a small file): a missing or unreadable one is a clear error here
        return hashlib.sha256(legacy.read_bytes(settings.lake.legacy_csv, settings.lake.storage_options)).hexdigest()
    fs, root = lake.filesystem(settings.lake.path, settings.lake.storage_options)
    paths = sorted(fs.find(root))
    digest = hashlib.sha256()
    for p in paths:
        digest.update(f"{p}:{fs.size(p)}:{fs.checksum(p)}\n".encode())
    return digest.hexdigest()


def similar_table(model: ItemKNN, items: pd.Index, n: int) -> pd.DataFrame:
    """Published similar items: item_id, rank, neighbour_id, score, support."""
    width = min(n, model.neighbours_.shape[1])
    nbr, score, support = (a[:, :width] for a in (model.neighbours_, model.scores_, model.support_))
    ok = nbr >= 0
    rows, rank = np.nonzero(ok)
    ids = items.to_numpy()
    return pd.DataFrame({"item_id": ids[rows], "rank": (rank + 1).astype(np.int16),
                         "neighbour_id": ids[nbr[ok]], "score": score[ok], "support": support[ok]})


def write_similar(items: pd.Index, model: ItemKNN, n: int, write: ShardWriter) -> tuple[str, dict[str, int]]:
    """Runs in a task beside the fitted model: the similar-items table, written there."""
    return write.table("similar_items/part-0.parquet", similar_table(model, items, n))


def publish_shard(write: ShardWriter, personalize: bool, shard: int, recs: pd.DataFrame
                  ) -> tuple[list[tuple[str, dict[str, int]]], ListDigest]:
    """Runs in a shard's task: write its lists (and their Personalize export when asked) and digest them
    for the report, so only a summary returns."""
    files = [write(shard, recs), *([write.personalize(shard, recs)] if personalize else [])]
    return files, ListDigest.of(recs)


def popular_tables(backoff, m: Matrix, listings: pd.DataFrame, live: np.ndarray, top: int = 100
                   ) -> dict[str, pd.DataFrame]:
    """Global, per-category, per-sub-category and trending lists of live listings."""
    cat = listings.set_index("listing_id").reindex(m.items)
    frame = pd.DataFrame({"item_id": m.items.to_numpy(), "category": cat["category"].to_numpy(),
                          "sub_category": cat["sub_category"].to_numpy(),
                          "bidders": backoff.popular_scores, "trending": backoff.trending_scores})[live]
    frame = frame.sort_values(["bidders", "item_id"], ascending=[False, True])

    def ranked(df: pd.DataFrame, by: list[str], score: str) -> pd.DataFrame:
        df = df[df[score] > 0].sort_values([*by, score, "item_id"], ascending=[*[True] * len(by), False, True])
        df = df.assign(rank=df.groupby(by).cumcount() + 1 if by else np.arange(1, len(df) + 1))
        return df[df["rank"] <= top][[*by, "rank", "item_id", score]].rename(columns={score: "score"})

    return {"global": ranked(frame, [], "bidders"), "by_category": ranked(frame, ["category"], "bidders"),
            "by_sub_category": ranked(frame, ["category", "sub_category"], "bidders"),
            "trending": ranked(frame, [], "trending")}


COLLAPSE = 0.5  # a run whose recommendations fall below this share of the published run's is suspicious


def catalogue(listings: pd.DataFrame, items: pd.Index) -> pd.DataFrame:
    """The listings of the run's matrix as readers show them: title, category, price, end time (no seller).

    Published with the run so ``encore recommend`` and app teams can name what a list holds.
    """
    columns = ["listing_id", "title", "category", "sub_category", "price", "status", "ends_at"]
    found = listings.set_index("listing_id").reindex(items)
    return found.reset_index(names="listing_id").reindex(columns=columns)


def previous_recommendations(settings: Settings) -> int | None:
    """Recommendation rows of the run ``LATEST`` names now (None when nothing is published yet)."""
    try:
        store = RecommendationStore(settings.output.path, settings.output_storage_options())
        return int(store.manifest["counts"]["recommendations"])
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
        generated = ensure_lake(settings)
        synthetic = is_synthetic(settings)
        source_fp = fingerprint(settings)
    with session(settings, client) as active:
        with timer.stage("ingest"):
            res = ingest_mod.ingest(settings)
        writer = RunWriter(settings.output.path, settings.output_storage_options(), run_id)
        writer.write_table("rejects/part-0.parquet", res.rejects)
        check_reject_ratio(res.counts, settings.ingest.max_reject_ratio)
        now = res.window.end if res.window else None
        with timer.stage("report"):
            # Computed now so the interactions can be dropped before the models. A thread overlapping them
            # with the matrix and the model fit kept the interactions alive meanwhile: at 100 M bids that took
            # the client from 16.5 to 20.6 GB.
            figures = interaction_figures(res.interactions, res.listings)
        with timer.stage("matrix"):
            m = build_matrix(res.interactions, res.listings["listing_id"].to_numpy(), settings.model, now)
            # Everything downstream now has what it needs from the interactions (100 M bids: ~4 GB).
            res.interactions = res.interactions.iloc[:0].copy()  # a copy: a 0-row view keeps the arrays alive
            X_sim = cap_history(m.X, m.recency, settings.model.history_cap)
            m.recency = m.recency[:0].copy()  # only the cap reads it (100 M bids: 0.7 GB)
            visits = {"pair_visits": pair_visits(X_sim), "pair_visits_uncapped": pair_visits(m.X)}
        mc = settings.model
        with timer.stage("models"):
            # The fitted model stays on the cluster.
            model = fit_on_cluster(encore.make_model(settings), X_sim, active)
            del X_sim  # the capped copy is only for the similarity (100 M bids: ~1 GB)
            live = live_mask(res.listings, m.items, now)
            backoff = build_backoff(m, res.listings, live, mc.trending_smoothing, mc.k)
        with timer.stage("recommend"):
            lists = ListDigest()
            sink = partial(publish_shard, writer.shard_writer(), settings.recommend.personalize_export)
            for _, (files, digest) in recommend_shards(m, model, backoff, live, settings.recommend.n,
                                                       settings.output.shards, active, sink):
                for relpath, info in files:
                    writer.record(relpath, info)
                lists.merge(digest)
            writer.record(*next(imap_blocks(active, write_similar, [m.items], (model,),
                                            (settings.recommend.similar_n, writer.shard_writer()))))
            del model  # releases the fit's inputs (client and workers) and the neighbour lists
        with timer.stage("store"):
            for name, table in popular_tables(backoff, m, res.listings, live).items():
                writer.write_table(f"popular/{name}.parquet", table)
            writer.write_table("popular/cold_start.parquet", cold_start(backoff, m.items, settings.recommend.n))
            writer.write_table(CATALOGUE, catalogue(res.listings, m.items))
        notes = run_warnings(int(live.sum()), lists, m.shape[0], previous_recommendations(settings))
        for note in notes:
            log.warning("warning: %s", note)
        for note in input_notes(res.counts):
            log.info("note: %s", note)
        with timer.stage("report"):
            build_report(writer, report_input(res, figures, lists, timer.timings, writer.run_id, attribution_for(settings),
                                              synthetic=synthetic, notes=notes + input_notes(res.counts)),
                         cluster_mapper(active))
    manifest = {
        "encore_version": encore.__version__,
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "settings": settings.public_dict(),
        "input": {"fingerprint": source_fp, "synthetic": synthetic, "generated_synthetic": generated,
                  "extract": redact(extracted),
                  "window": None if res.window is None else [str(res.window.start), str(res.window.end)]},
        "warnings": notes,
        "notes": input_notes(res.counts),
        "counts": {**res.counts, "users": m.shape[0], "items": m.shape[1], "interactions": int(m.X.nnz),
                   "recommendations": lists.rows, **visits,
                   "recommendation_sources": lists.source_rows.sort_index().to_dict()},
        "timings": timer.timings,
    }
    if settings.output.strict and notes:
        writer.write_unpublished(manifest)
        raise EmptyRunError(f"run {writer.run_id} written to {writer.folder} but not published (output.strict): "
                            f"{notes[0]}; {LATEST} still names the previous run")
    writer.publish(manifest)
    writer.prune(settings.output.keep_runs)
    log.info("published run %s", writer.run_id)
    store = RecommendationStore(settings.output.path, settings.output_storage_options(), writer.run_id)
    return RunResult(writer.run_id, settings.output.path, {**manifest, "run_id": writer.run_id}, store,
                     timer.timings)


__all__ = ["RunResult", "ensure_lake", "run", "run_warnings"]
