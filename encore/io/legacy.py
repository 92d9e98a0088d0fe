"""Reading the legacy aggregate extract (``uid, userName, catagory, sub_catagory, product, …``) into text records.

Real files carry quoted numbers, padded names and line breaks inside fields; ``encore.job.legacy``
validates the records. Whatever its bytes, the file is read or refused in one line:

- compression by magic bytes, whatever the name: gzip, bz2, xz, or a zip holding exactly one CSV;
- encoding: a UTF-16 or UTF-32 byte-order mark decides; else UTF-8 (its mark dropped), and when that fails
  each line is decoded on its own as UTF-8, else cp1252, else latin-1 (one stray byte spoils one line);
- delimiter from the header line: comma, semicolon, tab or pipe, whichever names most legacy columns;
- a record's ``row`` in rejects is the line it starts on, header = line 1, lines counted as ``grep -n``
  counts them (by LF; by CR in a file without LF): a CR inside a quoted field starts no new line, an LF
  inside one does, so a record after a record spanning lines has a row above its record number + 1.

Whole-file problems (missing, empty, binary, not the legacy columns) raise :class:`InputError`; ragged
records are kept apart by line, for the validation to reject.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import logging
import lzma
import re
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter

import numpy as np
import pandas as pd

from encore.errors import InputError
from encore.io import lake

log = logging.getLogger(__name__)

COLUMNS = ["uid", "userName", "catagory", "sub_catagory", "product", "listing_amount", "counts", "total_bid_amount"]


DELIMITERS = ",;\t|"
BINARY_SNIFF = 8192  # a NUL among the first this many characters marks a binary file (git's and grep's rule)
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
_BOMS = [(b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\xff\xfe", "utf-16-le"),
         (b"\xfe\xff", "utf-16-be")]
_UTF8_BOM = b"\xef\xbb\xbf"
_EXPECTED = ("expected the legacy extract CSV (uid, userName, catagory, sub_catagory, product, listing_amount, "
             "counts, total_bid_amount); for a lake folder use --lake")


@dataclass
class LegacyRecords:
    """The data records of one legacy file: well-formed ones as text, ragged ones by line."""

    frame: pd.DataFrame  # COLUMNS, every field as delivered, one row per well-formed record
    lines: np.ndarray  # the line each row of ``frame`` starts on
    ragged: pd.DataFrame  # line, problem: records whose field count differs from the header's


# --- bytes ---------------------------------------------------------------------------------------------

def read_bytes(path: str, storage_options: dict | None = None) -> bytes:
    """The file's bytes through fsspec (local or s3://); a missing file or a folder is an InputError.

    Read whole: a legacy extract is a small aggregate file, and compression is found by its content.
    """
    fs, bare = lake.filesystem(path, storage_options)
    if fs.isdir(bare):
        raise InputError(f"{path}: is a folder, not a CSV file; {_EXPECTED}")
    try:
        with fs.open(bare, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; check the path given as --legacy-csv (lake.legacy_csv)") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied; make the file readable for this user") from None


def decompress(path: str, data: bytes) -> bytes:
    """``data`` uncompressed when its magic bytes say gzip, bz2, xz or zip; as it is otherwise."""
    openers = {"gzip": gzip.decompress, "bz2": bz2.decompress, "xz": lzma.decompress}
    kind = ("gzip" if data[:2] == b"\x1f\x8b" else "bz2" if re.match(rb"BZh[1-9]", data[:4])
            else "xz" if data[:6] == b"\xfd7zXZ\x00" else "zip" if data[:4] in (b"PK\x03\x04", b"PK\x05\x06")
            else None)
    if kind is None:
        return data
    log.info("%s: %s-compressed", path, kind)
    try:
        return unzip(path, data) if kind == "zip" else openers[kind](data)
    except InputError:
        raise
    except (OSError, EOFError, ValueError, NotImplementedError, lzma.LZMAError, zlib.error,
            zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: looks {kind}-compressed but cannot be unpacked ({exc}); "
                         "compress the extract again") from None


def unzip(path: str, data: bytes) -> bytes:
    """The one CSV member of a zip archive (folders and ``__MACOSX/`` entries aside)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        files = [m for m in archive.infolist() if not m.is_dir() and not m.filename.startswith("__MACOSX/")]
        names = ", ".join(m.filename for m in files[:3]) + (", …" if len(files) > 3 else "")
        if len(files) > 1:
            raise InputError(f"{path}: the zip holds {len(files)} files ({names}); put only the legacy extract "
                             "CSV in it")
        if not files or not files[0].filename.lower().endswith(CSV_SUFFIXES):
            raise InputError(f"{path}: the zip holds no CSV member (found: {names or 'nothing'}); "
                             "zip the legacy extract CSV alone")
        if files[0].flag_bits & 0x1:
            raise InputError(f"{path}: the zip is password-protected; zip the extract without a password")
        return archive.read(files[0])


