"""Popularity and trending: the heuristics every marketplace starts from, and encore's backoff.

Popularity counts distinct bidders per item. Trending compares distinct bidders in a recent window with
the window before it, smoothed so one bid on a quiet item does not top the chart:
``score = ln(1 + recent) · (recent + a) / (previous + a)``.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix

from encore.core.base import Recommender, check_user_items, padded


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
    """A model that gives every item one score, the same for every user (``item_scores_``).

    ``because`` is always -1: no history item is behind a list that is the same for everyone.
    """

    item_scores_: np.ndarray
    fitted_arrays = ("item_scores_",)

    def _recommend(self, user_items, N, mask, exclude_seen, because):
        """Top-N items by ``item_scores_`` per row, minus masked and (optionally) seen items."""
        ranked = top_items(self.item_scores_, mask)
        items, scores, why = padded(user_items.shape[0], N)
        indptr, indices = user_items.indptr, user_items.indices
        for row in range(user_items.shape[0]):
            seen = indices[indptr[row]:indptr[row + 1]] if exclude_seen else ()
            head = ranked[: N + len(seen)]
            picked = head[~np.isin(head, seen)][:N]
            items[row, : len(picked)] = picked
            scores[row, : len(picked)] = self.item_scores_[picked]
        return items, scores, why if because else None


class Popularity(ItemScoreModel):
    """Most popular items by distinct bidders."""

    def fit(self, user_items: csr_matrix, show_progress: bool = True) -> Popularity:
        """Count distinct users per item (``show_progress``: implicit's signature, no progress bar)."""
        self.item_scores_ = distinct_users(user_items)
        return self


class Trending(ItemScoreModel):
    """Items whose distinct bidders grew from the previous window to the recent one."""

    def __init__(self, smoothing: float = 5.0) -> None:
        self.smoothing = smoothing

    def fit(self, user_items: csr_matrix, show_progress: bool = True, *,
            previous: csr_matrix | None = None) -> Trending:
        """``user_items`` covers the recent window, ``previous`` the window before (same shape; without it
        every item counts as new). ``show_progress``: implicit's signature, no progress bar."""
        recent = distinct_users(user_items)
        before = distinct_users(previous) if previous is not None else np.zeros_like(recent)
        a = self.smoothing
        self.item_scores_ = np.log1p(recent) * (recent + a) / (before + a)
        return self
