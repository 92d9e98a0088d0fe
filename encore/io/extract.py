"""Extract the marketplace PostgreSQL into the lake, incrementally and safely.

One extract is ONE read-only REPEATABLE READ transaction (:func:`encore.io.pg.snapshot`): the bids of a
day, the listings and the users all come from the same snapshot, and the server refuses any write. Rows
stream through server-side cursors ``chunk_rows`` at a time, in ``createdAt`` order, so each finished day
is written as one whole partition (:func:`encore.io.lake.write_bids_day`) and memory holds one day.

Incremental: ``<lake>/_watermark.json`` remembers the last complete day (a day before the database's
``current_date``). A default run re-extracts from ``lookback_days`` days before the watermark up to
yesterday, so late bids for recent days are picked up; ``date`` re-extracts one day, ``since`` a range.
The watermark is written last, only after every partition and snapshot is in place.

IDs: the lake wants int64 ``bid_id`` / ``listing_id`` and string ``uid``. Integer id columns are kept;
any other type (UUID, text) is mapped to int64 with :func:`stable_id`, a 63-bit blake2b hash that is the
same in every run, so bids and listings still join. User and seller ids are kept as text.

Nothing is filtered here: bad rows (null or negative amounts, orphan bids, nameless users) land in the
lake as they are and the ingest step quarantines them with a reason. Only bids without ``createdAt``
cannot be placed in a day partition; they are counted in ``ExtractResult.undated_bids`` and logged.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import fsspec
import numpy as np
import psycopg
import pyarrow as pa
from psycopg import sql

from encore import schema
from encore.config import Settings
from encore.io import atomic, lake, pg
from encore.io.pg import ExtractError
from encore.schema import stable_id

__all__ = ["DayCount", "ExtractError", "ExtractResult", "extract", "read_watermark", "stable_id"]

log = logging.getLogger(__name__)

WATERMARK = "_watermark.json"

#: Logical tables and columns of the marketplace database (docs/extract.md); real names come from config.
SOURCE: dict[str, tuple[str, ...]] = {
    "users": ("id", "userName", "createdAt"),
    "bids": ("id", "userId", "listingId", "amount", "createdAt"),
    "listing": ("id", "title", "price", "categoryId", "subCategoryId", "sellerId", "status", "startsAt",
                "endsAt"),
    "category": ("id", "title"),
    "sub_category": ("id", "title", "categoryId"),
}

#: Database status values understood as the lake's live | sold | unsold (matched case-insensitively).
#: Anything else is passed through lower-cased, so ingest rejects it visibly as ``unknown_status``.
STATUS_ALIASES: dict[str, str] = {
    **dict.fromkeys(("live", "active", "open", "running", "ongoing", "scheduled", "pending"), "live"),
    **dict.fromkeys(("sold", "won", "completed", "paid", "shipped", "closed_sold"), "sold"),
    **dict.fromkeys(("unsold", "ended", "expired", "closed", "cancelled", "canceled", "withdrawn",
                     "no_sale"), "unsold"),
}

_INTEGER_TYPES = {"smallint", "integer", "bigint"}


@dataclass(frozen=True)
class DayCount:
    """Rows and amount total of one extracted bid day (null amounts count as rows, not in the sum)."""

    rows: int
    amount_sum: float


@dataclass
class ExtractResult:
    """What one extract did; JSON-ready through :meth:`to_dict` for manifests (no DSN in it)."""

    days: dict[dt.date, DayCount]
    removed_days: list[dt.date]
    listings: int
    users: int
    undated_bids: int
    start: dt.date | None
    end: dt.date
    previous_watermark: dt.date | None
    watermark: dt.date | None
    seconds: float = 0.0
    status_counts: dict[str, int] = field(default_factory=dict)

    @property
    def bids(self) -> int:
        """Bid rows written in this extract."""
        return sum(d.rows for d in self.days.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: dates as ISO strings."""
        data = asdict(self)
        data["days"] = {d.isoformat(): asdict(c) for d, c in self.days.items()}
        data["removed_days"] = [d.isoformat() for d in self.removed_days]
        for key in ("start", "end", "previous_watermark", "watermark"):
            data[key] = data[key].isoformat() if data[key] else None
        data["bids"] = self.bids
        return data


