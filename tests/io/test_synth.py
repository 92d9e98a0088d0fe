import numpy as np
import pandas as pd

from encore.config import SynthSettings
from encore.io import lake
from encore.io.synth import CATEGORIES, Marketplace, write_lake


def _bids(market: Marketplace) -> pd.DataFrame:
    return pd.concat([b for _, b in market.bid_days()], ignore_index=True)


def test_same_seed_same_marketplace_other_seed_differs():
    a, b = Marketplace(SynthSettings(users=200, days=5, seed=1)), Marketplace(SynthSettings(users=200, days=5, seed=1))
    pd.testing.assert_frame_equal(_bids(a), _bids(b))
    pd.testing.assert_frame_equal(a.listings(), b.listings())
    c = Marketplace(SynthSettings(users=200, days=5, seed=2))
    assert not _bids(a)["uid"].equals(_bids(c)["uid"])


def test_popularity_and_activity_are_heavy_tailed():
    market = Marketplace(SynthSettings(users=2000, days=20, seed=3))
    bids = _bids(market)
    per_listing = bids.groupby("listing_id").size().sort_values(ascending=False)
    top_decile = per_listing.head(max(1, len(per_listing) // 10)).sum() / per_listing.sum()
    assert top_decile > 0.35  # a uniform draw would give about 0.10
    per_user = bids.groupby("uid").size()
    assert per_user.max() > 10 * per_user.median()


def test_dates_statuses_and_amounts():
    settings = SynthSettings(users=500, days=7, seed=4)
    market = Marketplace(settings)
    days = market.days()
    assert len(days) == 7 and days[-1] == settings.end_date
    listings = market.listings()
    assert set(listings["status"]) == {"live", "sold", "unsold"}
    assert set(listings["category"]) <= set(CATEGORIES)
    for day, bids in market.bid_days():
        assert (bids["created_at"].dt.date == day).all()
        joined = bids.merge(listings, on="listing_id")
        assert len(joined) == len(bids)
        assert (joined["created_at"] >= joined["starts_at"]).all() and (joined["created_at"] <= joined["ends_at"]).all()
        assert (bids["amount"] > 0).all()
        ratio = joined["amount"] / joined["price"]
        assert 0.5 < ratio.median() < 2.0
    sold = listings[listings["status"] == "sold"]
    assert (sold["ends_at"] <= pd.Timestamp(settings.end_date) + pd.Timedelta(days=1)).all()
    bid_on = set(_bids(market)["listing_id"])
    assert set(sold["listing_id"]) <= bid_on
    assert not set(listings.loc[listings["status"] == "unsold", "listing_id"]) & bid_on


def test_write_lake_partitions_by_day(tmp_path):
    fs, root = lake.filesystem(str(tmp_path / "lake"))
    counts = write_lake(SynthSettings(users=100, days=3, seed=5), fs, root)
    assert lake.bid_days(fs, root) == Marketplace(SynthSettings(users=100, days=3, seed=5)).days()
    on_disk = pd.read_parquet(tmp_path / "lake" / "bids")
    assert len(on_disk) == counts["bids"]
    assert np.array_equal(np.sort(on_disk["bid_id"]), np.unique(on_disk["bid_id"]))
    assert lake.read_snapshot(fs, root, "users")["uid"].is_unique
