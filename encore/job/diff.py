"""Run over run: what changed between two run folders (users, the lists themselves, new listings, figures).

Pure pandas and numpy over the files a run publishes, so it reads any run folder, published or not: the
shards are found by name (``recommendations/shard-*.parquet``), the manifest and catalogue are used when
present. List agreement is the Jaccard index of each user's two lists and their rank-biased overlap (RBO)
as LensKit computes it (``lenskit.metrics.reranking.rank_biased_overlap``, after Webber, Moffat and Zobel,
"A similarity measure for indefinite rankings", ACM TOIS 28(4), 2010): the agreement at each depth
``d = 1..depth``, ``|A[:d] ∩ B[:d]| / d``, averaged with geometric weights ``p^(d-1)`` normalised by their
sum over the depths evaluated, so identical lists score 1 and disjoint lists 0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from encore.errors import InputError, NoPublishedRun
from encore.io import lake
from encore.io.store import CATALOGUE, LATEST, MANIFEST, complete_runs

SHARDS = "recommendations/shard-*.parquet"
LIST_COLUMNS = ["uid", "rank", "item_id", "score", "source"]
QUANTILES = {"p10": 0.1, "p50": 0.5, "p90": 0.9}
RBO_P = 0.9


@dataclass
class RunLists:
    """What one run folder holds for a comparison: its lists, its catalogue's ids, its manifest."""

    folder: str
    lists: pd.DataFrame
    catalogue: np.ndarray | None
    manifest: dict[str, Any] | None

    @property
    def run_id(self) -> str:
        return self.folder.rstrip("/").rsplit("/", 1)[-1]


def _read_parquet(fs: fsspec.AbstractFileSystem, path: str, columns: list[str]) -> pd.DataFrame:
    """``columns`` of one Parquet file; a file that cannot be read is one line naming it."""
    try:
        with fs.open(path, "rb") as fh:
            return pq.read_table(fh, columns=columns).to_pandas()
    except (OSError, ValueError, KeyError) as exc:  # Arrow's errors derive from these
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{lake.shown(fs, path)}: cannot read columns {', '.join(columns)} ({reason}); "
                         "compare only run folders written by `encore run`") from exc


def read_run(fs: fsspec.AbstractFileSystem, run_folder: str) -> RunLists:
    """Every shard of the run folder (found by name, not by the manifest), its catalogue ids and manifest."""
    run_folder = run_folder.rstrip("/")
    paths = sorted(fs.glob(lake.join(run_folder, SHARDS)))
    if not paths:
        raise InputError(f"{lake.shown(fs, run_folder)} has no recommendation shards ({SHARDS}): "
                         "name a run folder whose recommend stage finished")
    lists = pd.concat([_read_parquet(fs, p, LIST_COLUMNS) for p in paths], ignore_index=True)
    lists["uid"] = lists["uid"].astype(str)
    lists["source"] = lists["source"].astype(str)
    catalogue_path = lake.join(run_folder, CATALOGUE)
    catalogue = (_read_parquet(fs, catalogue_path, ["listing_id"])["listing_id"].to_numpy()
                 if fs.exists(catalogue_path) else None)
    return RunLists(run_folder, lists, catalogue, _read_manifest(fs, run_folder))


def _read_manifest(fs: fsspec.AbstractFileSystem, run_folder: str) -> dict[str, Any] | None:
    """The run's manifest, or None while it is not written."""
    path = lake.join(run_folder, MANIFEST)
    if not fs.exists(path):
        return None
    try:
        with fs.open(path, "rb") as fh:
            return json.load(fh)
    except ValueError as exc:
        raise InputError(f"{lake.shown(fs, path)} is not valid JSON ({exc}); "
                         "remove it or rerun the job that wrote this run") from exc


def run_figures(fs: fsspec.AbstractFileSystem, run_folder: str) -> dict[str, Any]:
    """The figures of one run, read from its folder (see :func:`figures_of`)."""
    return figures_of(read_run(fs, run_folder))


