"""The UCI adapter: row accounting on a tiny hand-made file and on the real data."""


import pandas as pd
import pytest

from encore.io.uci import read_uci, to_interactions
from tests.helpers import SHARED_DATA, requires_shared_data

DATA = SHARED_DATA
UCI = DATA / "online_retail_uci.csv.gz"

TINY = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom
536365,71053,LANTERN,2,2010-12-01 08:26:00,3.00,17850.0,United Kingdom
536366,85123A,HEART,4,2010-12-02 09:00:00,2.45,17850.0,United Kingdom
536367,71053,LANTERN,1,2010-12-02 10:00:00,3.00,,United Kingdom
C536368,71053,LANTERN,-1,2010-12-03 10:00:00,3.00,13047.0,United Kingdom
536369,22752,SET,-5,2010-12-03 11:00:00,7.65,13047.0,United Kingdom
536370,B,ADJUST,1,2010-12-03 12:00:00,0.0,13047.0,United Kingdom
536371,22752,SET,1,2010-12-04 12:00:00,7.65,13047.0,United Kingdom
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.csv"
    path.write_text(TINY)
    return read_uci(path)


def test_row_accounting_on_tiny_file(tiny):
    events, report = tiny
    # 8 lines: 1 with no customer, 1 cancelled, 1 returned (quantity -5), 1 zero price; 4 kept.
    assert report.rows_in == 8 and report.rows_kept == 4 == len(events)
    assert report.dropped == {
        "no_customer": 1,
        "cancelled": 1,
        "quantity_not_positive": 1,
        "price_not_positive": 1,
    }
    assert report.balanced
    assert events["uid"].tolist() == ["17850", "17850", "17850", "13047"]


def test_interactions_aggregate_lines(tiny):
    inter, items = to_interactions(tiny[0])
    # Sorted codes 22752, 71053, 85123A -> ids 0, 1, 2.
    assert items.to_dict() == {"22752": 0, "71053": 1, "85123A": 2}
    heart = inter[(inter["uid"] == "17850") & (inter["item_id"] == 2)].iloc[0]
    # Two lines: 6 x 2.55 + 4 x 2.45 = 15.30 + 9.80 = 25.10; median price (2.55 + 2.45)/2 = 2.50.
    assert heart["n_bids"] == 2 and heart["spend"] == pytest.approx(25.10)
    assert heart["price"] == pytest.approx(2.50) and heart["won"]
    assert heart["first_at"] == pd.Timestamp("2010-12-01 08:26") and heart["last_at"] == pd.Timestamp(
        "2010-12-02 09:00"
    )
    assert len(inter) == 3 and inter["first_at"].dtype == "datetime64[ns]" and inter["category"].isna().all()


def test_interactions_reuse_a_mapping(tiny):
    events = tiny[0]
    _, items = to_interactions(events)
    subset, same = to_interactions(events[events["stock_code"] == "71053"], items)
    assert same is items and subset["item_id"].tolist() == [1]


@pytest.mark.realdata
@requires_shared_data("online_retail_uci.csv.gz")
def test_real_file_row_accounting():
    events, report = read_uci(UCI)
    assert report.rows_in == 541_909 and report.rows_kept == 397_884 and report.balanced
    assert report.dropped["no_customer"] == 135_080
    assert events["uid"].nunique() == 4_338 and events["stock_code"].nunique() == 3_665
    inter, items = to_interactions(events)
    assert len(inter) == 266_792 and len(items) == 3_665
    assert inter["n_bids"].sum() == 397_884
