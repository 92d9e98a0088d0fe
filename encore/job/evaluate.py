"""Offline evaluation: train/test splits, ranking metrics at k, and the UCI reference protocol.

Pure pandas/numpy/scipy so it runs anywhere a model's output can be loaded. Accuracy metrics are
computed from a boolean *hit matrix* (users x k, True where the item at that rank is in the user's
truth set), which makes every metric a vectorised one-liner and keeps their definitions side by side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

#: First day of the test window of the UCI reference protocol (../shared/data/README.md).
UCI_CUT = "2011-11-09"

Recs = Mapping[Any, Sequence[int]] | np.ndarray | Sequence[Sequence[int]]
Truth = Mapping[Any, Any] | Sequence[Any]


# --------------------------------------------------------------------------------------------- splits
def split_time(df: pd.DataFrame, cut: Any, time_col: str = "first_at") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Global time cut: rows with ``time_col < cut`` train, the rest test.

    On an interactions frame the default ``first_at`` sends a (user, item) pair to test only when
    it was first seen after the cut, so a test pair never has history in train.
    """
    before = df[time_col] < pd.Timestamp(cut)
    return df[before], df[~before]


def split_last_n(
    df: pd.DataFrame, n: int = 1, user_col: str = "uid", time_col: str = "last_at"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leave-last-n-out: each user's n most recent rows go to test.

    Users with n rows or fewer stay entirely in train, so every test user has a history. Ties in
    ``time_col`` are broken by row order, which keeps the split deterministic.
    """
    order = df.reset_index(drop=True).sort_values(time_col, kind="stable")
    from_end = order.groupby(user_col, sort=False).cumcount(ascending=False)
    size = order.groupby(user_col, sort=False)[time_col].transform("size")
    test = (from_end < n) & (size > n)
    train_idx, test_idx = order.index[~test].sort_values(), order.index[test].sort_values()
    return df.iloc[train_idx], df.iloc[test_idx]


def split_fraction(
    df: pd.DataFrame, frac: float = 0.2, seed: int = 0, user_col: str = "uid"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-user random holdout of about ``frac`` of each user's rows, reproducible from ``seed``.

    A user with m >= 2 rows sends round(frac * m) rows to test, clipped to 1..m-1, so they appear
    on both sides; users with a single row stay in train.
    """
    key = np.random.default_rng(seed).random(len(df))
    users = df[user_col].to_numpy()
    frame = pd.DataFrame({"user": users, "key": key})
    rank = frame.groupby("user", sort=False)["key"].rank(method="first").to_numpy() - 1
    size = frame.groupby("user", sort=False)["key"].transform("size").to_numpy()
    n_test = np.clip(np.rint(frac * size), 1, size - 1)
    test = rank < n_test
    return df[~test], df[test]


# ------------------------------------------------------------------------------------ list handling
def as_lists(recs: Recs, truth: Truth, k: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Align recommendations and truth into a (users x k) int matrix padded with -1 and a truth list.

    With a mapping ``truth`` the users are its keys (a user missing from a mapping ``recs`` gets an
    empty list); otherwise both are sequences aligned by position.
    """
    if isinstance(truth, Mapping):
        users = list(truth)
        truth_list = [np.asarray(list(truth[u]), dtype=np.int64) for u in users]
        rows = [recs.get(u, ()) for u in users] if isinstance(recs, Mapping) else recs
    elif isinstance(recs, Mapping):
        raise TypeError("recommendations keyed by user need truth keyed by user")
    else:
        truth_list = [np.asarray(list(t), dtype=np.int64) for t in truth]
        rows = recs
    out = np.full((len(truth_list), k), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        row = np.asarray(row, dtype=np.int64)[:k]
        out[i, : len(row)] = row
    if len(out) != len(truth_list):
        raise ValueError(f"{len(out)} recommendation lists for {len(truth_list)} truth sets")
    return out, truth_list


def hit_matrix(recs: np.ndarray, truth: Sequence[np.ndarray]) -> np.ndarray:
    """Boolean (users x k): True where the item at that rank is in the user's truth set.

    Padding (-1) never hits, and an item repeated in a list hits only at its first rank.
    """
    hits = np.zeros(recs.shape, dtype=bool)
    for i, (row, relevant) in enumerate(zip(recs, truth, strict=True)):
        _, first = np.unique(row, return_index=True)
        first_only = np.zeros(len(row), dtype=bool)
        first_only[first] = True
        hits[i] = np.isin(row, relevant) & first_only & (row >= 0)
    return hits


# ------------------------------------------------------------------------------- accuracy metrics
def _discounts(k: int) -> np.ndarray:
    """DCG position discounts 1 / log2(rank + 1) for ranks 1..k."""
    return 1.0 / np.log2(np.arange(2, k + 2))


def precision_at_k(hits: np.ndarray) -> np.ndarray:
    """Per user: hits in the top k / k (a short list still divides by k)."""
    return hits.sum(axis=1) / hits.shape[1]


def recall_at_k(hits: np.ndarray, n_truth: np.ndarray) -> np.ndarray:
    """Per user: hits in the top k / |truth|."""
    return hits.sum(axis=1) / n_truth


def ndcg_at_k(hits: np.ndarray, n_truth: np.ndarray) -> np.ndarray:
    """Per user: DCG / ideal DCG with binary relevance.

    DCG = sum over hit ranks r of 1/log2(r+1); the ideal DCG puts min(|truth|, k) hits at ranks 1...
    """
    disc = _discounts(hits.shape[1])
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(n_truth, hits.shape[1])]
    return (hits * disc).sum(axis=1) / ideal


def average_precision_at_k(hits: np.ndarray, n_truth: np.ndarray) -> np.ndarray:
    """Per user: sum over hit ranks r of precision@r, divided by min(|truth|, k). Mean over users = MAP."""
    ranks = np.arange(1, hits.shape[1] + 1)
    prec_at_r = np.cumsum(hits, axis=1) / ranks
    return (prec_at_r * hits).sum(axis=1) / np.minimum(n_truth, hits.shape[1])


def reciprocal_rank(hits: np.ndarray) -> np.ndarray:
    """Per user: 1 / rank of the first hit in the top k, 0 when nothing hits. Mean over users = MRR."""
    first = hits.argmax(axis=1)
    return np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)


def hit_rate(hits: np.ndarray) -> np.ndarray:
    """Per user: 1 when at least one top-k item is in the truth set, else 0."""
    return hits.any(axis=1).astype(float)


# ------------------------------------------------------------------------- beyond-accuracy metrics
def catalogue_coverage(recs: np.ndarray, n_items: int) -> float:
    """Distinct items recommended to anyone / number of items in the catalogue (train items)."""
    return len(np.unique(recs[recs >= 0])) / n_items


def novelty(recs: np.ndarray, item_popularity: np.ndarray, n_users: int) -> float:
    """Mean self-information -log2(pop(i) / n_users) over all recommended items, in bits.

    pop(i) is the number of train users of item i (at least 1, so unseen items stay finite);
    higher means the lists reach further into the long tail.
    """
    pop = np.maximum(item_popularity[recs[recs >= 0]], 1)
    return float(np.mean(-np.log2(pop / n_users))) if len(pop) else float("nan")


def popularity_percentile(recs: np.ndarray, item_popularity: np.ndarray) -> float:
    """Mean popularity percentile of recommended items (popularity bias).

    An item's percentile is its average rank by train popularity / n_items: about 1 for the most
    popular item, near 0 for the rarest; a most-popular recommender scores close to 1.
    """
    from scipy.stats import rankdata  # scipy.stats costs seconds to import: only where it is used

    pct = rankdata(item_popularity, method="average") / len(item_popularity)
    shown = recs[recs >= 0]
    return float(pct[shown].mean()) if len(shown) else float("nan")


def intra_list_diversity(recs: np.ndarray, item_features: np.ndarray | sp.spmatrix) -> float:
    """Mean over lists (of 2+ items) of the mean pairwise dissimilarity of the items in the list.

    With a 1-D ``item_features`` (a category per item) dissimilarity is 1 when two items differ in
    category, else 0 (the different-category share of pairs); with a 2-D feature matrix (dense or
    sparse, one row per item) it is 1 - cosine similarity of the rows.
    """
    if np.ndim(item_features) == 1:
        return _category_diversity(recs, np.asarray(item_features))
    feats = sp.csr_matrix(item_features, dtype=np.float64)
    norms = np.sqrt(np.asarray(feats.multiply(feats).sum(axis=1))).ravel()
    feats = sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ feats
    values = []
    for row in recs:
        row = row[row >= 0]
        if len(row) < 2:
            continue
        sim = (feats[row] @ feats[row].T).toarray()
        m = len(row)
        values.append(1.0 - (sim.sum() - np.trace(sim)) / (m * (m - 1)))
    return float(np.mean(values)) if values else float("nan")


def _category_diversity(recs: np.ndarray, categories: np.ndarray) -> float:
    """Different-category share of item pairs per list, averaged over lists with 2+ items."""
    valid = recs >= 0
    cats = categories[np.where(valid, recs, 0)]
    differ = cats[:, :, None] != cats[:, None, :]
    pair_ok = valid[:, :, None] & valid[:, None, :] & ~np.eye(recs.shape[1], dtype=bool)
    m = valid.sum(axis=1)
    keep = m >= 2
    share = (differ & pair_ok).sum(axis=(1, 2))[keep] / (m * (m - 1))[keep]
    return float(share.mean()) if keep.any() else float("nan")


# ------------------------------------------------------------------------------------- aggregation
def evaluate(
    recs: Recs,
    truth: Truth,
    k: int,
    n_items: int,
    item_popularity: np.ndarray | None = None,
    n_users: int | None = None,
    item_features: np.ndarray | sp.spmatrix | None = None,
) -> dict[str, float]:
    """All metrics at k, averaged over the users whose truth set is not empty.

    ``recs`` and ``truth`` are either mappings user -> items or sequences aligned by position (see
    ``as_lists``). Novelty and the popularity percentile need ``item_popularity`` (train users per
    item) and ``n_users`` (train users); diversity needs ``item_features``.
    """
    lists, truth_list = as_lists(recs, truth, k)
    n_truth = np.array([len(np.unique(t)) for t in truth_list], dtype=np.int64)
    keep = n_truth > 0
    lists, n_truth = lists[keep], n_truth[keep]
    hits = hit_matrix(lists, [t for t, ok in zip(truth_list, keep, strict=True) if ok])
    out = {
        "users": float(len(lists)),
        f"P@{k}": precision_at_k(hits).mean(),
        f"R@{k}": recall_at_k(hits, n_truth).mean(),
        f"NDCG@{k}": ndcg_at_k(hits, n_truth).mean(),
        f"MAP@{k}": average_precision_at_k(hits, n_truth).mean(),
        f"MRR@{k}": reciprocal_rank(hits).mean(),
        f"hit@{k}": hit_rate(hits).mean(),
        "coverage": catalogue_coverage(lists, n_items),
    }
    if item_popularity is not None:
        if n_users is None:
            raise ValueError("novelty needs n_users, the number of train users behind item_popularity")
        out["novelty"] = novelty(lists, item_popularity, n_users)
        out["pop_pct"] = popularity_percentile(lists, item_popularity)
    if item_features is not None:
        out["ILD"] = intra_list_diversity(lists, item_features)
    return {name: float(value) for name, value in out.items()}


#: History-length segments of the test users (train items): name, smallest, largest (None: no bound).
SEGMENTS = (("1-2", 1, 2), ("3-10", 3, 10), (">10", 11, None))


def segment_scores(recs: np.ndarray, truth: Sequence[np.ndarray], history: np.ndarray, k: int,
                   new_items: np.ndarray | None = None) -> dict[str, float]:
    """NDCG@k per segment, so a team sees where a model wins: the test users with 1-2, 3-10 and > 10
    history items (``history``: items per user, aligned with ``recs``), and, with ``new_items`` (a boolean
    mask over items), the truth restricted to those items over the users whose truth holds one ("new").

    A segment without users gives NaN.
    """
    lists, truth_list = as_lists(recs, truth, k)
    history = np.asarray(history)

    def ndcg(keep: np.ndarray, sets: list[np.ndarray]) -> float:
        chosen = [t for t, ok in zip(sets, keep, strict=True) if ok]
        if not chosen:
            return float("nan")
        n_truth = np.array([len(np.unique(t)) for t in chosen], dtype=np.int64)
        return float(ndcg_at_k(hit_matrix(lists[keep], chosen), n_truth).mean())

    has_truth = np.array([len(t) > 0 for t in truth_list], dtype=bool)
    out = {}
    for name, lo, hi in SEGMENTS:
        out[f"NDCG {name}"] = ndcg(has_truth & (history >= lo) & (history <= (hi if hi else np.inf)), truth_list)
    if new_items is not None:
        new_truth = [t[np.asarray(new_items)[t]] for t in truth_list]
        out["NDCG new"] = ndcg(np.array([len(t) > 0 for t in new_truth], dtype=bool), new_truth)
    return out


def segment_users(truth: Sequence[np.ndarray], history: np.ndarray, new_items: np.ndarray | None = None
                  ) -> dict[str, int]:
    """How many test users each of :func:`segment_scores`' segments holds."""
    history = np.asarray(history)
    out = {name: int(((history >= lo) & (history <= (hi if hi else np.inf))).sum()) for name, lo, hi in SEGMENTS}
    if new_items is not None:
        out["new"] = int(sum(bool(np.asarray(new_items)[t].any()) for t in truth))
    return out


def markdown_table(rows: Sequence[Mapping[str, Any]], digits: int = 4) -> str:
    """Render result rows (dicts sharing keys, first key first) as a GitHub Markdown table."""
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.0f}" if value.is_integer() and abs(value) >= 10 else f"{value:.{digits}f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- protocol
@dataclass(frozen=True)
class Protocol:
    """A binary train matrix and the truth sets of the users evaluated on it.

    ``X`` is users x items (csr, float32 ones); ``users`` / ``items`` give the uid / item_id of each
    row / column; ``test_rows`` are the rows of the evaluated users and ``truth`` their truth items
    as column indices, aligned with ``test_rows``.
    """

    X: sp.csr_matrix
    users: np.ndarray
    items: np.ndarray
    test_rows: np.ndarray
    truth: list[np.ndarray]

    @property
    def item_popularity(self) -> np.ndarray:
        """Distinct train users per item column."""
        return np.diff(self.X.tocsc().indptr)

    @property
    def history(self) -> np.ndarray:
        """Train items of each test user (aligned with ``test_rows``)."""
        return np.diff(self.X.indptr)[self.test_rows]

    def score(self, recs: np.ndarray, k: int = 10, **extra: Any) -> dict[str, float]:
        """``evaluate`` column-index recommendations (aligned with ``test_rows``) on this protocol."""
        return evaluate(recs, self.truth, k, self.X.shape[1], self.item_popularity, self.X.shape[0], **extra)

    def segments(self, recs: np.ndarray, k: int = 10, new_items: np.ndarray | None = None) -> dict[str, float]:
        """:func:`segment_scores` of column-index recommendations on this protocol."""
        return segment_scores(recs, self.truth, self.history, k, new_items)


def holdout_protocol(
    train: pd.DataFrame, test: pd.DataFrame, user_col: str = "uid", item_col: str = "item_id"
) -> Protocol:
    """Build the protocol from a train and a test interactions frame.

    Users are those with a train history and items those seen in train (sorted ids); a user's
    truth is the set of test items that are train items the user did not have in train; users
    with an empty truth are dropped.
    """
    users = np.sort(train[user_col].unique())
    items = np.sort(train[item_col].unique())
    pairs = train[[user_col, item_col]].drop_duplicates()
    rows = np.searchsorted(users, pairs[user_col].to_numpy())
    cols = np.searchsorted(items, pairs[item_col].to_numpy())
    X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(users), len(items)))
    known = test[test[user_col].isin(users) & test[item_col].isin(items)][[user_col, item_col]]
    known = known.drop_duplicates().merge(pairs, how="left", indicator=True)
    new = known[known["_merge"] == "left_only"]
    new_rows = np.searchsorted(users, new[user_col].to_numpy())
    new_cols = np.searchsorted(items, new[item_col].to_numpy())
    grouped = pd.Series(new_cols).groupby(new_rows).agg(lambda c: np.sort(c.to_numpy()))
    return Protocol(X, users, items, grouped.index.to_numpy(), list(grouped.to_numpy()))


def protocol_uci(events: pd.DataFrame, cut: Any = UCI_CUT) -> Protocol:
    """The UCI reference protocol: events from ``encore.io.uci.read_uci`` split at ``cut`` (2011-11-09)."""
    from encore.io.uci import item_map, to_interactions

    train_events, test_events = split_time(events, cut, time_col="at")
    items = item_map(events)
    train, _ = to_interactions(train_events, items)
    test, _ = to_interactions(test_events, items)
    return holdout_protocol(train, test)
