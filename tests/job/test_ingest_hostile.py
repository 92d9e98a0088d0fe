"""The lake reader against hostile lakes: broken files, drifting schemas, time zones, odd numbers and text,
misdated or misnamed folders, missing parts.

Each test damages a fresh copy of one small synthetic lake (or writes a lake of its own with pyarrow);
whole-lake problems must be one-line InputErrors naming the path and the fix, and every bid written must
be accepted or rejected with a reason.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import json
import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from encore import schema
from encore.errors import InputError
from encore.io import lake
from encore.io.synth import write_lake
from encore.job.ingest import BID_COLUMNS, ingest
from encore.job.validate import IngestResult
from tests.helpers import small_settings

TODAY = dt.datetime.now(dt.UTC).date()
SECRET = "Ms Secret Name"  # a user name written into bid files: it must never reach the rejects


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """One small synthetic lake (300 users, 10 days), generated once; tests damage copies of it."""
    base = tmp_path_factory.mktemp("pristine")
    settings = small_settings(base)
    write_lake(settings.synth, *lake.filesystem(settings.lake.path))
    return base


@pytest.fixture(scope="module")
def baseline(pristine) -> IngestResult:
    """The pristine lake's ingest, to compare damaged copies against."""
    return ingest(small_settings(pristine))


@pytest.fixture
def hostile(pristine, tmp_path):
    """Settings over a fresh copy of the pristine lake."""
    shutil.copytree(pristine / "lake", tmp_path / "lake")
    return small_settings(tmp_path)


def _days(settings) -> list[Path]:
    days = lake.bid_days(*lake.filesystem(settings.lake.path))
    return [Path(lake.bids_partition(settings.lake.path, d)) for d in days]


def _good_rows(settings, n: int, first_id: int) -> pd.DataFrame:
    """``n`` valid bids of the newest day under new bid ids from ``first_id``: accepted wherever they are."""
    rows = pd.read_parquet(_days(settings)[-1] / "part-0.parquet").head(n).reset_index(drop=True)
    return rows.assign(bid_id=range(first_id, first_id + n))


def _bid_rejects(res: IngestResult) -> pd.DataFrame:
    return res.rejects[res.rejects["source"] == "bids"]


def _reason_of(res: IngestResult, row: str) -> str:
    """The reject reason of one row label (``date=…/file.parquet:position`` or a whole file's label)."""
    found = _bid_rejects(res)
    found = found.loc[found["row"].str.endswith(row), "reason"]
    assert len(found) == 1, (row, _bid_rejects(res)[["row", "reason"]].to_string())
    return found.iloc[0]


def _bids(res: IngestResult) -> dict:
    return res.counts["sources"]["bids"]


# --- 1. broken files ----------------------------------------------------------------------------------

