"""Ingest and validate: the lake (or the legacy CSV extract) into clean interactions plus rejects.

Every input row ends up either accepted or in ``rejects`` with the first rule it broke, so
``rows_in == rows_accepted + rows_rejected`` holds per source and overall. Bids are read and validated
partition by partition on the Dask cluster; the catalogue and users are small and validated in pandas.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import partial
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from distributed import futures_of
from numba import njit

from encore import schema
from encore.config import Settings
from encore.io import lake, legacy
from encore.matrix import item_columns, row_major
from encore.models.base import current_client
from encore.validate import (
    IngestResult,
    Window,
    blank,
    count_source,
    first_reason,
    has_control,
    records_json,
    reject_frame,
    summarize,
)

# --- bids (per partition, on the cluster) ------------------------------------------------------------

def _read_bid_file(path: str, part: int, storage_options: dict[str, Any]) -> pd.DataFrame:
    """One day file as pandas plus its number in the window (``part``) and each row's position (``pos``).

    ``uid`` comes back dictionary-encoded, so its string rules and its hashing run once per distinct uid
    of the day rather than once per bid.
    """
    fs, _ = lake.filesystem(path, storage_options)
    with fs.open(path, "rb") as fh:
        footer = pq.ParquetFile(fh)
        found = footer.schema_arrow
        string_uid = "uid" in found.names and pa.types.is_string(found.field("uid").type)
        table = pq.ParquetFile(fh, metadata=footer.metadata,  # the footer read once (a round trip on S3)
                               read_dictionary=["uid"] if string_uid else None).read()  # uid as a dictionary
    if "uid" in table.column_names and not pa.types.is_dictionary(table.schema.field("uid").type):
        table = table.set_column(table.column_names.index("uid"), "uid", pc.dictionary_encode(table["uid"]))
    frame = table.to_pandas().reindex(columns=[f.name for f in schema.BIDS])
    return frame.assign(part=np.int32(part), pos=np.arange(len(frame), dtype=np.int64))


def _bid_meta(path: str, storage_options: dict[str, Any]) -> pd.DataFrame:
    """The empty frame Dask needs as ``meta`` for the day files: the dtypes of the first, with no uid categories.

    The first file's own ``iloc[:0]`` keeps its day's ~300 K uids as categories (10M rung), which Dask then
    hashed and shipped with the graph: 0.4 CPU-seconds of the client's.
    """
    meta = _read_bid_file(path, 0, storage_options).iloc[:0]
    if isinstance(meta["uid"].dtype, pd.CategoricalDtype):
        meta["uid"] = meta["uid"].cat.set_categories(meta["uid"].cat.categories[:0])
    return meta


def _per_row(per_category: np.ndarray, codes: np.ndarray, missing: Any) -> np.ndarray:
    """Spread a per-category array to rows; code -1 (missing uid) picks ``missing``."""
    return np.append(per_category, missing)[codes]


def validate_bids(frame: pd.DataFrame, listing_ids: np.ndarray, window: Window, max_amount: float,
                  losers: np.ndarray | None = None) -> pd.DataFrame:
    """Coerce types, key users and attach the first failed rule as ``reason``.

    A valid row repeating an earlier valid row's bid id in the same file, or listed in ``losers``
    (:func:`_row_key` of rows that lose to an earlier file), is a duplicate. Valid rows carry only
    numbers: ``ukey`` (:func:`schema.user_keys` of the stripped uid) stands for the user, ``part``/``pos``
    for the row; rejected rows also carry their record as JSON in ``raw``.
    """
    uid = frame["uid"].astype("category")
    codes = uid.cat.codes.to_numpy()
    raw_names = pd.Series(uid.cat.categories.astype(str))
    names = raw_names.str.strip()
    amount = pd.to_numeric(frame["amount"], errors="coerce")
    created = frame["created_at"]
    if not pd.api.types.is_datetime64_any_dtype(created):
        created = pd.to_datetime(created.astype("string"), errors="coerce", format="ISO8601")
    bid_id = pd.to_numeric(frame["bid_id"], errors="coerce")
    listing = pd.to_numeric(frame["listing_id"], errors="coerce")
    checks = [
        (schema.MISSING_ID, bid_id.isna() | listing.isna() | _per_row((names == "").to_numpy(), codes, True)),
        (schema.BAD_AMOUNT, amount.isna()),
        (schema.NEGATIVE_AMOUNT, amount <= 0),
        (schema.ABSURD_AMOUNT, amount > max_amount),
        (schema.BAD_TIMESTAMP, created.isna()),
        (schema.OUTSIDE_WINDOW, (created < window.start) | (created >= window.end)),
        (schema.CONTROL_CHARS, _per_row(has_control(raw_names).to_numpy(), codes, False)),
        (schema.UNKNOWN_LISTING, ~listing.isin(listing_ids)),
    ]
    reason = first_reason(checks, frame.index)
    ok = reason.isna()
    dup = ok & bid_id.where(ok).duplicated(keep="first")
    if losers is not None and len(losers):
        dup |= ok & np.isin(_row_key(frame["part"], frame["pos"]), losers)
    reason = reason.mask(dup, schema.DUPLICATE_BID)
    return pd.DataFrame({
        "bid_id": bid_id.fillna(-1).astype("int64"),
        "ukey": _per_row(schema.user_keys(names), codes, 0),
        "listing_id": listing.fillna(-1).astype("int64"),
        "amount": amount.astype("float64"),
        "created_at": created.astype("datetime64[us]"),
        "part": frame["part"].astype("int32"),
        "pos": frame["pos"].astype("int64"),
        "raw": records_json(frame.drop(columns=["part", "pos"]), reason.notna()),
        "reason": reason,
    }, index=frame.index)


def _row_key(part: pd.Series | np.ndarray, pos: pd.Series | np.ndarray) -> np.ndarray:
    """One int64 per input row: file number in the high bits, position in the low 40."""
    return (np.asarray(part, dtype=np.int64) << 40) | np.asarray(pos, dtype=np.int64)


def _id_range(path: str, storage_options: dict[str, Any]) -> tuple[float, float]:
    """Smallest and largest bid id of one file, from its ``bid_id`` column alone (NaN, NaN when none)."""
    fs, _ = lake.filesystem(path, storage_options)
    with fs.open(path, "rb") as fh:
        ids = pd.to_numeric(pq.read_table(fh, columns=["bid_id"]).column(0).to_pandas(), errors="coerce")
    return float(ids.min()), float(ids.max())


def _inside(ids: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """True where an id lies in at least one closed interval ``[lo, hi]``."""
    if len(lo) == 0:
        return np.zeros(len(ids), dtype=bool)
    order = np.argsort(lo)
    lo, reach = lo[order], np.maximum.accumulate(hi[order])  # furthest end among intervals starting before
    at = np.searchsorted(lo, ids, side="right") - 1
    return (at >= 0) & (ids <= reach[at.clip(min=0)])


def _overlaps(ranges: np.ndarray) -> np.ndarray:
    """Files whose id range meets another file's."""
    return np.array([_inside(ranges[i], np.delete(ranges[:, 0], i), np.delete(ranges[:, 1], i)).any()
                     for i in range(len(ranges))], dtype=bool)