# --- source description --------------------------------------------------------------------------------

@dataclass
class Source:
    """Real table and column names of one deployment, plus column types read from the catalogue."""

    db_schema: str
    tables: dict[str, str]
    columns: dict[str, dict[str, str]]
    types: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Source:
        """Apply the ``extract.tables`` / ``extract.columns`` overrides; unknown names are an error."""
        ex = settings.extract
        unknown = sorted(set(ex.tables) - set(SOURCE)) + sorted(
            f"{t}.{c}" for t, cols in ex.columns.items() for c in cols if c not in SOURCE.get(t, ())
        )
        if unknown:
            known = "; ".join(f"{table}: {' '.join(cols)}" for table, cols in SOURCE.items())
            raise ExtractError(f"extract config names unknown tables/columns: {', '.join(unknown)} (known: {known})")
        tables = {t: ex.tables.get(t, t) for t in SOURCE}
        columns = {t: {c: ex.columns.get(t, {}).get(c, c) for c in cols} for t, cols in SOURCE.items()}
        return cls(ex.db_schema, tables, columns)

    def table(self, name: str) -> sql.Identifier:
        """The qualified identifier of a logical table."""
        return sql.Identifier(self.db_schema, self.tables[name])

    def col(self, table: str, column: str, alias: str | None = None) -> sql.Composable:
        """A (optionally alias-qualified) column identifier."""
        real = self.columns[table][column]
        return sql.Identifier(alias, real) if alias else sql.Identifier(real)

    def is_integer(self, table: str, column: str) -> bool:
        """True when the column holds integers (kept as is); otherwise it is hashed with :func:`stable_id`."""
        return self.types[table][self.columns[table][column]] in _INTEGER_TYPES

    def check(self, conn: psycopg.Connection) -> None:
        """Read column types; raise one line naming every missing table or column, before any write."""
        missing = []
        for name, cols in self.columns.items():
            found = pg.table_columns(conn, self.db_schema, self.tables[name])
            if not found:
                missing.append(f"table {self.db_schema}.{self.tables[name]}")
                continue
            missing += [f"column {self.tables[name]}.{c}" for c in cols.values() if c not in found]
            self.types[name] = found
        if missing:
            raise ExtractError(f"marketplace database is missing {', '.join(missing)} "
                               "(map real names with extract.tables / extract.columns)")


# --- queries -------------------------------------------------------------------------------------------

def _id_expr(src: Source, table: str, column: str, alias: str | None = None) -> sql.Composable:
    """An id column as bigint when it is an integer, else as text (hashed in Python)."""
    kind = "bigint" if src.is_integer(table, column) else "text"
    return sql.SQL("{}::{}").format(src.col(table, column, alias), sql.SQL(kind))


def _ts_expr(src: Source, table: str, column: str, alias: str | None = None) -> sql.Composable:
    """A timestamp as naive UTC (``timestamptz`` converted; the session time zone is UTC)."""
    ident = src.col(table, column, alias)
    if src.types[table][src.columns[table][column]].startswith("timestamp with time zone"):
        return sql.SQL("({} AT TIME ZONE 'UTC')").format(ident)
    return ident


def bids_query(src: Source, start: dt.date | None, end: dt.date) -> tuple[sql.Composed, list[Any]]:
    """Bids with ``start <= createdAt < end`` in time order, as (bid_id, uid, listing_id, amount, created_at)."""
    created = src.col("bids", "createdAt")
    where = sql.SQL("{} < %s").format(created)
    params: list[Any] = [end]
    if start is not None:
        where = sql.SQL("{} >= %s AND ").format(created) + where
        params.insert(0, start)
    query = sql.SQL(
        "SELECT {id}, {uid}::text, {listing}, {amount}::float8, {ts} FROM {table} WHERE {where}"
        " ORDER BY {created}, {rawid}"
    ).format(
        id=_id_expr(src, "bids", "id"), uid=src.col("bids", "userId"), listing=_id_expr(src, "bids", "listingId"),
        amount=src.col("bids", "amount"), ts=_ts_expr(src, "bids", "createdAt"), table=src.table("bids"),
        where=where, created=created, rawid=src.col("bids", "id"),
    )
    return query, params


