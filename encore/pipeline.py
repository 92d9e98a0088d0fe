"""The daily job, stage by stage: ingest → matrix → models → recommend → store → report.

Each stage is timed and counted into the manifest. Nothing becomes visible to readers until the last
step writes ``LATEST``; any failure before that leaves the previous published run as it was.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

import encore
from encore import ingest as ingest_mod
from encore import synth
from encore.cluster import session
from encore.config import Settings
from encore.io import lake
from encore.matrix import Matrix, build_matrix
from encore.models.base import imap_blocks
from encore.models.itemknn import ItemKNN
from encore.recommend import build_backoff, cold_start, live_mask, recommend_shards
from encore.report import ReportInput, attribution_for, build_report, interaction_figures
from encore.report.tables import ListDigest
from encore.store import RecommendationStore, RunWriter, ShardWriter
from encore.validate import check_reject_ratio
from encore.weighting import cap_history, pair_visits

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
    """Collects per-stage wall times (a stage entered twice adds up) and logs each stage as it ends."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        log.info("[%s] started", name)
        start = time.perf_counter()
        yield
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 3)
        log.info("[%s] done in %.2fs", name, self.timings[name])


def ensure_lake(settings: Settings) -> bool:
    """Generate the synthetic marketplace into the lake when it holds no data; True if it did."""
    if settings.lake.legacy_csv:
        return False
    fs, root = lake.filesystem(settings.lake.path, settings.lake.storage_options)
    if lake.lake_exists(fs, root):
        return False
    log.info("no data in %s: generating a synthetic marketplace (%d users, %d days)",
             settings.lake.path, settings.synth.users, settings.synth.days)
    synth.write_lake(settings.synth, fs, root)
    return True


def plan(settings: Settings) -> dict[str, Any]:
    """What a run would read, where it would compute and write, without computing anything."""
    inputs: dict[str, Any]
    if settings.lake.legacy_csv:
        fs, path = lake.filesystem(settings.lake.legacy_csv, settings.lake.storage_options)
        inputs = {"legacy_csv": settings.lake.legacy_csv, "exists": fs.exists(path)}
    else:
        fs, root = lake.filesystem(settings.lake.path, settings.lake.storage_options)
        days = lake.bid_days(fs, root)
        inputs = {"lake": settings.lake.path, "bid_days": len(days),
                  "first_day": str(days[0]) if days else None, "last_day": str(days[-1]) if days else None,
                  "listings": fs.exists(lake.join(root, "listings")),
                  "action": "read" if days else f"generate a synthetic marketplace ({settings.synth.users} users)"}
        if days:
            window = ingest_mod.resolve_window(settings, days)
            inputs["window"] = [str(window.start.date()), str((window.end - pd.Timedelta(days=1)).date())]
    out_fs, out_root = lake.filesystem(settings.output.path, settings.output_storage_options())
    latest = lake.join(out_root, "LATEST")
    cluster = settings.cluster.model_dump(include={"kind", "address", "n_workers", "threads_per_worker"})
    return {"inputs": inputs, "cluster": cluster,
            "output": {"path": settings.output.path, "shards": settings.output.shards,
                       "current_latest": out_fs.cat(latest).decode() if out_fs.exists(latest) else None}}


def fingerprint(settings: Settings) -> str:
    """A hash of the input files' names and checksums, so a manifest says exactly what was read."""
    if settings.lake.legacy_csv:
        fs, path = lake.filesystem(settings.lake.legacy_csv, settings.lake.storage_options)
        paths = [path]
    else:
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


def publish_shard(write: ShardWriter, shard: int, recs: pd.DataFrame) -> tuple[str, dict[str, int], ListDigest]:
    """Runs in a shard's task: write its lists and digest them for the report, so only a summary returns."""
    return (*write(shard, recs), ListDigest.of(recs))


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
            "by_sub_category": ranked(frame, ["sub_category"], "bidders"),
            "trending": ranked(frame, [], "trending")}


def run(settings: Settings, client=None, run_id: str | None = None, extract_first: bool = False) -> RunResult:
    """Run the whole daily job and publish it; returns the run id, manifest and recommendations.

    With ``extract_first`` the PostgreSQL extract fills the lake before anything else.
    """
    timer = Timer()
    extracted = None
    if extract_first:
        from encore.io.extract import extract

        with timer.stage("extract"):
            extracted = extract(settings).to_dict()
    with timer.stage("prepare"):
        generated = ensure_lake(settings)
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
            model = ItemKNN(k=mc.k, min_support=mc.min_support, shrinkage=mc.shrinkage, weighting=mc.weighting,
                            alpha=mc.alpha).fit_on_cluster(X_sim, active)  # kept until the lists are written
            del X_sim  # the capped copy is only for the similarity (100 M bids: ~1 GB)
            live = live_mask(res.listings, m.items, now)
            backoff = build_backoff(m, res.listings, live, mc.trending_smoothing, mc.k)
        with timer.stage("recommend"):
            lists = ListDigest()
            sink = partial(publish_shard, writer.shard_writer())
            for _, (relpath, info, digest) in recommend_shards(m, model, backoff, live, settings.recommend.n,
                                                               settings.output.shards, active, sink):
                writer.record(relpath, info)
                lists.merge(digest)
            writer.record(*next(imap_blocks(active, write_similar, [m.items], (model,),
                                            (settings.recommend.similar_n, writer.shard_writer()))))
            del model  # releases the fit's inputs (client and workers) and the neighbour lists
        with timer.stage("store"):
            for name, table in popular_tables(backoff, m, res.listings, live).items():
                writer.write_table(f"popular/{name}.parquet", table)
            writer.write_table("popular/cold_start.parquet", cold_start(backoff, m.items, settings.recommend.n))
        with timer.stage("report"):
            build_report(writer, ReportInput.from_ingest(res, figures, lists, timer.timings, writer.run_id,
                                                         attribution_for(settings)), client=active)
    manifest = {
        "encore_version": encore.__version__,
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "settings": settings.public_dict(),
        "input": {"fingerprint": source_fp, "generated_synthetic": generated, "extract": extracted,
                  "window": None if res.window is None else [str(res.window.start), str(res.window.end)]},
        "counts": {**res.counts, "users": m.shape[0], "items": m.shape[1], "interactions": int(m.X.nnz),
                   "recommendations": lists.rows, **visits,
                   "recommendation_sources": lists.source_rows.sort_index().to_dict()},
        "timings": timer.timings,
    }
    writer.publish(manifest)
    writer.prune(settings.output.keep_runs)
    log.info("published run %s", writer.run_id)
    store = RecommendationStore(settings.output.path, settings.output_storage_options(), writer.run_id)
    return RunResult(writer.run_id, settings.output.path, {**manifest, "run_id": writer.run_id}, store,
                     timer.timings)


__all__ = ["RunResult", "ensure_lake", "run"]
