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
PERSONAL_SOURCES = ("itemknn", "subcategory")
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
    out = keys.assign(bids=np.bincount(group, bids, len(keys)).astype(np.int64),
                      bidders=np.bincount(pair_group, minlength=len(keys)),
                      spend=np.bincount(group, inter["spend"].to_numpy(np.float64), len(keys)))
    out["bid_share"] = out["bids"] / bids.sum()
    out["bidder_share"] = out["bidders"] / np.count_nonzero(np.bincount(pair_user))
    out["spend_share"] = out["spend"] / inter["spend"].sum()
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
    ratio = pd.Series((inter["max_amount"] / inter["price"]).to_numpy(np.float64)[keep])
    at = code[keep]
    g = ratio.groupby(at)
    cats = g.size().index.to_numpy(np.int64)
    out = pd.DataFrame({"category": names[cats].astype(object), "sold_listings": g.size().to_numpy(),
                        "winners": pd.Series(user[keep]).groupby(at).nunique().to_numpy()})
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
    lo = np.floor(entropy.to_numpy() / width + 1e-9) * width
    g = pd.Series(lo).value_counts().sort_index()
    out = pd.DataFrame({"entropy_from": g.index.to_numpy(), "entropy_to": g.index.to_numpy() + width,
                        "users": g.to_numpy()})
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
    onehot = csr_matrix((np.ones(len(pair_user), np.int64), (pair_user, pair_cat)), shape=(n_users, len(names)))
    both = (onehot.T @ onehot).toarray()
    size = np.diag(both)
    present = np.flatnonzero(size)
    a, b = (grid.ravel() for grid in np.meshgrid(present, present, indexing="ij"))
    a, b = a[a != b], b[a != b]
    n = np.count_nonzero(np.bincount(pair_user))
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
    knn_only_users: int = 0  # users whose whole list is item-kNN
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
        non_personal = np.bincount(user, ~np.isin(names, PERSONAL_SOURCES)[source], n_users) == \
            np.bincount(user, minlength=n_users)
        knn_only = np.bincount(user, names[source] != "itemknn", n_users) == 0
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
