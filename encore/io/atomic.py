"""The one writer every output of encore goes through: a file appears whole or not at all.

Readers of the lake, of a run folder and of the ``LATEST`` pointer must never see half a file, and a
failed write must leave nothing a later listing could take for data.

- Local disk: the bytes go to a hidden temporary file beside the target (``.<name>.<random>.tmp``; every
  reader skips names starting with '.'), are flushed to disk, then renamed over the target with
  :func:`os.replace`. The swap is one step: a reader opens the old file or the new one, and a reader
  already holding the old file keeps reading it whole. Flushing first means a crash cannot leave the
  target renamed but empty.
- Any other filesystem (``s3://``, ``memory://``): the file is encoded in memory, then stored with one
  put, which an object store shows whole or not at all (S3: one PutObject, or a multipart upload that
  appears only when complete). Peak memory is the encoded file on top of its data.

A write that fails at any point removes its temporary file and leaves the target as it was (absent, or
the previous version). Parent folders are created.
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import uuid
from collections.abc import Callable, Iterable
from typing import BinaryIO, TypeVar

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

T = TypeVar("T")


def write_bytes(fs: fsspec.AbstractFileSystem, path: str, data: bytes | Iterable[bytes]) -> int:
    """Store ``data`` at ``path`` whole; returns the bytes written.

    ``data`` is bytes, or an iterable of byte chunks (streamed to local disk as they come): if the
    iterable raises, nothing is stored.
    """
    chunks = [data] if isinstance(data, bytes | bytearray | memoryview) else data
    return _store(fs, path, lambda fh: sum(fh.write(chunk) for chunk in chunks))


def write_table(fs: fsspec.AbstractFileSystem, path: str, table: pa.Table | pd.DataFrame,
                schema: pa.Schema | None = None) -> int:
    """Store ``table`` as one Parquet file at ``path`` whole; returns its row count.

    A DataFrame is converted without its index; ``schema``, when given, fixes the column types (a
    DataFrame is converted to it, a Table cast to it).
    """
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, schema=schema, preserve_index=False)
    elif schema is not None:
        table = table.cast(schema)
    _store(fs, path, lambda fh: pq.write_table(table, fh))
    return table.num_rows


def _store(fs: fsspec.AbstractFileSystem, path: str, fill: Callable[[BinaryIO], T]) -> T:
    """Run ``fill`` on a file handle, then make what it wrote appear at ``path`` in one step."""
    if isinstance(fs, LocalFileSystem):
        return _replace_local(path, fill)
    parent = posixpath.dirname(path.rstrip("/"))
    if parent.strip("/"):
        fs.makedirs(parent, exist_ok=True)
    buffer = io.BytesIO()
    result = fill(buffer)
    fs.pipe_file(path, buffer.getvalue())
    return result


def _replace_local(path: str, fill: Callable[[BinaryIO], T]) -> T:
    """Write through a hidden temporary file beside ``path`` (same folder, so the rename stays on one
    disk), flushed to disk, then renamed over ``path``; the temporary file is removed on any failure.

    The temporary file is created like any other file (permissions from the umask), so the renamed
    target is readable by whoever could read the file it replaces.
    """
    folder, name = os.path.split(path)
    os.makedirs(folder or ".", exist_ok=True)
    tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as fh:
            result = fill(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # interrupted too: never leave the temporary file behind
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return result
