"""Auction rules over each user's scored list: what may be served, in which order, and why.

An auction listing is ephemeral and contested, so a list scored by co-bidding alone is re-ranked here
(settings ``rules``, documented in docs/configuration.md and measured in docs/quality.md):

- **serving time**: lists are read ``serve_after_hours`` after the run; a listing ending before then is
  never recommended; listings ending within ``ending_soon_hours`` are boosted, the sooner the more
  (the auction-end factor of Chen & Canny, "Recommending ephemeral items at web scale", SIGIR 2011);
- **price band**: a user's band is the mean ± ``price_band_width`` standard deviations of log(bid amount)
  over their history; a candidate priced outside it is damped by ``exp(-damping · distance)``;
- **seller variety**: at most ``max_per_seller`` listings of one seller per list, never the user's own;
- **outbid, still live**: listings the user bid on where someone else holds the top bid, published in a
  table of their own and optionally given the first ``outbid_slots`` slots; listings the user leads are
  history and never recommended;
- **business rules**: include/exclude filters (category, sub-category, seller, price, listing age) and the
  per-user exclusion table ``<lake>/exclusions/*.parquet``;
- **diversity**: an optional maximal-marginal-relevance re-rank (Carbonell & Goldstein, SIGIR 1998) over
  the item-item neighbour lists.

A list's relevance before the rules is its position in the scored list (``1 / log2(position + 2)``, the
discount NDCG uses), since the scores of item-kNN, sub-category, trending and popular picks are on
different scales. The per-user loop is a numba kernel (:func:`rerank_lists`); everything global (which
listings may be served at all, each user's band, outbid listings) is computed once on the client.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from numba import njit
from scipy.sparse import csr_matrix

from encore.config import RuleFilter, RulesSettings, Settings
from encore.dist.blocks import Held, where_held
from encore.io import lake
from encore.job.matrix import Matrix, Rows, item_columns, user_rows

# Bits of a row's ``boosts``: the rules that changed that row's own place.
ENDING_SOON, PRICE_BAND, OUTBID, MMR = 1, 2, 4, 8
BOOST_NAMES = {ENDING_SOON: "ending_soon", PRICE_BAND: "price_band", OUTBID: "outbid", MMR: "mmr"}
# Per-user removals counted by the kernel: listings that would have been in the list without the rule.
REMOVED = ("own_listing", "exclusions", "seller_cap", "pushed_out")
_OWN, _EXCLUDED, _SELLER, _PUSHED = range(len(REMOVED))
OUTBID_COLUMNS = ["uid", "item_id", "source", "your_bid_ratio", "top_bid_ratio", "ends_at"]


def boost_labels() -> np.ndarray:
    """The ``boosts`` text of every bit mask (index = mask): rule names joined by ``,``, empty for none."""
    n = 1 << len(BOOST_NAMES)
    return np.array([",".join(name for bit, name in BOOST_NAMES.items() if mask & bit) for mask in range(n)],
                    dtype=object)


@dataclass
class BidState:
    """Who leads each auction: per item its top bid and the matrix row holding it (-1: no bid), and per
    (user, item) the user's highest bid (users × items, the matrix's rows and columns)."""

    leader: np.ndarray
    top: np.ndarray
    amounts: csr_matrix


@njit(nogil=True, cache=True)
def _leaders(row, col, amount, last_at, n_items):
    """Per item the entry with the highest amount, then the earliest last bid, then the lowest row (-1)."""
    best = np.full(n_items, -1, np.int64)
    for e in range(len(col)):
        b = best[col[e]]
        if b < 0 or amount[e] > amount[b] or (amount[e] == amount[b] and (
                last_at[e] < last_at[b] or (last_at[e] == last_at[b] and row[e] < row[b]))):
            best[col[e]] = e
    return best


def bid_state(inter: pd.DataFrame, m: Matrix) -> BidState:
    """The auctions' state at the end of the window from the interactions (user's highest bid per listing).

    An English auction's top bid is its highest; among equal bids the earlier one leads (as the winners of
    sold listings are chosen in ingest).
    """
    _, rows = user_rows(inter, m.users)
    return bid_state_of(rows, item_columns(m.items, inter["item_id"]), inter["max_amount"].to_numpy(np.float64),
                        inter["last_at"].to_numpy("datetime64[us]").view(np.int64), m)


def bid_state_of(rows: np.ndarray, cols: np.ndarray, max_amount: np.ndarray, last: np.ndarray, m: Matrix
                 ) -> BidState:
    """:func:`bid_state` from per-entry arrays: matrix row and column (int32), the user's highest bid and
    last bid time (int64 µs); ingest's partitions hand them over (``encore.job.matrix.Rows``)."""
    amount = np.nan_to_num(np.asarray(max_amount, np.float64), nan=0.0)
    best = _leaders(rows.astype(np.int64), cols.astype(np.int64), amount, last, m.shape[1])
    has = best >= 0
    leader = np.where(has, rows[best.clip(min=0)], -1).astype(np.int64)
    top = np.where(has, amount[best.clip(min=0)], np.nan)
    amounts = csr_matrix((amount.astype(np.float32), (rows, cols)), shape=m.shape)
    amounts.sort_indices()
    return BidState(leader, top, amounts)


