"""The report on awkward catalogues: any category text, blank and missing labels, a single category, the same
sub-category name under several categories, and inputs with no rows or no users."""

from __future__ import annotations

import math
from itertools import permutations

import numpy as np
import pandas as pd
import pytest

from encore import schema
from encore.report import figures, html, tables, text
from encore.report.build import ReportInput, assemble, interaction_figures
from encore.report.tables import ListDigest

COUNTS = {"rows_in": 0, "rows_accepted": 0, "rows_rejected": 0}
LABELLED = ("categories", "prices", "overbid", "lift")  # the figures that draw category labels


def label(value: object) -> str:
    """The label the report must key a raw category by (written independently of ``tables.labels``)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        return schema.UNKNOWN_CATEGORY
    return str(value).strip()


def interactions(cats: list, subs: list | None = None, users: int = 60, categorical: bool = True
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions, listings): listing j has category ``cats[j]``; user i bids on listing i % m, and on
    listing (i + 1) % m when i is even, so every raw label has at least ``users // m`` bidders."""
    subs = list(cats) if subs is None else subs
    listings = pd.DataFrame({"listing_id": np.arange(len(cats), dtype=np.int64), "title": "t",
                             "category": pd.Series(cats, dtype=object), "sub_category": pd.Series(subs, dtype=object),
                             "price": 10.0 + np.arange(len(cats)), "status": "live"})
    rows = []
    for i in range(users if len(cats) else 0):
        picks = dict.fromkeys([i % len(cats), (i + 1) % len(cats) if i % 2 == 0 else i % len(cats)])
        for j in picks:
            n = 1 + (i + j) % 4
            rows.append({"uid": f"user-{i:03d}", "item_id": j, "n_bids": n, "spend": 12.0 * n, "max_amount": 12.0,
                         "first_at": pd.Timestamp("2026-11-01"), "last_at": pd.Timestamp("2026-11-02"),
                         "won": i < len(cats) and i == j, "category": cats[j], "sub_category": subs[j],
                         "price": float(listings.loc[j, "price"])})
    inter = pd.DataFrame(rows, columns=schema.INTERACTION_COLUMNS).astype({"n_bids": "int64", "won": bool})
    if categorical:
        inter = inter.astype({"uid": "category", "category": "category", "sub_category": "category"})
    return inter, listings


def report_of(inter: pd.DataFrame, listings: pd.DataFrame, lists: ListDigest | None = None,
              daily: pd.DataFrame | None = None, draw: tuple[str, ...] | None = None
              ) -> tuple[dict, dict[str, pd.DataFrame], dict[str, bytes], str]:
    """Summary, tables, the drawable figures among ``draw`` (default: all) as PNG and the page of one input,
    as the report builds them."""
    inp = ReportInput(interaction_figures(inter, listings), listings, lists or ListDigest(), COUNTS, {"ingest": 1.0},
                      daily, None if daily is None else ["2026-11-01", "2026-11-03"], "run-x")
    summary, frames = assemble(inp)
    pngs = {name: figures.render(name, frames) for name in figures.drawable(frames) if draw is None or name in draw}
    return summary, frames, pngs, html.render(summary, frames, pngs)


LABEL_SETS = {
    "blank, whitespace, unknown and missing": ["", " ", schema.UNKNOWN_CATEGORY, np.nan, "Toys", "\t"],
    "case and padding": ["Toys", "toys", " Toys", "Toys  ", "TOYS"],
    "a category named like a sub-category": ["Toys", "Cards", "Funko"],
    "one category only": ["Toys"],
    "mathtext-like text": ["Under $5", r"$\frac$ art", "50% & <b>bold</b>", "Toys"],
}
SUBS = {"a category named like a sub-category": ["Cards", "Toys", "Toys"]}