def _candidates(path: str, part: int, storage_options: dict[str, Any], validate: Callable[..., pd.DataFrame],
                others: np.ndarray) -> pd.DataFrame:
    """Valid rows of one file whose bid id repeats in it or falls inside another file's range."""
    good = validate(_read_bid_file(path, part, storage_options))
    good = good[good["reason"].isna() | (good["reason"] == schema.DUPLICATE_BID)]
    maybe = good["bid_id"].duplicated(keep=False).to_numpy() | _inside(good["bid_id"].to_numpy(), *others.T)
    return good.loc[maybe, ["bid_id", "part", "pos"]]


def cross_file_losers(files: list[str], storage_options: dict[str, Any],
                      validate: Callable[..., pd.DataFrame]) -> np.ndarray:
    """Row keys of valid rows whose bid id was already seen in an earlier file (by file, then position).

    Bid ids grow with time, so day files rarely share a range: a first pass reads only the ``bid_id``
    column for each file's [min, max]; only files whose ranges meet are read in full, and only their
    candidate rows reach the client (shuffling every id took 6.9 s of the 5M rung).
    """
    ranges = np.array(dask.compute(*[dask.delayed(_id_range)(f, storage_options) for f in files]),
                      dtype=np.float64).reshape(-1, 2)
    meet = _overlaps(ranges)
    if not meet.any():
        return np.empty(0, np.int64)
    jobs = [dask.delayed(_candidates)(files[i], i, storage_options, validate, np.delete(ranges, i, axis=0))
            for i in np.flatnonzero(meet)]
    rows = pd.concat(dask.compute(*jobs), ignore_index=True)
    rows = rows[rows["bid_id"].duplicated(keep=False)].sort_values(["bid_id", "part", "pos"])
    losers = rows[rows.duplicated("bid_id")]
    return np.sort(_row_key(losers["part"], losers["pos"]))


