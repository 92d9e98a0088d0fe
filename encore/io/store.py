"""The published layout: run folders, shards, manifest, the LATEST pointer, and a reader.

A run is written into a fresh ``runs/<run_id>/`` folder, every file whole (:mod:`encore.io.atomic`);
publishing writes ``manifest.json``, then ``_SUCCESS``, then the small ``LATEST`` pointer, last, replacing
it in one step. A run is many files and S3 has no folder rename, so readers trust only runs
named by ``LATEST`` (which is written only after the run is complete): a run that fails anywhere
leaves the previous ``LATEST`` and its files untouched.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from encore import schema
from encore.errors import NoPublishedRun, PublishError
from encore.io import atomic, lake
from encore.io.personalize import personalize_lines, personalize_name

LATEST = "LATEST"
SUCCESS = "_SUCCESS"
MANIFEST = "manifest.json"
CATALOGUE = "catalogue/part-0.parquet"
STATUS = "status.json"


def new_run_id(now: dt.datetime | None = None) -> str:
    """A sortable, unique run id such as ``20261127T131500Z-3f9a1c``."""
    now = now or dt.datetime.now(dt.UTC)
    return now.strftime("%Y%m%dT%H%M%SZ-") + np.random.default_rng().bytes(3).hex()


def shard_name(shard: int) -> str:
    """File name of one recommendation shard."""
    return f"shard-{shard:05d}.parquet"


@contextmanager
def writing(fs: fsspec.AbstractFileSystem, path: str, run_id: str) -> Iterator[None]:
    """Turn any storage failure into one line that says what failed and that nothing was published."""
    try:
        yield
    except Exception as exc:  # botocore, aiohttp and OS errors all mean the same here
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PublishError(f"run {run_id} not published: writing {fs.unstrip_protocol(path)} "
                           f"failed ({reason}); the previous run named by {LATEST} is untouched") from exc


@dataclass(frozen=True)
class ShardWriter:
    """Writes recommendation shards and other tables into one run folder; small and picklable, so Dask
    tasks write their own."""

    fs: fsspec.AbstractFileSystem
    folder: str
    run_id: str

    def __call__(self, shard: int, recs: pd.DataFrame) -> tuple[str, dict[str, int]]:
        """Write one shard (users with ``schema.shard_of(uid) == shard``) sorted by uid then rank;
        returns its path in the run and its rows and bytes for the manifest.

        Lists that arrive by uid, each user's in rank order (as the recommend step makes them), are
        not sorted again.
        """
        if schema.uid_runs(recs["uid"]) is None:
            recs = recs.sort_values(["uid", "rank"])
        return self.table(f"recommendations/{shard_name(shard)}", recs)

    def personalize(self, shard: int, recs: pd.DataFrame) -> tuple[str, dict[str, int]]:
        """Write one shard's lists as AWS Personalize batch-inference JSON Lines; its path, users and bytes."""
        relpath, data = personalize_name(shard), personalize_lines(recs)
        path = lake.join(self.folder, relpath)
        with writing(self.fs, path, self.run_id):
            size = atomic.write_bytes(self.fs, path, data)
        return relpath, {"rows": data.count(b"\n"), "bytes": size}

    def table(self, relpath: str, frame: pd.DataFrame) -> tuple[str, dict[str, int]]:
        """Write ``frame`` as Parquet at ``relpath`` in the run; returns the path and its rows and bytes."""
        path = lake.join(self.folder, relpath)
        with writing(self.fs, path, self.run_id):
            rows = atomic.write_table(self.fs, path, frame)
            return relpath, {"rows": rows, "bytes": int(self.fs.size(path))}


