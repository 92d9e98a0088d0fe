import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from encore import schema
from encore.io import atomic, lake
from encore.io.synth import write_lake
from encore.job.ingest import _bid_frame, daily_of, distinct_by_key, ingest, interactions_of, key_codes
from encore.job.validate import RejectRatioError, check_reject_ratio
from tests.helpers import small_settings


@pytest.fixture
def salted(tmp_path):
    """A small synthetic lake plus one extra file holding one bad row of each kind (all columns text)."""
    settings = small_settings(tmp_path)
    fs, root = lake.filesystem(settings.lake.path)
    write_lake(settings.synth, fs, root)
    day = lake.bid_days(fs, root)[-1]
    good = pd.read_parquet(lake.bids_partition(root, day)).iloc[0]
    ts = str(good["created_at"])
    rows = {
        schema.MISSING_ID: [None, good["uid"], good["listing_id"], "5", ts],
        schema.BAD_AMOUNT: [9001, good["uid"], good["listing_id"], "abc", ts],
        schema.NEGATIVE_AMOUNT: [9002, good["uid"], good["listing_id"], "-3", ts],
        schema.ABSURD_AMOUNT: [9003, good["uid"], good["listing_id"], "1e12", ts],
        schema.BAD_TIMESTAMP: [9004, good["uid"], good["listing_id"], "5", "not a time"],
        schema.OUTSIDE_WINDOW: [9005, good["uid"], good["listing_id"], "5", "2031-01-01 00:00:00"],
        schema.CONTROL_CHARS: [9006, "u\x01x", good["listing_id"], "5", ts],
        schema.UNKNOWN_LISTING: [9007, good["uid"], 42, "5", ts],
        schema.DUPLICATE_BID: [good["bid_id"], "someone-else", good["listing_id"], "5", ts],
    }
    frame = pd.DataFrame(list(rows.values()), columns=[f.name for f in schema.BIDS]).astype("string")
    atomic.write_table(fs, lake.join(lake.bids_partition(root, day), "zz-salt.parquet"), pa.Table.from_pandas(frame))
    return settings, list(rows)


def test_each_bad_row_goes_to_rejects_with_its_reason(salted, client):
    settings, reasons = salted
    res = ingest(settings)
    bids = res.rejects[res.rejects["source"] == "bids"]
    assert sorted(bids["reason"]) == sorted(reasons), bids[["reason", "record"]].to_string()
    assert all(r.startswith("date=") and "zz-salt.parquet:" in r for r in bids["row"])
    dup = json.loads(bids.loc[bids["reason"] == schema.DUPLICATE_BID, "record"].iloc[0])
    assert dup["uid"] == "someone-else"  # the later copy is the one rejected
    c = res.counts
    assert c["rows_in"] == c["rows_accepted"] + c["rows_rejected"]
    assert c["sources"]["bids"]["rows_rejected"] == len(reasons)


def test_rows_in_equal_accepted_plus_rejected_and_interactions_add_up(salted):
    settings, reasons = salted
    res = ingest(settings)
    files = Path(settings.lake.path, "bids").rglob("*.parquet")
    n_raw = sum(pq.read_metadata(f).num_rows for f in files)
    assert res.counts["sources"]["bids"]["rows_in"] == n_raw
    assert res.interactions["n_bids"].sum() == n_raw - len(reasons)
    assert not res.interactions.duplicated(["uid", "item_id"]).any()


def test_won_only_on_sold_listings_one_winner_each(settings):
    fs, root = lake.filesystem(settings.lake.path)
    write_lake(settings.synth, fs, root)
    res = ingest(settings)
    inter = res.interactions
    sold = set(res.listings.loc[res.listings["status"] == "sold", "listing_id"])
    winners = inter[inter["won"]]
    assert set(winners["item_id"]) <= sold
    assert winners["item_id"].is_unique
    top = inter.groupby("item_id")["max_amount"].max()
    assert (winners.set_index("item_id")["max_amount"] == top.reindex(winners["item_id"])).all()


def test_reject_ratio_stops_the_run():
    counts = {"rows_in": 100, "rows_accepted": 90, "rows_rejected": 10}
    check_reject_ratio(counts, 0.10)
    with pytest.raises(RejectRatioError, match="10 of 100"):
        check_reject_ratio(counts, 0.05)


def _add_bid_file(settings, name: str, rows: list[list]) -> tuple[object, str]:
    """Write ``rows`` (bid_id, uid, listing_id, amount, created_at) as one more file of the newest day."""
    fs, root = lake.filesystem(settings.lake.path)
    day = lake.bid_days(fs, root)[-1]
    frame = pd.DataFrame(rows, columns=[f.name for f in schema.BIDS])
    atomic.write_table(fs, lake.join(lake.bids_partition(root, day), name), pa.Table.from_pandas(frame))
    return fs, root


def test_bidder_missing_from_the_users_snapshot_keeps_their_uid(settings, client):
    fs, root = lake.filesystem(settings.lake.path)
    write_lake(settings.synth, fs, root)
    good = pd.read_parquet(lake.bids_partition(root, lake.bid_days(fs, root)[-1])).iloc[0]
    _add_bid_file(settings, "zz-new.parquet",
                  [[10**15, "  walk-in-buyer ", good["listing_id"], 5.0, good["created_at"]]])
    inter = ingest(settings).interactions
    mine = inter[inter["uid"] == "walk-in-buyer"]  # stripped, named from the bids, not the snapshot
    assert len(mine) == 1 and mine["item_id"].iloc[0] == good["listing_id"]
    assert inter["uid"].cat.categories.is_unique


