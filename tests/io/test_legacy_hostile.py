"""The legacy CSV reader against hostile files: any compression, encoding, delimiter, value or shape.

Fixtures are written into tmp_path with the csv module; whole-file problems must be one-line InputErrors
naming the file, and every data record must be accepted or rejected with a reason.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import tempfile
import zipfile
from pathlib import Path

import fsspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from encore import schema
from encore.errors import InputError
from encore.io.legacy import COLUMNS, read_legacy
from encore.job.legacy import BAD_ROW, MAX_BIDS_PER_ROW, ingest_legacy
from encore.job.validate import IngestResult
from tests.helpers import small_settings

NAME = "user_secret"  # the userName of every hand-made row: it must never reach the rejects


def row(uid: str = "u-1", cat: str = "Memorabilia", sub: str = "Posters", product: str = "Poster",
        price: str = "1", counts: str = "1", total: str = "5", name: str = NAME) -> list[str]:
    """One legacy record in COLUMNS order."""
    return [uid, name, cat, sub, product, price, counts, total]


def csv_text(rows: list[list[str]], delimiter: str = ",", header: list[str] = COLUMNS,
             quoting: int = csv.QUOTE_MINIMAL, lineterminator: str = "\r\n") -> str:
    """Header and rows as the csv module writes them."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, quoting=quoting, lineterminator=lineterminator)
    writer.writerows([header, *rows])
    return out.getvalue()