def test_broken_day_files_are_one_reject_each_and_the_rest_is_read(hostile, baseline, client):
    days = _days(hostile)
    whole = (days[-2] / "part-0.parquet").read_bytes()
    (days[-1] / "empty.parquet").write_bytes(b"")
    (days[-1] / "truncated.parquet").write_bytes(whole[: len(whole) // 2])
    (days[-1] / "export.parquet").write_bytes(b"bid_id,uid\n1,u-1\n")  # CSV under a Parquet name
    pq.write_table(pa.Table.from_pandas(_good_rows(hostile, 50, 10**12)), days[-3] / "pages.parquet")
    meta = pq.read_metadata(days[-3] / "pages.parquet").row_group(0).column(BID_COLUMNS.index("amount"))
    data = bytearray((days[-3] / "pages.parquet").read_bytes())  # footer intact, the amount pages garbage
    start, size = meta.data_page_offset, meta.total_compressed_size
    data[start: start + size] = b"\xff" * size
    (days[-3] / "pages.parquet").write_bytes(bytes(data))

    res = ingest(hostile)
    files = _bid_rejects(res)[_bid_rejects(res)["reason"] == schema.UNREADABLE_FILE].set_index("row")["record"]
    names = {f"{days[-1].name}/{n}" for n in ("empty.parquet", "truncated.parquet", "export.parquet")}
    assert set(files.index) == names | {f"{days[-3].name}/pages.parquet"}
    assert files[f"{days[-1].name}/empty.parquet"] == "not a Parquet file (0 bytes)"
    assert files[f"{days[-1].name}/truncated.parquet"].startswith("not a Parquet file (")
    assert files[f"{days[-3].name}/pages.parquet"].startswith("corrupt Parquet data (")
    assert not any("\n" in r for r in files)
    assert res.counts["files_unreadable"] == 4
    assert _bids(res)["rows_in"] == _bids(baseline)["rows_in"] + 4  # each broken file stands for its rows
    assert _bids(res)["rows_accepted"] == _bids(baseline)["rows_accepted"]


@pytest.mark.parametrize("name", ["listings", "users"])
@pytest.mark.parametrize("damage", [b"", b"PAR1 not really"])
def test_a_broken_snapshot_file_stops_the_run_naming_it(hostile, client, name, damage):
    path = Path(hostile.lake.path, name, "part-0.parquet")
    path.write_bytes(damage)
    with pytest.raises(InputError) as err:
        ingest(hostile)
    message = str(err.value)
    assert message.startswith(f"{path}: not a Parquet file (") and "re-extract it" in message
    assert "\n" not in message


def test_a_snapshot_lacking_or_repeating_a_column_stops_the_run_naming_it(hostile):
    listings = Path(hostile.lake.path, "listings", "part-0.parquet")
    original = pq.read_table(listings)
    pq.write_table(original.drop_columns(["price"]), listings)
    with pytest.raises(InputError, match=rf"^{listings}: the listings snapshot lacks column price; re-extract it"):
        ingest(hostile)
    pq.write_table(original, listings)
    users = Path(hostile.lake.path, "users", "part-0.parquet")
    table = pq.read_table(users)
    pq.write_table(table.append_column("uid", table["uid"]), users)
    with pytest.raises(InputError, match=rf"^{users}: column uid appears more than once; re-extract it"):
        ingest(hostile)


# --- 2. schema drift -----------------------------------------------------------------------------------

def test_a_day_file_lacking_a_column_is_rejected_whole_and_extra_columns_are_ignored(hostile, baseline):
    day = _days(hostile)[-1]
    no_amount = _good_rows(hostile, 5, 10**12).drop(columns="amount")
    pq.write_table(pa.Table.from_pandas(no_amount), day / "no-amount.parquet")
    extra = _good_rows(hostile, 3, 2 * 10**12).assign(user_name=SECRET, note="late upload", amount=[5.0, 6.0, -1.0])
    pq.write_table(pa.Table.from_pandas(extra), day / "extra.parquet")
    nested = pa.Table.from_pandas(_good_rows(hostile, 2, 3 * 10**12))
    pq.write_table(nested.set_column(3, "amount", pa.array([[1.0], [2.0]])), day / "nested.parquet")
    pq.write_table(nested.append_column("uid", nested["uid"]), day / "twice.parquet")

    res = ingest(hostile)
    records = _bid_rejects(res).set_index("row")["record"]
    assert _reason_of(res, "no-amount.parquet") == schema.SCHEMA_MISMATCH
    assert records[f"{day.name}/no-amount.parquet"].startswith("missing column amount (the file has bid_id, uid")
    assert _reason_of(res, "nested.parquet") == schema.SCHEMA_MISMATCH
    assert "amount is list<" in records[f"{day.name}/nested.parquet"]
    assert records[f"{day.name}/twice.parquet"] == "column uid appears more than once"
    assert res.counts["files_schema_mismatch"] == 3
    assert _bids(res)["rows_in"] == _bids(baseline)["rows_in"] + 1 + 3 + 1 + 1
    assert _bids(res)["rows_accepted"] == _bids(baseline)["rows_accepted"] + 2  # the extra columns did not matter
    assert _reason_of(res, "extra.parquet:2") == schema.NEGATIVE_AMOUNT
    assert not res.rejects["record"].str.contains(SECRET).any()


def test_types_that_convert_are_parsed_per_row_in_any_file(hostile, baseline):
    days = _days(hostile)
    good = _good_rows(hostile, 3, 10**12)
    uid, listing, day = good["uid"].iloc[0], int(good["listing_id"].iloc[0]), days[0].name[len("date="):]
    text = pa.table({c: pa.array(v, pa.string()) for c, v in {  # the window's first file: all text
        "bid_id": ["1000000000001", "abc", "1000000000003", "1000000000004", "1000000000005", "1000000000006",
                   "1000000000007"],
        "uid": [uid] * 7,
        "listing_id": [f"{listing}.0", str(listing), "1.5", *[str(listing)] * 4],
        "amount": ["12.5", "5", "5", "abc", "inf", "NaN", "5"],
        "created_at": [f"{day}T10:00:00+02:00", f"{day} 10:00:00", f"{day} 10:00:00", f"{day} 10:00:00",
                       f"{day} 10:00:00", f"{day} 10:00:00", "yesterday"],
    }.items()})
    pq.write_table(text, days[0] / "aa-text.parquet")
    paris = pa.table({"bid_id": pa.array(good["bid_id"] - 10**12 + 2_000_000_000, pa.int32()),
                      "uid": pa.array(good["uid"], pa.large_string()).dictionary_encode(),
                      "listing_id": pa.array(good["listing_id"].astype(float), pa.float64()),
                      "amount": pa.array([decimal.Decimal("10.25")] * 3, pa.decimal128(9, 2)),
                      "created_at": pa.array(good["created_at"].dt.floor("s"), pa.timestamp("us"))
                      .cast(pa.timestamp("us", "UTC")).cast(pa.timestamp("ms", "Europe/Paris"))})
    pq.write_table(paris, days[-1] / "paris.parquet")
    nanos = pa.table({"bid_id": pa.array(good["bid_id"] + 10), "uid": pa.array(good["uid"]).dictionary_encode(),
                      "listing_id": pa.array(good["listing_id"]), "amount": pa.array([7, 8, 9], pa.int64()),
                      "created_at": pa.array(good["created_at"], pa.timestamp("ns"))})
    pq.write_table(nanos, days[-1] / "nanos.parquet")

    res = ingest(hostile)
    first = f"{days[0].name}/aa-text.parquet"
    assert [_reason_of(res, f"{first}:{i}") for i in range(1, 7)] == [
        schema.MISSING_ID, schema.MISSING_ID, schema.BAD_AMOUNT, schema.NON_FINITE, schema.NON_FINITE,
        schema.BAD_TIMESTAMP]
    assert _bids(res)["rows_accepted"] == _bids(baseline)["rows_accepted"] + 1 + 3 + 3
    assert not _bid_rejects(res)["row"].str.contains("paris|nanos").any()


# --- 3. time zones -------------------------------------------------------------------------------------

def test_aware_and_naive_times_mixed_between_files_read_as_naive_utc(hostile, baseline):
    """One day file, the listings and the users rewritten with zone-aware times (same instants): no change."""
    def to_paris(path: Path, columns: list[str]) -> None:
        table = pq.read_table(path)
        for c in columns:
            table = table.set_column(table.column_names.index(c), c, table[c].cast(pa.timestamp("us", "UTC"))
                                     .cast(pa.timestamp("us", "Europe/Paris")))
        pq.write_table(table, path)

    to_paris(_days(hostile)[3] / "part-0.parquet", ["created_at"])
    to_paris(Path(hostile.lake.path, "listings", "part-0.parquet"), ["starts_at", "ends_at"])
    to_paris(Path(hostile.lake.path, "users", "part-0.parquet"), ["created_at"])

    res = ingest(hostile)
    assert res.counts["timezones"] == {"aware_files": 3, "naive_files": 9, "text_files": 0}
    pd.testing.assert_frame_equal(res.interactions, baseline.interactions)
    pd.testing.assert_frame_equal(res.listings, baseline.listings)
    assert str(res.listings["ends_at"].dtype) == "datetime64[us]"


def test_an_aware_bid_counts_in_the_window_by_its_utc_time(hostile):
    days = _days(hostile)
    good = _good_rows(hostile, 2, 10**12)
    first = pd.Timestamp(days[0].name[len("date="):])
    # 00:30 in Paris on the window's first day is 23:30 UTC the day before: outside; 02:30 in Paris is inside
    at = [first + pd.Timedelta(minutes=30), first + pd.Timedelta(hours=2, minutes=30)]
    table = pa.Table.from_pandas(good).set_column(4, "created_at", pa.array(
        [t.tz_localize("Europe/Paris") for t in at], pa.timestamp("us", "Europe/Paris")))
    pq.write_table(table, days[0] / "paris.parquet")
    res = ingest(hostile)
    assert _reason_of(res, "paris.parquet:0") == schema.OUTSIDE_WINDOW
    assert not _bid_rejects(res)["row"].str.endswith("paris.parquet:1").any()


# --- 4. numbers ----------------------------------------------------------------------------------------

def test_non_finite_and_absurd_amounts_and_prices(hostile):
    day = _days(hostile)[-1]
    amounts = pa.array([float("inf"), float("-inf"), float("nan"), 1e308, None, 12.5])
    table = pa.Table.from_pandas(_good_rows(hostile, 6, 10**12)).set_column(3, "amount", amounts)
    pq.write_table(table, day / "numbers.parquet")
    path = Path(hostile.lake.path, "listings", "part-0.parquet")
    listings = pq.read_table(path)
    odd = listings.slice(0, 5).set_column(0, "listing_id", pa.array([9_000_001 + i for i in range(5)]))
    odd = odd.set_column(4, "price", pa.array([float("inf"), float("nan"), -1.0, 1e308, 0.0]))
    pq.write_table(pa.concat_tables([listings, odd]), path)

    res = ingest(hostile)
    # NaN and null are one thing once in pandas: a missing amount, as a NULL from the database is
    assert [_reason_of(res, f"numbers.parquet:{i}") for i in range(5)] == [
        schema.NON_FINITE, schema.NON_FINITE, schema.BAD_AMOUNT, schema.ABSURD_AMOUNT, schema.BAD_AMOUNT]
    assert not _bid_rejects(res)["row"].str.endswith("numbers.parquet:5").any()
    rejected = res.rejects[res.rejects["source"] == "listings"]
    by_id = {json.loads(r)["listing_id"]: reason for r, reason in zip(rejected["record"], rejected["reason"])}
    assert by_id == {9_000_001: schema.NON_FINITE, 9_000_002: schema.BAD_AMOUNT,
                     9_000_003: schema.NEGATIVE_AMOUNT, 9_000_004: schema.ABSURD_AMOUNT}
    assert 9_000_005 in set(res.listings["listing_id"])  # a price of 0 is a price


# --- 5. blank text -------------------------------------------------------------------------------------

def test_blank_uids_are_missing_ids_and_blank_listing_text_is_kept(hostile):
    day = _days(hostile)[-1]
    rows = _good_rows(hostile, 5, 10**12)
    path = Path(hostile.lake.path, "listings", "part-0.parquet")
    listings = pq.read_table(path)
    blank = listings.slice(0, 1).to_pandas().assign(listing_id=9_000_001, title="  ", category=" \t ",
                                                    sub_category=None, seller_id=" ", status=" Live ")
    pq.write_table(pa.concat_tables([listings, pa.Table.from_pandas(blank, schema=listings.schema)]), path)
    rows = rows.assign(uid=["", "   ", "\u3000", None, " buyer-x "], listing_id=9_000_001)
    pq.write_table(pa.Table.from_pandas(rows), day / "blank.parquet")

    res = ingest(hostile)
    assert [_reason_of(res, f"blank.parquet:{i}") for i in range(4)] == [schema.MISSING_ID] * 4
    kept = res.listings.set_index("listing_id").loc[9_000_001]
    assert (kept["title"], kept["category"], kept["sub_category"]) == ("unknown", schema.UNKNOWN_CATEGORY,
                                                                       schema.UNKNOWN_CATEGORY)
    assert pd.isna(kept["seller_id"]) and kept["status"] == "live"
    mine = res.interactions[res.interactions["item_id"] == 9_000_001]
    assert mine["uid"].tolist() == ["buyer-x"] and mine["category"].tolist() == [schema.UNKNOWN_CATEGORY]


# --- 6. future days --------------------------------------------------------------------------------------

def _add_day(settings, day: dt.date, rows: pd.DataFrame) -> None:
    folder = Path(lake.bids_partition(settings.lake.path, day))
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(rows), folder / "part-0.parquet")


def test_a_future_day_folder_never_moves_the_window(hostile, baseline):
    future = TODAY + dt.timedelta(days=30)
    _add_day(hostile, future, _good_rows(hostile, 3, 10**12).assign(created_at=pd.Timestamp(future)))
    res = ingest(hostile)
    assert res.window == baseline.window
    assert res.counts["ignored_future_days"] == [str(future)]
    assert _bids(res) == _bids(baseline)  # its bids are not input of this run


def test_tomorrow_is_within_the_tolerance_and_later_stamps_are_outside_the_window(hostile):
    tomorrow = TODAY + dt.timedelta(days=1)
    stamps = [pd.Timestamp(tomorrow) + pd.Timedelta(hours=1), pd.Timestamp("2031-01-01")]
    _add_day(hostile, tomorrow, _good_rows(hostile, 2, 10**12).assign(created_at=stamps))
    res = ingest(hostile)
    assert res.window.end == pd.Timestamp(tomorrow + dt.timedelta(days=1))
    assert res.counts["ignored_future_days"] == []
    assert _reason_of(res, f"date={tomorrow}/part-0.parquet:1") == schema.OUTSIDE_WINDOW


def test_only_future_day_folders_is_an_input_error(hostile):
    for folder in _days(hostile):
        shutil.rmtree(folder)
    _add_day(hostile, TODAY + dt.timedelta(days=30), pd.DataFrame(columns=BID_COLUMNS))
    with pytest.raises(InputError, match=r"/bids: every day folder is dated after .*set ingest\.run_date"):
        ingest(hostile)


# --- 7. folder names -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["date=2026-13-45", "date=yesterday", "backup", "stray.parquet"])
def test_an_entry_of_bids_that_is_no_day_folder_is_an_input_error(hostile, name):
    entry = Path(hostile.lake.path, "bids", name)
    if name.endswith(".parquet"):
        shutil.copy(_days(hostile)[0] / "part-0.parquet", entry)
    else:
        shutil.copytree(_days(hostile)[0], entry)
    with pytest.raises(InputError) as err:
        ingest(hostile)
    assert str(err.value) == (f"{entry}: not a day folder of bids/ (bids/date=YYYY-MM-DD/*.parquet with a real "
                              "date); rename it or move it out of bids/")


def test_a_folder_inside_a_day_folder_is_an_input_error(hostile):
    nested = _days(hostile)[-1] / "part-1.parquet"  # a Spark-style dataset folder
    nested.mkdir()
    shutil.copy(_days(hostile)[0] / "part-0.parquet", nested / "part-00000.parquet")
    with pytest.raises(InputError, match=rf"^{nested}: a folder where Parquet files belong; move its files up "):
        ingest(hostile)


def test_hidden_entries_are_skipped(hostile, baseline):
    bids = Path(hostile.lake.path, "bids")
    (bids / "_SUCCESS").write_bytes(b"")
    (bids / ".upload-1234").mkdir()
    (_days(hostile)[-1] / ".part-1.parquet").write_bytes(b"half an upload")
    assert _bids(ingest(hostile)) == _bids(baseline)


# --- 8. missing parts -------------------------------------------------------------------------------------

def test_check_lake_names_everything_missing(hostile):
    root = Path(hostile.lake.path)
    fs, path = lake.filesystem(str(root))
    lake.check_lake(fs, path)  # a whole lake passes
    shutil.rmtree(root / "users")
    with pytest.raises(InputError) as err:
        ingest(hostile)
    assert str(err.value) == (f"{root}/users: missing the users snapshot (users/*.parquet); "
                              "re-extract it (encore extract) or point --lake at a complete lake")
    (root / "users").mkdir()  # an empty folder is no snapshot either
    shutil.rmtree(root / "listings")
    shutil.rmtree(root / "bids")
    with pytest.raises(InputError) as err:
        lake.check_lake(fs, path)
    assert str(err.value).split("; ")[:3] == [
        f"{root}/listings: missing the listings snapshot (listings/*.parquet)",
        f"{root}/users: missing the users snapshot (users/*.parquet)",
        f"{root}/bids: missing the bid day folders (bids/date=YYYY-MM-DD/*.parquet)"]


def test_a_file_gone_before_it_is_read_is_an_input_error(tmp_path):
    fs, path = lake.filesystem(str(tmp_path / "gone.parquet"))
    with pytest.raises(InputError, match=r"gone\.parquet: gone while the run read the lake .*run again once"):
        lake.read_bytes(fs, path)


def test_a_lake_path_that_is_a_file_or_nothing_is_an_input_error(tmp_path):
    csv = tmp_path / "some.csv"
    csv.write_text("uid,userName\n")
    fs, path = lake.filesystem(str(csv))
    with pytest.raises(InputError, match=r"some\.csv is a file, not a lake folder; for a legacy CSV use --legacy-csv"):
        lake.check_lake(fs, path)
    settings = small_settings(tmp_path / "nowhere")
    with pytest.raises(InputError, match=r"nowhere/lake: no such lake folder"):
        ingest(settings)


# --- 9. every row accounted for, whatever the lake holds ------------------------------------------------

_examples = itertools.count()


def _moment(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time())


any_id = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))
any_uid = st.one_of(st.none(), st.sampled_from(["", "   ", "\u3000", "u\x01"]),
                    st.text(st.characters(exclude_categories=("Cs",)), max_size=6))
