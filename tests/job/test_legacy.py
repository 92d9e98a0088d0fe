import csv

import pandas as pd
import pytest

from encore import schema
from encore.io.legacy import COLUMNS, read_legacy
from encore.job.ingest import ingest
from tests.helpers import small_settings


def test_real_sample_every_row_accounted_for(tmp_path, legacy_csv):
    settings = small_settings(tmp_path, lake={"legacy_csv": str(legacy_csv)})
    res = ingest(settings)
    c = res.counts
    assert c["rows_in"] == 3373 == c["rows_accepted"] + c["rows_rejected"]
    assert res.interactions["n_bids"].sum() + 0 == pd.to_numeric(read_legacy(str(legacy_csv))["counts"]).sum() - \
        res.rejects["record"].map(lambda r: int(__import__("json").loads(r)["counts"])).sum()
    assert res.interactions["sub_category"].str.contains("\r|\n").sum() == 0
    assert "Designer Toys" in set(res.interactions["sub_category"])
    assert not res.interactions["uid"].str.startswith(" ").any()
    assert set(res.listings["status"]) == {"live"} and not res.has_time


def test_salted_csv_sends_exactly_the_bad_rows(tmp_path, legacy_csv):
    head = legacy_csv.read_text().splitlines(keepends=True)[:6]
    bad = [
        '"","user_x","Memorabilia","Pop Culture Memorabilia","Poster","1","1","5"\n',
        '"u-2","user_y","Memorabilia","Pop Culture Memorabilia","Poster","1","two","5"\n',
        '"u-3","user_z","Memorabilia","Pop Culture Memorabilia","Poster","1","1","-5"\n',
        '"u-4","user_w","Memorabilia","Pop Culture Memorabilia","Poster","1","1","99999999999"\n',
        '"u-5","user_v","Memorabilia","Pop\x07 Culture","Poster","1","1","5"\n',
        head[1],
    ]
    path = tmp_path / "salted.csv"
    path.write_text("".join(head) + "".join(bad) + '"u-6","user_q","Collectible Toys","Designer\r\nToys","Bear","2","1","3"\n')
    res = ingest(small_settings(tmp_path, lake={"legacy_csv": str(path)}))
    assert list(res.rejects["reason"]) == [schema.MISSING_ID, schema.BAD_AMOUNT, schema.NEGATIVE_AMOUNT,
                                           schema.ABSURD_AMOUNT, schema.CONTROL_CHARS, "duplicate_row"]
    assert res.counts["rows_in"] == 5 + len(bad) + 1
    assert "user_" not in "".join(res.rejects["record"])  # names never leave the lake
    assert "Designer Toys" in set(res.interactions["sub_category"])


# A small grocery extract in the legacy format, shaped like dunnhumby's "The Complete Journey": departments
# as catagory, commodities as sub_catagory. One row has no department, four no commodity (one only white
# space), and FROZEN and BREAD are commodities of two departments each.
JOURNEY = [  # uid, userName, catagory, sub_catagory, product, listing_amount, counts, total_bid_amount
    ("hh-0001", "user_j1", "GROCERY", "FROZEN", "Frozen Pizza", "4.99", "2", "9.98"),
    ("hh-0001", "user_j1", "MEAT", "FROZEN", "Frozen Pizza", "4.99", "1", "4.99"),
    ("hh-0001", "user_j1", "GROCERY", "BREAD", "White Loaf", "1.29", "3", "3.87"),
    ("hh-0002", "user_j2", "PASTRY", "BREAD", "White Loaf", "1.29", "1", "1.29"),
    ("hh-0002", "user_j2", "PRODUCE", "", "Bananas", "0.59", "6", "3.54"),
    ("hh-0002", "user_j2", "DRUG GM", "", "Toothpaste", "2.49", "1", "2.49"),
    ("hh-0003", "user_j3", "", "SOFT DRINKS", "Cola 2L", "1.99", "4", "7.96"),
    ("hh-0003", "user_j3", "MEAT", "   ", "Ground Beef", "5.49", "2", "10.98"),
    ("hh-0004", "user_j4", "GROCERY", "", "Rice 1kg", "2.19", "1", "2.19"),
    ("hh-0004", "user_j4", "PRODUCE", "APPLES", "Gala Apples", "0.79", "5", "3.95"),
]


def test_complete_journey_style_grocery_blank_categories_are_unknown(tmp_path):
    path = tmp_path / "journey.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([COLUMNS, *JOURNEY])
    res = ingest(small_settings(tmp_path, lake={"legacy_csv": str(path)}))
    c = res.counts
    assert c["rows_in"] == len(JOURNEY) == c["rows_accepted"] and c["rows_rejected"] == 0
    inter = res.interactions
    assert (inter["category"] == schema.UNKNOWN_CATEGORY).sum() == 1
    assert (inter["sub_category"] == schema.UNKNOWN_CATEGORY).sum() == 4
    assert inter["n_bids"].sum() == sum(int(r[6]) for r in JOURNEY)
    assert inter["spend"].sum() == pytest.approx(sum(float(r[7]) for r in JOURNEY))
    shared = res.listings[res.listings["sub_category"].isin(["FROZEN", "BREAD"])]
    assert len(shared) == 4 and shared.groupby("sub_category")["category"].nunique().to_dict() == {"BREAD": 2,
                                                                                                   "FROZEN": 2}
    assert res.listings["listing_id"].is_unique and len(res.listings) == len(JOURNEY)