def _row_labels(files: list[str], part: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``<day folder>/<file>:<position>`` for rejected rows, as published in ``rejects``."""
    rel = pd.Series([f.rsplit("/bids/", 1)[-1] for f in files]).to_numpy(dtype=object)
    return (pd.Series(rel[part]) + ":" + pd.Series(pos).astype(str)).to_numpy(dtype=object)


KEY_SPAN = (-(2**63), 2**63 - 1)  # user keys are hashes: spread evenly over the whole int64 range


def _by_user(good: dd.DataFrame) -> dd.DataFrame:
    """Valid bids moved so that each partition holds one contiguous range of user keys (one shuffle).

    Then interactions and daily figures are plain pandas per partition with no combine step (5M rung,
    2 workers: 9.5 s + 4.4 s for Dask's grouped aggregations of the two), and the partitions in order
    are sorted by user key, so the client never sorts the interactions.
    """
    lo, hi = KEY_SPAN
    divisions = [lo + (hi - lo) * i // good.npartitions for i in range(good.npartitions + 1)]
    return good.set_index("ukey", divisions=divisions).reset_index()


def _pair_runs(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The order sorting rows by (first, second), both codes below 2³¹, and where each distinct pair starts
    in that order: one argsort of a packed key, skipped when rows are sorted already."""
    order = row_major(first, second)
    order = np.arange(len(first)) if order is None else order
    key = (np.asarray(first, np.int64)[order] << 32) | np.asarray(second, np.int64)[order]
    return order, np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, np.int64)


def interactions_of(bids: pd.DataFrame, recent_from: pd.Timestamp, previous_from: pd.Timestamp) -> pd.DataFrame:
    """Bids to one row per (user key, listing), sorted: counts, spend, first/last time and trending flags.

    Sorted codes and ``reduceat`` rather than a pandas groupby with seven aggregations (3x faster).
    """
    user, keys = key_codes(bids["ukey"].to_numpy(np.int64))
    item, listings = pd.factorize(bids["listing_id"].to_numpy(np.int64), sort=True)
    order, start = _pair_runs(user, item)
    amount = bids["amount"].to_numpy(np.float64)[order]
    at = bids["created_at"].to_numpy("datetime64[us]")[order]
    recent = (at >= np.datetime64(recent_from, "us")).astype(np.int8)
    previous = ((at >= np.datetime64(previous_from, "us")) & (recent == 0)).astype(np.int8)
    stamp = at.view(np.int64)

    def per_pair(ufunc: np.ufunc, values: np.ndarray) -> np.ndarray:
        return ufunc.reduceat(values, start) if len(start) else values[:0]

    return pd.DataFrame({
        "ukey": keys[user[order[start]]], "listing_id": np.asarray(listings, np.int64)[item[order[start]]],
        "n_bids": np.diff(np.append(start, len(order))).astype(np.int32),
        "spend": per_pair(np.add, amount), "max_amount": per_pair(np.maximum, amount),
        "first_at": per_pair(np.minimum, stamp).view("datetime64[us]"),
        "last_at": per_pair(np.maximum, stamp).view("datetime64[us]"),
        "recent": per_pair(np.maximum, recent), "previous": per_pair(np.maximum, previous)})


def daily_of(bids: pd.DataFrame) -> pd.DataFrame:
    """Per day: bids, distinct bidders and new bidders (first bid in the window that day).

    Partitions of :func:`_by_user` hold disjoint users, so the figures of all partitions simply add up.
    """
    user, _ = key_codes(bids["ukey"].to_numpy(np.int64))
    day = bids["created_at"].to_numpy("datetime64[us]").astype("datetime64[D]").view(np.int64)
    first_day = day.min() if len(day) else 0
    order, start = _pair_runs(user, day - first_day)
    pair_user, pair_day = user[order[start]], day[order[start]] - first_day
    bids_on = np.bincount(pair_day, np.diff(np.append(start, len(order))))
    new_user = np.r_[True, pair_user[1:] != pair_user[:-1]] if len(pair_user) else np.zeros(0, bool)
    new = np.bincount(pair_day[new_user], minlength=len(bids_on))
    days = np.flatnonzero(bids_on > 0)
    return pd.DataFrame({"date": (first_day + days).astype("datetime64[D]").astype("datetime64[us]"),
                         "bids": bids_on[days].astype(np.int64), "bidders": np.bincount(pair_day)[days],
                         "new_bidders": new[days].astype(np.int64)})


def _names_in_file(path: str, part: int, storage_options: dict[str, Any], wanted: np.ndarray) -> pd.DataFrame:
    """Distinct (ukey, uid) of one day file for the keys in ``wanted`` (sorted)."""
    uid = _read_bid_file(path, part, storage_options)["uid"].astype("category")
    names = pd.Series(uid.cat.categories.astype(str)).str.strip()
    keys = schema.user_keys(names)
    hit = np.isin(keys, wanted)
    return pd.DataFrame({"ukey": keys[hit], "uid": names[hit].to_numpy(dtype=object)})


def user_names(keys: np.ndarray, snapshot: tuple[pa.Array, np.ndarray], files: list[str],
               storage_options: dict[str, Any]) -> pa.Array:
    """The uid of each user key in ``keys``: from the users snapshot (names and keys as
    :func:`users_snapshot` returns them), or (bidders missing from it) the bids.

    Raises ``ValueError`` on a key collision, so two users can never be merged silently.
    """
    snap, snap_keys = snapshot
    at = np.searchsorted(snap_keys, keys).clip(max=max(len(snap_keys) - 1, 0))
    found = snap_keys[at] == keys if len(snap_keys) else np.zeros(len(keys), dtype=bool)
    if found.all():
        return snap.take(pa.array(at))
    names = np.empty(len(keys), dtype=object)
    names[found] = snap.take(pa.array(at[found])).to_numpy(zero_copy_only=False)
    wanted = np.sort(keys[~found])
    extra = dask.compute(*[dask.delayed(_names_in_file)(f, i, storage_options, wanted) for i, f in enumerate(files)])
    extra = pd.concat(extra, ignore_index=True)
    bid_names, bid_keys = distinct_by_key(extra["uid"].to_numpy(dtype=object), extra["ukey"].to_numpy())
    names[~found] = bid_names[np.searchsorted(bid_keys, keys[~found])]
    return pa.array(names, pa.string())


def users_snapshot(path: str, storage_options: dict[str, Any]) -> tuple[int, pd.DataFrame, pa.Array, np.ndarray]:
    """The users snapshot's row count, rejects, and distinct stripped uids with their keys, sorted by key.

    A Dask task of its own beside the bids (8.2 M users at 100 M bids): names never enter the client,
    and the uids travel as one Arrow array rather than a Python string each.
    """
    fs, root = lake.filesystem(path, storage_options)
    users = lake.read_snapshot(fs, root, "users")
    _, rejects = validate_users(users)
    names, keys = distinct_by_key(users["uid"].astype("string").str.strip().dropna().to_numpy(dtype=object))
    return len(users), rejects, pa.array(names, pa.string()), keys


def distinct_by_key(names: np.ndarray, keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``names`` and their :func:`schema.user_keys` (given or computed), sorted by key.

    Repeated names are found through their keys, a sort of integers, rather than by hashing the strings
    again (a users snapshot of 8.2 M uids: 5 s in ``drop_duplicates``). Raises ``ValueError`` when two
    different names share a key, rather than merge two users.
    """
    keys = schema.user_keys(names) if keys is None else keys
    order = np.argsort(keys, kind="stable")
    names, keys = names[order], keys[order]
    again = np.flatnonzero(keys[1:] == keys[:-1]) + 1  # rows repeating the key of the row before
    if (names[again] != names[again - 1]).any():
        raise ValueError("two uids share a 64-bit user key; rename one user or report this as a bug")
    keep = np.ones(len(keys), dtype=bool)
    keep[again] = False
    return names[keep], keys[keep]


def _winners(item: np.ndarray, n_items: int, max_amount: np.ndarray, last_at: np.ndarray, user: np.ndarray,
             sold: np.ndarray) -> np.ndarray:
    """A sold listing's winner: the highest bidder, the earliest last bid among equals, then the lowest user row.

    ``item`` is each row's listing as a code below ``n_items``; one pass keeps each listing's best row
    (:func:`_best_rows`, numba): ``np.maximum.at`` and a sort of the rows at each top amount took 0.75 s of
    the 10M rung's client, a pandas grouped transform 14 s of the 100M rung. Amounts of valid bids are never NaN.
    """
    best = _best_rows(np.asarray(item, np.int64), int(n_items), np.asarray(max_amount, np.float64),
                      np.asarray(last_at).view(np.int64), np.asarray(user, np.int64), np.asarray(sold, np.bool_))
    won = np.zeros(len(item), dtype=bool)
    won[best[best >= 0]] = True
    return won


@njit(nogil=True, cache=True)
def _best_rows(item, n_items, amount, last_at, user, sold):
    """Per listing, the sold row with the highest amount, then the earliest last bid, then the lowest user (-1: none)."""
    best = np.full(n_items, -1, np.int64)
    for i in range(len(item)):
        if not sold[i]:
            continue
        b = best[item[i]]
        if b < 0 or amount[i] > amount[b] or (amount[i] == amount[b] and (
                last_at[i] < last_at[b] or (last_at[i] == last_at[b] and user[i] < user[b]))):
            best[item[i]] = i
    return best


# --- catalogue and users (small, pandas) ---------------------------------------------------------------

def validate_listings(listings: pd.DataFrame, max_amount: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clean catalogue and its rejects."""
    ids = pd.to_numeric(listings["listing_id"], errors="coerce")
    price = pd.to_numeric(listings["price"], errors="coerce")
    text = listings[["title", "category", "sub_category"]].astype("string")
    checks = [
        (schema.MISSING_ID, ids.isna()),
        (schema.NEGATIVE_AMOUNT, price < 0),
        (schema.ABSURD_AMOUNT, price > max_amount),
        (schema.CONTROL_CHARS, text.apply(has_control).any(axis=1)),
        ("unknown_status", ~listings["status"].isin(schema.STATUSES)),
        ("duplicate_listing_id", ids.duplicated() & ids.notna()),
    ]
    reason = first_reason(checks, listings.index)
    bad = reason.notna()
    clean = listings[~bad].assign(listing_id=ids[~bad].astype("int64"), price=price[~bad])
    for col in ("category", "sub_category", "title"):
        clean[col] = clean[col].astype("string").str.strip().fillna("unknown")
    rejects = reject_frame("listings", pd.Series(np.flatnonzero(bad)), reason[bad], listings[bad])
    return clean.reset_index(drop=True), rejects


def validate_users(users: pd.DataFrame) -> tuple[int, pd.DataFrame]:
    """Count of valid users and rejects (missing id or name, control characters); names never leave."""
    checks = [
        (schema.MISSING_ID, blank(users["uid"])),
        ("missing_name", blank(users["user_name"])),
        (schema.CONTROL_CHARS, has_control(users["uid"])),
    ]
    reason = first_reason(checks, users.index)
    bad = reason.notna()
    return int((~bad).sum()), reject_frame("users", pd.Series(np.flatnonzero(bad)), reason[bad], users[bad])


# --- the stage -----------------------------------------------------------------------------------------

def resolve_window(settings: Settings, days: list[dt.date]) -> Window:
    """The run window: ``window_days`` ending on ``run_date`` (default: newest bid day)."""
    if not days and settings.ingest.run_date is None:
        raise FileNotFoundError(f"no bid partitions under {settings.lake.path}/bids")
    return Window.ending(settings.ingest.run_date or days[-1], settings.ingest.window_days)


def ingest_lake(settings: Settings) -> IngestResult:
    """Read and validate the lake; aggregate valid bids into interactions on the Dask cluster."""
    opts = settings.lake.storage_options
    fs, root = lake.filesystem(settings.lake.path, opts)
    all_days = lake.bid_days(fs, root)
    window = resolve_window(settings, all_days)
    listings, listing_rejects = validate_listings(lake.read_snapshot(fs, root, "listings"), settings.ingest.max_amount)
    client = current_client()
    users = client.submit(users_snapshot, settings.lake.path, opts, pure=False) if client else None
    days = [d for d in all_days if window.start.date() <= d < window.end.date()]
    files = [fs.unstrip_protocol(p) for p in lake.bid_files(fs, root, days)]
    if not files:
        raise FileNotFoundError(f"no bid files in the window {window.start.date()}..{window.end.date()}")
    ids = listings["listing_id"].to_numpy()
    validate = partial(validate_bids, listing_ids=ids, window=window, max_amount=settings.ingest.max_amount)
    losers = cross_file_losers(files, opts, validate)
    meta = _bid_meta(files[0], opts)
    raw = dd.from_map(_read_bid_file, files, range(len(files)), storage_options=opts, meta=meta,
                      enforce_metadata=False)
    # The id arrays go into the graph once, as delayed values, not once per partition.
    bids = raw.map_partitions(validate_bids, dask.delayed(ids), window, settings.ingest.max_amount,
                              dask.delayed(losers), meta=validate(meta))
    with dask.config.set({"dataframe.shuffle.method": "tasks"}):  # p2p's start-up costs more than it saves here
        bid_rejects, rows_in, daily, inter = _reduce(bids, files, settings, window)
    n_users, user_rejects, *snapshot = users.result() if users else users_snapshot(settings.lake.path, opts)
    rejects = pd.concat([bid_rejects, listing_rejects, user_rejects], ignore_index=True)
    counts = summarize({"bids": count_source("bids", rows_in, rejects),
                        "listings": count_source("listings", len(listings) + len(listing_rejects), rejects),
                        "users": count_source("users", n_users, rejects)})
    user, keys = key_codes(inter["ukey"].to_numpy())
    names = pd.Index(pd.array(user_names(keys, tuple(snapshot), files, opts), dtype="str"), name="uid")
    uid = pd.Categorical.from_codes(user, dtype=pd.CategoricalDtype(names), validate=False)  # codes made here
    inter = finish_interactions(inter.drop(columns="ukey").assign(uid=uid), listings)
    return IngestResult(inter, listings, rejects, counts, window, daily=daily)


REJECT_FIELDS = ["part", "pos", "reason", "raw"]
VALID_FIELDS = ["ukey", "listing_id", "amount", "created_at"]


def _rows_where(frame: pd.DataFrame, valid: bool, columns: list[str]) -> pd.DataFrame:
    """The valid (or rejected) rows of one validated partition, with ``columns`` only.

    One task per partition rather than Dask's boolean indexing, whose expression checks cost the client
    0.8 CPU-seconds on the 10M rung.
    """
    return frame.loc[frame["reason"].isna().to_numpy() == valid, columns]


def _reduce(bids: dd.DataFrame, files: list[str], settings: Settings, window: Window
            ) -> tuple[pd.DataFrame, int, pd.DataFrame, pd.DataFrame]:
    """Bid rejects, rows in, daily figures and interactions (by user key) in one pass over the bids.

    Nothing is persisted: each day file is read, validated, split to the shuffle and dropped, so
    worker memory holds the shuffled valid bids, not every input row twice (100 M bids overflowed
    12 GB workers when the validated bids were persisted).
    """
    bad = bids.map_partitions(_rows_where, False, REJECT_FIELDS, meta=bids._meta[REJECT_FIELDS])
    recent_from = window.end - pd.Timedelta(days=settings.model.trending_days)
    users = _by_user(bids.map_partitions(_rows_where, True, VALID_FIELDS, meta=bids._meta[VALID_FIELDS]))
    inter = users.map_partitions(interactions_of, recent_from,
                                 recent_from - pd.Timedelta(days=settings.model.trending_days))
    client = current_client()
    if client is None:
        bad_rows, rows_in, daily, inter = dask.compute(bad, bids.map_partitions(len).sum(),
                                                       users.map_partitions(daily_of), inter)
    else:
        bad, rows_in, daily, inter = dask.persist(bad, bids.map_partitions(len).sum(),
                                                  users.map_partitions(daily_of), inter)
        bad_rows, rows_in, daily = dask.compute(bad, rows_in, daily)
        inter = gather_frame(client, inter)
    bid_rejects = pd.DataFrame({"source": "bids",
                                "row": _row_labels(files, bad_rows["part"].to_numpy(), bad_rows["pos"].to_numpy()),
                                "reason": bad_rows["reason"].astype(str).to_numpy(),
                                "record": bad_rows["raw"].astype(str).to_numpy()})
    daily = daily.groupby("date").sum().sort_index().reset_index()
    return bid_rejects, int(rows_in), daily, inter.reset_index(drop=True)


def key_codes(ukey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's user as a code (int32) in key order, and the distinct keys, like a sorted factorize.

    Partitions of :func:`_by_user` arrive sorted by key, so runs of equal keys are the users: no hash
    table over ~90 M rows (100 M bids).
    """
    if len(ukey) > 1 and not bool(np.all(ukey[1:] >= ukey[:-1])):
        user, keys = pd.factorize(ukey, sort=True)
        return user.astype(np.int32), keys
    new = np.ones(len(ukey), dtype=bool)
    new[1:] = ukey[1:] != ukey[:-1]
    return np.cumsum(new, dtype=np.int32) - 1, ukey[new]


def gather_frame(client, frame: dd.DataFrame) -> pd.DataFrame:
    """A persisted Dask frame of plain numpy columns into the client, one partition at a time.

    ``compute`` holds every partition twice, as pieces and as their concatenation, on the workers
    while sending and in the client while joining (100 M bids: a 12 GB worker died sending 5 GB of
    interactions). Here each partition is copied into preallocated columns and released at once.
    """
    futures = sorted(futures_of(frame), key=lambda f: f.key[1])  # keys are (name, partition number)
    sizes = client.gather(client.map(len, futures, pure=False))
    columns = {name: np.empty(sum(sizes), dtype) for name, dtype in frame.dtypes.items()}
    at = 0
    for i, size in enumerate(sizes):
        part, futures[i] = futures[i].result(), None
        for name, values in columns.items():
            values[at:at + size] = part[name].to_numpy()
        at += size
        del part
    return pd.DataFrame(columns, copy=False)


def finish_interactions(inter: pd.DataFrame, listings: pd.DataFrame) -> pd.DataFrame:
    """Flag winners, sort by (user row, item), join the catalogue, order columns as ``schema.INTERACTION_COLUMNS``.

    ``uid`` is categorical: its categories are the matrix rows (one per user), its codes the row of each
    interaction, so nothing downstream handles a string per interaction.
    """
    inter = inter.rename(columns={"listing_id": "item_id"})
    user = pd.Categorical(inter["uid"]).codes
    catalogue = listings.set_index("listing_id")[["category", "sub_category", "price", "status"]].sort_index()
    catalogue = catalogue.astype({"category": "category", "sub_category": "category"})
    at = item_columns(catalogue.index, inter["item_id"])  # every item is there: ingest rejected the others
    sold = (catalogue["status"] == "sold").to_numpy()[at]
    won = _winners(at, len(catalogue), inter["max_amount"].to_numpy(dtype=float), inter["last_at"].to_numpy(),
                   user, sold)
    order = row_major(user, at)
    if order is not None:
        inter, won, at = inter.take(order).reset_index(drop=True), won[order], at[order]
    joined = pd.DataFrame({c: catalogue[c].array.take(at) for c in ("category", "sub_category", "price")})
    inter = pd.concat([inter.assign(won=won), joined], axis=1)  # no copy of the interactions (copy on write)
    extra = [c for c in inter.columns if c not in schema.INTERACTION_COLUMNS]
    return inter[schema.INTERACTION_COLUMNS + extra]


def ingest(settings: Settings) -> IngestResult:
    """Ingest the configured input: the legacy CSV when ``lake.legacy_csv`` is set, else the lake."""
    if settings.lake.legacy_csv:
        return legacy.ingest_legacy(settings)
    return ingest_lake(settings)