any_time = st.one_of(st.none(), st.datetimes(dt.datetime(2, 1, 1), dt.datetime(9998, 12, 31)))
good_bid = st.tuples(st.integers(1, 40), st.sampled_from(["u1", " u2 ", "u3"]), st.integers(1, 4),
                     st.floats(0.5, 1000.0),
                     st.datetimes(_moment(TODAY - dt.timedelta(days=3)), _moment(TODAY)))
any_bid = st.tuples(any_id, any_uid, any_id, st.one_of(st.none(), st.floats(), st.just(1e308)), any_time)
day_file = st.tuples(st.lists(st.one_of(good_bid, any_bid), max_size=10),
                     st.sampled_from([None, "UTC", "Asia/Kolkata", "America/New_York"]), st.booleans())
good_listing = st.tuples(st.integers(1, 4), st.sampled_from(["Shoes", " ", None]), st.floats(0.0, 500.0),
                         st.sampled_from(["live", "sold", "Live ", "unsold"]))
any_listing = st.tuples(any_id, st.one_of(st.none(), st.text(max_size=4)), st.floats(),
                        st.one_of(st.none(), st.text(max_size=5)))


def _column(values: list, kind: pa.DataType, as_text: bool) -> pa.Array:
    """``values`` as an Arrow column of ``kind``, or as the text a careless export would write."""
    if not as_text:
        return pa.array(values, kind)
    text = [None if v is None else v.isoformat() if isinstance(v, dt.datetime) else str(v) for v in values]
    return pa.array(text, pa.string())


