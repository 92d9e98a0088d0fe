"""The auction rules, pinned on a hand-built marketplace run through the whole daily job.

Twelve buyers co-bid on one category; one seller holds most listings, two buyers sell too; some
auctions end before the lists are served, some within the day; a few listings are contested, so who
leads and who was outbid is known by construction.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from encore.cli import main
from encore.errors import ConfigError
from encore.io.lake import filesystem, write_bids_day, write_snapshot
from encore.io.store import LATEST
from encore.job.pipeline import run
from tests.helpers import small_settings

NOW = pd.Timestamp("2026-11-27")  # end of the run window (run_date 2026-11-26)
USERS = [f"u{u:02d}" for u in range(12)]
PRICE = 50.0


def listing_rows() -> pd.DataFrame:
    """80 live listings: 0-39 by the big seller, 40-49 by buyer u00, 50-54 by buyer u01, the rest by five
    small sellers; 60-64 end before serving time, 65-69 within the day; 70-79 cost ten times more."""
    rows = []
    for i in range(80):
        seller = "big" if i < 40 else "u00" if i < 50 else "u01" if i < 55 else f"small-{i % 5}"
        ends = NOW + (pd.Timedelta(minutes=30) if 60 <= i < 65 else pd.Timedelta(hours=12) if 65 <= i < 70
                      else pd.Timedelta(days=10))
        rows.append({"listing_id": 500 + i, "title": f"Game #{i}", "category": "Games" if i % 4 else "Consoles",
                     "sub_category": f"sub-{i % 3}", "price": PRICE * (10 if i >= 70 else 1), "seller_id": seller,
                     "status": "live", "starts_at": NOW - pd.Timedelta(days=20 if i % 2 else 2), "ends_at": ends})
    return pd.DataFrame(rows)


def bid_rows(listings: pd.DataFrame) -> pd.DataFrame:
    """Every buyer bids on 12 listings (not their own), amounts unique, at the listed price's level;
    listing 510 is contested by u05 (10.0) then u06 (12.0): u06 leads, u05 is outbid."""
    rng = np.random.default_rng(11)
    ids = listings["listing_id"].to_numpy()
    seller = listings.set_index("listing_id")["seller_id"]
    rows, bid_id = [], 1
    for u in USERS:
        pool = [i for i in ids if seller[i] != u and i not in (510, 560, 561)]
        for item in rng.choice(pool, size=12, replace=False):
            price = PRICE * (10 if item >= 570 else 1)
            rows.append({"bid_id": bid_id, "uid": u, "listing_id": int(item), "amount": price * 0.8 + bid_id * 0.01,
                         "created_at": NOW - pd.Timedelta(hours=int(rng.integers(2, 140)))})
            bid_id += 1
    for u, amount, hours in (("u05", 10.0, 30), ("u06", 12.0, 20)):
        rows.append({"bid_id": bid_id, "uid": u, "listing_id": 510, "amount": amount,
                     "created_at": NOW - pd.Timedelta(hours=hours)})
        bid_id += 1
    rows.append({"bid_id": bid_id, "uid": "u07", "listing_id": 560, "amount": 9.0,  # ends before serving
                 "created_at": NOW - pd.Timedelta(hours=5)})
    rows.append({"bid_id": bid_id + 1, "uid": "u08", "listing_id": 560, "amount": 11.0,
                 "created_at": NOW - pd.Timedelta(hours=4)})
    return pd.DataFrame(rows)


def write_market(root: Path, exclusions: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    listings = listing_rows()
    bids = bid_rows(listings)
    fs, path = filesystem(str(root))
    for day, part in bids.groupby(bids["created_at"].dt.normalize()):
        write_bids_day(fs, path, day.date(), part)
    write_snapshot(fs, path, "listings", listings)
    users = USERS + ["big"] + [f"small-{i}" for i in range(5)]
    write_snapshot(fs, path, "users", pd.DataFrame({"uid": users, "user_name": [f"name {u}" for u in users],
                                                    "created_at": pd.Timestamp("2026-01-01")}))
    if exclusions is not None:
        (root / "exclusions").mkdir()
        exclusions.to_parquet(root / "exclusions" / "part-0.parquet")
    return listings, bids


def settings_for(tmp: Path, lake: Path, **rules):
    return small_settings(tmp, lake={"path": str(lake), "synthetic": False}, recommend={"n": 10},
                          ingest={"window_days": 7, "run_date": "2026-11-26"}, output={"shards": 2},
                          guard={"enabled": False}, rules=rules)


def published(result, table: str) -> pd.DataFrame:
    folder = Path(result.output) / "runs" / result.run_id / table
    return pd.concat([pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))], ignore_index=True)


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rules")
    listings, bids = write_market(tmp / "lake")
    return tmp, listings, bids


@pytest.fixture(scope="module")
def default_run(market, client):
    tmp, _, _ = market
    return run(settings_for(tmp / "default", tmp / "lake"), client=client)


def test_no_list_holds_more_than_m_listings_of_a_seller(market, default_run, client):
    tmp, listings, _ = market
    seller = listings.set_index("listing_id")["seller_id"]
    per_seller = default_run.recommendations.assign(seller=lambda r: seller.reindex(r["item_id"]).to_numpy())
    assert per_seller.groupby(["uid", "seller"]).size().max() <= 3
    off = run(settings_for(tmp / "off", tmp / "lake", max_per_seller=None), client=client).recommendations
    assert off.assign(seller=seller.reindex(off["item_id"]).to_numpy()).groupby(["uid", "seller"]).size().max() > 3
    two = run(settings_for(tmp / "two", tmp / "lake", max_per_seller=2), client=client).recommendations
    assert two.assign(seller=seller.reindex(two["item_id"]).to_numpy()).groupby(["uid", "seller"]).size().max() == 2
    assert default_run.manifest["counts"]["rules"]["removed:seller_cap"] > 0


def test_never_own_leading_or_ending_before_serving(market, default_run, client):
    tmp, listings, _ = market
    recs = default_run.recommendations
    seller = listings.set_index("listing_id")["seller_id"]
    assert not (seller.reindex(recs["item_id"]).to_numpy() == recs["uid"].to_numpy()).any()
    ends = listings.set_index("listing_id")["ends_at"]
    assert (ends.reindex(recs["item_id"]).to_numpy() > NOW + pd.Timedelta(hours=1)).all()
    assert not recs[recs["uid"] == "u06"]["item_id"].eq(510).any()  # u06 leads 510
    own = run(settings_for(tmp / "own", tmp / "lake", exclude_own_listings=False, max_per_seller=None),
              client=client).recommendations
    assert (seller.reindex(own["item_id"]).to_numpy() == own["uid"].to_numpy()).any()  # the rule is what keeps them out
    late = run(settings_for(tmp / "late", tmp / "lake", serve_after_hours=13.0), client=client).recommendations
    assert not late["item_id"].isin(range(560, 570)).any()  # 65-69 end 12 hours after the run: gone too
    assert recs["item_id"].isin(range(565, 570)).any()


def test_ending_soon_listings_are_boosted_and_say_so(market, default_run, client):
    tmp, _, _ = market
    recs = default_run.recommendations
    soon = recs[recs["item_id"].isin(range(565, 570))]
    assert len(soon) and soon["boosts"].str.contains("ending_soon").all()
    assert not recs[~recs["item_id"].isin(range(565, 570))]["boosts"].str.contains("ending_soon").any()
    flat = run(settings_for(tmp / "flat", tmp / "lake", ending_soon_boost=0.0), client=client).recommendations
    rank = recs[recs["item_id"].isin(range(565, 570))]["rank"].mean()
    assert rank < flat[flat["item_id"].isin(range(565, 570))]["rank"].mean()


def test_price_band_damps_far_out_listings(market, default_run, client):
    tmp, _, _ = market
    recs = default_run.recommendations
    dear = recs["item_id"] >= 570  # ten times the price every buyer mostly bids at
    assert recs[dear]["boosts"].str.contains("price_band").all()
    flat = run(settings_for(tmp / "band", tmp / "lake", price_band_damping=0.0), client=client).recommendations
    assert (flat["item_id"] >= 570).sum() > dear.sum()


def test_outbid_rows_match_the_hand_built_marketplace(market, default_run):
    _, listings, bids = market
    table = published(default_run, "outbid")
    assert list(table.columns) == ["uid", "item_id", "source", "your_bid_ratio", "top_bid_ratio", "ends_at"]
    top = bids.sort_values(["amount", "created_at"], ascending=[False, True]).drop_duplicates("listing_id")
    leader = top.set_index("listing_id")["uid"]
    ends = listings.set_index("listing_id")["ends_at"]
    mine = bids.groupby(["uid", "listing_id"], as_index=False)["amount"].max()
    running = ends.reindex(mine["listing_id"]).to_numpy() > NOW + pd.Timedelta(hours=1)
    expected = mine[(leader.reindex(mine["listing_id"]).to_numpy() != mine["uid"].to_numpy()) & running]
    got = table.merge(expected, how="outer", left_on=["uid", "item_id"], right_on=["uid", "listing_id"],
                      indicator=True)
    assert (got["_merge"] == "both").all() and len(table) == len(expected) > 0
    price = listings.set_index("listing_id")["price"]
    assert np.allclose(got["your_bid_ratio"], got["amount"] / price.reindex(got["item_id"]).to_numpy(), rtol=1e-5)
    case = table[(table["uid"] == "u05") & (table["item_id"] == 510)].iloc[0]
    assert case["your_bid_ratio"] == pytest.approx(10 / PRICE) and case["top_bid_ratio"] == pytest.approx(12 / PRICE)
    assert not ((table["uid"] == "u06") & (table["item_id"] == 510)).any()  # the leader is not outbid
    assert not (table["item_id"] == 560).any()  # ends before serving
    assert (table["source"] == "outbid").all() and not table.columns.str.contains("leader").any()


def test_outbid_slots_come_first(market, client):
    tmp, _, _ = market
    result = run(settings_for(tmp / "slots", tmp / "lake", outbid_slots=2), client=client)
    recs, table = result.recommendations, published(result, "outbid")
    u05 = recs[recs["uid"] == "u05"].sort_values("rank")
    assert u05.iloc[0]["item_id"] in set(table[table["uid"] == "u05"]["item_id"])
    outbid = recs[recs["source"] == "outbid"]
    assert (outbid["rank"] <= 2).all() and outbid["boosts"].eq("outbid").all()
    assert set(zip(outbid["uid"], outbid["item_id"])) <= set(zip(table["uid"], table["item_id"]))


def test_filters_include_and_exclude_exactly(market, client):
    tmp, listings, _ = market
    cat = listings.set_index("listing_id")
    result = run(settings_for(tmp / "filters", tmp / "lake", filters=[
        {"action": "include", "category": ["Games"]},
        {"action": "exclude", "seller": ["small-1"]},
        {"action": "exclude", "price_min": 100.0},
        {"action": "include", "max_age_hours": 100.0}]), client=client)
    recs = result.recommendations
    shown = cat.reindex(recs["item_id"])
    assert len(recs) and (shown["category"] == "Games").all() and not (shown["seller_id"] == "small-1").any()
    assert (shown["price"] < 100).all() and (shown["starts_at"] == NOW - pd.Timedelta(days=2)).all()
    removed = result.manifest["counts"]["rules"]
    assert any(k.startswith("removed:filter[0] include") and v > 0 for k, v in removed.items())
    cold = result.store.popular("cold_start")
    assert (cat.reindex(cold["item_id"])["category"] == "Games").all()
    assert not result.store.popular("global").empty  # the popular tables are not filtered


def test_exclusion_table_per_user(tmp_path, client):
    exclusions = pd.DataFrame({"uid": ["u03", "u04", None], "listing_id": pd.array([None, 520, 521], "Int64"),
                               "category": ["Games", None, "Games"]})
    write_market(tmp_path / "lake", exclusions)
    recs = run(settings_for(tmp_path, tmp_path / "lake"), client=client).recommendations
    cat = listing_rows().set_index("listing_id")["category"]
    u03 = recs[recs["uid"] == "u03"]
    assert len(u03) and not (cat.reindex(u03["item_id"]) == "Games").any()
    assert not recs[(recs["uid"] == "u04") & (recs["item_id"] == 520)].size
    assert (cat.reindex(recs[recs["uid"] == "u05"]["item_id"]) == "Games").any()  # others untouched


def test_bad_exclusion_table_names_the_file(tmp_path, client):
    write_market(tmp_path / "lake", pd.DataFrame({"user": ["u01"], "listing_id": [520]}))
    with pytest.raises(Exception, match=r"exclusions/part-0.parquet: an exclusion table needs a uid column"):
        run(settings_for(tmp_path, tmp_path / "lake"), client=client)


@pytest.mark.parametrize(("filters", "named"), [
    ([{"action": "exclude"}], "rules.filters.0"),
    ([{"action": "include", "price_min": 9, "price_max": 1}], "rules.filters.0"),
    ([{"action": "drop", "category": ["Games"]}], "rules.filters.0.action"),
    ([{"action": "exclude", "colour": ["red"]}], "rules.filters.0.colour"),
    ([{"action": "exclude", "category": []}], "rules.filters.0.category"),
])
def test_a_bad_filter_stops_the_run_before_ingest(tmp_path, filters, named):
    with pytest.raises(ConfigError) as caught:
        small_settings(tmp_path, rules={"filters": filters})
    assert str(caught.value).startswith(f"config error: {named}") and "\n" not in str(caught.value)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"lake": {"path": str(tmp_path / "lake"), "synthetic": True},
                               "output": {"path": str(tmp_path / "out")}, "rules": {"filters": filters}}))
    res = CliRunner().invoke(main, ["--config", str(cfg), "-q", "run"])
    assert res.exit_code == 2 and res.output.strip().count("\n") == 0 and named in res.output
    assert not (tmp_path / "lake").exists() and not (tmp_path / "out").exists()  # nothing generated or read


def test_neutral_rules_leave_the_lists_as_scored(market, client):
    tmp, _, _ = market
    off = run(settings_for(tmp / "n-off", tmp / "lake", enabled=False), client=client)
    neutral = run(settings_for(tmp / "n-on", tmp / "lake", serve_after_hours=0.0, ending_soon_boost=0.0,
                               price_band_damping=0.0, max_per_seller=None, exclude_own_listings=False,
                               outbid_table=False), client=client)
    a, b = off.recommendations, neutral.recommendations
    assert "boosts" not in a and (b["boosts"] == "").all()
    pd.testing.assert_frame_equal(a, b.drop(columns="boosts"))
    assert not (Path(off.output) / "runs" / off.run_id / "outbid").exists()


def test_mmr_spreads_categories_and_the_report_says_so(market, default_run, client):
    tmp, _, _ = market
    mmr = run(settings_for(tmp / "mmr", tmp / "lake", mmr_lambda=0.3), client=client)
    rules_base, rules_mmr = default_run.manifest["counts"]["rules"], mmr.manifest["counts"]["rules"]
    assert rules_mmr["moved:mmr"] > 0 and rules_base["moved:mmr"] == 0
    assert rules_base["spread_users"] == default_run.manifest["counts"]["users"]
    summary = json.loads((Path(mmr.output) / "runs" / mmr.run_id / "report" / "summary.json").read_text())
    assert summary["auction_rules"]["moved:mmr"] == rules_mmr["moved:mmr"]
    html = (Path(mmr.output) / "runs" / mmr.run_id / "report" / "report.html").read_text()
    assert "Auction rules" in html and "seller_cap" in html
    assert (Path(default_run.output) / LATEST).exists()


def kernel(pool_items, n, **kw):
    """:func:`rerank_lists` on one user's pool with everything neutral unless ``kw`` says otherwise."""
    from encore.job.rules import rerank_lists

    items = np.asarray([pool_items], np.int64)
    n_items = int(kw.pop("n_items", 12))
    args = {"seller": np.arange(n_items) // 4, "user_seller": np.array([-1]), "hours_left": np.full(n_items, 100.0),
                "log_price": np.zeros(n_items), "category": np.zeros(n_items, np.int64), "band_mu": np.array([np.nan]),
                "band_half": np.array([0.0]), "damping": 0.0, "excl": [], "cexcl": [], "outbid": [], "ob_ok": np.ones(n_items, bool),
                "slots": 0, "max_per_seller": 0, "exclude_own": False, "horizon": 24.0, "boost": 0.0, "mmr_lambda": -1.0,
                "nbr": np.full((0, 1), -1, np.int64), "nbr_score": np.zeros((0, 1))}
    args.update(kw)
    excl, cexcl, ob = (np.asarray(args.pop(k), np.int64) for k in ("excl", "cexcl", "outbid"))
    out = rerank_lists(items, np.ones_like(items, np.float64), np.zeros_like(items, np.int8),
                       np.full_like(items, -1), n, args["seller"], args["user_seller"], args["hours_left"],
                       args["log_price"], args["category"], args["band_mu"], args["band_half"], args["damping"],
                       np.array([0, len(excl)]), excl, np.array([0, len(cexcl)]), cexcl, np.array([0, len(ob)]), ob,
                       np.full(len(ob), 0.5), args["ob_ok"], args["slots"], 4, args["max_per_seller"],
                       args["exclude_own"], args["horizon"], args["boost"], args["mmr_lambda"], args["nbr"],
                       args["nbr_score"], int(args["seller"].max()) + 1, 2)
    item, _, source, _, flags, counts = out
    return item[0][item[0] >= 0].tolist(), source[0].tolist(), flags[0].tolist(), counts.tolist()


