"""Ingest and validate: the lake (or the legacy CSV extract) into clean interactions plus rejects.

Every input row ends up either accepted or in ``rejects`` with the first rule it broke, so
``rows_in == rows_accepted + rows_rejected`` holds per source and overall. Bids are read and validated
partition by partition on the Dask cluster; the catalogue and users are small and validated in pandas.

What counts as input, for a lake that is not what it should be:

- A day file that cannot be used at all, bytes that are not Parquet (empty, truncated, corrupt:
  ``schema.UNREADABLE_FILE``) or no bid column of a required name and usable type
  (``schema.SCHEMA_MISMATCH``), is one input row and one reject: row ``<day folder>/<file>``, record the
  one-line error. Its rows cannot be counted (or, lacking a column, be bids), so the file stands for
  them; the other files are read as usual. ``counts["files_unreadable"]`` and
  ``counts["files_schema_mismatch"]`` count such files. A listings or users file like that stops the run
  (:class:`~encore.errors.InputError`): without the snapshot no bid can be checked.
- Columns may differ in type between day files: ids and amounts as integers, floats, decimals or text,
  times as timestamps of any unit, with or without a time zone, or ISO 8601 text, any of them
  dictionary-encoded. Each row is parsed on its own and rejected with the usual reasons when it does not
  parse; extra columns are ignored. Times become naive UTC (aware ones converted, naive ones taken as UTC);
  ``counts["timezones"]`` counts the files (bids in the window, listings, users) whose times were aware,
  naive or text.
- Day folders dated after today (UTC) plus ``ingest.future_tolerance_days`` never set the default
  ``run_date``; outside the window, their bids are not input of this run, like older days, and
  ``counts["ignored_future_days"]`` lists them. Bids stamped after the window's end are ``outside_window``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from operator import attrgetter
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from encore import schema
from encore.config import Settings
from encore.dist import frames
from encore.dist.blocks import brought_each, current_client, where_held
from encore.errors import InputError
from encore.io import lake
from encore.job import legacy, matrix
from encore.job.matrix import item_columns, row_major
from encore.job.validate import (
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
from encore.report import tables

# --- bids (per partition, on the cluster) ------------------------------------------------------------

BID_COLUMNS = [f.name for f in schema.BIDS]  # all required: a day file lacking one is rejected whole
FILE_REASON, FILE_ERROR = "file_reason", "file_error"  # columns of the one row standing for a rejected file
_NAN_TEXT = ("nan", "+nan", "-nan")  # text that pandas reads as NaN: a non-finite number, not an unparseable one
_INT64_LIMIT = 2.0**63
LISTING_TEXT = ("title", "category", "sub_category")
UNTITLED = "unknown"  # the title given to a listing with a blank one


class _FileRejected(Exception):
    """A day file that cannot be used at all: its reason and a one-line explanation."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def _usable(name: str, kind: pa.DataType) -> bool:
    """Whether a ``kind`` column can hold ``name``: numbers or text for ids and amounts, timestamps, dates or
    text for ``created_at``, text or numbers for ``uid``; an all-null column always (every row rejected)."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_null(kind) or lake.is_text(kind):
        return True
    if name == "created_at":
        return pa.types.is_timestamp(kind) or pa.types.is_date(kind)
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def _schema_problem(found: pa.Schema) -> str | None:
    """Why a day file's columns cannot be read as bids (a missing or unusable required column), or None."""
    missing = [c for c in BID_COLUMNS if c not in found.names]
    if missing:
        return f"missing column {', '.join(missing)} (the file has {', '.join(found.names) or 'no columns'})"
    twice = [c for c in BID_COLUMNS if found.names.count(c) > 1]
    if twice:
        return f"column {', '.join(twice)} appears more than once"
    unusable = [f"{c} is {found.field(c).type}" for c in BID_COLUMNS if not _usable(c, found.field(c).type)]
    return f"unusable column type: {'; '.join(unusable)}" if unusable else None


