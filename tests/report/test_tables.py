"""Every figure of summary.json against a direct computation on a small hand-made marketplace."""

from __future__ import annotations

import functools
import math
from itertools import combinations, pairwise

import numpy as np
import pandas as pd
import pytest

from encore.report import tables
from encore.report.build import ReportInput, assemble, attribution_for, interaction_figures, suppressed_keys
from encore.report.tables import ListDigest
from tests.helpers import small_settings

CATS = {"Toys": ["Funko", "Lego"], "Cards": ["Pokemon"], "Sneakers": ["Nike"], "Comics": ["Manga"]}


def hand_made_inter() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions, listings): 60 users; user i bids on listings by a fixed rule, so every expected value
    is recomputable by hand.

    Comics gets only 3 bidders (suppressed), Toys/Lego and the sold listings exercise the overbid table.
    """
    listings = pd.DataFrame({
        "listing_id": range(1, 9),
        "category": ["Toys", "Toys", "Cards", "Cards", "Sneakers", "Sneakers", "Comics", "Toys"],
        "sub_category": ["Funko", "Funko", "Pokemon", "Pokemon", "Nike", "Nike", "Manga", "Lego"],
        "price": [10.0, 20.0, 5.0, 8.0, 100.0, 150.0, 12.0, 30.0],
        "status": ["live", "sold", "live", "sold", "live", "sold", "live", "live"],
    })
    rows = []
    for i in range(60):
        uid = f"user-{i:03d}"
        picks = [1 + i % 6]  # one of listings 1..6
        if i % 3 == 0:
            picks.append(1 + (i + 2) % 6)
        if i < 3:
            picks.append(7)  # Comics: 3 bidders only
        if i % 10 == 0:
            picks.append(8)
        for j in dict.fromkeys(picks):
            n = 1 + (i * j) % 7 + (20 if i == 0 else 0)
            amount = listings.loc[j - 1, "price"] * (1.1 + 0.01 * (i % 13))
            rows.append({"uid": uid, "item_id": j, "n_bids": n, "spend": n * amount, "max_amount": amount})
    inter = pd.DataFrame(rows).merge(listings.rename(columns={"listing_id": "item_id"})[
        ["item_id", "category", "sub_category", "price"]], on="item_id")
    best = inter.sort_values(["item_id", "max_amount", "uid"], ascending=[True, False, True])
    winners = best[~best.duplicated("item_id") & best["item_id"].isin([2, 4, 6])]
    inter["won"] = inter.index.isin(winners.index)
    return inter, listings


def hand_made() -> ReportInput:
    """The report input of :func:`hand_made_inter` with :func:`hand_made_recs` as two shards."""
    inter, listings = hand_made_inter()
    recs = hand_made_recs()
    days = pd.date_range("2026-11-01", periods=4)
    daily = pd.DataFrame({"date": days, "bids": [40, 50, 3, 60], "bidders": [30, 25, 3, 40],
                          "new_bidders": [30, 10, 1, 2]})
    counts = {"rows_in": 120, "rows_accepted": 117, "rows_rejected": 3,
              "sources": {"bids": {"by_reason": {"duplicate_bid_id": 2, "unknown_listing": 1}}}}
    lists = ListDigest.of(recs.iloc[:60]).add(recs.iloc[60:])  # two shards of disjoint users add up
    return ReportInput(interaction_figures(inter, listings), listings, lists, counts, {"ingest": 1.5, "store": 0.5}, daily,
                       ["2026-11-01 00:00:00", "2026-11-05 00:00:00"], "run-1")


def hand_made_recs() -> pd.DataFrame:
    """Two picks for each of 60 users from four sources."""
    return pd.DataFrame({"uid": [f"user-{i:03d}" for i in range(60) for _ in range(2)],
                         "rank": [1, 2] * 60, "item_id": [3, 5] * 30 + [1, 7] * 30,
                         "source": ["itemknn", "popular"] * 20 + ["popular", "trending"] * 10 + ["itemknn"] * 60})


@pytest.fixture(scope="module")
def built() -> tuple[ReportInput, dict, dict[str, pd.DataFrame]]:
    inp = hand_made()
    summary, frames = assemble(inp)
    return inp, summary, frames


def gini_pairs(x: np.ndarray) -> float:
    """Gini as the mean absolute difference over twice the mean (independent of the sorted formula)."""
    x = np.asarray(x, float)
    return np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean())


def entropy_bits(counts: list[float]) -> float:
    total = sum(counts)
    return -sum(c / total * math.log2(c / total) for c in counts if c)


def expected_scalars(inp: ReportInput) -> dict[str, object]:
    inter, recs, listings = hand_made_inter()[0], hand_made_recs(), inp.listings
    per_user = {u: g["n_bids"].sum() for u, g in inter.groupby("uid")}
    ranked = sorted(per_user.values(), reverse=True)
    total = sum(ranked)
    per_item = inter.groupby("item_id")["n_bids"].sum().to_numpy()
    ent = {}
    for u, g in inter.groupby("uid"):
        if g["n_bids"].sum() >= 3:
            ent[u] = entropy_bits(list(g.groupby("category")["n_bids"].sum()))
    d = inp.daily
    bidders_of = inter.groupby("item_id")["uid"].nunique()
    rec_pop = [bidders_of.get(i, 0) for i in recs["item_id"]]
    hist_pop = [bidders_of[i] for i in inter["item_id"]]
    by_user = {u: set(g["source"]) for u, g in recs.groupby("uid")}
    return {
        "overview.bidders": 60, "overview.bids": int(inter["n_bids"].sum()), "overview.spend": inter["spend"].sum(),
        "overview.listings_with_bids": 8, "overview.catalogue_listings": 8,
        "activity.days": 4, "activity.mean_bids_per_day": d["bids"].mean(),
        "activity.mean_bidders_per_day": d["bidders"].mean(),
        "activity.returning_share": (d["bidders"] - d["new_bidders"]).sum() / d["bidders"].sum(),
        "concentration.users": 60, "concentration.top1_share": None,  # top 1 % = 1 user: suppressed
        "concentration.top10_share": sum(ranked[:6]) / total,
        "concentration.gini_users": gini_pairs(np.array(ranked)), "concentration.gini_listings": gini_pairs(per_item),
        "engagement.users": len(ent), "engagement.mean_entropy": np.mean(list(ent.values())),
        "engagement.loyalist_share": np.mean([h == 0 for h in ent.values()]),
        "engagement.explorer_share": np.mean([h >= 1 for h in ent.values()]),
        "recommendations.users_served": 60, "recommendations.recommendations": 120,
        "recommendations.coverage": recs["item_id"].nunique() / (listings["status"] == "live").sum(),
        "recommendations.mean_rec_popularity": np.mean(rec_pop),
        "recommendations.mean_history_popularity": np.mean(hist_pop),
        "recommendations.popularity_bias": np.mean(rec_pop) / np.mean(hist_pop),
        "recommendations.backoff_user_share": np.mean([s != {"itemknn"} for s in by_user.values()]),
        "recommendations.cold_start_user_share": np.mean([not (s & {"itemknn", "subcategory"})
                                                          for s in by_user.values()]),
        "run_health.rows_in": 120, "run_health.rows_accepted": 117, "run_health.rows_rejected": 3,
    }


def test_every_summary_figure_matches_a_direct_computation(built):
    inp, summary, _ = built
    expected = expected_scalars(inp)
    sections = ("overview", "activity", "concentration", "engagement", "recommendations", "run_health")
    got = {f"{s}.{k}": v for s in sections for k, v in summary[s].items()}
    assert set(got) == set(expected), "a summary figure has no independent check (or a check lost its figure)"
    for key, want in expected.items():
        if want is None:
            assert got[key] is None, key
        else:
            assert got[key] == pytest.approx(float(want), rel=1e-9), key
    assert summary["suppressed"] == ["concentration.top1_share"] == suppressed_keys(summary)


def test_category_tables_match_sets_of_bidders(built):
    _, _, frames = built
    inter = hand_made_inter()[0]
    cats = frames["categories"].set_index("category")
    bidders_of = inter.groupby("category")["uid"].nunique()
    complement = bidders_of[bidders_of >= 5].idxmin()  # Comics alone has < 5: the smallest other goes with it
    assert cats.index[cats["suppressed"]].tolist() == sorted(["Comics", complement], key=cats.index.get_loc)
    for cat, g in inter.groupby("category"):
        bidders = set(g["uid"])
        row = cats.loc[cat]
        if row["suppressed"]:
            assert row[["bids", "bidders", "bid_share", "spend_share"]].isna().all()
            continue
        assert row["bidders"] == len(bidders)
        assert row["bid_share"] == pytest.approx(g["n_bids"].sum() / inter["n_bids"].sum())
        assert row["bidder_share"] == pytest.approx(len(bidders) / 60)
        assert row["spend_share"] == pytest.approx(g["spend"].sum() / inter["spend"].sum())
    subs = frames["sub_categories"].set_index("sub_category")
    assert complement == "Toys"  # 24 bidders: its sub-categories are hidden with it, Lego's 6 included
    assert set(subs.index[subs["suppressed"]]) == {"Manga", "Funko", "Lego"}


def test_lift_matches_conditional_probabilities(built):
    _, _, frames = built
    users = {c: set(g["uid"]) for c, g in hand_made_inter()[0].groupby("category")}
    lift = frames["lift"].set_index(["category_a", "category_b"])
    assert len(lift) == len(users) * (len(users) - 1)
    for a, b in combinations(sorted(users), 2):
        both = len(users[a] & users[b])
        for x, y in ((a, b), (b, a)):
            cell = lift.loc[(x, y)]
            if 0 < both < 5:
                assert cell["suppressed"] and pd.isna(cell["lift"])
            else:
                assert cell["lift"] == pytest.approx((both / len(users[x])) / (len(users[y]) / 60))


def test_distributions_and_overbid(built):
    _, _, frames = built
    inter = hand_made_inter()[0]
    per_user = inter.groupby("uid")["n_bids"].sum()
    bins = frames["bids_per_user"]
    for row in bins.itertuples():
        n = ((per_user >= row.bids_from) & (per_user <= row.bids_to)).sum()
        assert (pd.isna(row.users) and row.suppressed) or row.users == n
        assert row.suppressed or n >= 5
    won = inter[inter["won"]]
    over = frames["overbid"].set_index("category")
    for cat, g in won.groupby("category"):
        if g["uid"].nunique() >= 5:
            assert over.loc[cat, "median"] == pytest.approx((g["max_amount"] / g["price"]).median())
        else:
            assert over.loc[cat, "suppressed"]
    prices = frames["prices"].set_index("category")
    assert prices.loc["Toys", "p50"] == pytest.approx(np.median([10, 20, 30]))
    lorenz = frames["lorenz"]
    users = lorenz[lorenz["unit"] == "users"]
    assert len(users) == 13 and users["value_share"].iloc[-1] == pytest.approx(1.0)  # 60 // 5 = 12 steps
    assert frames["entropy"]["users"].sum(skipna=True) <= len(per_user)


def test_small_cells_are_suppressed_and_flagged(built):
    _, _, frames = built
    days = frames["daily_activity"]
    assert days.loc[2, ["bids", "bidders", "new_bidders", "returning_bidders"]].isna().all()  # 3 bidders
    assert days.loc[3, ["new_bidders", "returning_bidders"]].isna().all()  # 2 new: split hidden
    assert days.loc[1, ["bids", "bidders"]].isna().all()  # 25 bidders, hidden beside day 2 (the mean gives the sum)
    assert days.loc[3, "bidders"] == 40 and days["suppressed"].tolist() == [False, True, True, True]
    sources = frames["recommendation_sources"].set_index("source")
    assert sources.loc["itemknn", "users"] == 50 and not sources.loc["itemknn", "suppressed"]
    assert frames["rejects"]["rows"].sum() == 3


def test_legacy_input_has_no_time_section():
    inp = hand_made()
    inp.daily, inp.window = None, None
    summary, frames = assemble(inp)
    assert summary["activity"] is None and "daily_activity" not in frames
    assert any("no dates" in note for note in summary["notes"])


def test_uci_attribution_is_detected_and_carried(tmp_path):
    uci = small_settings(tmp_path, lake={"legacy_csv": "../shared/data/online_retail_uci.csv.gz"})
    assert "doi:10.24432/C5BW33" in attribution_for(uci)
    assert attribution_for(small_settings(tmp_path)) is None
    inp = hand_made()
    inp.attribution = attribution_for(uci)
    summary, _ = assemble(inp)
    assert summary["attribution"] == inp.attribution


def test_gini_and_lorenz_edges():
    assert tables.gini(np.array([3, 3, 3])) == pytest.approx(0.0)
    assert tables.gini(np.array([0, 0, 0, 10])) == pytest.approx(gini_pairs(np.array([0, 0, 0, 10])))
    assert tables.lorenz(np.arange(1, 5)).empty  # fewer than 5 users: no curve at all


def test_user_pairs_equal_a_pandas_groupby_sorted_or_not():
    rng = np.random.default_rng(3)
    user = np.sort(rng.integers(0, 300, 5000))
    group = rng.integers(0, 7, 5000)
    weights = rng.random(5000)
    expected = pd.DataFrame({"u": user, "g": group, "w": weights}).groupby(["u", "g"])["w"].sum()
    for order in (np.arange(5000), rng.permutation(5000)):  # sorted by user, then shuffled
        got_user, got_group, got_sum = tables.user_pairs(user[order], group[order], 7, weights[order])
        np.testing.assert_array_equal(got_user, expected.index.get_level_values("u"))
        np.testing.assert_array_equal(got_group, expected.index.get_level_values("g"))
        np.testing.assert_allclose(got_sum, expected.to_numpy())
    counted = tables.user_pairs(user, group, 7)[2]  # no weights: rows per pair
    np.testing.assert_array_equal(counted, pd.DataFrame({"u": user, "g": group}).groupby(["u", "g"]).size())
    assert all(len(a) == 0 for a in tables.user_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), 3))


@pytest.mark.parametrize("spread", [1, 10**9])  # ids from a sequence (counted by offset), then far apart (factorised)
def test_listing_counts_equal_a_pandas_groupby(spread):
    rng = np.random.default_rng(5)
    inter = pd.DataFrame({"item_id": rng.integers(0, 400, 3000) * spread + 7, "n_bids": rng.integers(1, 9, 3000)})
    expected = inter.groupby("item_id")["n_bids"].agg(bidders="size", bids="sum")
    pd.testing.assert_frame_equal(tables.listing_counts(inter), expected, check_dtype=False)
    assert tables.listing_counts(inter.iloc[:0]).empty


ADDITIVE = ("categories", "sub_categories", "daily_activity", "bids_per_user", "entropy", "recommendation_sources",
            "overbid")


def test_no_table_hides_a_single_row_that_its_total_would_give_back(built):
    """The differencing attack: total minus the rows shown. One hidden row would be exposed by it."""
    _, summary, frames = built
    for name in ADDITIVE:
        assert frames[name]["suppressed"].sum() != 1, name
    subs = frames["sub_categories"]
    for _, rows in subs.groupby("category"):
        assert rows["suppressed"].sum() != 1 or len(rows) == 1
    days = frames["daily_activity"]
    total = summary["activity"]["mean_bids_per_day"] * summary["activity"]["days"]
    hidden = total - days["bids"].sum(skipna=True)
    assert days["bids"].isna().sum() >= 2 and hidden == pytest.approx(hand_made().daily["bids"][days["bids"].isna()].sum())


def test_suppress_complements_a_lone_small_row_with_the_smallest_other():
    frame = pd.DataFrame({"users": [40, 3, 0, 9, 12], "v": [1.0, 2.0, 3.0, 4.0, 5.0]})
    out = tables.suppress(frame, frame["users"], ["users", "v"])
    assert out["suppressed"].tolist() == [False, True, False, True, False]  # 9 is the smallest non-empty other
    assert out["v"].isna().tolist() == [False, True, False, True, False]
    assert tables.suppress(frame, frame["users"], ["v"], complement=False)["suppressed"].tolist() == \
        [False, True, False, False, False]
    two = pd.Series([40, 3, 4, 12])  # two small rows already hide each other
    assert tables.suppress(two.to_frame("u"), two, ["u"])["suppressed"].tolist() == [False, True, True, False]
    alone = pd.Series([3, 0])  # nothing else to hide it with: the total is the row itself either way
    assert tables.suppress(alone.to_frame("u"), alone, ["u"])["suppressed"].tolist() == [True, False]


def test_a_lone_hidden_sub_category_takes_a_sibling_not_a_stranger():
    """A category's row is the sum of its sub-rows: hiding another category's sub would not protect it."""
    people = {("A", "a1"): 3, ("A", "a2"): 30, ("B", "b1"): 20}
    inter = pd.DataFrame([{"uid": f"{sub}-{i}", "category": cat, "sub_category": sub, "n_bids": 2, "spend": 10.0}
                          for (cat, sub), n in people.items() for i in range(n)])
    cats = tables.category_shares(inter, ["category"])
    assert not cats["suppressed"].any()
    subs = tables.category_shares(inter, ["category", "sub_category"], within=cats).set_index("sub_category")
    assert subs["suppressed"].to_dict() == {"a2": True, "b1": False, "a1": True}
    assert subs.loc["b1", "bids"] == 40


def _partial_input() -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`hand_made_inter` as ingest's partitions hold it: a user key (uid order, so the lowest key wins
    a tie as the lowest uid does), listing ids, one last-bid time."""
    inter, listings = hand_made_inter()
    inter = inter.assign(ukey=pd.factorize(inter["uid"], sort=True)[0].astype(np.int64), listing_id=inter["item_id"],
                         last_at=pd.Timestamp("2026-11-04").as_unit("us"))
    return inter.sort_values(["ukey", "listing_id"], kind="stable").reset_index(drop=True), listings