class RunWriter:
    """Writes one run folder; nothing it writes is visible to readers until :meth:`publish`."""

    def __init__(self, out_url: str, storage_options: dict[str, Any] | None = None, run_id: str | None = None):
        self.fs, self.root = lake.filesystem(out_url, storage_options)
        self.run_id = run_id or new_run_id()
        self.folder = lake.join(self.root, "runs", self.run_id)
        self.files: dict[str, dict[str, int]] = {}

    def write_table(self, relpath: str, frame: pd.DataFrame) -> str:
        """Write a Parquet file under the run folder and record it for the manifest."""
        self.record(*self.shard_writer().table(relpath, frame))
        return lake.join(self.folder, relpath)

    def write_bytes(self, relpath: str, data: bytes) -> str:
        """Write a non-tabular file (JSON, HTML, PNG) under the run folder."""
        path = lake.join(self.folder, relpath)
        with writing(self.fs, path, self.run_id):
            size = atomic.write_bytes(self.fs, path, data)
        self.files[relpath] = {"bytes": size}
        return path

    def shard_writer(self) -> ShardWriter:
        """A writer of this run's recommendation shards to hand to Dask tasks; :meth:`record` what it wrote."""
        return ShardWriter(self.fs, self.folder, self.run_id)

    def record(self, relpath: str, info: dict[str, int]) -> None:
        """Count a file written elsewhere (by a Dask task) into the manifest."""
        self.files[relpath] = info

    def write_unpublished(self, manifest: dict[str, Any]) -> None:
        """The manifest alone: the run folder is complete for a person to inspect, but neither _SUCCESS nor
        LATEST is written, so no reader, prune or later run takes it for a published run."""
        self._write_manifest(manifest, published=False)

    def publish(self, manifest: dict[str, Any]) -> None:
        """Manifest, then _SUCCESS, then LATEST: the run becomes visible in one small write."""
        self._write_manifest(manifest, published=True)
        with writing(self.fs, self.folder, self.run_id):
            go_live(self.fs, self.root, self.run_id)

    def _write_manifest(self, manifest: dict[str, Any], published: bool) -> None:
        manifest = {**manifest, "run_id": self.run_id, "published": published,
                    "files": dict(sorted(self.files.items()))}
        self.write_bytes(MANIFEST, json.dumps(manifest, indent=2, default=str).encode())

    def prune(self, keep: int) -> list[str]:
        """Delete all but the newest ``keep`` complete runs (never the one LATEST names)."""
        runs = sorted(complete_runs(self.fs, self.root))
        doomed = [r for r in runs[:-keep] if r != self.run_id]
        for run in doomed:
            self.fs.rm(lake.join(self.root, "runs", run), recursive=True)
        return doomed


def publish_run(fs: fsspec.AbstractFileSystem, root: str, run_id: str) -> None:
    """Make a written but held-back run the published one (``encore publish --force``): its manifest says
    so, then :func:`go_live`."""
    folder = lake.join(root, "runs", run_id)
    path = lake.join(folder, MANIFEST)
    if not fs.exists(path):
        raise NoPublishedRun(f"{fs.unstrip_protocol(folder)}: no such run (no {MANIFEST}); "
                             "`encore status` names the runs written")
    with fs.open(path, "rb") as fh:
        manifest = json.load(fh)
    if not manifest.get("published"):
        atomic.write_bytes(fs, path, json.dumps({**manifest, "published": True}, indent=2, default=str).encode())
    go_live(fs, root, run_id)


def go_live(fs: fsspec.AbstractFileSystem, root: str, run_id: str) -> None:
    """_SUCCESS in the run folder, then the LATEST pointer: the one small write that makes a run visible."""
    atomic.write_bytes(fs, lake.join(root, "runs", run_id, SUCCESS), b"")
    atomic.write_bytes(fs, lake.join(root, LATEST), run_id.encode())


def write_status(fs: fsspec.AbstractFileSystem, root: str, status: dict[str, Any]) -> None:
    """``status.json`` beside LATEST: the newest run's id, whether it is published, its guard result, counts
    and timings, for schedulers and dashboards that should not parse logs."""
    atomic.write_bytes(fs, lake.join(root, STATUS), json.dumps(status, indent=2, default=str).encode())