def listings_query(src: Source) -> sql.Composed:
    """Listings with their category and sub-category titles joined in, in id order."""

    def c(col: str) -> sql.Composable:
        return src.col("listing", col, "l")

    return sql.SQL(
        "SELECT {id}, {title}, cat.{ctitle}, sub.{stitle}, {price}::float8, {seller}::text, {status}::text,"
        " {starts}, {ends} FROM {listing} AS l"
        " LEFT JOIN {category} AS cat ON cat.{cid} = {catref}"
        " LEFT JOIN {sub} AS sub ON sub.{sid} = {subref}"
        " ORDER BY {rawid}"
    ).format(
        id=_id_expr(src, "listing", "id", "l"), title=c("title"), ctitle=src.col("category", "title"),
        stitle=src.col("sub_category", "title"), price=c("price"), seller=c("sellerId"), status=c("status"),
        starts=_ts_expr(src, "listing", "startsAt", "l"), ends=_ts_expr(src, "listing", "endsAt", "l"),
        listing=src.table("listing"), category=src.table("category"), cid=src.col("category", "id"),
        catref=c("categoryId"), sub=src.table("sub_category"), sid=src.col("sub_category", "id"),
        subref=c("subCategoryId"), rawid=c("id"),
    )


def users_query(src: Source) -> sql.Composed:
    """Users as (uid, user_name, created_at), in id order."""
    return sql.SQL("SELECT {id}::text, {name}, {ts} FROM {table} ORDER BY {id}").format(
        id=src.col("users", "id"), name=src.col("users", "userName"), ts=_ts_expr(src, "users", "createdAt"),
        table=src.table("users"),
    )


def _chunks(conn: psycopg.Connection, name: str, query: sql.Composed, params: list[Any],
            size: int) -> Iterator[list[tuple[Any, ...]]]:
    """Rows of ``query`` through a server-side cursor, ``size`` rows per round trip, in binary so that
    values arrive without text to parse."""
    with conn.cursor(name=f"encore_{name}", binary=True) as cur:
        cur.execute(query, params)
        while rows := cur.fetchmany(size):
            yield rows


# --- rows to Arrow -------------------------------------------------------------------------------------

def _ids(values: tuple[Any, ...], integer: bool) -> pa.Array:
    """int64 ids: integers as they are, anything else through :func:`stable_id` (nulls stay null)."""
    if integer:
        return pa.array(values, type=pa.int64())
    return pa.array([None if v is None else stable_id(v) for v in values], type=pa.int64())


def _bids_table(rows: list[tuple[Any, ...]], src: Source) -> pa.Table:
    bid_id, uid, listing_id, amount, created = zip(*rows)
    return pa.Table.from_arrays(
        [_ids(bid_id, src.is_integer("bids", "id")), pa.array(uid, pa.string()),
         _ids(listing_id, src.is_integer("bids", "listingId")), pa.array(amount, pa.float64()),
         pa.array(created, pa.timestamp("us"))],
        schema=schema.BIDS,
    )


def map_status(value: str | None) -> str | None:
    """The lake status for a database status (see ``STATUS_ALIASES``); unknown values pass lower-cased."""
    if value is None:
        return None
    key = value.strip().lower()
    return STATUS_ALIASES.get(key, key)


def _listings_table(rows: list[tuple[Any, ...]], src: Source) -> pa.Table:
    lid, title, cat, sub, price, seller, status, starts, ends = zip(*rows)
    return pa.Table.from_arrays(
        [_ids(lid, src.is_integer("listing", "id")), pa.array(title, pa.string()), pa.array(cat, pa.string()),
         pa.array(sub, pa.string()), pa.array(price, pa.float64()), pa.array(seller, pa.string()),
         pa.array([map_status(s) for s in status], pa.string()), pa.array(starts, pa.timestamp("us")),
         pa.array(ends, pa.timestamp("us"))],
        schema=schema.LISTINGS,
    )