def figures_of(run: RunLists) -> dict[str, Any]:
    """Users served, rows, catalogue coverage, share of each source, score quantiles; and from the manifest
    (None or empty without one) the rejected-row ratio, rows in and each stage's seconds."""
    lists = run.lists
    items = int(lists["item_id"].nunique())
    scores = lists["score"].astype(float)
    counts = (run.manifest or {}).get("counts", {})
    rows_in = counts.get("rows_in")
    return {
        "users": int(lists["uid"].nunique()),
        "recommendations": len(lists),
        "distinct_items": items,
        "coverage": None if run.catalogue is None or not len(run.catalogue) else items / len(run.catalogue),
        "source_share": {str(k): float(v) for k, v in lists["source"].value_counts(normalize=True).sort_index().items()},
        "score": {name: (float(scores.quantile(q)) if scores.notna().any() else None) for name, q in QUANTILES.items()},
        "rejected_ratio": (counts["rows_rejected"] / rows_in) if rows_in and "rows_rejected" in counts else None,
        "rows_in": rows_in,
        "stage_seconds": {str(k): float(v) for k, v in (run.manifest or {}).get("timings", {}).items()},
    }


def positions(lists: pd.DataFrame, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's user code, item and 1-based place in its user's list (by rank; a repeated item counts once,
    at its best rank): the three arrays the overlaps are computed from."""
    items = lists["item_id"].to_numpy(np.int64)
    order = np.lexsort((lists["rank"].to_numpy(), codes))
    users, items = codes[order], items[order]
    keep = ~pd.DataFrame({"u": users, "i": items}).duplicated().to_numpy()
    users, items = users[keep], items[keep]
    starts = np.r_[True, users[1:] != users[:-1]]
    first = np.maximum.accumulate(np.where(starts, np.arange(len(users)), 0))
    return users, items, np.arange(len(users)) - first + 1


def overlap_by_depth(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...], n_users: int, depth: int) -> np.ndarray:
    """``out[u, d]`` = items common to user u's first d places in A and in B (d = 0..depth), from the
    (user, item, place) arrays of :func:`positions`.

    An item in both lists joins the overlap at the deeper of its two places: sorting both sides' rows by
    (user, item) puts each common item's two rows side by side, and a cumulative count of those depths
    gives every depth's overlap at once, without a per-user loop.
    """
    users = np.concatenate([a[0], b[0]])
    items = np.concatenate([a[1], b[1]])
    place = np.concatenate([a[2], b[2]])
    order = np.lexsort((items, users))
    users, items, place = users[order], items[order], place[order]
    pair = (users[1:] == users[:-1]) & (items[1:] == items[:-1])
    joins = np.maximum(place[1:], place[:-1])[pair]
    keep = joins <= depth
    flat = users[1:][pair][keep] * (depth + 1) + joins[keep]
    counts = np.bincount(flat, minlength=n_users * (depth + 1)).reshape(n_users, depth + 1)
    return np.cumsum(counts, axis=1)


def rbo_from_overlaps(overlaps: np.ndarray, p: float = RBO_P) -> np.ndarray:
    """Rank-biased overlap per row of :func:`overlap_by_depth`'s matrix, as LensKit defines it."""
    depth = overlaps.shape[1] - 1
    d = np.arange(1, depth + 1)
    weights = p ** (d - 1.0)
    return (overlaps[:, 1:] / d) @ weights / weights.sum()


def rbo(a: list, b: list, p: float = RBO_P, depth: int | None = None) -> float:
    """Rank-biased overlap of two ranked lists of distinct items, to ``depth`` (default the longer list)."""
    depth = depth or max(len(a), len(b))
    ids = {item: k for k, item in enumerate(dict.fromkeys([*a, *b]))}
    a_side, b_side = ((np.zeros(len(x), np.int64), np.array([ids[i] for i in x], np.int64), np.arange(1, len(x) + 1))
                      for x in (a, b))
    return float(rbo_from_overlaps(overlap_by_depth(a_side, b_side, 1, depth), p)[0])


def list_agreement(a: pd.DataFrame, b: pd.DataFrame, p: float = RBO_P, depth: int | None = None) -> dict[str, Any]:
    """Users gained and lost, and for users in both runs the mean Jaccard index and RBO of their two lists.

    The RBO depth defaults to the longest list of either run (``recommend.n``).
    """
    codes, uids = pd.factorize(pd.concat([a["uid"], b["uid"]], ignore_index=True))
    codes = codes.astype(np.int64)
    n = len(uids)
    in_a = np.bincount(codes[: len(a)], minlength=n) > 0
    in_b = np.bincount(codes[len(a):], minlength=n) > 0
    both = in_a & in_b
    pa, pb = positions(a, codes[: len(a)]), positions(b, codes[len(a):])
    depth = depth or int(max(pa[2].max(initial=0), pb[2].max(initial=0)))
    overlaps = overlap_by_depth(pa, pb, n, depth)
    common = overlaps[:, -1]
    union = np.bincount(pa[0], minlength=n) + np.bincount(pb[0], minlength=n) - common
    jaccard = common[both] / union[both]
    rbos = rbo_from_overlaps(overlaps[both], p)
    return {"users_gained": int((in_b & ~in_a).sum()), "users_lost": int((in_a & ~in_b).sum()),
            "users_in_both": int(both.sum()),
            "jaccard_mean": float(jaccard.mean()) if both.any() else None,
            "rbo_mean": float(rbos.mean()) if both.any() else None, "rbo_p": p, "rbo_depth": depth}


def new_listing_share(a: RunLists, b: RunLists) -> float | None:
    """Share of B's distinct recommended listings that A neither recommended nor had in its catalogue."""
    recommended = b.lists["item_id"].unique()
    if not len(recommended):
        return None
    known = a.lists["item_id"].to_numpy()
    if a.catalogue is not None:
        known = np.concatenate([known, a.catalogue])
    return float((~np.isin(recommended, known)).mean())


def flatten(figures: dict[str, Any]) -> dict[str, Any]:
    """Nested figures as one level: ``{"score": {"p50": x}}`` becomes ``{"score.p50": x}``."""
    flat: dict[str, Any] = {}
    for key, value in figures.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{sub}": v for sub, v in value.items()})
        else:
            flat[key] = value
    return flat


def side_by_side(yesterday: dict[str, Any], today: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every figure of either run as {today, yesterday, change}; a source missing from one run has share 0
    there, any other missing figure is None (and so is its change)."""
    sources = sorted(set(yesterday["source_share"]) | set(today["source_share"]))
    flat_y, flat_t = (flatten({**f, "source_share": {s: f["source_share"].get(s, 0.0) for s in sources}})
                      for f in (yesterday, today))
    out = {}
    for key in [*flat_t, *(k for k in flat_y if k not in flat_t)]:
        y, t = flat_y.get(key), flat_t.get(key)
        out[key] = {"today": t, "yesterday": y, "change": None if y is None or t is None else t - y}
    return out


def compare(fs: fsspec.AbstractFileSystem, folder_a: str, folder_b: str, p: float = RBO_P,
            depth: int | None = None) -> dict[str, Any]:
    """Run B (today) against run A (yesterday): users gained and lost, list agreement of the users in both,
    the share of B's listings new since A, and every figure of :func:`run_figures` side by side."""
    a, b = read_run(fs, folder_a), read_run(fs, folder_b)
    return {"yesterday": a.run_id, "today": b.run_id, **list_agreement(a.lists, b.lists, p, depth),
            "new_listing_share": new_listing_share(a, b),
            "figures": side_by_side(figures_of(a), figures_of(b))}


def runs_to_compare(fs: fsspec.AbstractFileSystem, root: str, run_a: str | None = None,
                    run_b: str | None = None) -> tuple[str, str]:
    """The two run folders to compare: B defaults to the run LATEST names, A to the complete run before B."""
    if run_b is None:
        latest = lake.join(root, LATEST)
        if not fs.exists(latest):
            raise NoPublishedRun(f"no published run under {root} (no {LATEST} file): run `encore run` first")
        with fs.open(latest, "rb") as fh:
            run_b = fh.read().decode().strip()
    if run_a is None:
        before = [r for r in complete_runs(fs, root) if r < run_b]
        if not before:
            raise InputError(f"no complete run before {run_b} under {lake.shown(fs, lake.join(root, 'runs'))} "
                             "to compare with: name both runs, `encore diff RUN_A RUN_B`")
        run_a = before[-1]
    folders = []
    for run_id in (run_a, run_b):
        folder = lake.join(root, "runs", run_id)
        if not fs.isdir(folder):
            raise InputError(f"no run folder {lake.shown(fs, folder)}: name a run id listed under "
                             f"{lake.shown(fs, lake.join(root, 'runs'))}")
        folders.append(folder)
    return folders[0], folders[1]


__all__ = ["RBO_P", "RunLists", "compare", "figures_of", "list_agreement", "new_listing_share", "rbo",
           "read_run", "run_figures", "runs_to_compare"]