def test_repeated_bid_id_within_one_file_keeps_the_first_row(settings, client):
    fs, root = lake.filesystem(settings.lake.path)
    write_lake(settings.synth, fs, root)
    good = pd.read_parquet(lake.bids_partition(root, lake.bid_days(fs, root)[-1])).iloc[0]
    row = [10**15 + 1, good["uid"], good["listing_id"], 5.0, good["created_at"]]
    _add_bid_file(settings, "zz-twice.parquet", [row, [*row[:3], 7.0, row[4]]])
    res = ingest(settings)
    dup = res.rejects[res.rejects["reason"] == schema.DUPLICATE_BID]
    assert dup["row"].str.endswith("zz-twice.parquet:1").tolist() == [True]
    assert json.loads(dup["record"].iloc[0])["amount"] == 7.0


def test_distinct_by_key_drops_repeated_names_and_refuses_a_collision():
    names = np.array(["b", "a", "b", "c", "a"], dtype=object)
    got, keys = distinct_by_key(names)
    assert sorted(got) == ["a", "b", "c"] and np.all(np.diff(keys) > 0)
    assert list(keys) == list(schema.user_keys(got))  # each name keeps its own key
    with pytest.raises(ValueError, match="share a 64-bit user key"):  # two names, one key
        distinct_by_key(np.array(["x", "y", "x"], dtype=object), np.array([7, 7, 7], np.int64))


@pytest.mark.parametrize("keys", [np.array([-5, -5, 3, 3, 3, 9], np.int64), np.array([9, -5, 3, -5, 3, 3], np.int64),
                                  np.zeros(0, np.int64)])
def test_key_codes_are_a_sorted_factorize(keys):
    codes, uniques = key_codes(keys)
    want_codes, want_uniques = pd.factorize(keys, sort=True)
    assert codes.dtype == np.int32 and codes.tolist() == want_codes.tolist()
    assert list(uniques) == list(want_uniques)


def _bids(sorted_keys: bool, n: int = 5000, seed: int = 0) -> pd.DataFrame:
    """Valid bids of few users and listings, so pairs repeat; created over ten days."""
    rng = np.random.default_rng(seed)
    ukey = rng.choice(np.array([-(2**62), -5, 0, 7, 2**62 + 3]), n)
    frame = pd.DataFrame({"ukey": ukey, "listing_id": rng.integers(1, 40, n) * 1000,
                          "amount": rng.gamma(2.0, 10.0, n).round(2),
                          "created_at": (pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 10 * 86400, n),
                                                                                   unit="s")).astype("datetime64[us]")})
    return frame.sort_values("ukey", kind="stable").reset_index(drop=True) if sorted_keys else frame


def _interactions_reference(bids, recent_from, previous_from):
    created = bids["created_at"]
    bids = bids.assign(recent=(created >= recent_from).astype("int8"),
                       previous=((created >= previous_from) & (created < recent_from)).astype("int8"))
    return bids.groupby(["ukey", "listing_id"], sort=True).agg(
        n_bids=("amount", "count"), spend=("amount", "sum"), max_amount=("amount", "max"),
        first_at=("created_at", "min"), last_at=("created_at", "max"),
        recent=("recent", "max"), previous=("previous", "max")).astype({"n_bids": "int32"}).reset_index()


@pytest.mark.parametrize("sorted_keys", [True, False])
def test_interactions_of_matches_a_pandas_groupby(sorted_keys):
    bids = _bids(sorted_keys)
    recent_from, previous_from = pd.Timestamp("2026-01-08"), pd.Timestamp("2026-01-05")
    got = interactions_of(bids, recent_from, previous_from)
    want = _interactions_reference(bids, recent_from, previous_from)
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12)
    assert interactions_of(bids.iloc[:0], recent_from, previous_from).empty


@pytest.mark.parametrize("sorted_keys", [True, False])
def test_daily_of_counts_bids_bidders_and_first_days(sorted_keys):
    bids = _bids(sorted_keys, n=300, seed=1)
    got = daily_of(bids).set_index("date")
    day = bids["created_at"].dt.floor("D")
    assert (got["bids"] == bids.groupby(day).size()).all()
    assert (got["bidders"] == bids.groupby(day)["ukey"].nunique()).all()
    first = bids.groupby("ukey")["created_at"].min().dt.floor("D").value_counts()
    assert (got["new_bidders"] == first.reindex(got.index, fill_value=0)).all()
    assert got["new_bidders"].sum() == bids["ukey"].nunique()
    assert daily_of(bids.iloc[:0]).empty


def test_report_figures_from_the_partitions_equal_those_from_the_gathered_interactions(salted, client):
    from encore.job import report
    from encore.report.build import interaction_figures
    from tests.report.test_tables import _assert_same_figures

    settings, _ = salted
    res = ingest(settings)
    assert res.report is not None and res.report.users == res.interactions["uid"].nunique()
    _assert_same_figures(report.figures(res), interaction_figures(res.interactions, res.listings))


def test_a_day_file_converts_as_arrow_converts_it():
    """The uid Categorical built from codes and dictionary is Arrow's own conversion: chunks with their own
    dictionaries, a null uid, and ids with holes as nullable integers."""
    uid = pa.chunked_array([pa.array(["u2", "u1", None, "u2"]).dictionary_encode(),
                            pa.array(["u3", "u1"]).dictionary_encode()])
    table = pa.table({"bid_id": pa.array([1, 2, 3, None, 5, 6], pa.int64()), "uid": uid,
                      "amount": pa.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])})
    want = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    pd.testing.assert_frame_equal(_bid_frame(table), want)
    pd.testing.assert_frame_equal(_bid_frame(table.slice(0, 0)), table.slice(0, 0).to_pandas())
