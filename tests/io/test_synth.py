import itertools

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


def _closing(settings: SynthSettings) -> tuple[float, int]:
    """Share of the bids on auctions ending that day placed in their last ``snipe_hours``, and how many
    bids went to auctions ending that day."""
    market = Marketplace(settings)
    joined = _bids(market).merge(market.listings()[["listing_id", "ends_at"]], on="listing_id")
    ending = joined[joined["ends_at"].dt.normalize() == joined["created_at"].dt.normalize()]
    late = (ending["ends_at"] - ending["created_at"]) <= pd.Timedelta(hours=settings.snipe_hours)
    return float(late.mean()), len(ending)


def test_bids_snipe_auctions_ending_that_day():
    sniped, n_sniped = _closing(SynthSettings(users=800, days=10, seed=8))
    calm, n_calm = _closing(SynthSettings(users=800, days=10, seed=8, snipe_share=0.0, ending_pull=0.0))
    assert sniped > calm + 0.1  # bids cluster before the end
    assert n_sniped > 1.3 * n_calm  # and auctions ending that day draw more of them


def _band_spread(settings: SynthSettings) -> float:
    """Mean within-buyer standard deviation of log(listing price / category median) over the bids."""
    market = Marketplace(settings)
    joined = _bids(market).merge(market.listings()[["listing_id", "price", "category"]], on="listing_id")
    rel = np.log(joined["price"]) - np.log(joined.groupby("category")["price"].transform("median"))
    per_user = rel.groupby(joined["uid"]).agg(["std", "size"])
    return float(per_user[per_user["size"] >= 10]["std"].mean())


def test_buyers_keep_to_their_price_band():
    banded = _band_spread(SynthSettings(users=600, days=10, seed=9))
    flat = _band_spread(SynthSettings(users=600, days=10, seed=9, price_band_sd=0.0))
    assert banded < 0.8 * flat


def test_a_few_sellers_hold_many_listings_and_some_sell_and_buy():
    market = Marketplace(SynthSettings(users=2000, days=5, seed=10))
    listings = market.listings()
    per_seller = listings["seller_id"].value_counts()
    assert per_seller.iloc[0] > 5 * per_seller.median()
    buyers = set(market.users()["uid"])
    selling = listings[listings["seller_id"].isin(buyers)]
    assert len(selling) > 0
    bids = _bids(market).merge(listings[["listing_id", "seller_id"]], on="listing_id")
    assert not (bids["uid"] == bids["seller_id"]).any()  # nobody bids on their own listing


def _comeback_share(settings: SynthSettings) -> float:
    """Share of (buyer, listing) pairs outbid on a day, the auction running on, that the buyer bids on the next day."""
    market = Marketplace(settings)
    days = list(market.bid_days())
    ends = market.listings().set_index("listing_id")["ends_at"]
    back, total = 0, 0
    for (day, bids), (_, nxt) in itertools.pairwise(days):
        top = bids.sort_values(["amount", "created_at"], ascending=[False, True]).drop_duplicates("listing_id")
        leader = top.set_index("listing_id")["uid"]
        pairs = bids[["uid", "listing_id"]].drop_duplicates()
        running = ends.reindex(pairs["listing_id"]).to_numpy() > pd.Timestamp(day) + pd.Timedelta(days=1)
        outbid = pairs[(leader.reindex(pairs["listing_id"]).to_numpy() != pairs["uid"].to_numpy()) & running]
        again = outbid.merge(nxt[["uid", "listing_id"]].drop_duplicates(), how="inner")
        back, total = back + len(again), total + len(outbid)
    return back / total


def test_outbid_buyers_come_back():
    back = _comeback_share(SynthSettings(users=500, days=6, seed=12))
    organic = _comeback_share(SynthSettings(users=500, days=6, seed=12, comeback=0.0))  # popular listings, re-picked
    assert back > organic + 0.25