def read_status(fs: fsspec.AbstractFileSystem, root: str) -> dict[str, Any] | None:
    """The newest ``status.json`` (None before the first run that wrote one)."""
    path = lake.join(root, STATUS)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as fh:
        return json.load(fh)


def complete_runs(fs: fsspec.AbstractFileSystem, root: str) -> list[str]:
    """Run ids whose folder holds _SUCCESS."""
    folder = lake.join(root, "runs")
    if not fs.exists(folder):
        return []
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(folder, detail=False)
                  if fs.exists(lake.join(p, SUCCESS)))


class RecommendationStore:
    """Read a published run: one user's shard per lookup, similar items, popular lists, the manifest.

    >>> store = RecommendationStore("out")           # doctest: +SKIP
    >>> store.for_user("7ec3c81f-…")                 # doctest: +SKIP
    """

    def __init__(self, out_url: str, storage_options: dict[str, Any] | None = None, run_id: str | None = None):
        self.fs, self.root = lake.filesystem(out_url, storage_options)
        self.run_id = run_id or self.latest()
        self.folder = lake.join(self.root, "runs", self.run_id)

    def latest(self) -> str:
        """The run id named by LATEST."""
        path = lake.join(self.root, LATEST)
        if not self.fs.exists(path):
            raise NoPublishedRun(f"no published run under {self.root} (no {LATEST} file): run `encore run` first")
        with self.fs.open(path, "rb") as fh:
            return fh.read().decode().strip()

    def _read(self, relpath: str) -> pd.DataFrame:
        with self.fs.open(lake.join(self.folder, relpath), "rb") as fh:
            return pq.read_table(fh).to_pandas()

    @property
    def manifest(self) -> dict[str, Any]:
        with self.fs.open(lake.join(self.folder, MANIFEST), "rb") as fh:
            return json.load(fh)

    def shard_path(self, uid: str) -> str:
        """The one file that holds ``uid``'s recommendations."""
        shards = int(self.manifest["settings"]["output"]["shards"])
        return f"recommendations/{shard_name(schema.shard_of(uid, shards))}"

    def recommendation_shards(self) -> Iterator[pd.DataFrame]:
        """Every recommendation shard of the run, one at a time (a big run's lists outgrow memory)."""
        for relpath in sorted(f for f in self.manifest["files"] if f.startswith("recommendations/")):
            yield self._read(relpath)

    def recommendations(self) -> pd.DataFrame:
        """All lists of the run in one frame: for small runs, tests and notebooks."""
        return pd.concat(list(self.recommendation_shards()), ignore_index=True)

    def for_user(self, uid: str) -> pd.DataFrame:
        """``uid``'s list (rank order); an unknown uid gets the cold-start list with ``cold_start`` True."""
        part = self._read(self.shard_path(uid))
        mine = part[part["uid"] == uid].sort_values("rank").reset_index(drop=True)
        if len(mine):
            return mine.assign(cold_start=False)
        cold = self._read("popular/cold_start.parquet")
        return cold.assign(uid=uid, because=pd.NA, cold_start=True)[schema.RECOMMENDATION_COLUMNS + ["cold_start"]]

    def catalogue(self) -> pd.DataFrame | None:
        """Title, category, price and end time of the run's listings (None for runs published without it)."""
        if not self.fs.exists(lake.join(self.folder, CATALOGUE)):
            return None
        return self._read(CATALOGUE)

    def similar(self, item_id: int) -> pd.DataFrame:
        """Published neighbours of one listing."""
        table = pq.read_table(self.fs.open(lake.join(self.folder, "similar_items", "part-0.parquet"), "rb"),
                              filters=[("item_id", "=", int(item_id))])
        return table.to_pandas().sort_values("rank").reset_index(drop=True)

    def popular(self, kind: str = "global") -> pd.DataFrame:
        """A popular list: global, by_category, by_sub_category, trending or cold_start."""
        return self._read(f"popular/{kind}.parquet")