def _users_table(rows: list[tuple[Any, ...]], src: Source) -> pa.Table:
    uid, name, created = zip(*rows)
    return pa.Table.from_arrays(
        [pa.array(uid, pa.string()), pa.array(name, pa.string()), pa.array(created, pa.timestamp("us"))],
        schema=schema.USERS,
    )


def _snapshot(conn: psycopg.Connection, src: Source, name: str, chunk_rows: int) -> pa.Table:
    """A whole listings or users table as Arrow, read in chunks."""
    query, build, arrow_schema = {
        "listings": (listings_query(src), _listings_table, schema.LISTINGS),
        "users": (users_query(src), _users_table, schema.USERS),
    }[name]
    parts = [build(rows, src) for rows in _chunks(conn, name, query, [], chunk_rows)]
    return pa.concat_tables(parts) if parts else arrow_schema.empty_table()


def _split_days(table: pa.Table) -> Iterator[tuple[dt.date, pa.Table]]:
    """Consecutive runs of one day in a time-ordered bids table."""
    days = table.column("created_at").cast(pa.date32()).to_numpy().astype("datetime64[D]")
    edges = [0, *(np.flatnonzero(days[1:] != days[:-1]) + 1).tolist(), len(days)]
    for lo, hi in itertools.pairwise(edges):
        yield days[lo].astype(dt.date), table.slice(lo, hi - lo)


def _day_runs(conn: psycopg.Connection, src: Source, start: dt.date | None, end: dt.date,
              chunk_rows: int) -> Iterator[tuple[dt.date, pa.Table]]:
    """Whole days of bids, one table per day, oldest first."""
    query, params = bids_query(src, start, end)
    current: dt.date | None = None
    pending: list[pa.Table] = []
    for rows in _chunks(conn, "bids", query, params, chunk_rows):
        for day, part in _split_days(_bids_table(rows, src)):
            if current is not None and day != current:
                yield current, pa.concat_tables(pending)
                pending = []
            current = day
            pending.append(part)
    if current is not None:
        yield current, pa.concat_tables(pending)


# --- watermark -----------------------------------------------------------------------------------------

def read_watermark(fs: fsspec.AbstractFileSystem, root: str) -> dt.date | None:
    """The last complete day recorded in the lake, or None before the first extract."""
    path = lake.join(root, WATERMARK)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as fh:
        return dt.date.fromisoformat(json.load(fh)["last_complete_day"])


def _write_watermark(fs: fsspec.AbstractFileSystem, root: str, result: ExtractResult) -> None:
    """Write the watermark whole (:func:`encore.io.atomic.write_bytes`)."""
    body = json.dumps({
        "last_complete_day": result.watermark.isoformat() if result.watermark else None,
        "extracted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "start": result.start.isoformat() if result.start else None,
        "end": result.end.isoformat(),
        "bids": result.bids,
    }, indent=2).encode()
    atomic.write_bytes(fs, lake.join(root, WATERMARK), body)


# --- the extract ---------------------------------------------------------------------------------------

def _as_date(value: dt.date | str | None) -> dt.date | None:
    if value is None or isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.datetime):
        return value.date()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ExtractError(f"not a date (YYYY-MM-DD): {value!r}") from None


def plan(today: dt.date, watermark: dt.date | None, lookback_days: int, date: dt.date | None = None,
         since: dt.date | None = None) -> tuple[dt.date | None, dt.date]:
    """The half-open day range ``[start, end)`` to extract; ``start`` None means all history.

    ``date``: that day only. ``since``: from it up to yesterday. Otherwise the ``lookback_days`` days up
    to and including the watermark are re-extracted (late bids), then every day up to yesterday; without
    a watermark, all history. Today is never complete, so it waits for tomorrow's run.
    """
    if date is not None and since is not None:
        raise ExtractError("give either date or since, not both")
    if date is not None:
        return date, date + dt.timedelta(days=1)
    if since is not None:
        return since, today
    if watermark is None:
        return None, today
    return watermark + dt.timedelta(days=1 - lookback_days), today


def next_watermark(previous: dt.date | None, start: dt.date | None, end: dt.date,
                   today: dt.date) -> dt.date | None:
    """Advance the watermark to the last complete day covered, only if the range left no gap after it."""
    last_complete = min(end, today) - dt.timedelta(days=1)
    if previous is None:
        return last_complete if start is None or start <= last_complete else None
    contiguous = start is None or start <= previous + dt.timedelta(days=1)
    return max(previous, last_complete) if contiguous else previous