def _write_lake(root: Path, files: list, listings: list) -> int:
    """Day files (newest first, ending today) plus a listings and a users snapshot; the bids written."""
    kinds = [pa.int64(), pa.string(), pa.int64(), pa.float64()]
    for i, (rows, zone, as_text) in enumerate(files):
        folder = root / "bids" / f"date={TODAY - dt.timedelta(days=i)}"
        folder.mkdir(parents=True)
        cols = list(zip(*rows)) if rows else [()] * 5
        if zone:
            local = ZoneInfo(zone)
            cols[4] = [None if t is None else t.replace(tzinfo=dt.UTC).astimezone(local) for t in cols[4]]
        table = {name: _column(list(values), kind, as_text)
                 for name, values, kind in zip(BID_COLUMNS, cols, [*kinds, pa.timestamp("us", zone)])}
        pq.write_table(pa.table(table), folder / "part-0.parquet")
    cols = list(zip(*listings)) if listings else [()] * 4
    (root / "listings").mkdir(parents=True)
    kinds = {"listing_id": pa.int64(), "category": pa.string(), "price": pa.float64(), "status": pa.string()}
    pq.write_table(pa.table({c: pa.array(v, kind) for (c, kind), v in zip(kinds.items(), cols)}),
                   root / "listings" / "part-0.parquet")
    (root / "users").mkdir(parents=True)
    pq.write_table(pa.table({"uid": ["u1", "u2"], "user_name": ["A", "B"]}), root / "users" / "part-0.parquet")
    return sum(len(rows) for rows, _, _ in files)


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(day_file, min_size=1, max_size=3),
       listings=st.lists(st.one_of(good_listing, any_listing), max_size=6))
def test_every_bid_written_is_accepted_or_rejected(tmp_path, files, listings):
    """Whatever the day files and listings hold, in whichever types: rows in = written = accepted + rejected.

    Asks for no client: run alone, this module also checks ingest without one."""
    base = tmp_path / f"example-{next(_examples)}"
    written = _write_lake(base / "lake", files, listings)
    res = ingest(small_settings(base))
    bids = res.counts["sources"]["bids"]
    assert bids["rows_in"] == written == bids["rows_accepted"] + bids["rows_rejected"]
    assert res.interactions["n_bids"].sum() == bids["rows_accepted"]
    listings_in = res.counts["sources"]["listings"]
    assert listings_in["rows_in"] == len(listings) == listings_in["rows_accepted"] + listings_in["rows_rejected"]
