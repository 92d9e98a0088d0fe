"""Lake paths and Parquet I/O through fsspec, so a local folder and ``s3://`` share one code path.

Layout (columns in :mod:`encore.schema`)::

    <lake>/bids/date=YYYY-MM-DD/part-0.parquet
    <lake>/listings/part-0.parquet
    <lake>/users/part-0.parquet

Each file is written through :mod:`encore.io.atomic` (a hidden temporary file renamed into place on local
disk, one object put on S3), so a reader never sees half a partition and rewriting a day replaces it whole.

Reading is strict about the layout and lenient about types. :func:`check_lake` names every missing part
before any work. Under ``bids/`` only ``date=YYYY-MM-DD`` folders with a real date may stand (anything
else, a misnamed folder or a file outside a day folder, is an :class:`~encore.errors.InputError` saying to
rename or remove it: its bids could not be placed in time, and skipping them would lose them silently);
hidden entries (``.``/``_`` first: temporary uploads, ``_SUCCESS`` markers) are skipped everywhere. A
snapshot file that is not readable Parquet, or lacks a column the rules need, is an ``InputError`` saying
to re-extract it. Every timestamp is read as naive UTC: a time-zone-aware column is converted to UTC, a
naive one is taken as UTC already (:func:`naive_utc`); times kept as text are parsed by ingest.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from encore import schema
from encore.errors import InputError
from encore.io import atomic

PART = "part-0.parquet"
_DATE_DIR = re.compile(r"date=(\d{4}-\d{2}-\d{2})")
SNAPSHOTS = {"listings": schema.LISTINGS, "users": schema.USERS}
#: Snapshot columns without which the per-row rules would reject every row: a file lacking one is refused.
SNAPSHOT_REQUIRED = {"listings": ("listing_id", "price", "status"), "users": ("uid", "user_name")}
REEXTRACT = "re-extract it (encore extract) or point --lake at a complete lake"
_US = pa.timestamp("us")
_US_SPAN = {"s": (2**63 - 1) // 10**6, "ms": (2**63 - 1) // 10**3}  # coarse-unit values that fit in microseconds


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and the bare path of ``url``."""
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    return fs, path.rstrip("/")


def join(root: str, *parts: str) -> str:
    """Join path parts with '/', the separator of every fsspec filesystem."""
    return "/".join([root.rstrip("/"), *parts])


