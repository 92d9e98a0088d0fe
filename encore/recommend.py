"""Auction-aware recommendations for every user: item-kNN first, then backoff, each with a reason.

Rules: only live listings are candidates (sold, unsold and ended ones never are); a user's own bid-on
or won listings are never recommended. Each user's list is item-kNN scores, then filled from their
favourite sub-categories (the same cosine machinery on sub-category keys reaches neighbouring
sub-categories and listings with no bids yet), then trending, then popular. ``source`` says which
step placed an item; ``because`` names the history item behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from encore.matrix import Matrix
from encore.models.base import current_client, n_worker_threads
from encore.models.itemknn import ItemKNN, item_topk
from encore.models.popularity import Popularity, Trending, top_items


def live_mask(listings: pd.DataFrame, items: pd.Index, now: pd.Timestamp | None) -> np.ndarray:
    """True for listings that can still be bid on: status live and (when known) not yet ended."""
    cat = listings.set_index("listing_id").reindex(items)
    live = (cat["status"] == "live").fillna(False).to_numpy(dtype=bool).copy()
    if now is not None and "ends_at" in cat:
        ends = pd.to_datetime(cat["ends_at"])
        live &= (ends.isna() | (ends > now)).to_numpy(dtype=bool)
    return live


@dataclass
class Backoff:
    """Per-item and per-sub-category lists used to fill lists that item-kNN leaves short."""

    sub_of_item: np.ndarray  # sub-category code per item (-1 unknown)
    sub_lists: list[np.ndarray]  # live items per sub-category, best first (new listings included)
    user_sub_scores: np.ndarray  # users × sub-categories affinity (own + neighbouring sub-categories)
    trending: np.ndarray  # live items, best first
    popular: np.ndarray  # live items, best first
    trending_scores: np.ndarray
    popular_scores: np.ndarray


def sub_category_codes(listings: pd.DataFrame, items: pd.Index) -> tuple[np.ndarray, pd.Index]:
    """Sub-category code of each item column and the sub-category names."""
    names = listings.set_index("listing_id").reindex(items)["sub_category"].astype("string").fillna("unknown")
    codes, uniques = pd.factorize(names, sort=True)
    return codes.astype(np.int64), pd.Index(uniques)


def user_sub_affinity(X: csr_matrix, sub_of_item: np.ndarray, n_sub: int, k: int) -> np.ndarray:
    """Users × sub-categories: own weight share plus cosine-neighbour sub-categories (coarse item-kNN)."""
    onehot = csr_matrix((np.ones(len(sub_of_item), np.float32), (np.arange(len(sub_of_item)), sub_of_item)),
                        shape=(len(sub_of_item), n_sub))
    U = (X @ onehot).tocsr().astype(np.float32)
    nbr, score, _ = item_topk(U, k=min(k, max(1, n_sub - 1)), client=None)
    S = np.eye(n_sub, dtype=np.float32)
    rows = np.repeat(np.arange(n_sub), nbr.shape[1])
    ok = nbr.ravel() >= 0
    S[rows[ok], nbr.ravel()[ok]] = score.ravel()[ok]
    dense = U.toarray()
    totals = dense.sum(axis=1, keepdims=True)
    share = np.divide(dense, totals, out=np.zeros_like(dense), where=totals > 0)
    return share @ S


def build_backoff(m: Matrix, listings: pd.DataFrame, live: np.ndarray, recent: csr_matrix | None,
                  previous: csr_matrix | None, smoothing: float, k: int) -> Backoff:
    """Rank live listings globally, by trend and by sub-category; score users' sub-categories."""
    popular = Popularity().fit(m.X).item_scores_
    trend = Trending(smoothing).fit(recent, previous=previous).item_scores_ if recent is not None else popular * 0
    sub_of_item, subs = sub_category_codes(listings, m.items)
    starts = listings.set_index("listing_id").reindex(m.items)["starts_at"]
    newness = pd.to_datetime(starts).rank(method="first").fillna(0).to_numpy() / (len(starts) + 1.0)
    within = trend + popular + 1e-3 * newness + 1e-6  # new listings with no bids still get a place
    sub_lists = [top_items(within, live & (sub_of_item == s)) for s in range(len(subs))]
    return Backoff(sub_of_item, sub_lists, user_sub_affinity(m.X, sub_of_item, len(subs), k),
                   top_items(trend, live), top_items(popular, live), trend, popular)


def _because_by_sub(row_items: np.ndarray, row_weights: np.ndarray, sub_of_item: np.ndarray) -> dict[int, int]:
    """For one user: the heaviest history item per sub-category."""
    best: dict[int, int] = {}
    for j in row_items[np.argsort(-row_weights, kind="stable")]:
        best.setdefault(int(sub_of_item[j]), int(j))
    return best


class _UserList:
    """One user's list under construction: no repeats, nothing from the history, at most n items."""

    def __init__(self, history: np.ndarray, n: int) -> None:
        self.taken = set(history.tolist())
        self.n = n
        self.picks: list[tuple[int, float, str, int]] = []

    @property
    def full(self) -> bool:
        return len(self.picks) >= self.n

    def add(self, j: int, score: float, source: str, because: int) -> None:
        if j not in self.taken and not self.full:
            self.taken.add(j)
            self.picks.append((j, score, source, because))


