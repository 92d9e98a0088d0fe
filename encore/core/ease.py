"""EASE: a closed-form ridge regression of every item on all the others (Steck, WWW 2019).

B = argmin ‖X − XB‖² + λ‖B‖² subject to diag(B) = 0 has the solution B = I − P / diag(P) with
P = (XᵀX + λI)⁻¹. It needs a dense items × items inverse: O(items²) memory and O(items³) time,
fine up to some ten thousand items (items² float64 values) and out of reach for a large live catalogue. So
it is an evaluation model for small catalogues (``encore evaluate``, ``benchmarks/quality.py``),
not the daily job's default (``sparse_ease``, the same regression on each item's k-NN support).

``dropout`` p gives EDLAE (Steck, NeurIPS 2020, "Autoencoders that don't overfit towards the identity"): the
denoising autoencoder trained with input dropout p has, in closed form, the penalty Λ = p / (1 − p) · diag(G) + λ
instead of λ, so popular items (a large G_ii) are regularised more; with the zero-diagonal constraint kept, it is
EASE with that Λ.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix

from encore.core.base import Recommender, check_user_items, padded

MAX_ITEMS = 20_000
USERS_PER_BLOCK = 1024


def ease_weights(user_items: csr_matrix, lam: float, dropout: float = 0.0) -> np.ndarray:
    """The EASE item × item matrix B (float32, zero diagonal) for a user × item matrix; with ``dropout`` p > 0
    the diagonal penalty is p / (1 − p) · G_ii + λ (EDLAE)."""
    X = check_user_items(user_items)
    gram = (X.T @ X).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] *= 1.0 + dropout / (1.0 - dropout)
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


def masked_top_n(scores: np.ndarray, history: csr_matrix, n: int, mask: np.ndarray | None,
                 exclude_seen: bool) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_n` of a block's dense scores with items outside ``mask`` and (optionally) the block's
    history items excluded; ``scores`` is changed in place."""
    if mask is not None:
        scores[:, ~mask] = -np.inf
    if exclude_seen:
        scores[history.nonzero()] = -np.inf
    return top_n(scores, n)


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
    dropout : p in [0, 1): EDLAE's dropout-derived penalty p / (1 − p) · G_ii added to λ on each item's
        diagonal (0: plain EASE).

    Fitted attributes: ``weights_`` (float32 items × items, zero diagonal, columns already divided by
    buyers^γ) and ``popularity_`` (int64 buyers per item in the fitted matrix).

    ``recommend(..., return_because=True)`` names the history item i with the largest x_ui · B_ij behind
    each recommendation. No ``similar_items``: B's columns are regression weights, not similarities.
    """

    fitted_arrays = ("weights_", "popularity_")

    def __init__(self, lam: float = 250.0, popularity_power: float = 0.0, max_items: int = MAX_ITEMS,
                 dropout: float = 0.0):
        self.lam = lam
        self.popularity_power = popularity_power
        self.max_items = max_items
        self.dropout = dropout

    def fit(self, user_items: csr_matrix, show_progress: bool = True) -> EASE:
        """Solve for B on the user × item matrix (in-process: one dense inverse, no Dask tasks).
        ``show_progress`` is accepted for implicit's signature; no progress bar is shown."""
        n_items = user_items.shape[1]
        if n_items > self.max_items:
            raise ValueError(f"EASE needs items² memory: {n_items} items > max_items={self.max_items}")
        if self.popularity_power < 0:
            raise ValueError(f"popularity_power must be >= 0, got {self.popularity_power}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        X = check_user_items(user_items)
        self.popularity_ = np.bincount(X.indices, minlength=n_items).astype(np.int64)
        self.weights_ = ease_weights(X, self.lam, self.dropout)
        if self.popularity_power:
            self.weights_ *= np.power(np.maximum(self.popularity_, 1), -self.popularity_power).astype(np.float32)
        return self

    def _recommend(self, user_items, N, mask, exclude_seen, because):
        """Top-N of every row, in blocks of ``USERS_PER_BLOCK`` users."""
        items, scores, why = padded(user_items.shape[0], N)
        for a in range(0, user_items.shape[0], USERS_PER_BLOCK):
            block = user_items[a : a + USERS_PER_BLOCK]
            rows = slice(a, a + block.shape[0])
            top_items, top_scores = self._recommend_block(block, N, mask, exclude_seen)
            items[rows, : top_items.shape[1]], scores[rows, : top_items.shape[1]] = top_items, top_scores
            if because:
                why[rows] = self._because(block, items[rows])
        return items, scores, why if because else None

    def _recommend_block(self, history: csr_matrix, n: int, mask: np.ndarray | None,
                         exclude_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        """Scores of one block of users, with masked and (optionally) seen items excluded."""
        return masked_top_n(np.asarray(history @ self.weights_, dtype=np.float64), history, n, mask, exclude_seen)

    def _because(self, history: csr_matrix, items: np.ndarray) -> np.ndarray:
        """For each recommended item j, the history item i with the largest x_ui · B_ij (ties: smaller i)."""
        why = np.full(items.shape, -1, np.int32)
        for row in range(history.shape[0]):
            seen = history.indices[history.indptr[row]:history.indptr[row + 1]]
            picked = items[row] >= 0
            if seen.size and picked.any():
                x = history.data[history.indptr[row]:history.indptr[row + 1]]
                contribution = x[:, None] * self.weights_[np.ix_(seen, items[row, picked])]
                why[row, picked] = seen[np.argmax(contribution, axis=0)]
        return why
