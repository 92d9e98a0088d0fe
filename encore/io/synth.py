"""A synthetic marketplace: seeded, realistic in shape, any scale, generated one day at a time.

Buyers have a heavy-tailed activity level, a Dirichlet affinity over categories and a preferred price
level; listings have a power-law attractiveness, a price drawn per category, an auction window and a
seller (a few sellers hold many listings; some sellers are buyers too). Each day's bids pick a buyer by
activity, a category by affinity and a listing active that day by attractiveness, pulled towards
auctions ending that day and towards the buyer's price band, never the buyer's own listing; amounts sit
around the listing price and rise as the auction runs; bids on an auction ending that day cluster in
its last hours (sniping); buyers outbid one day come back the next while the auction runs. The
parameters are ``SynthSettings`` (docs/marketplace.md). Days are generated from ``(seed, day)`` (a day's
comebacks from the day before, regenerated), so a day never needs the others in memory, and the same
seed always gives the same marketplace.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator
from functools import cached_property

import fsspec
import numpy as np
import pandas as pd

from encore.config import SynthSettings
from encore.errors import InputError
from encore.io import atomic, lake

# Category tree: the legacy extract's names first, then a few common in second-hand fashion auctions.
CATEGORIES: dict[str, list[str]] = {
    "Collectible Toys": ["Funko", "Designer Toys"],
    "Memorabilia": ["Pop Culture Memorabilia"],
    "Trading Card Games": ["Pokemon", "Yu-Gi-Oh!", "Dragon Ball", "Other TCG"],
    "Comics & Manga": ["Modern Age Comics", "Bronze Age Comics"],
    "Celebrity Signings": ["TV Celebrities", "Movie Celebrities"],
    "Video Games & Consoles": ["Video Games"],
    "Sneakers & Streetwear": ["Sneakers", "Streetwear"],
    "Vintage Fashion": ["Denim", "Jackets"],
}
CATEGORY_SHARE = np.array([0.30, 0.15, 0.15, 0.06, 0.04, 0.06, 0.14, 0.10])
MEDIAN_PRICE = np.array([25.0, 40.0, 15.0, 12.0, 60.0, 35.0, 120.0, 45.0])
NOUNS = ["Figure", "Print", "Card", "Bundle", "Box", "Poster", "Pair", "Jacket", "Edition", "Set"]
PRICE_LEVELS = 7  # buyers' price levels are rounded to this many bands (one weight vector per band and category)
RISE = 0.3  # amounts rise by up to this share of the price over an auction's life


def _ids(rng: np.random.Generator, n: int) -> list[str]:
    """Opaque UUID-shaped ids, reproducible from ``rng``."""
    raw = rng.integers(0, 2**63, size=(n, 2), dtype=np.int64)
    return [str(uuid.UUID(int=(int(a) << 64 | int(b)) & (2**128 - 1), version=4)) for a, b in raw]


class Marketplace:
    """The synthetic marketplace described by ``SynthSettings``; every table is derived from the seed."""

    def __init__(self, settings: SynthSettings) -> None:
        self.settings = settings
        self.end = pd.Timestamp(settings.end_date) + pd.Timedelta(days=1)  # exclusive end of the last day
        self.start = self.end - pd.Timedelta(days=settings.days)

    def _rng(self, *salt: int) -> np.random.Generator:
        return np.random.default_rng([self.settings.seed, *salt])

    @property
    def n_listings(self) -> int:
        return max(20, int(self.settings.users * self.settings.listings_per_user))

    @cached_property
    def _sub_table(self) -> pd.DataFrame:
        rows = [(cat, sub) for cat, subs in CATEGORIES.items() for sub in subs]
        table = pd.DataFrame(rows, columns=["category", "sub_category"])
        table["category_id"] = table["category"].map({c: i + 1 for i, c in enumerate(CATEGORIES)})
        table["sub_category_id"] = np.arange(1, len(table) + 1)
        return table

    def categories(self) -> pd.DataFrame:
        """category_id, title."""
        return pd.DataFrame({"category_id": np.arange(1, len(CATEGORIES) + 1), "title": list(CATEGORIES)})

    def sub_categories(self) -> pd.DataFrame:
        """sub_category_id, title, category_id."""
        t = self._sub_table
        return pd.DataFrame({"sub_category_id": t["sub_category_id"], "title": t["sub_category"],
                             "category_id": t["category_id"]})

    @cached_property
    def _buyers(self) -> pd.DataFrame:
        rng = self._rng(1)
        n = self.settings.users
        created = self.start - pd.to_timedelta(rng.integers(0, 365 * 24 * 3600, n), unit="s")
        return pd.DataFrame({
            "uid": _ids(rng, n),
            "user_name": [f"user_{h:010x}" for h in rng.integers(0, 16**10, n)],
            "created_at": created.astype("datetime64[us]"),
        })

    def users(self) -> pd.DataFrame:
        """uid, user_name, created_at (buyers; names are the only personal data)."""
        return self._buyers.copy()

    @cached_property
    def _affinity(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-buyer activity weights (heavy-tailed) and cumulative category affinity."""
        rng = self._rng(2)
        n = self.settings.users
        activity = rng.pareto(1.6, n) + 0.05
        affinity = rng.dirichlet(CATEGORY_SHARE * 2.0, size=n)
        return activity / activity.sum(), np.cumsum(affinity, axis=1)

    @cached_property
    def _price_band(self) -> tuple[np.ndarray, np.ndarray]:
        """Each buyer's price band (an index into the levels) and the levels: log price over the category
        median, ``PRICE_LEVELS`` values spread by ``price_level_spread``."""
        spread = self.settings.price_level_spread
        levels = np.linspace(-2.0, 2.0, PRICE_LEVELS) * spread
        wanted = self._rng(2, 1).normal(0.0, spread, self.settings.users)
        band = np.abs(wanted[:, None] - levels[None, :]).argmin(axis=1)
        return band, levels

    @cached_property
    def _band_weight(self) -> np.ndarray:
        """Listings × price levels: how strongly a buyer of each level is drawn to each listing (1: no bands)."""
        cat = self._catalogue
        sd = self.settings.price_band_sd
        _, levels = self._price_band
        if sd <= 0:
            return np.ones((len(cat), len(levels)))
        rel = np.log(cat["price"].to_numpy() / MEDIAN_PRICE[cat["category_id"].to_numpy() - 1])
        return np.exp(-0.5 * ((rel[:, None] - levels[None, :]) / sd) ** 2) + 1e-3

    @cached_property
    def _seller_buyer(self) -> np.ndarray:
        """Per listing, the buyer index of its seller when the seller is a buyer too, else -1."""
        buyers = pd.Index(self._buyers["uid"])
        return buyers.get_indexer(self._catalogue["seller_id"]).astype(np.int64)

    @cached_property
    def _catalogue(self) -> pd.DataFrame:
        rng = self._rng(3)
        n = self.n_listings
        subs = self._sub_table
        cat_idx = rng.choice(len(CATEGORIES), size=n, p=CATEGORY_SHARE / CATEGORY_SHARE.sum())
        sub_idx = np.array([rng.choice(np.flatnonzero(subs["category_id"].to_numpy() == c + 1)) for c in cat_idx])
        price = np.round(MEDIAN_PRICE[cat_idx] * rng.lognormal(0.0, 0.7, n), 2)
        span = (self.end - self.start).total_seconds() + 7 * 86400
        starts = self.start - pd.Timedelta(days=7) + pd.to_timedelta(rng.uniform(0, span, n), unit="s")
        ends = starts + pd.to_timedelta(rng.uniform(1, 7, n), unit="D")
        sellers = np.array(_ids(rng, max(1, n // 25)), dtype=object)
        side = self._rng(3, 1)
        share = side.pareto(self.settings.seller_concentration, len(sellers)) + 0.05
        selling_buyers = side.random(len(sellers)) < self.settings.buyer_seller_share
        picks = side.choice(self.settings.users, size=int(selling_buyers.sum()), replace=False)
        sellers[selling_buyers] = self._buyers["uid"].to_numpy()[picks]
        return pd.DataFrame({
            "listing_id": np.arange(1, n + 1, dtype=np.int64) * 7 + 100_000,
            "title": [f"{subs['sub_category'].iat[s]} {NOUNS[i % len(NOUNS)]} #{i}" for i, s in enumerate(sub_idx)],
            "category": subs["category"].to_numpy()[sub_idx],
            "sub_category": subs["sub_category"].to_numpy()[sub_idx],
            "category_id": subs["category_id"].to_numpy()[sub_idx],
            "sub_category_id": subs["sub_category_id"].to_numpy()[sub_idx],
            "price": price,
            "seller_id": sellers[side.choice(len(sellers), n, p=share / share.sum())],
            "starts_at": starts.astype("datetime64[us]"),
            "ends_at": ends.astype("datetime64[us]"),
            "attract": rng.pareto(1.2, n) + 0.01,
        })

    def sellers(self) -> pd.DataFrame:
        """uid, user_name, created_at of sellers (they are users too in the source database)."""
        ids = sorted(set(self._catalogue["seller_id"]))
        rng = self._rng(4)
        return pd.DataFrame({
            "uid": ids,
            "user_name": [f"seller_{h:010x}" for h in rng.integers(0, 16**10, len(ids))],
            "created_at": pd.Series([self.start - pd.Timedelta(days=400)] * len(ids)).astype("datetime64[us]"),
        })

    def days(self) -> list[dt.date]:
        """The bidding days, oldest first."""
        return [(self.start + pd.Timedelta(days=i)).date() for i in range(self.settings.days)]

    def _window(self, index: int) -> tuple[pd.Timestamp, pd.Timestamp]:
        day_start = self.start + pd.Timedelta(days=index)
        return day_start, day_start + pd.Timedelta(days=1)

    def _base_bids(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """A day's own bids (comebacks aside): buyer, listing (row), time and amount."""
        s = self.settings
        rng = self._rng(5, index)
        day_start, day_end = self._window(index)
        cat = self._catalogue
        ends = cat["ends_at"].to_numpy()
        active = ((cat["starts_at"] < day_end) & (cat["ends_at"] > day_start)).to_numpy()
        ending = ends < day_end.to_datetime64()
        activity, cum_aff = self._affinity
        band, _ = self._price_band
        n_bids = rng.poisson(s.bids_per_user_day * s.users)
        buyer = rng.choice(len(activity), size=n_bids, p=activity)
        cat_of_bid = (cum_aff[buyer] < rng.random(n_bids)[:, None]).sum(axis=1).clip(max=len(CATEGORIES) - 1)
        listing = np.full(n_bids, -1)
        pull = cat["attract"].to_numpy() * np.where(ending, 1.0 + s.ending_pull, 1.0)
        for c in np.unique(cat_of_bid):
            pool = np.flatnonzero(active & (cat["category_id"].to_numpy() == c + 1))
            if not len(pool):
                continue
            for b in np.unique(band[buyer[cat_of_bid == c]]):
                where = np.flatnonzero((cat_of_bid == c) & (band[buyer] == b))
                w = pull[pool] * self._band_weight[pool, b]
                listing[where] = rng.choice(pool, size=len(where), p=w / w.sum())
        keep = (listing >= 0) & (self._seller_buyer[listing.clip(min=0)] != buyer)  # nobody bids on their own
        buyer, listing = buyer[keep], listing[keep]
        lo = np.maximum(cat["starts_at"].to_numpy()[listing], day_start.to_datetime64()).astype("datetime64[us]")
        hi = np.minimum(ends[listing], day_end.to_datetime64()).astype("datetime64[us]")
        span = (hi - lo).astype(np.int64)
        created = lo + (rng.random(len(listing)) * span).astype(np.int64).astype("timedelta64[us]")
        snipe = ending[listing] & (rng.random(len(listing)) < s.snipe_share)
        window = np.minimum(span, int(s.snipe_hours * 3.6e9))
        late = hi - (rng.random(len(listing)) * window).astype(np.int64).astype("timedelta64[us]")
        created = np.where(snipe, late, created)
        amount = cat["price"].to_numpy()[listing] * rng.lognormal(0.05, 0.35, len(listing))
        amount *= 1.0 + RISE * self._elapsed(listing, created)
        return buyer, listing, created, amount

    def _elapsed(self, listing: np.ndarray, at: np.ndarray) -> np.ndarray:
        """The share of each listing's auction window gone at ``at`` (0 at the start, 1 at the end)."""
        cat = self._catalogue
        start = cat["starts_at"].to_numpy()[listing].astype("datetime64[us]")
        length = (cat["ends_at"].to_numpy()[listing].astype("datetime64[us]") - start).astype(np.int64)
        return ((at - start).astype(np.int64) / np.maximum(length, 1)).clip(0, 1)

    def _comebacks(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Bids of buyers outbid the day before on an auction still running: one each, above that day's top."""
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, "datetime64[us]"), np.zeros(0))
        if index == 0 or self.settings.comeback <= 0:
            return empty
        buyer, listing, created, amount = self._base_bids(index - 1)
        if not len(buyer):
            return empty
        day_start, day_end = self._window(index)
        order = np.lexsort((created, -amount, listing))  # per listing, its top bid first
        first = np.r_[True, listing[order][1:] != listing[order][:-1]]
        top_of = pd.Series(amount[order][first], index=listing[order][first])
        leader = pd.Series(buyer[order][first], index=listing[order][first])
        pairs = pd.DataFrame({"buyer": buyer, "listing": listing}).drop_duplicates()
        ends = self._catalogue["ends_at"].to_numpy()[pairs["listing"].to_numpy()]
        rng = self._rng(6, index)
        back = ((leader.reindex(pairs["listing"]).to_numpy() != pairs["buyer"].to_numpy())
                & (ends > day_start.to_datetime64()) & (rng.random(len(pairs)) < self.settings.comeback))
        b, lst = pairs["buyer"].to_numpy()[back], pairs["listing"].to_numpy()[back]
        hi = np.minimum(self._catalogue["ends_at"].to_numpy()[lst], day_end.to_datetime64()).astype("datetime64[us]")
        lo = np.datetime64(day_start, "us")
        at = lo + (rng.random(len(lst)) * (hi - lo).astype(np.int64)).astype(np.int64).astype("timedelta64[us]")
        return b, lst, at, top_of.reindex(lst).to_numpy() * rng.uniform(1.02, 1.15, len(lst))

    def _bids_for(self, index: int) -> pd.DataFrame:
        cat = self._catalogue
        parts = [self._base_bids(index), self._comebacks(index)]
        buyer, listing, created, amount = (np.concatenate([p[k] for p in parts]) for k in range(4))
        amount = np.round(amount, 2)
        order = np.argsort(created, kind="stable")
        return pd.DataFrame({
            "bid_id": (index * 10_000_000_000 + np.arange(len(order), dtype=np.int64)) + 1,
            "uid": self._buyers["uid"].to_numpy()[buyer[order]],
            "listing_id": cat["listing_id"].to_numpy()[listing[order]],
            "amount": np.maximum(amount[order], 0.01),
            "created_at": created[order],
        })

    def bid_days(self) -> Iterator[tuple[dt.date, pd.DataFrame]]:
        """Each day's bids, generated on demand."""
        for i, day in enumerate(self.days()):
            yield day, self._bids_for(i)

    def export(self, write_bids: Callable[[dt.date, pd.DataFrame], int]) -> tuple[int, pd.DataFrame, pd.DataFrame]:
        """Hand each day's bids to ``write_bids`` (one day in memory at a time), then return the bid count,
        the catalogue with its status, and the users table (buyers and sellers) for the snapshots."""
        seen: list[np.ndarray] = []
        n_bids = 0
        for day, bids in self.bid_days():
            n_bids += write_bids(day, bids)
            seen.append(bids["listing_id"].unique())
        listings = self.listings(np.unique(np.concatenate(seen)) if seen else np.array([], dtype=np.int64))
        users = pd.concat([self.users(), self.sellers()], ignore_index=True).drop_duplicates("uid")
        return n_bids, listings, users

    def listings(self, bid_on: np.ndarray | None = None) -> pd.DataFrame:
        """The catalogue with its status at the end of the last day: live, sold (had bids) or unsold.

        ``bid_on`` (listing ids that received bids) saves regenerating the bids when the caller has them.
        """
        cat = self._catalogue
        if bid_on is None:
            bid_on = np.unique(np.concatenate([b["listing_id"].to_numpy() for _, b in self.bid_days()]))
        has_bids = cat["listing_id"].isin(bid_on).to_numpy()
        ended = cat["ends_at"].to_numpy() <= self.end.to_datetime64()
        status = np.where(~ended, "live", np.where(has_bids, "sold", "unsold"))
        return cat.drop(columns="attract").assign(status=status)


MARKER = "_SYNTHETIC"  # a lake holding this file was generated by write_lake, not extracted from a marketplace


def is_synthetic(fs: fsspec.AbstractFileSystem, root: str) -> bool:
    """Whether the lake at ``root`` was generated by :func:`write_lake`."""
    return fs.exists(lake.join(root, MARKER))


def write_lake(settings: SynthSettings, fs: fsspec.AbstractFileSystem, root: str,
               on_day: Callable[[dt.date, int], None] | None = None) -> dict[str, int]:
    """Generate the marketplace into the lake day by day; returns row counts per table.

    The lake is marked synthetic first, so every run over it says so. A folder that holds files but no
    marker is someone's data: it is refused, never overwritten.
    """
    if fs.exists(root) and fs.find(root) and not is_synthetic(fs, root):
        raise InputError(f"{fs.unstrip_protocol(root)} already holds files that encore did not generate: "
                         "synthetic data is written only into a new or empty folder (choose another --lake)")
    atomic.write_bytes(fs, lake.join(root, MARKER), json.dumps(settings.model_dump(mode="json")).encode())

    def write_day(day: dt.date, bids: pd.DataFrame) -> int:
        rows = lake.write_bids_day(fs, root, day, bids)
        if on_day:
            on_day(day, rows)
        return rows

    n_bids, listings, users = Marketplace(settings).export(write_day)
    return {"bids": n_bids, "listings": lake.write_snapshot(fs, root, "listings", listings),
            "users": lake.write_snapshot(fs, root, "users", users)}