def _fill_from_sub_categories(lst: _UserList, u: int, X: csr_matrix, backoff: Backoff, max_subs: int) -> None:
    """Backoff 1: the user's best-scored sub-categories, new listings included."""
    hist = X.indices[X.indptr[u]:X.indptr[u + 1]]
    by_sub = _because_by_sub(hist, X.data[X.indptr[u]:X.indptr[u + 1]], backoff.sub_of_item)
    fallback = next(iter(by_sub.values()), -1)
    prefs = backoff.user_sub_scores[u]
    for sub in np.argsort(-prefs, kind="stable")[:max_subs]:
        if prefs[sub] <= 0 or lst.full:
            break
        for j in backoff.sub_lists[sub][: lst.n + len(hist)]:
            lst.add(int(j), float(prefs[sub]), "subcategory", by_sub.get(int(sub), fallback))


def merge_block(users: np.ndarray, X: csr_matrix, knn: tuple[np.ndarray, np.ndarray, np.ndarray],
                backoff: Backoff, n: int, max_subs: int = 3) -> pd.DataFrame:
    """Final lists for a block of users: kNN picks, then sub-category, trending and popular fills."""
    rows: list[tuple[int, int, int, float, str, int]] = []
    knn_items, knn_scores, knn_because = knn
    for row, u in enumerate(users):
        hist = X.indices[X.indptr[u]:X.indptr[u + 1]]
        lst = _UserList(hist, n)
        for j, s, b in zip(knn_items[row], knn_scores[row], knn_because[row], strict=True):
            if j >= 0:
                lst.add(int(j), float(s), "itemknn", int(b))
        if not lst.full:
            _fill_from_sub_categories(lst, u, X, backoff, max_subs)
        for ranked, scores, source in ((backoff.trending, backoff.trending_scores, "trending"),
                                       (backoff.popular, backoff.popular_scores, "popular")):
            for j in ranked[: 2 * n + len(hist)]:
                lst.add(int(j), float(scores[j]), source, -1)
        rows.extend((u, rank, j, s, source, b) for rank, (j, s, source, b) in enumerate(lst.picks, start=1))
    frame = pd.DataFrame(rows, columns=["user", "rank", "item", "score", "source", "because"])
    return frame.astype({"user": np.int64, "rank": np.int16, "item": np.int64, "score": np.float32,
                         "because": np.int64})


def recommend_all(m: Matrix, model: ItemKNN | None, backoff: Backoff, live: np.ndarray, n: int,
                  client=None) -> pd.DataFrame:
    """Lists for every user in the matrix, as uid, rank, item_id, score, source, because (item ids)."""
    users = np.arange(m.X.shape[0], dtype=np.int64)
    if model is not None:
        knn = model.recommend(users, m.X, N=n, candidates=live, client=client, return_because=True)
    else:
        empty = np.full((len(users), 0), -1)
        knn = (empty.astype(np.int32), empty.astype(np.float32), empty.astype(np.int32))
    client = current_client(client)
    n_blocks = max(1, min(len(users) // 2000, 4 * n_worker_threads(client)))
    bounds = np.linspace(0, len(users), n_blocks + 1).astype(np.int64)
    parts = []
    if client is None:
        parts = [merge_block(users[a:b], m.X, tuple(x[a:b] for x in knn), backoff, n)
                 for a, b in pairwise(bounds)]
    else:
        X_f, back_f = client.scatter([m.X, backoff], broadcast=True, hash=False)
        futures = [client.submit(merge_block, users[a:b], X_f, tuple(x[a:b] for x in knn), back_f, n, pure=False)
                   for a, b in pairwise(bounds)]
        parts = client.gather(futures)
    recs = pd.concat(parts, ignore_index=True)
    item_ids = m.items.to_numpy()
    because = recs["because"].to_numpy()
    return pd.DataFrame({
        "uid": m.users.to_numpy()[recs["user"].to_numpy()],
        "rank": recs["rank"].to_numpy(),
        "item_id": item_ids[recs["item"].to_numpy()],
        "score": recs["score"].to_numpy(),
        "source": recs["source"].astype(str).to_numpy(),
        "because": pd.Series(item_ids[because.clip(min=0)], dtype="Int64").mask(because < 0).array,
    })


def cold_start(backoff: Backoff, items: pd.Index, n: int) -> pd.DataFrame:
    """The list for users with no history: trending, then popular."""
    lst = _UserList(np.array([], dtype=np.int64), n)
    for ranked, scores, source in ((backoff.trending, backoff.trending_scores, "trending"),
                                   (backoff.popular, backoff.popular_scores, "popular")):
        for j in ranked[: 2 * n]:
            lst.add(int(j), float(scores[j]), source, -1)
    picks = lst.picks
    return pd.DataFrame({"rank": np.arange(1, len(picks) + 1, dtype=np.int16),
                         "item_id": items.to_numpy()[[p[0] for p in picks]].astype(np.int64),
                         "score": np.asarray([p[1] for p in picks], np.float32),
                         "source": [p[2] for p in picks]})