def _number_column(values: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    """An id or amount column made plain: dictionaries decoded, amounts (and decimal ids) as float64,
    integer ids as int64 (float64 when beyond it: then rejected per row). Text stays for pandas to parse."""
    values = lake.decoded(values)
    kind = values.type
    if pa.types.is_decimal(kind) or pa.types.is_floating(kind) or (name == "amount" and pa.types.is_integer(kind)):
        return values.cast(pa.float64(), safe=False)
    if pa.types.is_integer(kind) and kind != pa.int64():
        try:
            return values.cast(pa.int64())
        except pa.ArrowInvalid:  # uint64 beyond int64
            return values.cast(pa.float64(), safe=False)
    return values


def _uid_column(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """``uid`` dictionary-encoded; an all-null column as text, a dictionary holding a null re-encoded (pandas
    refuses null categories)."""
    if pa.types.is_null(values.type):
        values = values.cast(pa.string())
    if pa.types.is_dictionary(values.type):
        if not any(chunk.dictionary.null_count for chunk in values.chunks):
            return values
        values = lake.decoded(values)
    return pc.dictionary_encode(values)


def _bid_table(data: bytes) -> pa.Table:
    """A day file's bytes as a table of the bid columns: uid dictionary-encoded, numbers plain, times naive UTC.

    ``uid`` is decoded by Parquet straight into a dictionary, so its string rules and its hashing run once
    per distinct uid of the day rather than once per bid. Raises :class:`_FileRejected` for a file whose
    columns cannot be bids; Arrow's own errors for bytes that are not Parquet.
    """
    footer = pq.ParquetFile(pa.BufferReader(data))
    problem = _schema_problem(footer.schema_arrow)
    if problem:
        raise _FileRejected(schema.SCHEMA_MISMATCH, problem)
    text_uid = lake.is_text(footer.schema_arrow.field("uid").type)
    table = pq.ParquetFile(pa.BufferReader(data), metadata=footer.metadata,  # the footer parsed once
                           read_dictionary=["uid"] if text_uid else None).read(columns=BID_COLUMNS)
    return pa.table({"bid_id": _number_column(table["bid_id"], "bid_id"), "uid": _uid_column(table["uid"]),
                     "listing_id": _number_column(table["listing_id"], "listing_id"),
                     "amount": _number_column(table["amount"], "amount"),
                     "created_at": lake.naive_utc(table["created_at"])})


def _bid_frame(table: pa.Table) -> pd.DataFrame:
    """The table in pandas; integer ids with nulls as nullable Int64, since float64 would round ids past 2⁵³.

    The dictionary-encoded uid becomes a Categorical straight from its codes and dictionary
    (:func:`_categorical`); the other columns convert without consolidating them into one block.
    """
    ids = [table[c] for c in ("bid_id", "listing_id") if c in table.column_names]
    holes = any(pa.types.is_integer(c.type) and c.null_count for c in ids)
    nullable = {pa.int64(): pd.Int64Dtype()}.get if holes else None
    if "uid" not in table.column_names or not pa.types.is_dictionary(table["uid"].type):
        return table.to_pandas(types_mapper=nullable)
    frame = table.drop_columns(["uid"]).to_pandas(types_mapper=nullable, split_blocks=True)
    frame.insert(table.column_names.index("uid"), "uid", _categorical(table["uid"]))
    return frame


def _categorical(column: pa.ChunkedArray) -> pd.Categorical:
    """A dictionary column as a pandas Categorical of its dictionary (a null is code -1).

    What ``Table.to_pandas`` gives, in about half its time: it converts the dictionary to an object array
    before pandas checks it again."""
    array = column.unify_dictionaries().combine_chunks()
    codes = pc.fill_null(array.indices, -1).to_numpy(zero_copy_only=False)
    return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(pd.Index(array.dictionary.to_pandas())))


def _read_bid_file(path: str, part: int, storage_options: dict[str, Any]) -> pd.DataFrame:
    """One day file as pandas plus its number in the window (``part``) and each row's position (``pos``).

    The bytes are fetched first (:func:`lake.read_bytes`), so a storage failure stays an error; a file whose
    bytes cannot be read as bids becomes one row with ``pos`` -1 and its reason and error in ``FILE_REASON``
    / ``FILE_ERROR``, which :func:`validate_bids` turns into one reject for the whole file.
    """
    data = lake.read_bytes(*lake.filesystem(path, storage_options))
    try:
        frame = _bid_frame(_bid_table(data))
    except _FileRejected as exc:
        return _file_frame(part, exc.reason, exc.message)
    except (pa.ArrowException, OSError) as exc:  # the bytes are here: any failure is their content
        return _file_frame(part, schema.UNREADABLE_FILE, lake.parquet_problem(data, exc))
    return frame.assign(part=np.int32(part), pos=np.arange(len(frame), dtype=np.int64))


def _file_frame(part: int, reason: str, message: str) -> pd.DataFrame:
    """The one row standing for a day file that cannot be used (see :func:`_read_bid_file`)."""
    return pd.DataFrame({**{c: [None] for c in BID_COLUMNS}, "part": np.array([part], np.int32),
                         "pos": np.array([-1], np.int64), FILE_REASON: [reason], FILE_ERROR: [message]})


def _raw_meta() -> pd.DataFrame:
    """The empty frame Dask needs as ``meta`` for the day files, built rather than read.

    Day files may differ in their types (text ids, tz-aware times); :func:`validate_bids` gives every one the
    same, so only its output's dtypes matter downstream. A uid categorical with no categories: an empty slice
    of a real file would keep that day's uids as categories, for Dask to hash and ship with the graph.
    """
    return pd.DataFrame({"bid_id": pd.Series([], dtype="int64"),
                         "uid": pd.Categorical([], categories=pd.Index([], dtype=str)),
                         "listing_id": pd.Series([], dtype="int64"), "amount": pd.Series([], dtype="float64"),
                         "created_at": pd.Series([], dtype="datetime64[us]"),
                         "part": pd.Series([], dtype="int32"), "pos": pd.Series([], dtype="int64")})


def _per_row(per_category: np.ndarray, codes: np.ndarray, missing: Any) -> np.ndarray:
    """Spread a per-category array to rows; code -1 (missing uid) picks ``missing``."""
    return np.append(per_category, missing)[codes]


def parse_ids(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Ids as int64 (-1 where unusable) and where they are unusable: missing, text that is no number,
    fractional, non-finite or beyond int64."""
    text = not pd.api.types.is_numeric_dtype(values.dtype)
    num = pd.to_numeric(values, errors="coerce", dtype_backend="numpy_nullable") if text else values
    missing = num.isna().to_numpy(dtype=bool)
    if num.dtype.kind == "i":
        return num.to_numpy(dtype=np.int64, na_value=-1), missing
    if num.dtype.kind == "u":  # text beyond int64
        raw = num.to_numpy(dtype=np.uint64, na_value=0)
        bad = missing | (raw > np.uint64(np.iinfo(np.int64).max))
        return np.where(bad, -1, raw.astype(np.int64)), bad
    f = num.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(f) | (f != np.floor(f)) | (np.abs(f) >= _INT64_LIMIT)
    return np.where(bad, -1, f).astype(np.int64), bad


def parse_amounts(values: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Amounts as float64, where they are unparseable, and where they are not finite.

    In a numeric column pandas cannot tell null from NaN (and pyarrow writes a pandas NaN as null), so both
    count as a missing amount (unparseable, as a NULL from the database is) and ±inf as non-finite. In text,
    "nan" and "inf" spellings are non-finite; blank, missing or other text is unparseable.
    """
    if pd.api.types.is_numeric_dtype(values.dtype):
        num = values.to_numpy(dtype=np.float64, na_value=np.nan)
        return num, np.isnan(num), np.isinf(num)
    num = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    nan = np.isnan(num)
    nan_text = nan & values.astype("string").str.strip().str.lower().isin(_NAN_TEXT).to_numpy(dtype=bool)
    return num, nan & ~nan_text, nan_text | np.isinf(num)


def naive_times(values: pd.Series) -> pd.Series:
    """Timestamps as naive UTC ``datetime64[us]``: aware ones converted to UTC, naive ones taken as UTC,
    text parsed as ISO 8601 (with or without an offset); what does not parse is NaT."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert(None)
    elif not pd.api.types.is_datetime64_dtype(values.dtype):
        values = pd.to_datetime(values.astype("string"), errors="coerce", format="ISO8601", utc=True)
        values = values.dt.tz_convert(None)
    return values.astype("datetime64[us]")


def _repeated(ids: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """True for rows under ``ok`` whose id repeats an earlier row under ``ok``."""
    again = np.zeros(len(ids), dtype=bool)
    again[ok] = pd.Series(ids[ok]).duplicated(keep="first").to_numpy()
    return again


def validate_bids(frame: pd.DataFrame, listing_ids: np.ndarray, window: Window, max_amount: float,
                  losers: np.ndarray | None = None) -> pd.DataFrame:
    """Coerce types, key users and attach the first failed rule as ``reason``.

    Ids, amounts and times are parsed per row whatever their column type (:func:`parse_ids`,
    :func:`parse_amounts`, :func:`naive_times`), so every file gives the same dtypes. A valid row repeating
    an earlier valid row's bid id in the same file, or listed in ``losers`` (:func:`_row_key` of rows that
    lose to an earlier file), is a duplicate. Valid rows carry only numbers: ``ukey``
    (:func:`schema.user_keys` of the stripped uid) stands for the user, ``part``/``pos`` for the row;
    rejected rows also carry their record as JSON in ``raw``. The one row of a file that could not be used
    (:func:`_read_bid_file`) comes back as its reject, its error as ``raw``.
    """
    if FILE_REASON in frame.columns:
        return _file_rejects(frame)
    uid = frame["uid"].astype("category")
    codes = uid.cat.codes.to_numpy()
    raw_names = pd.Series(uid.cat.categories.astype(str))
    names = raw_names.str.strip()
    bid_id, bad_bid_id = parse_ids(frame["bid_id"])
    listing, bad_listing = parse_ids(frame["listing_id"])
    amount, unparseable, non_finite = parse_amounts(frame["amount"])
    created = naive_times(frame["created_at"])
    checks = [
        (schema.MISSING_ID, bad_bid_id | bad_listing | _per_row((names == "").to_numpy(), codes, True)),
        (schema.BAD_AMOUNT, unparseable),
        (schema.NON_FINITE, non_finite),
        (schema.NEGATIVE_AMOUNT, amount <= 0),
        (schema.ABSURD_AMOUNT, amount > max_amount),
        (schema.BAD_TIMESTAMP, created.isna()),
        (schema.OUTSIDE_WINDOW, (created < window.start) | (created >= window.end)),
        (schema.CONTROL_CHARS, _per_row(has_control(raw_names).to_numpy(), codes, False)),
        (schema.UNKNOWN_LISTING, ~pd.Series(listing).isin(listing_ids).to_numpy()),
    ]
    reason = first_reason(checks, frame.index)
    ok = reason.isna().to_numpy()
    dup = _repeated(bid_id, ok)
    if losers is not None and len(losers):
        dup |= ok & np.isin(_row_key(frame["part"], frame["pos"]), losers)
    reason = reason.mask(dup, schema.DUPLICATE_BID)
    return pd.DataFrame({
        "bid_id": bid_id,
        "ukey": _per_row(schema.user_keys(names), codes, 0),
        "listing_id": listing,
        "amount": amount,
        "created_at": created,
        "part": frame["part"].astype("int32"),
        "pos": frame["pos"].astype("int64"),
        "raw": records_json(frame.drop(columns=["part", "pos"]), reason.notna()),
        "reason": reason,
    }, index=frame.index)


def _file_rejects(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`validate_bids`'s output for the one-row frames of unusable files: each its file's reject."""
    n = len(frame)
    return pd.DataFrame({
        "bid_id": np.full(n, -1, np.int64), "ukey": np.zeros(n, np.int64), "listing_id": np.full(n, -1, np.int64),
        "amount": np.full(n, np.nan), "created_at": np.full(n, np.datetime64("NaT", "us")),
        "part": frame["part"].to_numpy(np.int32), "pos": frame["pos"].to_numpy(np.int64),
        "raw": pd.Series(frame[FILE_ERROR].to_numpy(), index=frame.index, dtype=object),
        "reason": pd.Series(frame[FILE_REASON].to_numpy(), index=frame.index, dtype=object),
    }, index=frame.index)


def _row_key(part: pd.Series | np.ndarray, pos: pd.Series | np.ndarray) -> np.ndarray:
    """One int64 per input row: file number in the high bits, position in the low 40."""
    return (np.asarray(part, dtype=np.int64) << 40) | np.asarray(pos, dtype=np.int64)


def _probe(path: str, storage_options: dict[str, Any]) -> tuple[float, float, str]:
    """A day file's smallest and largest valid bid id, from its ``bid_id`` column alone (NaN, NaN when it has
    none or cannot be read), and how its footer says ``created_at`` keeps time (:func:`lake.zone_kind`;
    "" when unknown or the file is rejected whole).

    Read through a file handle, so only the footer and one column travel, on this thread alone (no pre-buffering,
    no Arrow threads): Arrow's pools calling back into a Python file object from Dask's threads can hang
    (apache/arrow#50482 shows the same pools deadlocking on a Python file). pyarrow reports bad bytes as its
    own errors or a bare ``OSError``; other storage failures (``OSError`` subclasses, other errors) are
    raised. A file this cannot read, missing or forbidden included, is settled by :func:`_read_bid_file`.
    """
    fs, _ = lake.filesystem(path, storage_options)
    try:
        with fs.open(path, "rb") as fh:
            footer = pq.ParquetFile(fh, pre_buffer=False)
            if _schema_problem(footer.schema_arrow):
                return np.nan, np.nan, ""
            zone = lake.zone_kind(footer.schema_arrow.field("created_at").type) or ""
            column = _number_column(footer.read(columns=["bid_id"], use_threads=False).column(0), "bid_id")
    except (pa.ArrowException, FileNotFoundError, PermissionError):
        return np.nan, np.nan, ""
    except OSError as exc:
        if type(exc) is not OSError:
            raise
        return np.nan, np.nan, ""
    ids, bad = parse_ids(_bid_frame(pa.table({"bid_id": column}))["bid_id"])
    ids = ids[~bad]
    return (float(ids.min()), float(ids.max()), zone) if len(ids) else (np.nan, np.nan, zone)


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


def cross_file_losers(files: list[str], ranges: np.ndarray, storage_options: dict[str, Any],
                      validate: Callable[..., pd.DataFrame]) -> np.ndarray:
    """Row keys of valid rows whose bid id was already seen in an earlier file (by file, then position).

    Bid ids grow with time, so day files rarely share a range: ``ranges`` holds each file's [min, max]
    (:func:`_probe`; NaN for a file without valid ids); only files whose ranges meet are read in full, and
    only their candidate rows reach the client, rather than every bid id going through a shuffle.
    """
    known = ~np.isnan(ranges).any(axis=1)
    meet = np.zeros(len(files), dtype=bool)
    meet[known] = _overlaps(ranges[known])
    if not meet.any():
        return np.empty(0, np.int64)
    others = [ranges[known & (np.arange(len(files)) != i)] for i in range(len(files))]
    calls = [(files[i], i, storage_options, validate, others[i]) for i in np.flatnonzero(meet)]
    rows = pd.concat(frames.compute_each(_candidates, calls), ignore_index=True)
    rows = rows[rows["bid_id"].duplicated(keep=False)].sort_values(["bid_id", "part", "pos"])
    losers = rows[rows.duplicated("bid_id")]
    return np.sort(_row_key(losers["part"], losers["pos"]))


def _row_labels(files: list[str], part: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``<day folder>/<file>:<position>`` for rejected rows, as published in ``rejects``; ``<day folder>/<file>``
    for a file rejected whole (position -1)."""
    names = np.array([f.rsplit("/bids/", 1)[-1] for f in files], dtype=object)
    rel, at = pd.Series(names[part], dtype=object), pd.Series(pos)
    return rel.where(at < 0, rel + ":" + at.astype(str)).to_numpy(dtype=object)


KEY_SPAN = (-(2**63), 2**63 - 1)  # user keys are hashes: spread evenly over the whole int64 range


def _pair_runs(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The order sorting rows by (first, second), both codes below 2³¹, and where each distinct pair starts
    in that order: one argsort of a packed key, skipped when rows are sorted already."""
    order = row_major(first, second)
    order = np.arange(len(first)) if order is None else order
    key = (np.asarray(first, np.int64)[order] << 32) | np.asarray(second, np.int64)[order]
    return order, np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, np.int64)


def interactions_of(bids: pd.DataFrame, recent_from: pd.Timestamp, previous_from: pd.Timestamp) -> pd.DataFrame:
    """Bids to one row per (user key, listing), sorted: counts, spend, first/last time and trending flags.

    One sort by (user, listing), then each aggregate is one ``reduceat`` over the runs of equal pairs,
    rather than a pandas groupby running seven aggregations.
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

    Partitions of the shuffle in :func:`_reduce` hold disjoint users, so the figures of all partitions simply add up.
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
    extra = frames.compute_each(_names_in_file, [(f, i, storage_options, wanted) for i, f in enumerate(files)])
    extra = pd.concat(extra, ignore_index=True)
    bid_names, bid_keys = distinct_by_key(extra["uid"].to_numpy(dtype=object), extra["ukey"].to_numpy())
    names[~found] = bid_names[np.searchsorted(bid_keys, keys[~found])]
    return pa.array(names, pa.string())


def users_snapshot(path: str, storage_options: dict[str, Any]
                   ) -> tuple[int, pd.DataFrame, dict[str, int], pa.Array, np.ndarray]:
    """The users snapshot's row count, rejects, files by time zone (:func:`lake.load_snapshot`), and distinct
    stripped uids with their keys, sorted by key.

    A Dask task of its own beside the bids, so the snapshot is read while they are: names never enter the
    client, and the uids travel as one Arrow array rather than a Python string each.
    """
    fs, root = lake.filesystem(path, storage_options)
    users, zones = lake.load_snapshot(fs, root, "users")
    _, rejects = validate_users(users)
    names, keys = distinct_by_key(users["uid"].astype("string").str.strip().dropna().to_numpy(dtype=object))
    return len(users), rejects, zones, pa.array(names, pa.string()), keys


def distinct_by_key(names: np.ndarray, keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``names`` and their :func:`schema.user_keys` (given or computed), sorted by key.

    Repeated names are found through their keys, a sort of integers, rather than by hashing the strings
    again as ``drop_duplicates`` would. Raises ``ValueError`` when two different names share a key, rather
    than merge two users.
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

    ``item`` is each row's listing as a code below ``n_items``; one numba pass
    (:func:`encore.report.tables.best_rows`) keeps each listing's best row, with no sort of the rows and no
    grouped transform.
    """
    best = tables.best_rows(np.asarray(item, np.int64), int(n_items), np.asarray(max_amount, np.float64),
                            np.asarray(last_at).view(np.int64), np.asarray(user, np.int64), np.asarray(sold, np.bool_))
    won = np.zeros(len(item), dtype=bool)
    won[best[best >= 0]] = True
    return won


# --- catalogue and users (small, pandas) ---------------------------------------------------------------

def validate_listings(listings: pd.DataFrame, max_amount: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clean catalogue (the columns of ``schema.LISTINGS``) and its rejects.

    Ids and prices follow the bids' rules (:func:`parse_ids`, :func:`parse_amounts`: a NaN or infinite price
    is rejected); status counts stripped and lower-cased ("Live " is live). Blank text is kept, not rejected:
    a blank or missing category or sub-category becomes ``schema.UNKNOWN_CATEGORY``, a blank title
    ``UNTITLED``, a blank seller None; ``starts_at``/``ends_at`` become naive UTC (NaT when unparseable).
    """
    ids, bad_id = parse_ids(listings["listing_id"])
    price, unparseable, non_finite = parse_amounts(listings["price"])
    status = listings["status"].astype("string").str.strip().str.lower()
    checks = [
        (schema.MISSING_ID, bad_id),
        (schema.BAD_AMOUNT, unparseable),
        (schema.NON_FINITE, non_finite),
        (schema.NEGATIVE_AMOUNT, price < 0),
        (schema.ABSURD_AMOUNT, price > max_amount),
        (schema.CONTROL_CHARS, listings[list(LISTING_TEXT)].apply(has_control).any(axis=1)),
        ("unknown_status", ~status.isin(schema.STATUSES)),
        ("duplicate_listing_id", _repeated(ids, ~bad_id)),
    ]
    reason = first_reason(checks, listings.index)
    bad = reason.notna().to_numpy()
    kept = listings[~bad]
    clean = pd.DataFrame({
        "listing_id": ids[~bad], "title": _label(kept["title"], UNTITLED),
        "category": _label(kept["category"], schema.UNKNOWN_CATEGORY),
        "sub_category": _label(kept["sub_category"], schema.UNKNOWN_CATEGORY),
        "price": price[~bad], "seller_id": _optional(kept["seller_id"]), "status": status[~bad],
        "starts_at": naive_times(kept["starts_at"]), "ends_at": naive_times(kept["ends_at"]),
    }).reset_index(drop=True)
    rejects = reject_frame("listings", pd.Series(np.flatnonzero(bad)), reason[bad], listings[bad])
    return clean, rejects


def _label(values: pd.Series, blank_as: str) -> pd.Series:
    """Text stripped, ``blank_as`` where it is missing or only white space."""
    text = values.astype("string").str.strip()
    return text.mask(text.isna() | (text == ""), blank_as)


def _optional(values: pd.Series) -> pd.Series:
    """Text stripped (pandas' Arrow-backed strings, not a Python object per row), missing where it is
    missing or only white space."""
    text = values.astype("string").str.strip()
    return text.mask(text.isna() | (text == ""))


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

def latest_day(settings: Settings) -> dt.date:
    """The newest date a day folder may carry: today (UTC) plus ``ingest.future_tolerance_days``."""
    return pd.Timestamp.now(tz="UTC").date() + dt.timedelta(days=settings.ingest.future_tolerance_days)


def resolve_window(settings: Settings, days: list[dt.date]) -> Window:
    """The run window: ``window_days`` ending on ``run_date``; by default on the newest bid day that is not
    in the future (:func:`latest_day`), so a misdated folder never moves the window."""
    run_date = settings.ingest.run_date
    if run_date is None:
        where = f"{settings.lake.path}/bids"
        if not days:
            raise InputError(f"{where}: missing the bid day folders (bids/date=YYYY-MM-DD/*.parquet); "
                             f"{lake.REEXTRACT}")
        current = [d for d in days if d <= latest_day(settings)]
        if not current:
            raise InputError(f"{where}: every day folder is dated after {latest_day(settings)} (today, UTC, plus "
                             f"ingest.future_tolerance_days), the oldest {days[0]}; rename the misdated folders "
                             "or set ingest.run_date")
        run_date = current[-1]
    return Window.ending(run_date, settings.ingest.window_days)


def _in_window(day: dt.date, window: Window) -> bool:
    return window.start.date() <= day < window.end.date()


def _probe_files(files: list[str], storage_options: dict[str, Any]) -> tuple[np.ndarray, dict[str, int]]:
    """Each day file's bid id range (rows of [min, max]) and the files by time zone (:func:`_probe`)."""
    probes = frames.compute_each(_probe, [(f, storage_options) for f in files])
    ranges = np.array([p[:2] for p in probes], dtype=np.float64).reshape(-1, 2)
    return ranges, dict(Counter(f"{p[2]}_files" for p in probes if p[2]))


def ingest_lake(settings: Settings, frame: bool = True) -> IngestResult:
    """Read and validate the lake; aggregate valid bids into interactions on the Dask cluster.

    Checks the layout first (:func:`lake.check_lake`); the counts also say how many day files were rejected
    whole, how the files kept time and which future day folders were left out (see the module docstring).
    Without ``frame`` the interactions stay in their partitions: each builds its users' matrix rows
    (:func:`encore.job.matrix.piece_of`), joined on a worker into ``rows`` (a future there; the client receives
    only the user keys), or here when the frames ran on local threads; ``interactions`` is then empty.
    """
    opts = settings.lake.storage_options
    fs, root = lake.filesystem(settings.lake.path, opts)
    lake.check_lake(fs, root)
    all_days = lake.bid_days(fs, root)
    window = resolve_window(settings, all_days)
    raw_listings, listing_zones = lake.load_snapshot(fs, root, "listings")
    listings, listing_rejects = validate_listings(raw_listings, settings.ingest.max_amount)
    users = frames.Later(users_snapshot, settings.lake.path, opts)  # a task of its own beside the bids
    days = [d for d in all_days if _in_window(d, window)]
    files = [fs.unstrip_protocol(p) for p in lake.bid_files(fs, root, days)]
    if not files:
        last = (window.end - pd.Timedelta(days=1)).date()
        raise InputError(f"{settings.lake.path}/bids: no *.parquet files in the day folders of the window "
                         f"{window.start.date()}..{last}; check ingest.run_date and ingest.window_days")
    ranges, bid_zones = _probe_files(files, opts)
    ids = listings["listing_id"].to_numpy()
    validate = partial(validate_bids, listing_ids=ids, window=window, max_amount=settings.ingest.max_amount)
    losers = cross_file_losers(files, ranges, opts, validate)
    meta = _raw_meta()
    raw = frames.from_files(_read_bid_file, files, meta, storage_options=opts)
    bids = frames.map_parts(raw, validate_bids, ids, window, settings.ingest.max_amount, losers, meta=validate(meta))
    catalogue = tables.Catalogue.of(listings)
    bid_rejects, rows_in, daily, inter, combined = _reduce(bids, files, settings, window, catalogue, frame)
    n_users, user_rejects, user_zones, *snapshot = users.result()
    rejects = pd.concat([bid_rejects, listing_rejects, user_rejects], ignore_index=True)
    counts = summarize({"bids": count_source("bids", rows_in, rejects),
                        "listings": count_source("listings", len(listings) + len(listing_rejects), rejects),
                        "users": count_source("users", n_users, rejects)})
    zones, latest = Counter(bid_zones) + Counter(listing_zones) + Counter(user_zones), latest_day(settings)
    counts.update({
        "files_unreadable": int((bid_rejects["reason"] == schema.UNREADABLE_FILE).sum()),
        "files_schema_mismatch": int((bid_rejects["reason"] == schema.SCHEMA_MISMATCH).sum()),
        "timezones": {k: zones[k] for k in ("aware_files", "naive_files", "text_files")},
        "ignored_future_days": [str(d) for d in all_days if d > latest and not _in_window(d, window)],
    })
    if not frame:  # the matrix rows of each partition, in user-key order, joined where they are
        client = current_client()
        keys = np.concatenate(brought_each(client, attrgetter("keys"), inter)) if inter else np.zeros(0, np.int64)
        names = pd.Index(pd.array(user_names(keys, tuple(snapshot), files, opts), dtype="str"), name="uid")
        rows = where_held(client, matrix.Rows.of, inter, names)
        return LakeIngest(_no_interactions(), listings, rejects, counts, window, daily=daily, report=combined,
                          catalogue=catalogue, rows=rows)
    user, keys = key_codes(inter["ukey"].to_numpy())
    names = pd.Index(pd.array(user_names(keys, tuple(snapshot), files, opts), dtype="str"), name="uid")
    uid = pd.Categorical.from_codes(user, dtype=pd.CategoricalDtype(names), validate=False)  # codes made here
    inter = finish_interactions(inter.drop(columns="ukey").assign(uid=uid), listings)
    return LakeIngest(inter, listings, rejects, counts, window, daily=daily, report=combined, catalogue=catalogue)


def _no_interactions() -> pd.DataFrame:
    """An interactions frame of no rows (their figures and matrix rows were made in the partitions)."""
    return pd.DataFrame({c: [] for c in schema.INTERACTION_COLUMNS})


@dataclass
class LakeIngest(IngestResult):
    """A lake's ingest result, with the report's partial aggregates (:class:`encore.report.tables.Partial`)
    computed in the partitions and combined on the cluster, and the catalogue they are coded against."""

    report: tables.Partial | None = None
    catalogue: tables.Catalogue | None = None


REJECT_FIELDS = ["part", "pos", "reason", "raw"]
VALID_FIELDS = ["ukey", "listing_id", "amount", "created_at"]


def _rows_where(frame: pd.DataFrame, valid: bool, columns: list[str]) -> pd.DataFrame:
    """The valid (or rejected) rows of one validated partition, with ``columns`` only.

    One plain task per partition rather than Dask's boolean indexing, whose expression checks run in the
    client.
    """
    return frame.loc[frame["reason"].isna().to_numpy() == valid, columns]


def _reduce(bids, files: list[str], settings: Settings, window: Window, catalogue: tables.Catalogue,
            frame: bool = True) -> tuple[pd.DataFrame, int, pd.DataFrame, Any, tables.Partial]:
    """Bid rejects, rows in, daily figures, interactions (by user key) and the report's partial aggregates
    (per partition, merged by a tree reduction on the cluster) in one pass over the bids.

    Valid bids are moved once so that each partition holds one contiguous range of user keys: then
    interactions and daily figures are plain pandas per partition with no combine step (no Dask grouped
    aggregation, with its own shuffle or tree reduction, for either), and the partitions in order are
    sorted by user key, so the client never sorts the interactions. Nothing is persisted but the
    interactions: each day file is read, validated, split to the shuffle and dropped, so worker memory
    holds the shuffled valid bids, not every input row twice.
    """
    bad = frames.map_parts(bids, _rows_where, False, REJECT_FIELDS, meta=bids._meta[REJECT_FIELDS])
    recent_from = window.end - pd.Timedelta(days=settings.model.trending_days)
    users = frames.by_key(frames.map_parts(bids, _rows_where, True, VALID_FIELDS, meta=bids._meta[VALID_FIELDS]),
                          "ukey", KEY_SPAN)
    inter = frames.map_parts(users, interactions_of, recent_from,
                             recent_from - pd.Timedelta(days=settings.model.trending_days))
    small = {"bad": bad, "rows_in": frames.count_rows(bids), "daily": frames.map_parts(users, daily_of),
             "report": frames.reduce_parts(inter, tables.partial_of, tables.Partial.merge, catalogue)}
    if frame:
        small, inter = frames.collect(small, inter)
    else:
        small, inter = frames.collect_mapped(small, inter, partial(_piece_call, catalogue, settings, window), keep=True)
    bad_rows = small["bad"]
    bid_rejects = pd.DataFrame({"source": "bids",
                                "row": _row_labels(files, bad_rows["part"].to_numpy(), bad_rows["pos"].to_numpy()),
                                "reason": bad_rows["reason"].astype(str).to_numpy(),
                                "record": bad_rows["raw"].astype(str).to_numpy()})
    daily = small["daily"].groupby("date").sum().sort_index().reset_index()
    return (bid_rejects, int(small["rows_in"]), daily, inter.reset_index(drop=True) if frame else inter,
            small["report"])


def _piece_call(catalogue: tables.Catalogue, settings: Settings, window: Window, small: dict[str, Any]
                ) -> tuple[Callable, tuple]:
    """:func:`encore.job.matrix.piece_of` and its arguments once the report's partial names each sold
    listing's winner."""
    best = small["report"]
    return matrix.piece_of, (catalogue.ids, catalogue.price, ~np.isnan(best.best_amount), best.best_user,
                             settings.model, window.end)


def key_codes(ukey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's user as a code (int32) in key order, and the distinct keys, like a sorted factorize.

    Partitions of the shuffle in :func:`_reduce` arrive sorted by key, so runs of equal keys are the users: no hash
    table over all the interactions.
    """
    if len(ukey) > 1 and not bool(np.all(ukey[1:] >= ukey[:-1])):
        user, keys = pd.factorize(ukey, sort=True)
        return user.astype(np.int32), keys
    new = np.ones(len(ukey), dtype=bool)
    new[1:] = ukey[1:] != ukey[:-1]
    return np.cumsum(new, dtype=np.int32) - 1, ukey[new]


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


def input_bytes(settings: Settings) -> int | None:
    """The size of what the run reads: the legacy CSV, else the lake's bid files (every day folder: one
    listing, no file opened); None when it cannot be listed, so the cluster is sized as for a large run."""
    where = settings.lake.legacy_csv or lake.join(settings.lake.path, "bids")
    try:
        fs, path = lake.filesystem(where, settings.lake.storage_options)
        return int(fs.du(path, total=True))
    except (OSError, ValueError):
        return None


def ingest(settings: Settings, frame: bool = True) -> IngestResult:
    """Ingest the configured input: the legacy CSV when ``lake.legacy_csv`` is set, else the lake (without
    ``frame``, its interactions stay on the workers: :func:`ingest_lake`)."""
    if settings.lake.legacy_csv:
        return legacy.ingest_legacy(settings)
    return ingest_lake(settings, frame)