def decode(path: str, data: bytes) -> str:
    """The text of ``data``: by its UTF-16/32 byte-order mark, else UTF-8, else line by line.

    A UTF-8 mark is dropped; invalid UTF-16/32 code units become U+FFFD.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            log.info("%s: %s by its byte-order mark", path, encoding)
            return data[len(bom):].decode(encoding, errors="replace")
    data = data.removeprefix(_UTF8_BOM)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        log.info("%s: not UTF-8 throughout; lines that are not are read as cp1252 (or latin-1)", path)
        return "".join(decode_line(line) for line in data.splitlines(keepends=True))


def decode_line(line: bytes) -> str:
    """One line as UTF-8 if it is, else cp1252 (Windows exports), else latin-1 (decodes any byte)."""
    for encoding in ("utf-8", "cp1252"):
        try:
            return line.decode(encoding)
        except UnicodeDecodeError:
            continue
    return line.decode("latin-1")


def read_text(path: str, storage_options: dict | None = None) -> str:
    """The file as text, uncompressed and decoded; an empty or binary file is an InputError."""
    packed = read_bytes(path, storage_options)
    data = decompress(path, packed)
    if not data:
        raise InputError(f"{path}: is empty (0 bytes{' once uncompressed' if packed else ''}); {_EXPECTED}")
    text = decode(path, data)
    if "\x00" in text[:BINARY_SNIFF]:
        raise InputError(f"{path}: not a text file (NUL bytes in its first {BINARY_SNIFF} characters: binary "
                         "data, or UTF-16 without a byte-order mark); save the legacy extract as a UTF-8 CSV")
    return text


# --- records -------------------------------------------------------------------------------------------

def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the first non-blank line into most legacy column names (comma on a tie)."""
    header = next((line for line in io.StringIO(text, newline="") if line.strip()), "")

    def score(delimiter: str) -> tuple[int, int]:
        fields = [f.strip() for f in next(csv.reader([header], delimiter=delimiter), [])]
        return len(set(fields) & set(COLUMNS)), len(fields)

    return max(DELIMITERS, key=score)


@contextmanager
def field_limit(size: int) -> Iterator[None]:
    """Let the csv module take fields up to ``size`` characters (a file in memory cannot hold longer ones).

    Its default of 131 072 raises mid-record, and the reader then resumes inside the record, shifting
    every field after it.
    """
    before = csv.field_size_limit()
    csv.field_size_limit(max(before, size))
    try:
        yield
    finally:
        csv.field_size_limit(before)


def records(text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """Each non-blank record with the line it starts on (a line of white space alone is no record).

    The csv module splits lines at LF, CRLF and a lone CR; lines are numbered as ``grep -n`` and
    editors number them: by LF (CRLF), or by CR in a file without any LF.
    """
    ending = "\n" if "\n" in text else "\r"
    ended = [0]  # lines ended so far

    def lines() -> Iterator[str]:
        for line in io.StringIO(text, newline=""):
            ended[0] += line.endswith(ending)
            yield line

    reader = csv.reader(lines(), delimiter=delimiter, quotechar='"', doublequote=True, strict=False)
    start = 1
    for fields in reader:
        if len(fields) > 1 or (fields and fields[0].strip()):
            yield start, fields
        start = ended[0] + 1


def parse_records(path: str, text: str) -> LegacyRecords:
    """Split ``text`` into the header and data records; no header, no data or missing columns is an InputError."""
    with field_limit(len(text) + 1):
        delimiter = sniff_delimiter(text)
        found = list(records(text, delimiter))  # non-strict, with fields this long allowed: no csv.Error
    if not found:
        raise InputError(f"{path}: holds only blank lines, no header; {_EXPECTED}")
    names = [name.strip() for name in found[0][1]]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        shown = ", ".join(repr(n[:40]) for n in names[:8]) + (", …" if len(names) > 8 else "")
        raise InputError(f"{path}: missing columns {', '.join(missing)} (found {len(names)} columns: {shown}); "
                         f"{_EXPECTED}")
    data = found[1:]
    if not data:
        raise InputError(f"{path}: has a header but no data rows; export the extract again with its rows")
    log.info("%s: delimiter %r, %d data records", path, delimiter, len(data))
    return split_ragged(data, names)


def split_ragged(data: list[tuple[int, list[str]]], names: list[str]) -> LegacyRecords:
    """Well-formed records as the COLUMNS frame (first column of a repeated name), ragged ones aside."""
    width = len(names)
    pick = itemgetter(*[names.index(c) for c in COLUMNS])
    good = [(line, pick(fields)) for line, fields in data if len(fields) == width]
    bad = [(line, f"{len(fields)} fields where the header has {width}") for line, fields in data
           if len(fields) != width]
    frame = pd.DataFrame([fields for _, fields in good], columns=COLUMNS, dtype="str")
    ragged = pd.DataFrame(bad, columns=["line", "problem"]).astype({"line": "int64"})
    return LegacyRecords(frame, np.array([line for line, _ in good], dtype=np.int64), ragged)


def read_records(path: str, storage_options: dict | None = None) -> LegacyRecords:
    """The legacy file's data records, whatever its compression, encoding and delimiter."""
    return parse_records(path, read_text(path, storage_options))


def read_legacy(path: str, storage_options: dict | None = None) -> pd.DataFrame:
    """The well-formed records as text, every field kept as delivered (quoted line breaks survive)."""
    return read_records(path, storage_options).frame