def test_the_rerank_kernel_rule_by_rule():
    pool = list(range(12))  # sellers: 0-3 seller 0, 4-7 seller 1, 8-11 seller 2
    assert kernel(pool, 6)[0] == [0, 1, 2, 3, 4, 5]  # neutral: the scored order
    items, _, _, counts = kernel(pool, 6, max_per_seller=2)
    assert items == [0, 1, 4, 5, 8, 9] and counts[2] == 2  # 2 and 3 capped out of the first six
    assert kernel(pool, 6, exclude_own=True, user_seller=np.array([0]))[0] == [4, 5, 6, 7, 8, 9]
    assert kernel(pool, 4, excl=[1, 2])[0] == [0, 3, 4, 5]
    items, source, flags, _ = kernel(pool, 4, outbid=[11, 10], slots=1)
    assert items == [11, 0, 1, 2] and source[0] == 4 and flags[0] == 4  # the outbid slot comes first
    soon = np.full(12, 100.0)
    soon[5] = 1.0
    items, _, flags, _ = kernel(pool, 4, hours_left=soon, boost=1.0)
    assert items[:2] == [0, 5] and flags[1] == 1  # relevance 1/log2(7) ≈ 0.36, boosted to ≈ 0.70
    nbr = np.full((12, 2), -1, np.int64)
    nbr[0] = [1, 2]  # 1 and 2 are near-copies of 0
    score = np.zeros((12, 2))
    score[0] = [1.0, 1.0]
    items, _, flags, _ = kernel(pool, 3, mmr_lambda=0.5, nbr=nbr, nbr_score=score)
    assert items == [0, 3, 4] and flags[1] == 8 == flags[2]  # the copies of 0 wait


