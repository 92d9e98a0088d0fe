"""EASE: a closed-form ridge regression of every item on all the others (Steck, WWW 2019).

B = argmin ‖X − XB‖² + λ‖B‖² subject to diag(B) = 0 has the solution B = I − P / diag(P) with
P = (XᵀX + λI)⁻¹. It needs a dense items × items inverse: O(items²) memory and O(items³) time,
fine up to about 20,000 items (3.2 GB in float64) and out of reach for a large live catalogue. So
it is an evaluation model for small catalogues (``encore evaluate``, ``benchmarks/quality.py``),
not the daily pipeline's default, which stays the O(items × K) item-kNN.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix

from encore.core.base import Recommender, check_user_items

MAX_ITEMS = 20_000
USERS_PER_BLOCK = 1024


def ease_weights(user_items: csr_matrix, lam: float) -> np.ndarray:
    """The EASE item × item matrix B (float32, zero diagonal) for a user × item matrix."""
    X = check_user_items(user_items)
    gram = (X.T @ X).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += lam
    precision = np.linalg.inv(gram)
    B = -precision / np.diag(precision)
    np.fill_diagonal(B, 0.0)
    return B.astype(np.float32)


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Best n (items, scores) per row, score descending then smaller index; -inf slots become -1 / 0."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    best = np.take_along_axis(scores, order, axis=1)
    finite = np.isfinite(best)
    items = np.where(finite, order, -1).astype(np.int32)
    return items, np.where(finite, best, 0).astype(np.float32)


class EASE(Recommender):
    """Closed-form item-item ridge regression; score(u, j) = Σ_i x_ui · B_ij / buyers(j)^γ.

    Parameters
    ----------
    lam : L2 regularisation λ added to the Gram matrix's diagonal; larger favours popular items less
        sharply and lowers coverage (tuned on the UCI validation window: 250).
    popularity_power : γ ≥ 0; every score of item j is divided by buyers(j)^γ (buyers counted in the
        fitted matrix, at least 1), a popularity debiasing of the ranking. 0 (the default) is plain
        EASE; 0.15 won on the UCI validation window.
    max_items : refuse catalogues larger than this, because memory grows as items².

    Fitted attributes: ``weights_`` (float32 items × items, zero diagonal, columns already divided by
    buyers^γ) and ``popularity_`` (int64 buyers per item in the fitted matrix).
    """

    def __init__(self, lam: float = 250.0, popularity_power: float = 0.0, max_items: int = MAX_ITEMS):
        self.lam = lam
        self.popularity_power = popularity_power
        self.max_items = max_items

    def fit(self, user_items: csr_matrix) -> EASE:
        """Solve for B on the user × item matrix (in-process: one dense inverse, no Dask tasks)."""
        n_items = user_items.shape[1]
        if n_items > self.max_items:
            raise ValueError(f"EASE needs items² memory: {n_items} items > max_items={self.max_items}")
        if self.popularity_power < 0:
            raise ValueError(f"popularity_power must be >= 0, got {self.popularity_power}")
        X = check_user_items(user_items)
        self.popularity_ = np.bincount(X.indices, minlength=n_items).astype(np.int64)
        self.weights_ = ease_weights(X, self.lam)
        if self.popularity_power:
            self.weights_ *= np.power(np.maximum(self.popularity_, 1), -self.popularity_power).astype(np.float32)
        return self

    def recommend(
        self,
        userids: np.ndarray,
        user_items: csr_matrix,
        N: int = 10,
        candidates: np.ndarray | None = None,
        filter_already_liked_items: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-N (items, scores) for rows ``userids`` of ``user_items``, in blocks of users."""
        X = check_user_items(user_items)
        userids = np.asarray(userids, dtype=np.int64)
        parts = [self._recommend_block(X[userids[a : a + USERS_PER_BLOCK]], N, candidates, filter_already_liked_items)
                 for a in range(0, userids.size, USERS_PER_BLOCK)]
        if not parts:
            return np.zeros((0, N), np.int32), np.zeros((0, N), np.float32)
        items, scores = zip(*parts, strict=True)
        return np.concatenate(items), np.concatenate(scores)

    def _recommend_block(self, history: csr_matrix, n: int, candidates: np.ndarray | None,
                         exclude_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        """Scores of one block of users, with non-candidates and (optionally) seen items masked."""
        scores = np.asarray(history @ self.weights_, dtype=np.float64)
        if candidates is not None:
            scores[:, ~np.asarray(candidates, np.bool_)] = -np.inf
        if exclude_seen:
            scores[history.nonzero()] = -np.inf
        return top_n(scores, n)