def _dsn(settings: Settings) -> str:
    if settings.extract.dsn is None or not settings.extract.dsn.get_secret_value():
        raise ExtractError("no database: set extract.dsn in the config or the ENCORE_PG_DSN variable")
    return settings.extract.dsn.get_secret_value()


def extract(settings: Settings, date: dt.date | str | None = None,
            since: dt.date | str | None = None) -> ExtractResult:
    """Extract bids (per ``createdAt`` day), listings and users into the lake; then move the watermark.

    Raises :class:`ExtractError` with one password-free line when the database cannot be reached, a
    table or column is missing, or a query fails; the lake is untouched unless the failure comes after
    the first partition was written (each partition is still whole, and the watermark is not moved).
    """
    dsn = _dsn(settings)
    src = Source.from_settings(settings)
    day, first = _as_date(date), _as_date(since)
    fs, root = lake.filesystem(settings.lake.path, settings.lake.storage_options)
    started = time.perf_counter()
    try:
        with pg.snapshot(dsn) as conn:
            src.check(conn)
            today = conn.execute("SELECT current_date").fetchone()[0]
            previous = read_watermark(fs, root)
            start, end = plan(today, previous, settings.extract.lookback_days, day, first)
            log.info("extract %s: days [%s, %s) from %s", settings.extract.db_schema, start, end,
                     pg.mask_dsn(dsn))
            result = _run(conn, src, fs, root, start, end, settings.extract.chunk_rows)
    except psycopg.Error as exc:
        raise ExtractError(f"extract failed: {pg.describe(exc, dsn)}") from None
    result.previous_watermark = previous
    result.watermark = next_watermark(previous, start, end, today)
    result.seconds = round(time.perf_counter() - started, 3)
    if result.watermark is not None:
        _write_watermark(fs, root, result)
    log.info("extract done: %d bids over %d days, %d listings, %d users in %.1fs; watermark %s",
             result.bids, len(result.days), result.listings, result.users, result.seconds, result.watermark)
    return result


def _run(conn: psycopg.Connection, src: Source, fs: fsspec.AbstractFileSystem, root: str,
         start: dt.date | None, end: dt.date, chunk_rows: int) -> ExtractResult:
    """Read everything inside the snapshot; write bid days as they complete, then the snapshots."""
    listings = _snapshot(conn, src, "listings", chunk_rows)
    users = _snapshot(conn, src, "users", chunk_rows)
    undated = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(
        src.table("bids"), src.col("bids", "createdAt"))).fetchone()[0]
    if undated:
        log.warning("%d bids have no createdAt and cannot be placed in a day partition", undated)
    days: dict[dt.date, DayCount] = {}
    for day, table in _day_runs(conn, src, start, end, chunk_rows):
        lake.write_bids_day(fs, root, day, table)
        amount = table.column("amount").to_numpy(zero_copy_only=False)
        days[day] = DayCount(table.num_rows, float(np.nansum(amount)))
    removed = _remove_stale_days(fs, root, start or min(days, default=end), end, set(days))
    lake.write_snapshot(fs, root, "listings", listings)
    lake.write_snapshot(fs, root, "users", users)
    statuses = listings.column("status").value_counts().to_pylist()
    return ExtractResult(
        days=days, removed_days=removed, listings=listings.num_rows, users=users.num_rows,
        undated_bids=int(undated), start=start, end=end, previous_watermark=None, watermark=None,
        status_counts={str(s["values"]): int(s["counts"]) for s in statuses},
    )


def _remove_stale_days(fs: fsspec.AbstractFileSystem, root: str, start: dt.date, end: dt.date,
                       written: set[dt.date]) -> list[dt.date]:
    """Delete lake partitions in ``[start, end)`` that the database no longer has bids for."""
    stale = [d for d in lake.bid_days(fs, root) if start <= d < end and d not in written]
    for day in stale:
        fs.rm(lake.bids_partition(root, day), recursive=True)
    return stale
