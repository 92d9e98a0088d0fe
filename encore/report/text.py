"""One-sentence readings of each report section, written from the computed figures.

Each function returns plain text that a product manager can read without the chart; suppressed
values read as "fewer than 5 users" rather than a number.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from encore.report.tables import MIN_USERS


def pct(value: float | None) -> str:
    """A share as a percentage, or the suppression marker."""
    return f"a suppressed share (<{MIN_USERS} users)" if value is None or pd.isna(value) else f"{value:.0%}"


def activity(s: dict[str, Any]) -> str:
    a = s["activity"]
    return (f"Over {a['days']} days an average of {a['mean_bidders_per_day']:.0f} bidders placed "
            f"{a['mean_bids_per_day']:.0f} bids a day; {pct(a['returning_share'])} of daily bidders had already "
            f"bid earlier in the window (on the window's first day everyone counts as new).")


def categories(t: dict[str, pd.DataFrame]) -> str:
    top = t["categories"].dropna(subset=["bid_share"]).iloc[0]
    return (f"{top['category']} draws the most demand: {top['bid_share']:.0%} of bids from "
            f"{top['bidder_share']:.0%} of bidders, and {top['spend_share']:.0%} of the money bid.")


def subcategories(t: dict[str, pd.DataFrame]) -> str:
    shown = t["sub_categories"].dropna(subset=["bid_share"])
    top3 = shown.head(3)["bid_share"].sum()
    return (f"The three busiest of {len(t['sub_categories'])} sub-categories (a name under two categories counts "
            f"twice) take {top3:.0%} of all bids.")


def prices(t: dict[str, pd.DataFrame]) -> str:
    p = t["prices"].sort_values("p50")
    return (f"Median listing prices run from {p.iloc[0]['p50']:,.0f} ({p.iloc[0]['category']}) to "
            f"{p.iloc[-1]['p50']:,.0f} ({p.iloc[-1]['category']}).")


def overbid(t: dict[str, pd.DataFrame]) -> str:
    o = t["overbid"].dropna(subset=["median"]).sort_values("median")
    if o.empty:
        return "Too few sold listings per category to show final prices."
    return (f"Sold listings close at a median of {o.iloc[0]['median']:.2f}× the listing price in "
            f"{o.iloc[0]['category']} up to {o.iloc[-1]['median']:.2f}× in {o.iloc[-1]['category']}.")


def concentration(s: dict[str, Any]) -> str:
    c = s["concentration"]
    gini_u = "suppressed" if c["gini_users"] is None else f"{c['gini_users']:.2f}"
    return (f"The top 1 % of bidders place {pct(c['top1_share'])} of bids and the top 10 % place "
            f"{pct(c['top10_share'])}; the Gini of bids is {gini_u} across users and "
            f"{c['gini_listings']:.2f} across listings (0 = perfectly even).")


def bids_per_user(t: dict[str, pd.DataFrame]) -> str:
    b = t["bids_per_user"].dropna(subset=["users"])
    first, last = b.iloc[0], b.iloc[-1]
    span = "one bid" if first["bids_to"] == 1 else f"{first['bids_from']}–{first['bids_to']} bids"
    return (f"{first['users'] / b['users'].sum():.0%} of bidders placed {span} while a tail of "
            f"{last['users']:.0f} placed {last['bids_from']} or more; a straight line on log-log axes marks a "
            f"heavy, power-law-like tail.")


def entropy(s: dict[str, Any]) -> str:
    e = s["engagement"]
    return (f"Of {e['users']:,} bidders with at least 3 bids, {pct(e['loyalist_share'])} stay in one category "
            f"(loyalists) and {pct(e['explorer_share'])} spread over categories with at least 1 bit of "
            f"entropy (explorers).")


def lift(t: dict[str, pd.DataFrame]) -> str:
    cells = t["lift"].dropna(subset=["lift"])
    if cells.empty:
        return "Too few shared bidders between categories to show lift."
    top = cells.sort_values("lift", ascending=False).iloc[0]
    return (f"Bidders of {top['category_a']} are {top['lift']:.2f}× as likely as the average bidder to bid on "
            f"{top['category_b']}, the strongest pairing (1 = no relation).")


def recommendations(s: dict[str, Any]) -> str:
    r = s["recommendations"]
    return (f"Lists for {r['users_served']:,} users cover {pct(r['coverage'])} of live listings; recommended "
            f"listings have {r['popularity_bias']:.2f}× the popularity of what users bid on, and "
            f"{pct(r['cold_start_user_share'])} of users got only non-personal (cold-start) items.")


def run_health(s: dict[str, Any]) -> str:
    h = s["run_health"]
    return (f"{h['rows_in']:,} input rows: {h['rows_accepted']:,} accepted and {h['rows_rejected']:,} "
            f"rejected with a reason.")


TOO_FEW = f"Too few users to describe this section without showing groups of fewer than {MIN_USERS}."


def readings(summary: dict[str, Any], tables: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Every section's reading, keyed like the report sections (time sections only with dates).

    A section whose every row is suppressed (tiny inputs) reads as "too few users" instead of failing.
    """
    writers = {"categories": (categories, tables), "sub_categories": (subcategories, tables),
               "prices": (prices, tables), "overbid": (overbid, tables), "concentration": (concentration, summary),
               "bids_per_user": (bids_per_user, tables), "entropy": (entropy, summary), "lift": (lift, tables),
               "recommendations": (recommendations, summary), "run_health": (run_health, summary)}
    if summary["activity"] is not None:
        writers["activity"] = (activity, summary)
    out = {}
    for name, (write, data) in writers.items():
        try:
            out[name] = write(data)
        except (IndexError, TypeError, ValueError):
            out[name] = TOO_FEW
    return out