def bid_state_of_rows(rows: Rows, m: Matrix) -> BidState:
    """:func:`bid_state_of` of the matrix rows built in ingest's partitions (where they are held)."""
    return bid_state_of(rows.row_of_entry(), rows.cols, rows.amount, rows.last, m)


@dataclass
class Rules:
    """Everything the shard tasks need to apply the rules: per item, per user row, and the settings."""

    settings: RulesSettings
    servable: np.ndarray  # bool per item: may be recommended at serving time (time and filters)
    seller: np.ndarray  # int64 seller code per item (-1 unknown)
    user_seller: np.ndarray  # int64 seller code of each user row's uid (-1: not a seller)
    hours_left: np.ndarray  # float64 per item: hours from serving time to its end (inf unknown)
    log_price: np.ndarray  # float64 per item (nan unknown)
    category: np.ndarray  # int64 category code per item
    band_mu: np.ndarray  # float64 per user row (nan: no band)
    band_half: np.ndarray  # float64 per user row
    excluded: csr_matrix  # users × items: the exclusion table's listings
    excluded_cats: csr_matrix  # users × categories: the exclusion table's categories
    outbid: csr_matrix  # users × items: user's bid / price where outbid on a live listing (0 elsewhere)
    top_ratio: np.ndarray  # float64 per item: top bid / price
    ends_at: np.ndarray  # datetime64[us] per item
    removed: dict[str, int] = field(default_factory=dict)  # catalogue-level: live listings each rule removed


def _filter_mask(f: RuleFilter, cat: pd.DataFrame, age_hours: np.ndarray) -> np.ndarray:
    """True for the listings matching every condition of ``f``."""
    hit = np.ones(len(cat), dtype=bool)
    for name, column in (("category", "category"), ("sub_category", "sub_category"), ("seller", "seller_id")):
        wanted = getattr(f, name)
        if wanted is not None:
            hit &= cat[column].isin(wanted).to_numpy(dtype=bool)
    price = cat["price"].to_numpy(np.float64)
    if f.price_min is not None:
        hit &= price >= f.price_min
    if f.price_max is not None:
        hit &= price <= f.price_max
    if f.min_age_hours is not None:
        hit &= age_hours >= f.min_age_hours
    if f.max_age_hours is not None:
        hit &= age_hours <= f.max_age_hours
    return hit


def filter_label(i: int, f: RuleFilter) -> str:
    """A filter's name in the report: its action, position and conditions."""
    given = {k: v for k, v in f.model_dump().items() if k != "action" and v is not None}
    return f"filter[{i}] {f.action} " + " ".join(f"{k}={v}" for k, v in given.items())


