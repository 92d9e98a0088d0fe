import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from encore import schema
from encore.ingest import ingest
from encore.io import lake
from encore.synth import write_lake
from encore.validate import RejectRatioError, check_reject_ratio
from tests.conftest import small_settings


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
    lake.write_parquet(fs, lake.join(lake.bids_partition(root, day), "zz-salt.parquet"), pa.Table.from_pandas(frame))
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
