"""Popularity and trending: the heuristics every marketplace starts from, and encore's backoff.

Popularity counts distinct bidders per item. Trending compares distinct bidders in a recent window with
the window before it, smoothed so one bid on a quiet item does not top the chart:
``score = ln(1 + recent) · (recent + a) / (previous + a)``.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix

from encore.core.base import Recommender, check_user_items


def distinct_users(user_items: csr_matrix) -> np.ndarray:
    """Number of users with a stored entry per item column."""
    X = check_user_items(user_items)
    return np.bincount(X.indices, minlength=X.shape[1]).astype(np.float64)


def top_items(scores: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Item indices with a positive score (and allowed by ``mask``), best first, ties by index."""
    keep = scores > 0 if mask is None else (scores > 0) & mask
    idx = np.flatnonzero(keep)
    return idx[np.lexsort((idx, -scores[idx]))]


class ItemScoreModel(Recommender):
    """A model that gives every item one score, the same for every user (``item_scores_``)."""

    item_scores_: np.ndarray

    def recommend(self, userids, user_items, N=10, candidates=None, filter_already_liked_items=True):
        """Top-N items by ``item_scores_`` per user, minus candidates masked out and (optionally) seen items."""
        X = check_user_items(user_items)
        ranked = top_items(self.item_scores_, candidates)
        items = np.full((len(userids), N), -1, dtype=np.int32)
        scores = np.zeros((len(userids), N), dtype=np.float32)
        for row, u in enumerate(np.asarray(userids)):
            seen = X.indices[X.indptr[u]:X.indptr[u + 1]] if filter_already_liked_items else ()
            head = ranked[: N + len(seen)]
            picked = head[~np.isin(head, seen)][:N]
            items[row, : len(picked)] = picked
            scores[row, : len(picked)] = self.item_scores_[picked]
        return items, scores


class Popularity(ItemScoreModel):
    """Most popular items by distinct bidders."""

    def fit(self, user_items: csr_matrix) -> Popularity:
        self.item_scores_ = distinct_users(user_items)
        return self


class Trending(ItemScoreModel):
    """Items whose distinct bidders grew from the previous window to the recent one."""

    def __init__(self, smoothing: float = 5.0) -> None:
        self.smoothing = smoothing

    def fit(self, user_items: csr_matrix, previous: csr_matrix | None = None) -> Trending:
        """``user_items`` covers the recent window, ``previous`` the window before (same shape)."""
        recent = distinct_users(user_items)
        before = distinct_users(previous) if previous is not None else np.zeros_like(recent)
        a = self.smoothing
        self.item_scores_ = np.log1p(recent) * (recent + a) / (before + a)
        return self