def _hours(delta: np.ndarray) -> np.ndarray:
    return delta.astype("timedelta64[us]").astype(np.float64) / 3.6e9


def price_bands(amounts: csr_matrix, settings: RulesSettings) -> tuple[np.ndarray, np.ndarray]:
    """Each user row's band on log(bid amount): centre and half-width (nan for short histories)."""
    logs = np.log(np.maximum(amounts.data, 1e-9))
    count = np.diff(amounts.indptr)
    rows = np.repeat(np.arange(amounts.shape[0]), count)
    total = np.bincount(rows, logs, amounts.shape[0])
    squares = np.bincount(rows, logs * logs, amounts.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = total / count
        sd = np.sqrt(np.maximum(squares / count - mu * mu, 0.0))
    half = np.maximum(settings.price_band_width * sd, settings.price_band_min_width)
    mu[count < settings.price_band_min_items] = np.nan
    return mu, half


def _user_table(exclusions: pd.DataFrame | None, m: Matrix, column: str, index: pd.Index) -> csr_matrix:
    """Users × ``index`` with a 1 where the exclusion table names that (uid, value)."""
    shape = (m.shape[0], len(index))
    if exclusions is None or column not in exclusions or exclusions.empty:
        return csr_matrix(shape, dtype=np.int8)
    rows = exclusions[exclusions[column].notna()]
    r = m.users.get_indexer(rows["uid"].astype(str))
    c = index.get_indexer(rows[column])
    ok = (r >= 0) & (c >= 0)
    table = csr_matrix((np.ones(ok.sum(), np.int8), (r[ok], c[ok])), shape=shape)
    table.data[:] = 1
    table.sort_indices()
    return table


def prepare(m: Matrix, listings: pd.DataFrame, live: np.ndarray, now: pd.Timestamp | None, bids: BidState | None,
            exclusions: pd.DataFrame | None, settings: RulesSettings) -> Rules:
    """The rules' inputs for one run: which live listings may be served, sellers, bands, outbid listings.

    ``now`` is the end of the run window (None for input without dates: no time rules); ``exclusions`` the
    lake's exclusion table (uid, listing_id, category) or None.
    """
    cat = listings.set_index("listing_id").reindex(m.items)
    n_items = len(m.items)
    servable = live.copy()
    removed: dict[str, int] = {}
    ends = pd.to_datetime(cat["ends_at"]).to_numpy("datetime64[us]")
    serve = None if now is None else (pd.Timestamp(now) + pd.Timedelta(hours=settings.serve_after_hours))
    hours_left = np.full(n_items, np.inf)
    if serve is not None:
        known = ~np.isnat(ends)
        hours_left[known] = _hours(ends[known] - np.datetime64(serve, "us"))
        late = servable & (hours_left <= 0)
        removed["ends_before_serving"] = int(late.sum())
        servable &= ~late
    starts = pd.to_datetime(cat["starts_at"]).to_numpy("datetime64[us]")
    age = np.full(n_items, np.nan) if now is None else _hours(np.datetime64(now, "us") - starts)
    for i, f in enumerate(settings.filters):
        hit = _filter_mask(f, cat, age)
        drop = servable & (~hit if f.action == "include" else hit)
        removed[filter_label(i, f)] = int(drop.sum())
        servable &= ~drop
    sellers = pd.Index(pd.unique(cat["seller_id"].dropna().astype(str)))
    seller = sellers.get_indexer(cat["seller_id"].astype("string").fillna("")).astype(np.int64)
    user_seller = sellers.get_indexer(m.users.astype(str)).astype(np.int64)
    categories = pd.Index(pd.unique(cat["category"].astype("string").fillna("")))
    category = categories.get_indexer(cat["category"].astype("string").fillna("")).astype(np.int64)
    price = cat["price"].to_numpy(np.float64)
    log_price = np.where(price > 0, np.log(np.where(price > 0, price, 1.0)), np.nan)
    empty = csr_matrix(m.shape, dtype=np.float64)
    if bids is not None:
        mu, half = price_bands(bids.amounts, settings)
        outbid = _outbid_matrix(bids, servable_in_time(live, hours_left), price)
        top_ratio = np.where(price > 0, bids.top / np.where(price > 0, price, 1.0), np.nan)
    else:
        mu, half = np.full(m.shape[0], np.nan), np.zeros(m.shape[0])
        outbid, top_ratio = empty, np.full(n_items, np.nan)
    use = exclusions if settings.exclusions else None
    return Rules(settings, servable, seller, user_seller, hours_left, log_price, category, mu, half,
                 _user_table(use, m, "listing_id", m.items), _user_table(use, m, "category", categories),
                 outbid, top_ratio, ends, removed)


def run(settings: Settings, m: Matrix, listings: pd.DataFrame | Held, live: np.ndarray, now: pd.Timestamp | None,
        bids: BidState | None, client=None) -> Rules | Held | None:
    """The rules of a run (None when ``rules.enabled`` is off), with the lake's exclusion table when asked.

    ``m``, ``listings`` and ``bids`` may be futures of values held on the cluster: the rules are then prepared
    there, and their future is returned at once, so they are made while the models are fitted, and they stay
    there: shard tasks read them where they are, and the client brings only their :func:`summary`."""
    if not settings.rules.enabled:
        return None
    exclusions = None
    if settings.rules.exclusions and not settings.lake.legacy_csv:
        exclusions = lake.read_exclusions(*lake.filesystem(settings.lake.path, settings.lake.storage_options))
    return where_held(client, prepare, m, listings, live, now, bids, exclusions, settings.rules)


def summary(rules: Rules) -> tuple[np.ndarray, dict[str, int]]:
    """What the client needs of rules held on the cluster: the servable listings and the live listings each
    rule removed (the per-user tables stay where the shard tasks read them)."""
    return rules.servable, rules.removed


def servable_in_time(live: np.ndarray, hours_left: np.ndarray) -> np.ndarray:
    """Live listings still running at serving time (business filters aside)."""
    return live & (hours_left > 0)


def _outbid_matrix(bids: BidState, running: np.ndarray, price: np.ndarray) -> csr_matrix:
    """Users × items: the user's bid as a ratio of the price where another user leads a running auction."""
    a = bids.amounts
    rows = np.repeat(np.arange(a.shape[0]), np.diff(a.indptr))
    cols = a.indices
    lead = bids.leader[cols]
    keep = running[cols] & (lead >= 0) & (lead != rows) & (price[cols] > 0)
    ratio = a.data[keep] / price[cols[keep]]
    out = csr_matrix((np.maximum(ratio, 1e-12), (rows[keep], cols[keep])), shape=a.shape)
    out.sort_indices()
    return out


def narrow(backoff, servable: np.ndarray):
    """The backoff lists without the listings that may not be served (the cold-start list included)."""
    keep = servable

    def only(ranked: np.ndarray) -> np.ndarray:
        ranked = np.asarray(ranked)
        return ranked[keep[ranked]] if len(ranked) else ranked

    return replace(backoff, sub_lists=[only(s) for s in backoff.sub_lists], trending=only(backoff.trending),
                   popular=only(backoff.popular))


@dataclass
class UserRules:
    """One shard's slice of :class:`Rules`: per-user arrays for its rows, in the order of its lists."""

    user_seller: np.ndarray
    band_mu: np.ndarray
    band_half: np.ndarray
    excl_ptr: np.ndarray
    excl_idx: np.ndarray
    cexcl_ptr: np.ndarray
    cexcl_idx: np.ndarray
    ob_ptr: np.ndarray
    ob_idx: np.ndarray
    ob_ratio: np.ndarray  # the user's bid / price

    def ob_score(self, rules: Rules) -> np.ndarray:
        """An outbid row's score: the user's bid as a share of the current top bid (1: level with it)."""
        top = rules.top_ratio[self.ob_idx]
        return np.where(top > 0, self.ob_ratio / np.where(top > 0, top, 1.0), 0.0)


def _rows_of(X: csr_matrix, rows: np.ndarray) -> csr_matrix:
    part = X[rows]
    part.sort_indices()
    return part


def outbid_order(rules: Rules, ob: csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's outbid listings soonest ending first (then by listing): CSR pointers, items, and the
    user's bid as a ratio of the price."""
    rows = np.repeat(np.arange(ob.shape[0]), np.diff(ob.indptr))
    order = np.lexsort((ob.indices, rules.hours_left[ob.indices], rows))
    return ob.indptr.astype(np.int64), ob.indices[order].astype(np.int64), ob.data[order]


def for_rows(rules: Rules, rows: np.ndarray) -> UserRules:
    """The per-user arrays of matrix rows ``rows`` (a shard's users, in list order)."""
    excl, cexcl, ob = (_rows_of(t, rows) for t in (rules.excluded, rules.excluded_cats, rules.outbid))
    return UserRules(rules.user_seller[rows], rules.band_mu[rows], rules.band_half[rows],
                     excl.indptr.astype(np.int64), excl.indices.astype(np.int64),
                     cexcl.indptr.astype(np.int64), cexcl.indices.astype(np.int64), *outbid_order(rules, ob))


def apply(rules: Rules, rows: np.ndarray, pool: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], n: int,
          outbid_source: int, neighbours: tuple[np.ndarray, np.ndarray] | None
          ) -> tuple[tuple[np.ndarray, ...], np.ndarray, UserRules]:
    """The final lists of matrix rows ``rows`` from their scored pool (item, score, source, because):
    (item, score, source, because, boosts), the removal counts and the users' rule arrays."""
    s = rules.settings
    user = for_rows(rules, rows)
    nbr, nbr_score = neighbours if neighbours is not None and s.mmr_lambda is not None else (
        np.full((0, 1), -1, np.int32), np.zeros((0, 1), np.float32))
    out = rerank_lists(*pool, n, rules.seller, user.user_seller, rules.hours_left, rules.log_price, rules.category,
                       user.band_mu, user.band_half, s.price_band_damping, user.excl_ptr, user.excl_idx,
                       user.cexcl_ptr, user.cexcl_idx, user.ob_ptr, user.ob_idx, user.ob_score(rules),
                       rules.servable, s.outbid_slots, outbid_source, s.max_per_seller or 0,
                       s.exclude_own_listings, s.ending_soon_hours, s.ending_soon_boost,
                       -1.0 if s.mmr_lambda is None else s.mmr_lambda, nbr, nbr_score,
                       int(rules.seller.max(initial=-1)) + 1, int(rules.category.max(initial=-1)) + 1)
    return out[:5], out[5], user


def category_spread(items: np.ndarray, category: np.ndarray) -> dict[str, int]:
    """Distinct categories summed over the lists (users × slots, item -1 unused) and the lists counted: each
    list's categories sorted in place, a category counted where it differs from the slot before."""
    held = items >= 0
    if not held.any():  # also spares reading an empty catalogue's categories
        return {"spread_sum": 0, "spread_users": 0}
    cats = np.where(held, category[np.where(held, items, 0)], -1)
    cats.sort(axis=1)
    new = cats >= 0
    new[:, 1:] &= cats[:, 1:] != cats[:, :-1]
    return {"spread_sum": int(new.sum()), "spread_users": int(held.any(axis=1).sum())}


def boost_counts(items: np.ndarray, boosts: np.ndarray) -> dict[str, int]:
    """Rows each rule moved (``moved:<rule>``): the held slots (item >= 0) whose boost mask has its bit."""
    held = boosts[items >= 0]
    return {f"moved:{name}": int(np.count_nonzero(held & bit)) for bit, name in BOOST_NAMES.items()}


def outbid_frame(rules: Rules, user: UserRules, uids: np.ndarray, item_ids: np.ndarray) -> pd.DataFrame:
    """The published outbid rows of a shard's users: uid, item_id, source, the user's bid and the top bid as
    ratios of the price, the end time; soonest ending first per user. No other user is named."""
    row = np.repeat(np.arange(len(user.ob_ptr) - 1), np.diff(user.ob_ptr))
    return pd.DataFrame({"uid": pd.array(np.asarray(uids, dtype=object)[row], dtype="str"),
                         "item_id": item_ids[user.ob_idx],
                         "source": pd.array(np.full(len(row), "outbid", dtype=object), dtype="str"),
                         "your_bid_ratio": user.ob_ratio.astype(np.float32),
                         "top_bid_ratio": rules.top_ratio[user.ob_idx].astype(np.float32),
                         "ends_at": rules.ends_at[user.ob_idx]})


@njit(nogil=True, cache=True)
def _descending(values):
    """Positions of ``values`` from largest to smallest, ties in position order: the order of
    ``np.argsort(-values, kind="mergesort")``. An insertion sort, because numba's merge sort costs seconds of
    compilation on a first run, and a pool arrives nearly sorted (rank discounts times boosts), so this is
    close to linear here; its worst case, quadratic in the pool, is ``pool`` times the MMR pass's cost."""
    order = np.empty(len(values), np.int64)
    for i in range(len(values)):
        k = i
        while k > 0 and values[order[k - 1]] < values[i]:
            order[k] = order[k - 1]
            k -= 1
        order[k] = i
    return order


@njit(nogil=True, cache=True)
def rerank_lists(pool_item, pool_score, pool_source, pool_because, n, seller, user_seller, hours_left, log_price,
                 category, band_mu, band_half, damping, excl_ptr, excl_idx, cexcl_ptr, cexcl_idx, ob_ptr, ob_idx,
                 ob_score, ob_ok, slots, outbid_source, max_per_seller, exclude_own, horizon, boost, mmr_lambda,
                 nbr, nbr_score, n_sellers, n_categories):
    """Each user's final ``n`` from their scored pool (users × pool, best first, item -1 unused).

    Returns item, score, source, because and boosts (a bit mask per row), each users × n, and the
    removal counts (``REMOVED``). ``mmr_lambda < 0`` turns MMR off; ``max_per_seller <= 0`` the cap.
    """
    m, width = pool_item.shape
    n_items = len(seller)
    out_item = np.full((m, n), -1, np.int64)
    out_score = np.zeros((m, n), np.float64)
    out_source = np.zeros((m, n), np.int8)
    out_because = np.full((m, n), -1, np.int64)
    out_flags = np.zeros((m, n), np.int8)
    counts = np.zeros(4, np.int64)
    item_mark = np.zeros(n_items, np.int64)
    cat_mark = np.zeros(n_categories, np.int64)
    cand_of = np.full(n_items, -1, np.int64)
    seller_count = np.zeros(max(n_sellers, 1), np.int64)
    c_item = np.zeros(width, np.int64)
    c_rel = np.zeros(width, np.float64)
    c_pos = np.zeros(width, np.int64)
    c_flags = np.zeros(width, np.int8)
    c_sim = np.zeros(width, np.float64)
    c_taken = np.zeros(width, np.bool_)
    for r in range(m):
        mark = r + 1
        for q in range(excl_ptr[r], excl_ptr[r + 1]):
            item_mark[excl_idx[q]] = mark
        for q in range(cexcl_ptr[r], cexcl_ptr[r + 1]):
            cat_mark[cexcl_idx[q]] = mark
        nc = 0
        for p in range(width):
            j = pool_item[r, p]
            if j < 0:
                break
            if exclude_own and seller[j] >= 0 and seller[j] == user_seller[r]:
                if p < n:
                    counts[_OWN] += 1
                continue
            if item_mark[j] == mark or cat_mark[category[j]] == mark:
                if p < n:
                    counts[_EXCLUDED] += 1
                continue
            rel = 1.0 / np.log2(p + 2.0)
            flags = 0
            h = hours_left[j]
            if boost > 0 and h <= horizon:
                rel *= 1.0 + boost * (1.0 - max(h, 0.0) / horizon)
                flags |= ENDING_SOON
            if damping > 0 and not np.isnan(band_mu[r]) and not np.isnan(log_price[j]):
                d = abs(log_price[j] - band_mu[r]) - band_half[r]
                if d > 0:
                    rel *= np.exp(-damping * d)
                    flags |= PRICE_BAND
            c_item[nc], c_rel[nc], c_pos[nc], c_flags[nc] = j, rel, p, flags
            c_sim[nc], c_taken[nc] = 0.0, False
            cand_of[j] = nc
            nc += 1
        size = 0
        for q in range(ob_ptr[r], ob_ptr[r + 1]):
            if size >= min(slots, n):
                break
            j = ob_idx[q]
            if not ob_ok[j] or item_mark[j] == mark or cat_mark[category[j]] == mark:
                continue
            if max_per_seller > 0 and seller[j] >= 0 and seller_count[seller[j]] >= max_per_seller:
                continue
            out_item[r, size], out_score[r, size], out_source[r, size] = j, ob_score[q], outbid_source
            out_flags[r, size] = OUTBID
            if seller[j] >= 0:
                seller_count[seller[j]] += 1
            size += 1
        order = _descending(c_rel[:nc])
        top_rel = c_rel[order[0]] if nc else 1.0
        cursor = 0  # without MMR everything before it is taken or capped, and stays so: no rescan
        while size < n:
            best, best_val, first = -1, -np.inf, -1
            for o in range(cursor, nc):
                c = order[o]
                if c_taken[c]:
                    continue
                j = c_item[c]
                if max_per_seller > 0 and seller[j] >= 0 and seller_count[seller[j]] >= max_per_seller:
                    continue
                if first < 0:
                    first = c
                if mmr_lambda < 0:
                    best, cursor = c, o + 1
                    break
                val = mmr_lambda * c_rel[c] / top_rel - (1.0 - mmr_lambda) * c_sim[c]
                if val > best_val:
                    best, best_val = c, val
            if best < 0:
                break
            c_taken[best] = True
            j = c_item[best]
            p = c_pos[best]
            out_item[r, size], out_score[r, size] = j, pool_score[r, p]
            out_source[r, size], out_because[r, size] = pool_source[r, p], pool_because[r, p]
            out_flags[r, size] = c_flags[best] | (MMR if best != first else 0)
            if seller[j] >= 0:
                seller_count[seller[j]] += 1
            if mmr_lambda >= 0 and nbr.shape[0] > 0 and nbr_score[j, 0] > 0:
                for k in range(nbr.shape[1]):
                    nb = nbr[j, k]
                    if nb < 0:
                        break
                    c = cand_of[nb]
                    if c >= 0 and c < nc and c_item[c] == nb:
                        c_sim[c] = max(c_sim[c], nbr_score[j, k] / nbr_score[j, 0])
            size += 1
        for c in range(nc):
            j = c_item[c]
            if not c_taken[c] and c_pos[c] < n:
                capped = max_per_seller > 0 and seller[j] >= 0 and seller_count[seller[j]] >= max_per_seller
                counts[_SELLER if capped else _PUSHED] += 1
            cand_of[j] = -1
        for s in range(size):
            if seller[out_item[r, s]] >= 0:
                seller_count[seller[out_item[r, s]]] = 0
    return out_item, out_score, out_source, out_because, out_flags, counts
