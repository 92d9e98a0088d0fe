"""Auction data as real marketplaces have it (small eBay-style fixtures built here).

A sub-category name shared by several categories, listings not yet started, every auction ended: the
job keys sub-categories by (category, sub-category), never recommends what cannot be bid on, and says
so when a run would serve nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from encore.cli import main
from encore.errors import EmptyRunError, GuardError
from encore.io.lake import filesystem, write_bids_day, write_snapshot
from encore.io.store import LATEST, RecommendationStore
from encore.job.pipeline import run
from tests.helpers import small_settings

DAYS = pd.date_range("2026-11-20", "2026-11-26", freq="D")
SHARED = "7 day auction"  # one name under three categories, as eBay's auction formats are
PAIRS = [("Video Games", SHARED), ("Video Games", "Consoles"), ("Watches", SHARED), ("Watches", "Luxury"),
         ("Toys", SHARED)]


def auction_lake(root: Path, ends_at: str = "2026-12-10", status: str = "live") -> pd.DataFrame:
    """Gamers bid on video-game auctions only, collectors on watches; five game auctions start next month;
    ten sellers per (category, sub-category), so the seller cap (rules.max_per_seller) leaves room for each.

    Returns the listings written.
    """
    rng = np.random.default_rng(3)
    rows = []
    for c, (category, sub) in enumerate(PAIRS):
        for i in range(20):
            rows.append({"listing_id": 1000 * (c + 1) + i, "title": f"{category} {sub} #{i}", "category": category,
                         "sub_category": sub, "price": 50.0, "seller_id": f"s{c}-{i % 10}", "status": status,
                         "starts_at": pd.Timestamp("2026-11-01"), "ends_at": pd.Timestamp(ends_at)})
    listings = pd.DataFrame(rows)
    future = listings.index[(listings["category"] == "Video Games") & (listings["sub_category"] == SHARED)][-5:]
    listings.loc[future, "starts_at"] = pd.Timestamp("2026-12-05")  # announced, not yet open for bids
    gamer_items = listings.loc[(listings["listing_id"] // 1000 == 1)].drop(index=future)["listing_id"].to_numpy()
    watch_items = listings.loc[listings["category"] == "Watches", "listing_id"].to_numpy()
    users = [f"gamer-{u:02d}" for u in range(30)] + [f"collector-{u:02d}" for u in range(30)]
    bids, bid_id = [], 1
    for u in users:
        pool = gamer_items if u.startswith("gamer") else watch_items
        for item in rng.choice(pool, size=6, replace=False):
            for day in rng.choice(len(DAYS), size=2):
                bids.append({"bid_id": bid_id, "uid": u, "listing_id": int(item), "amount": 10.0 + bid_id % 7,
                             "created_at": DAYS[day] + pd.Timedelta(hours=int(rng.integers(0, 23)))})
                bid_id += 1
    bids = pd.DataFrame(bids)
    fs, path = filesystem(str(root))
    for day, part in bids.groupby(bids["created_at"].dt.normalize()):
        write_bids_day(fs, path, day.date(), part)
    write_snapshot(fs, path, "listings", listings)
    write_snapshot(fs, path, "users", pd.DataFrame({"uid": users, "user_name": [f"name {u}" for u in users],
                                                    "created_at": pd.Timestamp("2026-01-01")}))
    return listings


def settings_for(tmp_path: Path, lake: Path, **output):
    return small_settings(tmp_path, lake={"path": str(lake), "synthetic": False}, recommend={"n": 30},
                          output={"shards": 2, **output})


@pytest.fixture(scope="module")
def live_run(tmp_path_factory, client):
    tmp = tmp_path_factory.mktemp("auctions")
    listings = auction_lake(tmp / "lake")
    return listings, run(settings_for(tmp, tmp / "lake"), client=client)


def test_a_shared_sub_category_name_never_crosses_categories(live_run):
    listings, result = live_run
    recs = result.recommendations
    cat = listings.set_index("listing_id")["category"]
    sub = recs[recs["source"] == "subcategory"]
    assert len(sub) > 0
    assert (cat.reindex(sub["item_id"]).to_numpy() == cat.reindex(sub["because"].astype("int64")).to_numpy()).all()
    explained = recs[recs["because"].notna()]
    assert (cat.reindex(explained["item_id"]).to_numpy()
            == cat.reindex(explained["because"].astype("int64")).to_numpy()).all()


def test_popular_by_sub_category_has_one_group_per_pair(live_run):
    _, result = live_run
    table = result.store.popular("by_sub_category")
    assert {"category", "sub_category"} <= set(table.columns)
    shared = table[table["sub_category"] == SHARED]
    assert set(shared["category"]) == {"Video Games", "Watches"}  # Toys' auctions have no bidders
    assert not table.duplicated(["category", "sub_category", "rank"]).any()


def test_listings_not_yet_started_are_never_recommended(live_run):
    listings, result = live_run
    not_started = listings.loc[listings["starts_at"] > pd.Timestamp("2026-11-27"), "listing_id"]
    assert len(not_started) == 5
    recs = result.recommendations
    assert not recs["item_id"].isin(not_started).any()
    assert not result.store.popular("cold_start")["item_id"].isin(not_started).any()


def test_every_auction_ended_warns_and_strict_keeps_latest(tmp_path, client):
    auction_lake(tmp_path / "live")
    first = run(settings_for(tmp_path, tmp_path / "live"), client=client)
    auction_lake(tmp_path / "ended", ends_at="2026-11-25")
    settings = settings_for(tmp_path, tmp_path / "ended")
    with pytest.raises(EmptyRunError, match="0 live listings"):
        run(settings_for(tmp_path, tmp_path / "ended", strict=True), client=client)
    assert (tmp_path / "out" / LATEST).read_text() == first.run_id
    with pytest.raises(GuardError, match="recommendations check failed"):  # the guard holds the collapse too
        run(settings, client=client)
    assert (tmp_path / "out" / LATEST).read_text() == first.run_id
    settings = settings.model_copy(update={"guard": settings.guard.model_copy(update={"enabled": False})})
    lenient = run(settings, client=client)  # neither strict nor guarded: published, with the warning
    assert lenient.manifest["counts"]["recommendations"] == 0
    assert any("0 live listings" in w for w in lenient.manifest["warnings"])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(settings.model_dump(mode="json")))
    res = CliRunner().invoke(main, ["--config", str(cfg), "-q", "recommend", "gamer-01"])
    assert res.exit_code == 0 and "0 live listings" in res.output


def test_strict_cli_exits_3_and_names_the_unpublished_run(tmp_path):
    auction_lake(tmp_path / "ended", status="sold")
    settings = settings_for(tmp_path, tmp_path / "ended")
    cfg = tmp_path / "c.yaml"
    tree = settings.model_dump(mode="json")
    tree["cluster"] = {"processes": False, "n_workers": 1}
    cfg.write_text(json.dumps(tree))
    res = CliRunner().invoke(main, ["--config", str(cfg), "-q", "run", "--strict"])
    assert res.exit_code == 3, res.output
    line = res.output.strip().splitlines()[-1]
    assert line.startswith("error: run ") and "not published" in line
    assert not (tmp_path / "out" / LATEST).exists()


def test_readable_recommend_shows_titles(live_run, tmp_path):
    _, result = live_run
    store = RecommendationStore(result.output)
    uid = "gamer-03"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"output": {"path": result.output}}))
    res = CliRunner().invoke(main, ["--config", str(cfg), "-q", "recommend", uid])
    assert res.exit_code == 0, res.output
    first = store.for_user(uid).iloc[0]
    title = store.catalogue().set_index("listing_id").loc[first["item_id"], "title"]
    assert title in res.output and "because_title" in res.output


def test_readable_similar_shows_titles_and_an_unknown_listing_says_so(live_run, tmp_path):
    _, result = live_run
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"output": {"path": result.output}}))
    item = int(result.recommendations["item_id"].iloc[0])
    res = CliRunner().invoke(main, ["--config", str(cfg), "-q", "similar", str(item)])
    first = result.store.similar(item).iloc[0]["neighbour_id"]
    title = result.store.catalogue().set_index("listing_id").loc[first, "title"]
    assert res.exit_code == 0 and title in res.output and "title" in res.output
    none = CliRunner().invoke(main, ["--config", str(cfg), "-q", "similar", "999999999"])
    assert none.exit_code == 0 and "no similar items" in none.output and "Empty DataFrame" not in none.output