def shown(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """``path`` as a person would type it: bare for local files, with its protocol (``s3://``) otherwise."""
    return path if _is_local(fs) else fs.unstrip_protocol(path)


def bids_partition(root: str, day: dt.date) -> str:
    """The folder of one day's bids."""
    return join(root, "bids", f"date={day.isoformat()}")


#: Write one lake Parquet file whole and return its row count (:func:`encore.io.atomic.write_table`).


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def _hidden(path: str) -> bool:
    """True for names starting with '.' or '_': temporary uploads and job markers, never data."""
    return path.rstrip("/").rsplit("/", 1)[-1].startswith((".", "_"))


def _entries(fs: fsspec.AbstractFileSystem, folder: str) -> list[dict[str, Any]]:
    """The visible entries of ``folder`` (not the folder itself, which some object stores list as a marker)."""
    return [e for e in fs.ls(folder, detail=True)
            if not _hidden(e["name"]) and e["name"].rstrip("/") != folder.rstrip("/")]


def write_bids_day(fs: fsspec.AbstractFileSystem, root: str, day: dt.date, table: pa.Table | pd.DataFrame) -> int:
    """Replace one day's bid partition whole with ``table``."""
    folder = bids_partition(root, day)
    rows = atomic.write_table(fs, join(folder, PART), table, schema.BIDS)
    for stale in fs.ls(folder, detail=False):
        if not stale.rstrip("/").endswith("/" + PART):
            fs.rm(stale)
    return rows


def write_snapshot(fs: fsspec.AbstractFileSystem, root: str, name: str, table: pa.Table | pd.DataFrame) -> int:
    """Replace the ``listings`` or ``users`` snapshot."""
    return atomic.write_table(fs, join(root, name, PART), table, SNAPSHOTS[name])


def _day_of(entry: dict[str, Any]) -> dt.date | None:
    """The day of a ``date=YYYY-MM-DD`` folder entry of ``bids/``; None for anything else."""
    match = _DATE_DIR.fullmatch(entry["name"].rstrip("/").rsplit("/", 1)[-1])
    if entry["type"] != "directory" or not match:
        return None
    try:
        return dt.date.fromisoformat(match.group(1))
    except ValueError:  # date=2026-13-45
        return None


def bid_days(fs: fsspec.AbstractFileSystem, root: str) -> list[dt.date]:
    """Days that have a bid partition, oldest first.

    Raises :class:`InputError` naming the first entry of ``bids/`` that is not a day folder.
    """
    folder = join(root, "bids")
    if not fs.isdir(folder):
        return []
    days = {e["name"]: _day_of(e) for e in _entries(fs, folder)}
    stray = sorted(name for name, day in days.items() if day is None)
    if stray:
        more = f" (and {len(stray) - 1} more)" if len(stray) > 1 else ""
        raise InputError(f"{shown(fs, stray[0])}{more}: not a day folder of bids/ (bids/date=YYYY-MM-DD/*.parquet "
                         "with a real date); rename it or move it out of bids/")
    return sorted(d for d in days.values() if d is not None)


def _parquet_files(fs: fsspec.AbstractFileSystem, folder: str) -> list[str]:
    """The visible ``*.parquet`` files of ``folder``, sorted (none when it is missing).

    Raises :class:`InputError` for a visible sub-folder (a Spark-style ``part.parquet/``): files nested
    deeper are not read, and skipping them would lose their rows silently.
    """
    if not fs.isdir(folder):
        return []
    entries = _entries(fs, folder)
    nested = sorted(e["name"] for e in entries if e["type"] == "directory")
    if nested:
        raise InputError(f"{shown(fs, nested[0])}: a folder where Parquet files belong; move its files up into "
                         f"{shown(fs, folder)}/ or remove it")
    return sorted(e["name"] for e in entries if e["name"].endswith(".parquet"))


def read_bytes(fs: fsspec.AbstractFileSystem, path: str) -> bytes:
    """A whole file; gone or forbidden is an :class:`InputError` naming it (other storage failures propagate,
    so the run fails and can be retried)."""
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        raise InputError(f"{shown(fs, path)}: gone while the run read the lake (is an extract rewriting it?); "
                         "run again once it is done") from None
    except PermissionError:
        raise InputError(f"{shown(fs, path)}: permission denied; make the lake readable for this user") from None


def bid_files(fs: fsspec.AbstractFileSystem, root: str, days: list[dt.date]) -> list[str]:
    """The Parquet files of the given days, in day order."""
    return [p for day in days for p in _parquet_files(fs, bids_partition(root, day))]


def check_lake(fs: fsspec.AbstractFileSystem, root: str) -> None:
    """Raise :class:`InputError` unless ``root`` is a lake folder with both snapshots and day folders.

    One message names everything missing, so one fix makes the lake readable.
    """
    where = shown(fs, root)
    if not fs.exists(root):
        raise InputError(f"{where}: no such lake folder; check --lake (lake.path)")
    if not fs.isdir(root):
        raise InputError(f"{where} is a file, not a lake folder; for a legacy CSV use --legacy-csv")
    missing = [f"{where}/{name}: missing the {name} snapshot ({name}/*.parquet)"
               for name in SNAPSHOTS if not _parquet_files(fs, join(root, name))]
    if not bid_days(fs, root):
        missing.append(f"{where}/bids: missing the bid day folders (bids/date=YYYY-MM-DD/*.parquet)")
    if missing:
        raise InputError("; ".join(missing) + f"; {REEXTRACT}")


def parquet_problem(data: bytes, exc: Exception) -> str:
    """One line saying why ``data`` (a whole file) is not readable Parquet, for ``exc`` raised reading it."""
    if not data:
        return "not a Parquet file (0 bytes)"
    if not data.endswith(b"PAR1"):
        return f"not a Parquet file ({len(data):,} bytes, no Parquet footer: truncated or another format)"
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"corrupt Parquet data ({first})"


def zone_kind(kind: pa.DataType) -> str | None:
    """How a column of type ``kind`` keeps time: "aware" (a time zone), "naive", "text", or None (no time)."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_timestamp(kind):
        return "aware" if kind.tz else "naive"
    if pa.types.is_date(kind):
        return "naive"
    if is_text(kind):
        return "text"
    return None


def is_text(kind: pa.DataType) -> bool:
    """True for Arrow's string types (plain, large, view)."""
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def decoded(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """A dictionary-encoded column as its plain values; any other column as it is."""
    return values.cast(values.type.value_type) if pa.types.is_dictionary(values.type) else values


def naive_utc(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Timestamps and dates as naive UTC microseconds; columns of other types (text) as they are.

    Arrow keeps every timestamp as UTC, so dropping the zone converts an aware column to UTC; a naive column
    is taken as UTC. Nanoseconds are truncated to microseconds; second or millisecond values too far from
    1970 for microseconds become null (then rejected as unparseable), never wrapped around.
    """
    values = decoded(values)
    kind = values.type
    if pa.types.is_date(kind):
        return values.cast(_US)
    if not pa.types.is_timestamp(kind):
        return values
    if kind.unit in _US_SPAN:
        ticks = values.cast(pa.int64())
        span = _US_SPAN[kind.unit]
        fits = pc.and_(pc.greater_equal(ticks, -span), pc.less_equal(ticks, span))
        values = pc.if_else(fits, values, pa.scalar(None, kind))
    return values.cast(_US, safe=False)


def file_zone(table_schema: pa.Schema, columns: tuple[str, ...]) -> str | None:
    """How a file keeps the time of ``columns``: "aware" if any has a zone, else "naive", else "text" (or None)."""
    kinds = {zone_kind(table_schema.field(c).type) for c in columns if c in table_schema.names}
    return next((k for k in ("aware", "naive", "text") if k in kinds), None)


def _snapshot_table(fs: fsspec.AbstractFileSystem, path: str, name: str) -> tuple[pa.Table, str | None]:
    """One snapshot file with exactly the columns of its schema (times as naive UTC, absent optional
    columns as nulls, extra columns dropped), and how it kept time (:func:`file_zone`)."""
    data = read_bytes(fs, path)
    try:
        table = pq.ParquetFile(pa.BufferReader(data)).read()
    except (pa.ArrowException, OSError) as exc:  # the bytes are here: any failure is their content
        raise InputError(f"{shown(fs, path)}: {parquet_problem(data, exc)}; {REEXTRACT}") from None
    lacking = [c for c in SNAPSHOT_REQUIRED[name] if c not in table.column_names]
    if lacking:
        raise InputError(f"{shown(fs, path)}: the {name} snapshot lacks column {', '.join(lacking)}; "
                         f"{REEXTRACT}")
    twice = [f.name for f in SNAPSHOTS[name] if table.column_names.count(f.name) > 1]
    if twice:
        raise InputError(f"{shown(fs, path)}: column {', '.join(twice)} appears more than once; {REEXTRACT}")
    times = tuple(f.name for f in SNAPSHOTS[name] if pa.types.is_timestamp(f.type))
    columns = {}
    for field in SNAPSHOTS[name]:
        if field.name not in table.column_names:
            columns[field.name] = pa.nulls(table.num_rows, field.type)
        elif field.name in times:
            columns[field.name] = naive_utc(table[field.name])
        else:
            columns[field.name] = decoded(table[field.name])
    return pa.table(columns), file_zone(table.schema, times)


def load_snapshot(fs: fsspec.AbstractFileSystem, root: str, name: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """The ``listings`` or ``users`` snapshot in pandas, and how many of its files kept time aware, naive or
    as text (``{"aware_files": 1, ...}``).

    Raises :class:`InputError` when the snapshot is missing or one of its files is unreadable.
    """
    files = _parquet_files(fs, join(root, name))
    if not files:
        raise InputError(f"{shown(fs, join(root, name))}: missing the {name} snapshot ({name}/*.parquet); "
                         f"{REEXTRACT}")
    frames, zones = [], Counter()
    for path in files:
        table, zone = _snapshot_table(fs, path, name)
        frames.append(table.to_pandas())
        if zone:
            zones[f"{zone}_files"] += 1
    return pd.concat(frames, ignore_index=True), dict(zones)


def read_snapshot(fs: fsspec.AbstractFileSystem, root: str, name: str) -> pd.DataFrame:
    """Read the ``listings`` or ``users`` snapshot into pandas (see :func:`load_snapshot`)."""
    return load_snapshot(fs, root, name)[0]



EXCLUSIONS = "exclusions"


def read_exclusions(fs: fsspec.AbstractFileSystem, root: str) -> pd.DataFrame | None:
    """The per-user exclusion table ``<lake>/exclusions/*.parquet``: uid, listing_id (int64), category (text);
    each row excludes one listing or one category for one user. None when the lake has no such folder.

    A file that is not Parquet, lacks ``uid`` or has neither ``listing_id`` nor ``category`` is an
    :class:`InputError` naming it; rows without a uid, or with neither value, exclude nothing.
    """
    frames = []
    for path in _parquet_files(fs, join(root, EXCLUSIONS)):
        data = read_bytes(fs, path)
        try:
            table = pq.ParquetFile(pa.BufferReader(data)).read()
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{shown(fs, path)}: {parquet_problem(data, exc)}; rewrite the exclusion table") from None
        names = table.column_names
        if "uid" not in names or not {"listing_id", "category"} & set(names):
            raise InputError(f"{shown(fs, path)}: an exclusion table needs a uid column and a listing_id or category "
                             "column; rewrite it")
        frame = pd.DataFrame({"uid": decoded(table["uid"]).cast(pa.string()).to_pandas()})
        listing = (pd.to_numeric(decoded(table["listing_id"]).to_pandas(), errors="coerce")
                   if "listing_id" in names else pd.Series(pd.NA, index=frame.index))
        frame["listing_id"] = listing.astype("Int64")
        frame["category"] = (decoded(table["category"]).cast(pa.string()).to_pandas() if "category" in names
                             else pd.Series(None, index=frame.index, dtype=object))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else None