def test_pool_order_is_the_stable_descending_sort():
    """The re-ranker's pool order equals a stable sort from largest to smallest, ties in position order."""
    from encore.job.rules import _descending

    rng = np.random.default_rng(7)
    for n in (0, 1, 2, 17, 200):
        values = np.round(rng.random(n + 5), 1) / np.log2(np.arange(n + 5) + 2.0)  # ties, nearly sorted
        values[rng.integers(0, n + 5, 3)] = 0.5
        np.testing.assert_array_equal(_descending(values[:n]), np.argsort(-values[:n], kind="mergesort"))


def test_category_spread_and_boost_counts_count_each_list_slot_once():
    """Against the plain definitions: distinct (list, category) pairs, and held slots whose label names a rule."""
    from encore.job import rules as auction

    rng = np.random.default_rng(5)
    items = rng.integers(-1, 40, size=(300, 12))
    items[:7] = -1  # users with empty lists
    category = rng.integers(0, 6, size=40)
    boosts = rng.integers(0, 1 << len(auction.BOOST_NAMES), size=items.shape)
    held = items >= 0
    pairs = {(u, category[items[u, s]]) for u, s in zip(*np.nonzero(held), strict=True)}
    assert auction.category_spread(items, category) == {"spread_sum": len(pairs),
                                                        "spread_users": int(held.any(axis=1).sum())}
    labels = auction.boost_labels()[boosts[held]]
    assert auction.boost_counts(items, boosts) == {
        f"moved:{name}": sum(name in label.split(",") for label in labels) for name in auction.BOOST_NAMES.values()}
    assert auction.category_spread(np.full((3, 4), -1), category) == {"spread_sum": 0, "spread_users": 0}
