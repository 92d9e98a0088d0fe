"""Lake paths and Parquet I/O through fsspec, so a local folder and ``s3://`` share one code path.

Layout (DESIGN.md §2)::

    <lake>/bids/date=YYYY-MM-DD/part-0.parquet
    <lake>/listings/part-0.parquet
    <lake>/users/part-0.parquet

Each file is written whole and then moved into place (local) or uploaded in one object put (S3), so a
reader never sees half a partition and rewriting a day replaces it whole.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from encore import schema

PART = "part-0.parquet"
_DATE_DIR = re.compile(r"date=(\d{4}-\d{2}-\d{2})$")


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and the bare path of ``url``."""
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    return fs, path.rstrip("/")


def join(root: str, *parts: str) -> str:
    """Join path parts with '/', the separator of every fsspec filesystem."""
    return "/".join([root.rstrip("/"), *parts])


def bids_partition(root: str, day: dt.date) -> str:
    """The folder of one day's bids."""
    return join(root, "bids", f"date={day.isoformat()}")


def write_parquet(fs: fsspec.AbstractFileSystem, path: str, table: pa.Table | pd.DataFrame,
                  schema_: pa.Schema | None = None) -> int:
    """Write one Parquet file so that it appears whole or not at all; returns its row count."""
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, schema=schema_, preserve_index=False)
    elif schema_ is not None:
        table = table.cast(schema_)
    parent = path.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    if _is_local(fs):
        tmp = join(parent, f".{uuid.uuid4().hex}.tmp")
        with fs.open(tmp, "wb") as fh:
            pq.write_table(table, fh)
        fs.mv(tmp, path)
    else:
        with fs.open(path, "wb") as fh:
            pq.write_table(table, fh)
    return table.num_rows


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def write_bids_day(fs: fsspec.AbstractFileSystem, root: str, day: dt.date, table: pa.Table | pd.DataFrame) -> int:
    """Replace one day's bid partition whole with ``table``."""
    folder = bids_partition(root, day)
    rows = write_parquet(fs, join(folder, PART), table, schema.BIDS)
    for stale in fs.ls(folder, detail=False):
        if not stale.rstrip("/").endswith("/" + PART):
            fs.rm(stale)
    return rows


def write_snapshot(fs: fsspec.AbstractFileSystem, root: str, name: str, table: pa.Table | pd.DataFrame) -> int:
    """Replace the ``listings`` or ``users`` snapshot."""
    schemas = {"listings": schema.LISTINGS, "users": schema.USERS}
    return write_parquet(fs, join(root, name, PART), table, schemas[name])


def bid_days(fs: fsspec.AbstractFileSystem, root: str) -> list[dt.date]:
    """Days that have a bid partition, oldest first."""
    folder = join(root, "bids")
    if not fs.exists(folder):
        return []
    days = []
    for entry in fs.ls(folder, detail=False):
        match = _DATE_DIR.search(entry.rstrip("/"))
        if match:
            days.append(dt.date.fromisoformat(match.group(1)))
    return sorted(days)


def bid_files(fs: fsspec.AbstractFileSystem, root: str, days: list[dt.date]) -> list[str]:
    """The Parquet files of the given days, in day order."""
    files: list[str] = []
    for day in days:
        files.extend(sorted(p for p in fs.ls(bids_partition(root, day), detail=False) if p.endswith(".parquet")))
    return files


def read_snapshot(fs: fsspec.AbstractFileSystem, root: str, name: str) -> pd.DataFrame:
    """Read the ``listings`` or ``users`` snapshot into pandas."""
    folder = join(root, name)
    files = sorted(p for p in fs.ls(folder, detail=False) if p.endswith(".parquet"))
    if not files:
        raise FileNotFoundError(f"no {name} snapshot under {folder}")
    return pd.concat([_read_file(fs, f) for f in files], ignore_index=True)


def _read_file(fs: fsspec.AbstractFileSystem, path: str) -> pd.DataFrame:
    with fs.open(path, "rb") as fh:
        return pq.read_table(fh).to_pandas()


def lake_exists(fs: fsspec.AbstractFileSystem, root: str) -> bool:
    """True when the lake has a listings snapshot and at least one bid partition."""
    return fs.exists(join(root, "listings")) and bool(bid_days(fs, root))