def _assert_same_figures(got: dict, want: dict) -> None:
    """Every figure equal; float sums of spend (added partition by partition) to 1e-12, the rest exactly."""
    assert got.keys() == want.keys()
    for name, value in want.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(got[name], value, check_exact=name not in ("categories", "sub_categories"),
                                          rtol=1e-12)
            if name in ("categories", "sub_categories"):
                pd.testing.assert_frame_equal(got[name].drop(columns=["spend", "spend_share"]),
                                              value.drop(columns=["spend", "spend_share"]), check_exact=True)
        elif isinstance(value, pd.Series):
            pd.testing.assert_series_equal(got[name], value, check_exact=True)
        elif isinstance(value, dict):
            assert got[name].keys() == value.keys(), name
            for key, figure in value.items():
                assert (got[name][key] is None) == (figure is None), (name, key)
                assert figure is None or got[name][key] == pytest.approx(figure, rel=1e-12, nan_ok=True), (name, key)
        else:
            assert got[name] == pytest.approx(value, rel=1e-12, nan_ok=True), name


@pytest.mark.parametrize("cuts", [[], [7, 31], [1, 2, 3, 50]])
def test_partial_aggregates_of_disjoint_users_add_up_to_the_tables_of_all(cuts):
    inter, listings = _partial_input()
    cat = tables.Catalogue.of(listings)
    bounds = [0, *cuts, 60]
    parts = [tables.partial_of(inter[inter["ukey"].between(a, b - 1)], cat) for a, b in pairwise(bounds)]
    left = functools.reduce(tables.Partial.merge, parts)
    right = functools.reduce(lambda a, b: b.merge(a), reversed(parts))  # another tree: same integers
    want = interaction_figures(inter, listings)
    for total in (left, right):
        _assert_same_figures(tables.partial_figures(total, cat, listings), want)
    assert left.users == 60 and int(left.listing_bidders.sum()) == len(inter)


def test_partial_winners_follow_amount_then_earliest_last_bid_then_lowest_user():
    listings = pd.DataFrame({"listing_id": [1, 2], "category": ["A", "A"], "sub_category": ["a", "a"],
                             "price": [10.0, 10.0], "status": ["sold", "sold"]})
    cat = tables.Catalogue.of(listings)
    at = pd.to_datetime(["2026-11-02", "2026-11-01", "2026-11-01", "2026-11-01"]).as_unit("us")
    inter = pd.DataFrame({"ukey": [5, 6, 3, 9], "listing_id": [1, 1, 2, 2], "n_bids": 1, "spend": 20.0,
                          "max_amount": 20.0, "last_at": at})
    one = functools.reduce(tables.Partial.merge, [tables.partial_of(inter.iloc[[i]], cat) for i in (3, 0, 2, 1)])
    assert one.best_user.tolist() == [6, 3]  # listing 1: the earlier last bid; listing 2: the lower key