def packed(data: bytes, kind: str | None) -> bytes:
    """``data`` compressed as ``kind`` (None: as it is; zip: one member named legacy.csv)."""
    if kind == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("legacy.csv", data)
        return buf.getvalue()
    return {None: bytes, "gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[kind](data)


def encoded(text: str, encoding: str) -> bytes:
    """``text`` in ``encoding``; the UTF-16 variants carry their byte-order mark."""
    if encoding in ("utf-16-le", "utf-16-be"):
        return "\ufeff".encode(encoding) + text.encode(encoding)
    return text.encode(encoding)


def write(path: Path, data: bytes | str) -> Path:
    """Write a fixture file (text as UTF-8) and return its path."""
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def run(tmp_path: Path, path: Path | str) -> IngestResult:
    """Ingest ``path`` as the legacy CSV and check the invariants every run must keep."""
    res = ingest_legacy(small_settings(tmp_path, lake={"legacy_csv": str(path)}))
    c = res.counts
    assert c["rows_in"] == c["rows_accepted"] + c["rows_rejected"] == len(res.interactions) + len(res.rejects)
    assert NAME not in "".join(res.rejects["record"])
    return res


def input_error(path: Path | str) -> str:
    """The one-line InputError message reading ``path`` raises."""
    with pytest.raises(InputError) as caught:
        read_legacy(str(path))
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


def titles(res: IngestResult) -> dict[str, str]:
    """The title of each accepted row's listing, by uid."""
    by_id = res.listings.set_index("listing_id")["title"]
    return dict(zip(res.interactions["uid"], by_id.loc[res.interactions["item_id"]], strict=True))


def reasons(res: IngestResult) -> dict[str, str]:
    """Reject reason by row (line) number."""
    return dict(zip(res.rejects["row"], res.rejects["reason"], strict=True))


# --- compression -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", [None, "gzip", "zip", "bz2", "xz"])
@pytest.mark.parametrize("name", ["legacy.csv", "legacy.bin"])
def test_compression_is_found_by_magic_bytes_not_name(tmp_path, kind, name):
    rows = [row(uid=f"u-{i}", product=f"Poster {i}", counts=str(i + 1)) for i in range(5)]
    res = run(tmp_path, write(tmp_path / name, packed(csv_text(rows).encode(), kind)))
    assert res.counts["rows_accepted"] == 5 and res.interactions["n_bids"].sum() == 15


def test_memory_filesystem_is_read_through_fsspec(tmp_path):
    with fsspec.open("memory://legacy/extract.csv.gz", "wb") as fh:
        fh.write(gzip.compress(csv_text([row(), row(uid="u-2")]).encode()))
    assert run(tmp_path, "memory://legacy/extract.csv.gz").counts["rows_accepted"] == 2


def zipped(tmp_path: Path, members: dict[str, str]) -> Path:
    """A zip archive holding ``members`` (name -> text)."""
    with zipfile.ZipFile(tmp_path / "legacy.zip", "w") as archive:
        for member, text in members.items():
            archive.writestr(member, text)
    return tmp_path / "legacy.zip"


def test_zip_member_beside_macos_junk_is_read(tmp_path):
    path = zipped(tmp_path, {"__MACOSX/._legacy.csv": "junk", "export/legacy.TXT": csv_text([row()])})
    assert run(tmp_path, path).counts["rows_accepted"] == 1


@pytest.mark.parametrize(("members", "expected"), [
    ({"a.csv": csv_text([row()]), "b.csv": csv_text([row()])}, "the zip holds 2 files (a.csv, b.csv)"),
    ({"legacy.xlsx": "PK"}, "no CSV member (found: legacy.xlsx)"),
    ({}, "no CSV member (found: nothing)"),
])
def test_zip_without_exactly_one_csv_is_refused(tmp_path, members, expected):
    assert expected in input_error(zipped(tmp_path, members))


def test_password_protected_zip_is_refused(tmp_path):
    data = bytearray(zipped(tmp_path, {"legacy.csv": csv_text([row()])}).read_bytes())
    data[data.find(b"PK\x01\x02") + 8] |= 0x1  # the central directory's "encrypted" flag
    assert "password-protected" in input_error(write(tmp_path / "locked.zip", bytes(data)))


@pytest.mark.parametrize("kind", ["gzip", "bz2", "xz", "zip"])
def test_truncated_archive_is_refused(tmp_path, kind):
    data = packed(csv_text([row()] * 50).encode(), kind)
    message = input_error(write(tmp_path / "legacy.csv", data[: len(data) // 2]))
    assert f"looks {kind}-compressed but cannot be unpacked" in message


# --- encodings ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "cp1252"])
def test_encodings_decode_to_the_same_text(tmp_path, encoding):
    text = csv_text([row(product="Crème brûlée – 5€", sub="Café posters")])
    res = run(tmp_path, write(tmp_path / "legacy.csv", encoded(text, encoding)))
    assert list(res.listings["title"]) == ["Crème brûlée – 5€"]
    assert list(res.listings["sub_category"]) == ["Café posters"]


def test_latin1_bytes_cp1252_cannot_decode_fall_back_per_line(tmp_path):
    lines = csv_text([row(uid="u-1", product="Crème"), row(uid="u-2", product="€ Café"),
                      row(uid="u-3", product="Ré\x81")]).splitlines(keepends=True)
    data = lines[0].encode() + lines[1].encode("utf-8") + lines[2].encode("cp1252") + lines[3].encode("latin-1")
    res = run(tmp_path, write(tmp_path / "legacy.csv", data))
    assert titles(res) == {"u-1": "Crème", "u-2": "€ Café", "u-3": "Ré\x81"}


@pytest.mark.parametrize("data", [
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00",
    b"PAR1\x15\x04\x15\x00\x15\x02,\x15\x02\x00",
    csv_text([row()]).encode("utf-16-le"),  # UTF-16 without its byte-order mark
])
def test_binary_file_is_refused(tmp_path, data):
    assert "not a text file (NUL bytes" in input_error(write(tmp_path / "legacy.csv", data))


def test_stray_nul_far_into_a_text_file_rejects_only_its_row(tmp_path):
    rows = [row(uid=f"u-{i}", product=f"Poster number {i:04d}") for i in range(200)]
    rows.append(row(uid="u-nul", product="Post\x00er"))
    res = run(tmp_path, write(tmp_path / "legacy.csv", csv_text(rows)))
    assert reasons(res) == {"202": schema.CONTROL_CHARS} and res.counts["rows_accepted"] == 200


# --- delimiters, quoting, line breaks ------------------------------------------------------------------

@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
@pytest.mark.parametrize("quoting", [csv.QUOTE_MINIMAL, csv.QUOTE_ALL])
def test_delimiter_is_detected_from_the_header(tmp_path, delimiter, quoting):
    rows = [row(product="a,b;c\td|e", sub="Designer\r\nToys"), row(uid="u-2", sub="Line\nbreak", counts="2"),
            row(uid="u-3", product='He said "hi"', sub="Cr\ronly")]
    res = run(tmp_path, write(tmp_path / "legacy.csv", csv_text(rows, delimiter, quoting=quoting)))
    assert res.counts["rows_accepted"] == 3
    assert set(res.listings["title"]) == {"a,b;c d|e", "Poster", 'He said "hi"'}  # tab -> space
    assert set(res.listings["sub_category"]) == {"Designer Toys", "Line break", "Cr only"}


def test_read_legacy_keeps_the_raw_text_frame(tmp_path):
    text = csv_text([[*row(uid=" u-1 ", counts=" 3 "), "x"]], ";", header=[*COLUMNS, "extra"])
    frame = read_legacy(str(write(tmp_path / "legacy.csv", text)))
    assert list(frame.columns) == COLUMNS
    assert frame.loc[0, "uid"] == " u-1 " and frame.loc[0, "counts"] == " 3 "


def test_row_is_the_line_a_record_starts_on(tmp_path):
    rows = [row(uid="", sub="two\nlines"), row(uid="", sub="cr\r\ninside"), row(uid=""), row(uid="", sub="cr\ronly"),
            row(uid="")]
    text = csv_text(rows[:2]) + "\r\n  \r\n" + csv_text(rows[2:])[len(csv_text([])):]  # a blank line between
    res = run(tmp_path, write(tmp_path / "legacy.csv", text))
    assert list(res.rejects["row"]) == ["2", "4", "8", "9", "10"]  # line 6-7: blank; CR alone starts no line
    mac = write(tmp_path / "mac.csv", csv_text([row(uid=""), row(uid="")], lineterminator="\r"))
    assert list(run(tmp_path, mac).rejects["row"]) == ["2", "3"]  # a file without LF is counted by CR


def test_field_longer_than_the_csv_default_limit_is_read_whole(tmp_path):
    before = csv.field_size_limit()
    rows = [row(product="P" * 200_000, sub="long\nfield"), row(uid="u-2", counts="2")]
    res = run(tmp_path, write(tmp_path / "legacy.csv", csv_text(rows)))
    assert res.counts["rows_accepted"] == 2 and res.interactions["n_bids"].sum() == 3
    assert csv.field_size_limit() == before


def test_ragged_rows_are_rejected_without_shifting_neighbours(tmp_path):
    text = csv_text([row(uid="u-1"), [*row(uid="u-2"), "extra"], row(uid="u-3")[:-1], row(uid="u-4", counts="4")])
    res = run(tmp_path, write(tmp_path / "legacy.csv", text))
    assert reasons(res) == {"3": BAD_ROW, "4": BAD_ROW}
    assert [json.loads(r) for r in res.rejects["record"]] == [{"problem": "9 fields where the header has 8"},
                                                              {"problem": "7 fields where the header has 8"}]
    assert dict(zip(res.interactions["uid"], res.interactions["n_bids"], strict=True)) == {"u-1": 1, "u-4": 4}


# --- whole-file problems -------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "expected"), [
    (b"", "is empty (0 bytes)"),
    (gzip.compress(b""), "is empty (0 bytes once uncompressed)"),
    (b"\r\n   \n\n", "holds only blank lines, no header"),
    (csv_text([]).encode(), "has a header but no data rows"),
    (csv_text([]).encode("utf-16") + b"\n\x00", "has a header but no data rows"),
])
def test_empty_and_header_only_files_are_refused(tmp_path, data, expected):
    assert expected in input_error(write(tmp_path / "legacy.csv", data))


def test_missing_columns_are_named_with_the_columns_found(tmp_path):
    header = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID",
              "Country", "uid"]
    message = input_error(write(tmp_path / "retail.csv", csv_text([["1"] * 9], header=header)))
    assert "missing columns userName, catagory, sub_catagory, product, listing_amount, counts" in message
    assert "found 9 columns: 'InvoiceNo', 'StockCode'" in message and ", …" in message
    assert "legacy extract" in message and "--lake" in message


def test_missing_path_and_folder_are_refused(tmp_path):
    assert "no such file" in input_error(tmp_path / "nope.csv")
    assert "is a folder, not a CSV file" in input_error(tmp_path)


# --- values ---------------------------------------------------------------------------------------------

VALUE_CASES = [  # (field, value, reason or None when accepted)
    ("counts", "inf", schema.NON_FINITE), ("total", "-inf", schema.NON_FINITE), ("price", "nan", schema.NON_FINITE),
    ("counts", "Infinity", schema.NON_FINITE), ("total", " NaN ", schema.NON_FINITE),
    ("counts", "2.5", schema.NOT_WHOLE), ("counts", "1e308", schema.ABSURD_AMOUNT),
    ("total", "1e308", schema.ABSURD_AMOUNT), ("price", "1e308", schema.ABSURD_AMOUNT),
    ("counts", "1e400", schema.ABSURD_AMOUNT), ("counts", str(MAX_BIDS_PER_ROW + 1), schema.ABSURD_AMOUNT),
    ("counts", "0.5", schema.NEGATIVE_AMOUNT), ("total", "-0", schema.NEGATIVE_AMOUNT),
    ("price", "1,5", schema.BAD_AMOUNT), ("total", "$5", schema.BAD_AMOUNT), ("counts", "٣", schema.BAD_AMOUNT),
    ("counts", "", schema.BAD_AMOUNT), ("total", "0x10", schema.BAD_AMOUNT),
    ("uid", "   ", schema.MISSING_ID), ("product", "\t\r\n", schema.MISSING_ID),
    ("counts", "3.0", None), ("counts", str(MAX_BIDS_PER_ROW), None), ("price", ".5", None), ("total", "1e3", None),
]


def test_every_value_is_accepted_or_rejected_with_its_reason(tmp_path):
    rows = [row(**{"uid": f"u-{i}", "product": f"Poster {i}", field: value})
            for i, (field, value, _) in enumerate(VALUE_CASES)]
    res = run(tmp_path, write(tmp_path / "legacy.csv", csv_text(rows)))
    expected = {str(i + 2): reason for i, (_, _, reason) in enumerate(VALUE_CASES) if reason}
    assert reasons(res) == expected
    accepted = res.interactions.set_index("uid")
    assert accepted.loc["u-20", "n_bids"] == 3 and accepted.loc["u-21", "n_bids"] == MAX_BIDS_PER_ROW
    assert accepted["n_bids"].dtype == "int64" and accepted.loc["u-23", "spend"] == 1000.0


def test_blank_categories_are_accepted_as_unknown(tmp_path):
    rows = [row(uid="u-1", cat=""), row(uid="u-2", sub="  "), row(uid="u-3", cat="\r\n", sub="\t")]
    res = run(tmp_path, write(tmp_path / "legacy.csv", csv_text(rows)))
    assert res.counts["rows_accepted"] == 3
    got = res.interactions.set_index("uid")[["category", "sub_category"]].to_dict("index")
    unknown = schema.UNKNOWN_CATEGORY
    assert got == {"u-1": {"category": unknown, "sub_category": "Posters"},
                   "u-2": {"category": "Memorabilia", "sub_category": unknown},
                   "u-3": {"category": unknown, "sub_category": unknown}}


# --- property: any rows, any supported file ------------------------------------------------------------

ENCODINGS = {"utf-8": "utf-8", "utf-8-sig": "utf-8", "utf-16-le": "utf-8", "utf-16-be": "utf-8",
             "cp1252": "cp1252", "latin-1": "latin-1"}  # file encoding -> codec the drawn text must fit
SPECIAL = ["", " ", "  \t ", '"', '""', ",", ";", "\t", "|", "\r\n", "\n", "\r", 'a"b', "x\ny", "é", " 7 "]
NUMBERS = ["inf", "-inf", "nan", "NaN", "Infinity", "-Infinity", "1e308", "-1e308", "1e400", "-5", "2.5", "0",
           "0.0", "1", "3", " 12 ", "1,5", "", "1e6", "1000001", "-0"]


def fields(codec: str) -> st.SearchStrategy[str]:
    """Arbitrary text in ``codec`` (no NUL: that marks a binary file) or a tricky hand-picked value."""
    return st.one_of(st.text(st.characters(codec=codec, exclude_characters="\x00"), max_size=12),
                     st.sampled_from(SPECIAL))


def numbers(codec: str) -> st.SearchStrategy[str]:
    """A number as any string: special spellings, integers, floats (incl. inf/nan) or arbitrary text."""
    return st.one_of(st.sampled_from(NUMBERS), st.integers(-10**30, 10**30).map(str),
                     st.floats(allow_nan=True, allow_infinity=True).map(str), fields(codec))


@st.composite
def legacy_files(draw: st.DrawFn) -> tuple[bytes, list[list[str]], set[str]]:
    """A legacy file's bytes, the rows written and the line each starts on (by LF, header = 1).

    Random encoding, delimiter, quoting and compression.
    """
    encoding = draw(st.sampled_from(sorted(ENCODINGS)))
    codec = ENCODINGS[encoding]
    text_field, number = fields(codec), numbers(codec)
    rows = draw(st.lists(st.tuples(*[text_field] * 5, number, number, number).map(list), min_size=1, max_size=12))
    delimiter = draw(st.sampled_from(",;\t|"))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    starts = {str(csv_text(rows[:i], delimiter, quoting=quoting).count("\n") + 1) for i in range(len(rows))}
    data = packed(encoded(csv_text(rows, delimiter, quoting=quoting), encoding),
                  draw(st.sampled_from([None, "gzip", "zip", "bz2", "xz"])))
    return data, rows, starts


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(legacy_files())
def test_any_rows_in_any_supported_file_are_all_accounted_for(sample):
    data, rows, starts = sample
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / "legacy.csv", data)
        res = ingest_legacy(small_settings(Path(tmp), lake={"legacy_csv": str(path)}))
    c = res.counts
    assert c["rows_in"] == len(rows) == c["rows_accepted"] + c["rows_rejected"]
    assert len(res.interactions) == c["rows_accepted"] and BAD_ROW not in set(res.rejects["reason"])
    assert set(res.rejects["row"]) <= starts
    assert all(set(json.loads(r)) == set(COLUMNS) - {"userName"} for r in res.rejects["record"])
    assert (res.interactions["n_bids"] >= 1).all() and (res.interactions["spend"] > 0).all()


@settings(max_examples=10, deadline=None)
@given(st.sampled_from(sorted(ENCODINGS)), st.sampled_from([None, "gzip", "zip", "bz2", "xz"]))
def test_header_only_file_in_any_form_is_one_input_error(encoding, kind):
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / "legacy.csv", packed(encoded(csv_text([]), encoding), kind))
        assert "has a header but no data rows" in input_error(path)
