"""Every number of the consumer-behaviour report, as pure pandas functions (no I/O, no plotting).

Inputs are the clean interactions (one row per user × listing), the catalogue, the per-day aggregate
and the recommendations. Outputs are aggregates only: no uid leaves these functions. A cell that
describes fewer than ``MIN_USERS`` users is set to null and flagged in a ``suppressed`` column, and so is
a second one where it could otherwise be recovered from a published total.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numba import njit
from scipy.sparse import csr_matrix

from encore import schema

MIN_USERS = 5
#: Sources that are not the model's own picks (whatever ``model.kind`` labels those); the first is personal too.
BACKOFF_SOURCES = ("subcategory", "trending", "popular", "outbid")
PRICE_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def suppress(frame: pd.DataFrame, users: pd.Series, columns: list[str], k: int = MIN_USERS,
             complement: bool = True) -> pd.DataFrame:
    """Null ``columns`` where 0 < ``users`` < k and add the ``suppressed`` flag (True where nulled).

    With ``complement`` (the default: rows that add up to a total published elsewhere), a lone small
    row takes the smallest other row with it (:func:`complemented`). A zero is kept: it describes nobody.
    """
    size = users.to_numpy()
    hidden = small_cells(size, k)
    return hide(frame, complemented(hidden, size) if complement else hidden, columns)


def small_cells(users: np.ndarray, k: int = MIN_USERS) -> np.ndarray:
    """Where 0 < ``users`` < k."""
    return (users > 0) & (users < k)


def hide(frame: pd.DataFrame, hidden: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """A copy of ``frame`` with ``columns`` nulled where ``hidden`` and a ``suppressed`` flag column."""
    out = frame.copy()
    for col in columns:
        out[col] = out[col].astype("float64").mask(hidden)
    out["suppressed"] = hidden
    return out


def complemented(hidden: np.ndarray, size: np.ndarray) -> np.ndarray:
    """``hidden`` and, when it holds exactly one row, the other non-empty row of least ``size``.

    A single hidden row of a table whose rows add up to a published total (bids per day and the
    window's mean, bidders per bin and all bidders) is that total minus the rows shown; hiding a
    second row leaves only the sum of the two. A table of one non-empty row is left as it is.
    """
    if np.count_nonzero(hidden) != 1:
        return hidden
    others = np.flatnonzero(~hidden & (size > 0))
    if not len(others):
        return hidden
    out = hidden.copy()
    out[others[np.argmin(size[others])]] = True
    return out


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values: 0 when all equal, near 1 when one holds everything."""
    x = np.sort(np.asarray(values, dtype="float64"))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return float("nan")
    return float(2 * np.sum(np.arange(1, n + 1) * x) / (n * total) - (n + 1) / n)


# --- integer codes: interactions are grouped by user and label codes, never by uid strings ----------------

def user_codes(inter: pd.DataFrame) -> tuple[np.ndarray, int]:
    """Each interaction's user as a code below n, and n (codes of users with no row may be unused).

    Ingest hands ``uid`` over as a categorical, whose codes cost nothing; plain strings are factorised.
    """
    uid = inter["uid"]
    if isinstance(uid.dtype, pd.CategoricalDtype):
        return uid.cat.codes.to_numpy().astype(np.int64), len(uid.cat.categories)
    codes, uniques = pd.factorize(uid)
    return codes.astype(np.int64), len(uniques)


def labels(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Each row's label as a code into the labels (unique and sorted; some may have no row): the report's key
    for a category or sub-category.

    A label is stripped, and a blank or missing one reads ``schema.UNKNOWN_CATEGORY`` as ingest labels
    it, so "", " ", NaN and "unknown" are one group and " Toys" is "Toys"; names that differ by case stay
    apart. The text work is done on a categorical's categories (ingest's dtype), then one lookup per row.
    Callers drop labels that count nothing, where they count anyway.
    """
    cat = pd.Categorical(values)
    text = np.array([str(c).strip() or schema.UNKNOWN_CATEGORY for c in cat.categories], dtype=object)
    names, inverse = np.unique(np.append(text, schema.UNKNOWN_CATEGORY).astype(object), return_inverse=True)
    return inverse.ravel().astype(np.int64)[cat.codes], names  # code -1 (missing) picks the appended UNKNOWN


def group_codes(frame: pd.DataFrame, by: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Each row's group over the ``by`` label columns (:func:`labels`) as a dense code, and one key row per
    group, in label order.

    The columns' codes are packed into one number: counted by ``bincount`` when their product is small
    (the usual case), else by a sort, so thousands of sub-categories never allocate a table of the product.
    """
    code, names = np.zeros(len(frame), np.int64), []
    for col in by:
        own, uniq = labels(frame[col])
        code = code * len(uniq) + own
        names.append(uniq)
    span = math.prod(len(uniq) for uniq in names)
    if span <= 4 * len(code) + 1024:
        used = np.flatnonzero(np.bincount(code, minlength=span))
        lookup = np.zeros(span, np.int64)
        lookup[used] = np.arange(len(used))
        dense = lookup[code]
    else:
        used, dense = np.unique(code, return_inverse=True)
    keys, rest = {}, used
    for col, uniq in reversed(list(zip(by, names, strict=True))):
        keys[col], rest = uniq[rest % len(uniq)], rest // len(uniq)
    return dense.ravel(), pd.DataFrame({col: keys[col] for col in by}, dtype=object)


def user_pairs(user: np.ndarray, group: np.ndarray, n_groups: int, weights: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (user, group) pairs, by user then group, as (user, group, sum of ``weights`` over the pair's rows).

    Interactions come sorted by user, so one pass over each user's run of rows finds their groups
    (:func:`_run_pairs`, numba): no sort of packed keys, no temporaries beyond the output. Rows not
    sorted by user are put in user order first.
    """
    user, group = np.asarray(user, np.int64), np.asarray(group, np.int64)
    w = np.ones(len(user)) if weights is None else np.asarray(weights, np.float64)
    if len(user) > 1 and not bool(np.all(user[1:] >= user[:-1])):
        order = np.argsort(user, kind="stable")
        user, group, w = user[order], group[order], w[order]
    return _run_pairs(user, group, int(n_groups), w)


@njit(nogil=True, cache=True)
def _run_pairs(user, group, n_groups, weights):
    """:func:`user_pairs` of rows sorted by user: per user, the groups met kept in order by insertion (a slot
    per group, reset after the user) and emitted with their summed weights. O(rows + pairs · groups per user)."""
    n = len(user)
    out_user, out_group, out_sum = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.float64)
    total = np.zeros(n_groups, np.float64)
    seen = np.zeros(n_groups, np.bool_)
    met = np.empty(n_groups, np.int64)
    size, a = 0, 0
    while a < n:
        b, count = a, 0
        while b < n and user[b] == user[a]:
            g = group[b]
            if not seen[g]:  # insert g into the user's sorted groups (a handful: no allocation, no sort call)
                seen[g] = True
                at = count
                while at > 0 and met[at - 1] > g:
                    met[at] = met[at - 1]
                    at -= 1
                met[at] = g
                count += 1
            total[g] += weights[b]
            b += 1
        for c in range(count):
            g = met[c]
            out_user[size], out_group[size], out_sum[size] = user[a], g, total[g]
            seen[g], total[g] = False, 0.0
            size += 1
        a = b
    return out_user[:size], out_group[:size], out_sum[:size]


def user_bids(inter: pd.DataFrame) -> pd.Series:
    """Bids per user who has any (the building block of concentration and engagement)."""
    user, n = user_codes(inter)
    bids = np.bincount(user, inter["n_bids"].to_numpy(np.float64), n)
    return pd.Series(bids[np.bincount(user, minlength=n) > 0].astype(np.int64), name="n_bids")


def overview(inter: pd.DataFrame, listings: pd.DataFrame, bid_on: pd.DataFrame) -> dict[str, Any]:
    """Headline counts: bidders, bids, spend, listings bid on (:func:`listing_counts`), catalogue size."""
    user, n = user_codes(inter)
    return {"bidders": int(np.count_nonzero(np.bincount(user, minlength=n))), "bids": int(inter["n_bids"].sum()),
            "spend": float(inter["spend"].sum()), "listings_with_bids": len(bid_on),
            "catalogue_listings": len(listings)}


# --- activity over time ---------------------------------------------------------------------------------

def daily_activity(daily: pd.DataFrame) -> pd.DataFrame:
    """Per day: bids, bidders, new and returning bidders; small days suppressed.

    New/returning are nulled together when either is below the threshold (one gives the other away),
    with a second day's split when only one is (the window's returning share gives their sum).
    """
    out = daily[["date", "bids", "bidders", "new_bidders"]].copy()
    out["returning_bidders"] = out["bidders"] - out["new_bidders"]
    split = out[["new_bidders", "returning_bidders"]]
    small_split = complemented(small_cells(split.to_numpy()).any(axis=1), out["bidders"].to_numpy())
    out = suppress(out, out["bidders"], ["bids", "bidders", "new_bidders", "returning_bidders"])
    out.loc[small_split, ["new_bidders", "returning_bidders"]] = np.nan
    out["suppressed"] = out["suppressed"] | small_split
    return out.reset_index(drop=True)


def activity_summary(daily: pd.DataFrame) -> dict[str, Any]:
    """Means per day and the share of bidder-days by returning bidders, over every day of the window."""
    bidder_days = daily["bidders"].sum()
    returning = bidder_days - daily["new_bidders"].sum()
    return {"days": len(daily), "mean_bids_per_day": float(daily["bids"].mean()),
            "mean_bidders_per_day": float(daily["bidders"].mean()),
            "returning_share": float(returning / bidder_days) if bidder_days >= MIN_USERS else None}


# --- categories ---------------------------------------------------------------------------------------

def category_shares(inter: pd.DataFrame, by: list[str], within: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per category (or sub-category): bids, bidders, spend and their shares of the whole market.

    ``within`` is the table of the level above (``by[0]`` only), when ``by`` is a sub-level: each of its
    rows is the sum of its sub-rows, so a sub-row is hidden where its parent is, and a lone hidden
    sub-row is complemented within its parent, not only across the table.
    """
    group, keys = group_codes(inter, by)
    user, _ = user_codes(inter)
    pair_user, pair_group, _ = user_pairs(user, group, len(keys))
    bids = inter["n_bids"].to_numpy(np.float64)
    counted = keys.assign(bids=np.bincount(group, bids, len(keys)).astype(np.int64),
                          bidders=np.bincount(pair_group, minlength=len(keys)),
                          spend=np.bincount(group, inter["spend"].to_numpy(np.float64), len(keys)))
    return share_table(counted, by, float(bids.sum()), np.count_nonzero(np.bincount(pair_user)),
                       float(inter["spend"].sum()), within)


def share_table(counted: pd.DataFrame, by: list[str], bids: float, bidders: int, spend: float,
                within: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`category_shares` from its counts: one row per group (``by`` labels, bids, distinct bidders, spend)
    and the market's totals; shares, order and suppression as there."""
    out = counted.copy()
    out["bid_share"] = out["bids"] / bids
    out["bidder_share"] = out["bidders"] / bidders
    out["spend_share"] = out["spend"] / spend
    out = out.sort_values(["bids", *by], ascending=[False, *[True] * len(by)]).reset_index(drop=True)
    users = out["bidders"].to_numpy()
    hidden = small_cells(users)
    if within is not None:
        parent = out[by[0]]
        hidden |= parent.isin(within.loc[within["suppressed"], by[0]]).to_numpy()
        for rows in out.groupby(parent, observed=True, sort=False).indices.values():
            hidden[rows] = complemented(hidden[rows], users[rows])
    hidden = complemented(hidden, users)
    return hide(out, hidden, ["bids", "bidders", "spend", "bid_share", "bidder_share", "spend_share"])


def price_distribution(listings: pd.DataFrame) -> pd.DataFrame:
    """Quantiles of listing price per category label (the catalogue, no bidder information)."""
    code, names = labels(listings["category"])
    g = pd.Series(listings["price"].to_numpy(np.float64)).groupby(code)
    used = g.size()
    out = pd.DataFrame({"category": names[used.index.to_numpy(np.int64)].astype(object), "listings": used.to_numpy()})
    for q in PRICE_QUANTILES:
        out[f"p{round(q * 100)}"] = g.quantile(q).to_numpy(np.float64)
    out["mean"] = g.mean().to_numpy(np.float64)
    return out


def overbid(inter: pd.DataFrame) -> pd.DataFrame:
    """Per category: winning bid ÷ listing price over sold listings (median, quartiles, mean).

    The winner's highest bid is the final price of an auction; listings priced 0 are left out.
    """
    code, names = labels(inter["category"])
    user, _ = user_codes(inter)
    keep = (inter["won"].to_numpy(bool) & (inter["price"] > 0).to_numpy() & inter["max_amount"].notna().to_numpy())
    ratio = (inter["max_amount"] / inter["price"]).to_numpy(np.float64)[keep]
    return overbid_table(code[keep], ratio, user[keep], names)


def overbid_table(code: np.ndarray, ratio: np.ndarray, winner: np.ndarray, names: np.ndarray) -> pd.DataFrame:
    """:func:`overbid` from the won rows: each one's category code into ``names``, winning bid ÷ price and
    winner (any integer id), in the interactions' order (by winner, then listing)."""
    at = np.asarray(code, np.int64)
    g = pd.Series(np.asarray(ratio, np.float64)).groupby(at)
    cats = g.size().index.to_numpy(np.int64)
    out = pd.DataFrame({"category": names[cats].astype(object), "sold_listings": g.size().to_numpy(),
                        "winners": pd.Series(winner).groupby(at).nunique().to_numpy()})
    for name, values in (("p25", g.quantile(0.25)), ("median", g.median()), ("p75", g.quantile(0.75)),
                         ("mean", g.mean())):
        out[name] = values.to_numpy(np.float64)
    return suppress(out, out["winners"], ["sold_listings", "winners", "p25", "median", "p75", "mean"])


# --- concentration ---------------------------------------------------------------------------------------

def top_share(values: pd.Series, fraction: float) -> tuple[float | None, int]:
    """Share of the total held by the top ``fraction`` of units (at least one), and how many units that is."""
    n = max(1, math.ceil(fraction * len(values)))
    total = float(values.sum())
    top = float(np.sort(values.to_numpy())[::-1][:n].sum())
    return (top / total if total else float("nan")), n


def listing_counts(inter: pd.DataFrame) -> pd.DataFrame:
    """Per listing with any bid, by listing id: distinct bidders (its rows, as interactions hold one row per
    user × listing) and bids.

    Listing ids drawn from a sequence (the usual case: no more than 4 per row between the smallest and the
    largest) are counted by offset, with no hashing; others are factorised.
    """
    ids, bids = inter["item_id"].to_numpy(np.int64), inter["n_bids"].to_numpy(np.float64)
    lo = int(ids.min()) if len(ids) else 0
    span = int(ids.max()) - lo + 1 if len(ids) else 0
    if span <= 4 * len(ids):
        bidders, total = np.bincount(ids - lo, minlength=span), np.bincount(ids - lo, bids, span)
        at = np.flatnonzero(bidders)
        index, bidders, total = at + lo, bidders[at], total[at]
    else:
        codes, index = pd.factorize(ids, sort=True)
        bidders, total = np.bincount(codes, minlength=len(index)), np.bincount(codes, bids, len(index))
    return pd.DataFrame({"bidders": bidders, "bids": total.astype(np.int64)},
                        index=pd.Index(np.asarray(index, np.int64), name="item_id"))


def concentration(per_user: pd.Series, per_listing: pd.Series) -> dict[str, Any]:
    """Top 1 % / 10 % bidders' share of bids and the Gini of bids across users and across listings.

    Takes :func:`user_bids` and the bids of :func:`listing_counts`. A top group of fewer than ``MIN_USERS`` users is
    suppressed (it would describe those few people).
    """
    out: dict[str, Any] = {"users": len(per_user)}
    for name, frac in (("top1_share", 0.01), ("top10_share", 0.10)):
        share, n = top_share(per_user, frac)
        out[name] = share if n >= MIN_USERS else None
    out["gini_users"] = gini(per_user.to_numpy()) if len(per_user) >= MIN_USERS else None
    out["gini_listings"] = gini(per_listing.to_numpy())
    return out


def lorenz(values: np.ndarray, min_group: int = MIN_USERS, max_points: int = 100) -> pd.DataFrame:
    """Lorenz curve points (population share, cumulative share), each step spanning ≥ ``min_group`` units."""
    x = np.sort(np.asarray(values, dtype="float64"))
    steps = min(max_points, len(x) // min_group)
    if steps < 1 or x.sum() <= 0:
        return pd.DataFrame({"population_share": [], "value_share": []})
    cum = np.concatenate([[0.0], np.cumsum(x)]) / x.sum()
    at = np.round(np.linspace(0, len(x), steps + 1)).astype(int)
    return pd.DataFrame({"population_share": at / len(x), "value_share": cum[at]})


def lorenz_curves(per_user: pd.Series, per_listing: pd.Series) -> pd.DataFrame:
    """Lorenz curves of bids across users and across listings (:func:`user_bids`, :func:`listing_counts`),
    stacked with a ``unit`` column."""
    users = lorenz(per_user.to_numpy()).assign(unit="users")
    items = lorenz(per_listing.to_numpy(), min_group=1).assign(unit="listings")
    return pd.concat([users, items], ignore_index=True)[["unit", "population_share", "value_share"]]


# --- engagement depth ----------------------------------------------------------------------------------

def bids_per_user(per_user: pd.Series) -> pd.DataFrame:
    """Users per power-of-two bin of bids per user (:func:`user_bids`: [1,2), [2,4), …) and users per unit
    of bin width. A user counted with no bids (zero ``n_bids`` rows) falls in no bin."""
    bids = per_user.to_numpy()
    lo = np.power(2, np.floor(np.log2(bids[bids > 0])).astype(int))
    g = pd.Series(lo).value_counts().sort_index()
    out = pd.DataFrame({"bids_from": g.index.astype("int64"), "bids_to": (2 * g.index).astype("int64") - 1,
                        "users": g.to_numpy()})
    out["users_per_bid"] = out["users"] / (out["bids_to"] - out["bids_from"] + 1)
    return suppress(out, out["users"], ["users", "users_per_bid"])


def category_entropy(inter: pd.DataFrame, min_bids: int = 3) -> pd.Series:
    """Shannon entropy (bits) of each user's bids over categories, for users with ≥ ``min_bids`` bids."""
    user, n_users = user_codes(inter)
    cat, names = labels(inter["category"])
    pair_user, _, bids = user_pairs(user, cat, len(names), inter["n_bids"].to_numpy(np.float64))
    totals = np.bincount(pair_user, bids, n_users)
    p = bids / totals[pair_user]
    h = np.abs(np.bincount(pair_user, -p * np.log2(p), n_users))
    return pd.Series(h[(totals >= min_bids) & (np.bincount(pair_user, minlength=n_users) > 0)], name="entropy")


def entropy_histogram(entropy: pd.Series, width: float = 0.25) -> pd.DataFrame:
    """Users per entropy bin of ``width`` bits."""
    bins, users = np.unique(entropy_bins(entropy.to_numpy(), width), return_counts=True)
    return entropy_bin_table(bins, users, width)


def entropy_bins(entropy: np.ndarray, width: float = 0.25) -> np.ndarray:
    """Each entropy's bin of ``width`` bits, as the (float) number of widths below its lower edge."""
    return np.floor(np.asarray(entropy, np.float64) / width + 1e-9)


def entropy_bin_table(bins: np.ndarray, users: np.ndarray, width: float = 0.25) -> pd.DataFrame:
    """:func:`entropy_histogram` from its bins (:func:`entropy_bins`, sorted) and the users in each."""
    lo = np.asarray(bins, np.float64) * width
    out = pd.DataFrame({"entropy_from": lo, "entropy_to": lo + width, "users": np.asarray(users, np.int64)})
    return suppress(out, out["users"], ["users"])


def entropy_summary(entropy: pd.Series) -> dict[str, Any]:
    """Loyalists (all bids in one category) and explorers (≥ 1 bit) among users with enough bids."""
    n = len(entropy)
    if n < MIN_USERS:
        return {"users": n, "mean_entropy": None, "loyalist_share": None, "explorer_share": None}
    return {"users": n, "mean_entropy": float(entropy.mean()), "loyalist_share": float((entropy < 1e-9).mean()),
            "explorer_share": float((entropy >= 1.0).mean())}


def category_lift(inter: pd.DataFrame) -> pd.DataFrame:
    """Lift of bidding in B given A: P(B | A) / P(B) over distinct bidders, per ordered pair of category
    labels (:func:`labels`) by A then B; the diagonal is left out.

    Cells are addressed by label code, never by label, so any text is a category. A cell shared by
    fewer than ``MIN_USERS`` bidders is suppressed alone (the cells add up to nothing); so is the bidder
    count of a category with fewer than ``MIN_USERS`` bidders, whose lift (0 or already suppressed) stays.
    """
    user, n_users = user_codes(inter)
    cat, names = labels(inter["category"])
    pair_user, pair_cat, _ = user_pairs(user, cat, len(names))
    return lift_table(co_bidders(pair_user, pair_cat, n_users, len(names)), names,
                      np.count_nonzero(np.bincount(pair_user)))


def co_bidders(pair_user: np.ndarray, pair_cat: np.ndarray, n_users: int, n_cats: int) -> np.ndarray:
    """Distinct bidders of both categories, per ordered pair of category codes (the diagonal: of each one),
    from the distinct (user, category) pairs: adds up over disjoint sets of users."""
    onehot = csr_matrix((np.ones(len(pair_user), np.int64), (pair_user, pair_cat)), shape=(n_users, n_cats))
    return (onehot.T @ onehot).toarray().astype(np.int64)


def lift_table(both: np.ndarray, names: np.ndarray, n: int) -> pd.DataFrame:
    """:func:`category_lift` from :func:`co_bidders` over category ``names`` and the ``n`` bidders in all."""
    size = np.diag(both)
    present = np.flatnonzero(size)
    a, b = (grid.ravel() for grid in np.meshgrid(present, present, indexing="ij"))
    a, b = a[a != b], b[a != b]
    cells = pd.DataFrame({"category_a": names[a].astype(object), "category_b": names[b].astype(object),
                          "bidders_both": both[a, b], "bidders_a": size[a], "bidders_b": size[b]})
    cells["lift"] = cells["bidders_both"] * n / (cells["bidders_a"] * cells["bidders_b"])
    small = small_cells(size)
    cells = hide(cells, small_cells(cells["bidders_both"].to_numpy()), ["bidders_both", "lift"])
    for side, code in (("bidders_a", a), ("bidders_b", b)):
        cells[side] = cells[side].astype("float64").mask(small[code])
        cells["suppressed"] |= small[code]
    return cells


# --- recommendations -------------------------------------------------------------------------------------

@dataclass
class ListDigest:
    """What the report needs from the recommendation lists, added up shard by shard.

    Shards hold disjoint users, so per-user figures simply add up and the client never needs every
    list at once.
    """

    rows: int = 0
    users: int = 0
    personal_users: int = 0  # users with at least one item-kNN or sub-category pick
    knn_only_users: int = 0  # users whose whole list is the model's own picks
    source_rows: pd.Series = field(default_factory=lambda: pd.Series(dtype="int64"))
    source_users: pd.Series = field(default_factory=lambda: pd.Series(dtype="int64"))
    item_rows: pd.Series = field(default_factory=lambda: pd.Series(dtype="int64"))  # rows per listing
    rules: dict[str, int] = field(default_factory=dict)  # what the auction rules moved and removed (counts)

    @classmethod
    def of(cls, recs: pd.DataFrame) -> ListDigest:
        """The digest of lists held in one frame (uid, item_id, source).

        Counted with integer codes and ``bincount`` rather than grouping by uid strings three times,
        which would cost more than writing the shard.
        """
        if recs.empty:
            return cls()
        user = schema.uid_runs(recs["uid"])  # a shard's lists come sorted by uid
        user = pd.factorize(recs["uid"])[0] if user is None else user
        source, names = pd.factorize(recs["source"].astype(str))
        names = np.asarray(names, dtype=object)
        n_users, n_src = int(user.max()) + 1, len(names)
        non_personal = np.bincount(user, np.isin(names, BACKOFF_SOURCES[1:])[source], n_users) == \
            np.bincount(user, minlength=n_users)
        knn_only = np.bincount(user, np.isin(names, BACKOFF_SOURCES)[source], n_users) == 0
        _, pair_source, _ = user_pairs(user.astype(np.int64), source.astype(np.int64), n_src)
        index = pd.Index(names, name="source")
        return cls(rows=len(recs), users=n_users, personal_users=int(n_users - non_personal.sum()),
                   knn_only_users=int(knn_only.sum()),
                   source_rows=pd.Series(np.bincount(source, minlength=n_src), index=index, dtype="int64"),
                   source_users=pd.Series(np.bincount(pair_source, minlength=n_src), index=index,
                                          dtype="int64"),
                   item_rows=recs["item_id"].value_counts().astype("int64"))

    def merge(self, other: ListDigest) -> ListDigest:
        """Fold in the digest of other users' lists (another shard); returns self."""
        self.rows += other.rows
        self.users += other.users
        self.personal_users += other.personal_users
        self.knn_only_users += other.knn_only_users
        for name in ("source_rows", "source_users", "item_rows"):
            setattr(self, name, getattr(self, name).add(getattr(other, name), fill_value=0).astype("int64"))
        for key, value in other.rules.items():
            self.rules[key] = self.rules.get(key, 0) + value
        return self

    def add(self, recs: pd.DataFrame) -> ListDigest:
        """Fold in one shard's lists; returns self."""
        return self.merge(ListDigest.of(recs))


def recommendation_sources(lists: ListDigest) -> pd.DataFrame:
    """Per source: recommendations, users reached and share of all recommendations."""
    out = pd.DataFrame({"recommendations": lists.source_rows, "users": lists.source_users})
    out["share"] = out["recommendations"] / max(lists.rows, 1)
    out = out.rename_axis("source").reset_index().sort_values("source").reset_index(drop=True)
    return suppress(out, out["users"], ["recommendations", "users", "share"])


def recommendation_summary(lists: ListDigest, pop: pd.Series, hist_pop: float, listings: pd.DataFrame
                           ) -> dict[str, Any]:
    """Coverage of live listings, popularity bias and the share of users on backoff or cold-start lists.

    ``pop`` is the bidders of :func:`listing_counts`, ``hist_pop`` its mean over the interactions. Popularity bias
    is the mean popularity (distinct bidders) of recommended listings over the mean popularity of the
    listings users bid on: above 1 means the lists lean to what is already popular. A user is on the
    cold-start path when no item of their list is personal (item-kNN or sub-category).
    """
    live = listings.loc[listings["status"] == "live", "listing_id"]
    rec_pop = float((lists.item_rows * pop.reindex(lists.item_rows.index).fillna(0)).sum() / lists.rows) \
        if lists.rows else float("nan")
    users = lists.users
    return {"users_served": users, "recommendations": lists.rows,
            "coverage": float(len(lists.item_rows) / len(live)) if len(live) else None,
            "mean_rec_popularity": rec_pop, "mean_history_popularity": hist_pop,
            "popularity_bias": rec_pop / hist_pop,
            "backoff_user_share": 1 - lists.knn_only_users / users if users >= MIN_USERS else None,
            "cold_start_user_share": 1 - lists.personal_users / users if users >= MIN_USERS else None}


# --- run health ------------------------------------------------------------------------------------------

def reject_reasons(counts: dict[str, Any]) -> pd.DataFrame:
    """Rejected input rows per source and reason (rows, not people: nothing to suppress)."""
    rows = [(src, reason, n) for src, detail in counts.get("sources", {}).items()
            for reason, n in detail.get("by_reason", {}).items()]
    return pd.DataFrame(rows, columns=["source", "reason", "rows"]).astype({"rows": "int64"})


def stage_times(timings: dict[str, float]) -> pd.DataFrame:
    """Seconds per pipeline stage, in run order."""
    return pd.DataFrame({"stage": list(timings), "seconds": [float(v) for v in timings.values()]})


# --- partial aggregates: the interaction tables from disjoint sets of users, added up -------------------

def value_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct integer values, sorted, and how many times each occurs."""
    uniq, counts = np.unique(np.asarray(values, np.int64), return_counts=True)
    return uniq, counts.astype(np.int64)


def merge_counts(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Two :func:`value_counts` (or any sorted keys with int64 counts) added up."""
    keys, at = np.unique(np.concatenate([a[0], b[0]]), return_inverse=True)
    return keys, np.bincount(at.ravel(), np.concatenate([a[1], b[1]]), len(keys)).astype(np.int64)


def _ranked_sums(values: np.ndarray, counts: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """The sum of the ``r`` smallest values, for each ``r`` in ``ranks``, of the multiset ``values`` × ``counts``
    (``values`` sorted): exact integers."""
    ends = np.cumsum(counts)
    totals = np.cumsum(values * counts)
    k = np.searchsorted(ends, ranks, side="left")  # the group holding rank r (1-based)
    before = np.where(k > 0, ends[k.clip(min=1) - 1], 0)
    below = np.where(k > 0, totals[k.clip(min=1) - 1], 0)
    return below + (ranks - before) * values[k.clip(max=max(len(values) - 1, 0))] if len(values) else ranks * 0


def gini_counts(values: np.ndarray, counts: np.ndarray) -> float:
    """:func:`gini` of the integer multiset ``values`` × ``counts`` (``values`` sorted, sums below 2⁵³): the same
    float, from the exact rank-weighted sum rather than the sorted array."""
    n, total = int(counts.sum()), int((values * counts).sum())
    if n == 0 or total == 0:
        return float("nan")
    start = np.cumsum(counts) - counts  # ranks before each value's run
    weighted = sum(int(v) * (int(c) * int(s) + int(c) * (int(c) + 1) // 2)
                   for v, c, s in zip(values, counts, start, strict=True))
    return float(2 * np.float64(weighted) / (n * np.float64(total)) - (n + 1) / n)


def lorenz_counts(values: np.ndarray, counts: np.ndarray, min_group: int = MIN_USERS,
                  max_points: int = 100) -> pd.DataFrame:
    """:func:`lorenz` of the integer multiset ``values`` × ``counts`` (``values`` sorted, sums below 2⁵³)."""
    n, total = int(counts.sum()), int((values * counts).sum())
    steps = min(max_points, n // min_group)
    if steps < 1 or total <= 0:
        return pd.DataFrame({"population_share": [], "value_share": []})
    at = np.round(np.linspace(0, n, steps + 1)).astype(int)
    share = _ranked_sums(values, counts, at.astype(np.int64)).astype(np.float64) / np.float64(total)
    return pd.DataFrame({"population_share": at / n, "value_share": share})


def bids_per_user_counts(values: np.ndarray, counts: np.ndarray) -> pd.DataFrame:
    """:func:`bids_per_user` from :func:`value_counts` of the bids per user."""
    keep = values > 0
    lo = np.power(2, np.floor(np.log2(values[keep])).astype(int))
    bins, at = np.unique(lo, return_inverse=True)
    out = pd.DataFrame({"bids_from": bins.astype("int64"), "bids_to": (2 * bins).astype("int64") - 1,
                        "users": np.bincount(at.ravel(), counts[keep], len(bins)).astype(np.int64)})
    out["users_per_bid"] = out["users"] / (out["bids_to"] - out["bids_from"] + 1)
    return suppress(out, out["users"], ["users", "users_per_bid"])


def concentration_counts(values: np.ndarray, counts: np.ndarray, per_listing: pd.Series) -> dict[str, Any]:
    """:func:`concentration` with the bids per user as :func:`value_counts`."""
    n = int(counts.sum())
    total = int((values * counts).sum())
    out: dict[str, Any] = {"users": n}
    for name, frac in (("top1_share", 0.01), ("top10_share", 0.10)):
        top = max(1, math.ceil(frac * n))
        high = total - int(_ranked_sums(values, counts, np.array([n - top], np.int64))[0])
        share = float(high) / float(total) if total else float("nan")
        out[name] = share if top >= MIN_USERS else None
    out["gini_users"] = gini_counts(values, counts) if n >= MIN_USERS else None
    out["gini_listings"] = gini(per_listing.to_numpy())
    return out


@dataclass
class Catalogue:
    """The catalogue as the partial aggregates need it, the same for every partition: listing ids (sorted) and,
    per listing, its category code (into ``categories``), sub-category code (into ``sub_categories``),
    price and whether it sold."""

    ids: np.ndarray
    category: np.ndarray
    sub_category: np.ndarray
    categories: np.ndarray
    sub_categories: np.ndarray
    price: np.ndarray
    sold: np.ndarray

    @classmethod
    def of(cls, listings: pd.DataFrame) -> Catalogue:
        """From the clean catalogue, labelled as ingest labels the interactions (:func:`labels` of its
        categoricals), so the codes name the same groups as the interaction tables'."""
        cat = listings.set_index("listing_id")[["category", "sub_category", "price", "status"]].sort_index()
        category, categories = labels(cat["category"].astype("category"))
        sub, subs = labels(cat["sub_category"].astype("category"))
        return cls(cat.index.to_numpy(np.int64), category, sub, categories, subs,
                   cat["price"].to_numpy(np.float64), (cat["status"] == "sold").to_numpy(bool))


@dataclass
class Partial:
    """The report's interaction figures over one set of users, such that two sets' partials add up
    (:meth:`merge`) to the figures of their union: sums and counts per category and sub-category, distinct
    bidders (users are disjoint), co-bidders per category pair, bids per user and entropy bins as value
    counts, per-listing bidders and bids over the whole catalogue, and each sold listing's best bid
    (amount, earliest last bid, lowest user key), which picks its winner."""

    users: int
    bids: int
    spend: float
    cat_bids: np.ndarray  # per category code
    cat_bidders: np.ndarray
    cat_spend: np.ndarray
    sub_code: np.ndarray  # category code × len(sub_categories) + sub-category code, sorted
    sub_bids: np.ndarray
    sub_bidders: np.ndarray
    sub_spend: np.ndarray
    both: np.ndarray  # co_bidders, category × category
    user_bids: tuple[np.ndarray, np.ndarray]  # value_counts of bids per user
    entropy: tuple[np.ndarray, np.ndarray]  # entropy_bins (as int64) and users per bin
    entropy_sum: float
    loyalists: int
    explorers: int
    listing_bidders: np.ndarray  # per listing of the catalogue
    listing_bids: np.ndarray
    best_amount: np.ndarray  # per listing: the sold listing's best bid (NaN: none)
    best_last: np.ndarray  # its last bid time (int64 µs)
    best_user: np.ndarray  # its user key

    def merge(self, other: Partial) -> Partial:
        """The partial of both sets of users (disjoint): counts and sums added, best bids compared."""
        sub_code, at = np.unique(np.concatenate([self.sub_code, other.sub_code]), return_inverse=True)

        def sub(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.bincount(at.ravel(), np.concatenate([a, b]).astype(np.float64), len(sub_code))

        wins = _beats(other.best_amount, other.best_last, other.best_user,
                      self.best_amount, self.best_last, self.best_user)
        return Partial(
            self.users + other.users, self.bids + other.bids, self.spend + other.spend,
            self.cat_bids + other.cat_bids, self.cat_bidders + other.cat_bidders, self.cat_spend + other.cat_spend,
            sub_code, sub(self.sub_bids, other.sub_bids).astype(np.int64),
            sub(self.sub_bidders, other.sub_bidders).astype(np.int64), sub(self.sub_spend, other.sub_spend),
            self.both + other.both, merge_counts(self.user_bids, other.user_bids),
            merge_counts(self.entropy, other.entropy), self.entropy_sum + other.entropy_sum,
            self.loyalists + other.loyalists, self.explorers + other.explorers,
            self.listing_bidders + other.listing_bidders, self.listing_bids + other.listing_bids,
            np.where(wins, other.best_amount, self.best_amount), np.where(wins, other.best_last, self.best_last),
            np.where(wins, other.best_user, self.best_user))


def _beats(amount: np.ndarray, last: np.ndarray, user: np.ndarray, amount_b: np.ndarray, last_b: np.ndarray,
           user_b: np.ndarray) -> np.ndarray:
    """Where the first best bid beats the second: a bid where there was none, a higher amount, then an
    earlier last bid, then a lower user key (the order of ingest's winners)."""
    has, has_b = ~np.isnan(amount), ~np.isnan(amount_b)
    better = (amount > amount_b) | ((amount == amount_b) & ((last < last_b) | ((last == last_b) & (user < user_b))))
    return has & (~has_b | better)


def _dense(codes: np.ndarray, span: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``codes`` (below ``span``), sorted, and each row's position among them: by ``bincount``
    when the span is small next to the rows, else by a sort."""
    if span <= 4 * len(codes) + 1024:
        used = np.flatnonzero(np.bincount(codes, minlength=span))
        lookup = np.zeros(span, np.int64)
        lookup[used] = np.arange(len(used))
        return used, lookup[codes]
    used, at = np.unique(codes, return_inverse=True)
    return used, at.ravel()


def _sorted_runs(keys: np.ndarray) -> np.ndarray:
    """Codes 0..n-1 for rows sorted by ``keys`` (runs of equal keys)."""
    if not len(keys):
        return np.zeros(0, np.int64)
    new = np.r_[True, keys[1:] != keys[:-1]]
    return np.cumsum(new) - 1


def partial_of(inter: pd.DataFrame, cat: Catalogue, min_bids: int = 3, width: float = 0.25) -> Partial:
    """The :class:`Partial` of one set of users' interactions (``ukey``, ``listing_id``, ``n_bids``, ``spend``,
    ``max_amount``, ``last_at``), sorted by ``ukey`` then listing, every listing in ``cat``."""
    ukey = inter["ukey"].to_numpy(np.int64)
    order = None
    if len(ukey) > 1 and not bool(np.all(ukey[1:] >= ukey[:-1])):
        order = np.argsort(ukey, kind="stable")
        inter, ukey = inter.iloc[order], ukey[order]
    user = _sorted_runs(ukey)
    n_users = int(user[-1]) + 1 if len(user) else 0
    item = schema.id_positions(cat.ids, inter["listing_id"].to_numpy(np.int64))
    n_items, n_cats, n_subs = len(cat.ids), len(cat.categories), len(cat.sub_categories)
    code = cat.category[item]
    bids = inter["n_bids"].to_numpy(np.float64)
    spend = inter["spend"].to_numpy(np.float64)
    pair_user, pair_cat, pair_bids = user_pairs(user, code, n_cats, bids)
    sub_code, sub_at = _dense(code * n_subs + cat.sub_category[item], n_cats * n_subs)
    _, sub_pair, _ = user_pairs(user, sub_at, len(sub_code))
    totals = np.bincount(pair_user, pair_bids, n_users)
    p = pair_bids / totals[pair_user] if len(pair_user) else pair_bids
    h = np.abs(np.bincount(pair_user, -p * np.log2(p), n_users))
    h = h[(totals >= min_bids) & (np.bincount(pair_user, minlength=n_users) > 0)]
    per_user = np.bincount(user, bids, n_users).astype(np.int64)
    best = _best_bids(inter, item, ukey, cat)
    return Partial(
        users=n_users, bids=int(inter["n_bids"].sum()), spend=float(inter["spend"].sum()),
        cat_bids=np.bincount(code, bids, n_cats), cat_bidders=np.bincount(pair_cat, minlength=n_cats),
        cat_spend=np.bincount(code, spend, n_cats), sub_code=sub_code,
        sub_bids=np.bincount(sub_at, bids, len(sub_code)).astype(np.int64),
        sub_bidders=np.bincount(sub_pair, minlength=len(sub_code)).astype(np.int64),
        sub_spend=np.bincount(sub_at, spend, len(sub_code)),
        both=co_bidders(pair_user, pair_cat, n_users, n_cats), user_bids=value_counts(per_user),
        entropy=value_counts(entropy_bins(h, width)), entropy_sum=float(h.sum()),
        loyalists=int((h < 1e-9).sum()), explorers=int((h >= 1.0).sum()),
        listing_bidders=np.bincount(item, minlength=n_items), listing_bids=np.bincount(item, bids, n_items),
        best_amount=best[0], best_last=best[1], best_user=best[2])


def _best_bids(inter: pd.DataFrame, item: np.ndarray, ukey: np.ndarray, cat: Catalogue
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per listing of ``cat``, the best row among these users' bids on it if it sold (:func:`_beats`'s order):
    its amount (NaN: none), last bid time and user key."""
    amount = inter["max_amount"].to_numpy(np.float64)
    last = inter["last_at"].to_numpy("datetime64[us]").view(np.int64)
    first = best_rows(np.asarray(item, np.int64), len(cat.ids), amount, last, ukey, cat.sold[item])
    n, has = len(cat.ids), first >= 0
    best = (np.full(n, np.nan), np.zeros(n, np.int64), np.zeros(n, np.int64))
    rows = first[has]
    best[0][has], best[1][has], best[2][has] = amount[rows], last[rows], ukey[rows]
    return best


@njit(nogil=True, cache=True)
def best_rows(item, n_items, amount, last_at, user, sold):
    """Per listing, the sold row with the highest amount, then the earliest last bid, then the lowest user key
    (-1: none); NaN amounts never win. One pass, no sort."""
    best = np.full(n_items, -1, np.int64)
    for i in range(len(item)):
        if not sold[i] or np.isnan(amount[i]):
            continue
        b = best[item[i]]
        if b < 0 or amount[i] > amount[b] or (amount[i] == amount[b] and (
                last_at[i] < last_at[b] or (last_at[i] == last_at[b] and user[i] < user[b]))):
            best[item[i]] = i
    return best


def partial_figures(total: Partial, cat: Catalogue, listings: pd.DataFrame, width: float = 0.25) -> dict[str, Any]:
    """The report's interaction figures (the keys of ``encore.report.build.interaction_figures``) from the
    partial of every user."""
    bidders = np.flatnonzero(total.listing_bidders)
    counts = pd.DataFrame({"bidders": total.listing_bidders[bidders].astype(np.int64),
                           "bids": total.listing_bids[bidders].astype(np.int64)},
                          index=pd.Index(cat.ids[bidders], name="item_id"))
    pop, per_listing = counts["bidders"], counts["bids"]
    used = np.flatnonzero(total.cat_bidders > 0)  # the categories with a row
    cats = pd.DataFrame({"category": cat.categories[used]}, dtype=object).assign(
        bids=total.cat_bids[used].astype(np.int64), bidders=total.cat_bidders[used], spend=total.cat_spend[used])
    categories = share_table(cats, ["category"], float(total.bids), total.users, total.spend)
    n_subs = len(cat.sub_categories)
    subs = pd.DataFrame({"category": cat.categories[total.sub_code // n_subs],
                         "sub_category": cat.sub_categories[total.sub_code % n_subs]}, dtype=object).assign(
        bids=total.sub_bids, bidders=total.sub_bidders, spend=total.sub_spend)
    values, users = total.user_bids
    n_ent = int(total.entropy[1].sum())
    engaged = {"users": n_ent, "mean_entropy": None, "loyalist_share": None, "explorer_share": None} \
        if n_ent < MIN_USERS else {"users": n_ent, "mean_entropy": total.entropy_sum / n_ent,
                                   "loyalist_share": total.loyalists / n_ent, "explorer_share": total.explorers / n_ent}
    won = np.flatnonzero(~np.isnan(total.best_amount) & (cat.price > 0))
    won = won[np.lexsort((won, total.best_user[won]))]  # the interactions' order: by user, then listing
    names = cat.categories
    return {
        "categories": categories,
        "sub_categories": share_table(subs, ["category", "sub_category"], float(total.bids), total.users,
                                      total.spend, within=categories),
        "prices": price_distribution(listings),
        "overbid": overbid_table(cat.category[won], total.best_amount[won] / cat.price[won],
                                 total.best_user[won], names),
        "lorenz": pd.concat([lorenz_counts(values, users).assign(unit="users"),
                             lorenz(per_listing.to_numpy(), min_group=1).assign(unit="listings")],
                            ignore_index=True)[["unit", "population_share", "value_share"]],
        "bids_per_user": bids_per_user_counts(values, users),
        "entropy": entropy_bin_table(*total.entropy, width), "lift": lift_table(total.both, names, total.users),
        "_overview": {"bidders": total.users, "bids": total.bids, "spend": total.spend,
                      "listings_with_bids": len(counts), "catalogue_listings": len(listings)},
        "_concentration": concentration_counts(values, users, per_listing),
        "_engagement": engaged, "_popularity": pop,
        "_history_popularity": float((pop ** 2).sum() / pop.sum()) if len(pop) else float("nan"),
    }