@pytest.mark.parametrize("categorical", [True, False], ids=["categorical", "plain"])
@pytest.mark.parametrize("name", list(LABEL_SETS))
def test_every_table_figure_and_the_page_survive_any_category_labels(name, categorical):
    cats = LABEL_SETS[name]
    inter, listings = interactions(cats, SUBS.get(name), categorical=categorical)
    summary, frames, pngs, page = report_of(inter, listings, draw=LABELLED if categorical else ())
    hand = inter.assign(category=inter["category"].astype(object).map(label))
    expected = sorted({label(c) for c in cats})

    shares = frames["categories"]
    assert sorted(shares["category"]) == expected and shares["category"].is_unique
    got = shares.set_index("category")
    for cat, g in hand.groupby("category"):
        assert got.loc[cat, "bidders"] == g["uid"].nunique() and got.loc[cat, "bids"] == g["n_bids"].sum()
    assert shares["bids"].sum() == inter["n_bids"].sum()  # 12+ bidders a label: nothing hidden, nothing lost

    users = {c: set(g["uid"]) for c, g in hand.groupby("category")}
    lift = frames["lift"]
    assert len(lift) == len(expected) * (len(expected) - 1)
    assert not lift.duplicated(["category_a", "category_b"]).any()
    cells = lift.set_index(["category_a", "category_b"])
    for a, b in permutations(expected, 2):
        both = len(users[a] & users[b])
        if not 0 < both < tables.MIN_USERS:
            want = both / len(users[a]) / (len(users[b]) / inter["uid"].nunique())
            assert cells.loc[(a, b), "lift"] == pytest.approx(want)

    assert sorted(frames["prices"]["category"]) == sorted({label(c) for c in listings["category"]})
    assert frames["prices"]["listings"].sum() == len(listings)
    assert set(frames["overbid"]["category"]) <= set(expected)
    for frame in (frames["sub_categories"], frames["prices"], frames["overbid"]):
        assert not frame.filter(like="category").isna().any().any()

    if categorical:  # the same labels either way: drawn once
        assert set(pngs) >= {"categories", "prices"} and all(p.startswith(b"\x89PNG") for p in pngs.values())
        assert ("lift" in pngs) == (len(expected) > 1)
    for cat in expected:
        assert html.fmt(cat, "text") in page
    assert "<b>bold</b>" not in page  # category text is escaped, never markup
    assert summary["readings"]["categories"] != text.TOO_FEW


def test_labels_strip_and_give_blank_or_missing_the_unknown_label():
    raw = pd.Series(["b", " b", "", "  ", None, "unknown", "B", "a\t"], dtype=object)
    for values in (raw, raw.astype("category"), raw.astype("string")):
        codes, names = tables.labels(values)
        assert names.tolist() == ["B", "a", "b", "unknown"]
        assert names[codes].tolist() == ["b", "b", "unknown", "unknown", "unknown", "unknown", "B", "a"]
    unused = pd.DataFrame({"category": pd.Categorical(["x", "y"], categories=["x", "y", "z", " "]),
                           "uid": ["u1", "u2"], "n_bids": 1, "spend": 1.0, "price": 1.0})
    assert tables.labels(unused["category"])[1].tolist() == ["unknown", "x", "y", "z"]  # some have no row
    assert tables.category_shares(unused, ["category"])["category"].tolist() == ["x", "y"]  # tables drop them
    assert tables.price_distribution(unused)["category"].tolist() == ["x", "y"]
    assert tables.category_lift(unused)[["category_a", "category_b"]].values.tolist() == [["x", "y"], ["y", "x"]]
    codes, names = tables.labels(pd.Series([], dtype="category"))
    assert len(codes) == 0 and names.tolist() == ["unknown"]


@pytest.mark.parametrize("subs", [7, 5000])  # a small product of labels (counted), then a large one (sorted)
def test_group_codes_equal_a_pandas_groupby_on_the_labels(subs):
    rng = np.random.default_rng(11)
    n = 2000
    frame = pd.DataFrame({"category": rng.choice(["A", " A", "B", "", None], n),
                          "sub_category": [f"s{k}" for k in rng.integers(0, subs, n)]})
    code, keys = tables.group_codes(frame, ["category", "sub_category"])
    hand = frame.assign(category=frame["category"].map(label))
    expected = hand.groupby(["category", "sub_category"]).size()
    assert list(zip(keys["category"], keys["sub_category"], strict=True)) == list(expected.index)
    np.testing.assert_array_equal(np.bincount(code), expected.to_numpy())
    assert (keys["category"].to_numpy()[code] == hand["category"].to_numpy()).all()


def sub_category_market() -> pd.DataFrame:
    """"7 day auction" under four categories: A (40 bidders), B (20), C (3: suppressed) and D (10: its complement)."""
    people = {("A", "7 day auction"): 30, ("A", "Vintage"): 10, ("B", "7 day auction"): 20,
              ("C", "7 day auction"): 3, ("D", "7 day auction"): 6, ("D", "Vintage"): 4}
    rows = [{"uid": f"{cat}-{sub}-{i}", "item_id": k, "n_bids": 1 + k, "spend": 5.0, "max_amount": 5.0,
             "first_at": pd.Timestamp("2026-11-01"), "last_at": pd.Timestamp("2026-11-01"), "won": False,
             "category": cat, "sub_category": sub, "price": 10.0}
            for k, ((cat, sub), n) in enumerate(people.items()) for i in range(n)]
    return pd.DataFrame(rows, columns=schema.INTERACTION_COLUMNS).astype({"category": "category",
                                                                         "sub_category": "category"})


def test_one_sub_category_name_under_several_categories_is_one_row_per_category():
    inter = sub_category_market()
    cats = tables.category_shares(inter, ["category"])
    assert cats.set_index("category")["suppressed"].to_dict() == {"A": False, "B": False, "C": True, "D": True}
    subs = tables.category_shares(inter, ["category", "sub_category"], within=cats)
    auction = subs[subs["sub_category"] == "7 day auction"].set_index("category")
    assert sorted(auction.index) == ["A", "B", "C", "D"] and not subs.duplicated(["category", "sub_category"]).any()
    assert auction.loc["A", "bidders"] == 30 and auction.loc["A", "bids"] == 30 * 1
    assert auction.loc["B", "bidders"] == 20 and auction.loc["B", "bids"] == 20 * 3
    assert auction["suppressed"].to_dict() == {"A": False, "B": False, "C": True, "D": True}  # with C and D only
    assert subs.set_index(["category", "sub_category"]).loc[("A", "Vintage"), "bidders"] == 10
    assert subs["bid_share"].sum(skipna=True) == pytest.approx(
        (30 * 1 + 10 * 2 + 20 * 3) / inter["n_bids"].sum())


def test_the_page_lists_a_shared_sub_category_under_each_of_its_categories():
    inter = sub_category_market()
    listings = inter.drop_duplicates("item_id").rename(columns={"item_id": "listing_id"}).assign(
        price=10.0, status="live")[["listing_id", "category", "sub_category", "price", "status"]]
    _, frames, _, page = report_of(inter, listings, draw=())
    section = page.split("<h3>Sub-categories</h3>")[1].split("<h3>")[0]
    rows = [r for r in section.split("<tr>") if "7 day auction" in r]
    assert len(rows) == 4 and [r.split("</td>")[0][4:] for r in rows] == frames["sub_categories"].loc[
        frames["sub_categories"]["sub_category"] == "7 day auction", "category"].tolist()
    assert "The three busiest of 6 sub-categories (a name" in page


def test_no_rows_no_users_and_a_handful_of_users_still_give_a_report():
    inter, listings = interactions(["Toys", "Cards"])
    empty_day = pd.DataFrame({"date": pd.to_datetime([]), "bids": [], "bidders": [], "new_bidders": []})
    for rows, lists in ((inter.iloc[:0], ListDigest()), (inter[inter["uid"].isin(["user-000", "user-001"])],
                                                         ListDigest.of(pd.DataFrame({"uid": ["user-000"],
                                                                                     "item_id": [1],
                                                                                     "source": ["popular"]})))):
        summary, frames, pngs, page = report_of(rows, listings, lists, empty_day)
        assert summary["overview"]["bidders"] == rows["uid"].nunique()
        assert frames["categories"]["bidders"].isna().all() or frames["categories"].empty  # < 5 users: all hidden
        assert frames["lift"]["lift"].isna().all() or frames["lift"]["lift"].eq(0).all()
        assert summary["engagement"]["mean_entropy"] is None and summary["concentration"]["gini_users"] is None
        assert summary["recommendations"]["cold_start_user_share"] is None
        assert summary["readings"]["categories"] == text.TOO_FEW
        assert frames["prices"]["listings"].sum() == 2 and "prices" in pngs
        assert page.startswith("<!DOCTYPE html>") and "Run health" in page
    no_catalogue = report_of(inter.iloc[:0], listings.iloc[:0])
    assert no_catalogue[1]["prices"].empty and "prices" not in no_catalogue[2]


def test_a_category_smaller_than_the_threshold_hides_its_size_in_the_lift_table():
    inter, _ = interactions(["Toys", "Cards"])
    solo = pd.DataFrame({"uid": [f"solo-{i}" for i in range(3)], "item_id": 9, "n_bids": 1, "spend": 1.0,
                         "category": "Comics"})
    lift = tables.category_lift(pd.concat([inter.astype({"uid": object, "category": object}), solo]))
    comics = lift[(lift["category_a"] == "Comics") | (lift["category_b"] == "Comics")]
    assert len(comics) == 4 and comics["suppressed"].all() and (comics["lift"] == 0).all()  # nobody shared
    assert comics["bidders_a"].isna().sum() == 2 and comics["bidders_b"].isna().sum() == 2
    assert (comics[["bidders_a", "bidders_b"]] == 3).sum().sum() == 0  # Comics' 3 bidders shown nowhere
    others = lift[(lift["category_a"] != "Comics") & (lift["category_b"] != "Comics")].set_index("category_a")
    assert not others["suppressed"].any() and others["bidders_a"].to_dict() == {"Cards": 60, "Toys": 30}
