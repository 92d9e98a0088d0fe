"""The contract every encore model follows, in the style of implicit and scikit-learn.

Parameters are stored as given in ``__init__``; fitted attributes end in ``_``.
"""

from abc import ABC, abstractmethod

import numpy as np
from scipy.sparse import csr_matrix


def check_user_items(user_items) -> csr_matrix:
    """A user × item CSR with float32 data and sorted indices (copied only when needed)."""
    X = user_items if isinstance(user_items, csr_matrix) else csr_matrix(user_items)
    if X.dtype != np.float32:
        X = X.astype(np.float32)
    if not X.has_sorted_indices:
        X = X.sorted_indices()
    return X


class Recommender(ABC):
    """Base class: fit on a user × item CSR matrix, recommend item indices to user rows."""

    @abstractmethod
    def fit(self, user_items: csr_matrix) -> "Recommender":
        """Learn from the user × item interaction matrix; return self."""

    @abstractmethod
    def recommend(
        self,
        userids: np.ndarray,
        user_items: csr_matrix,
        N: int = 10,
        candidates: np.ndarray | None = None,
        filter_already_liked_items: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-N (items int32[n, N], scores float32[n, N]) for rows ``userids`` of ``user_items``.

        ``candidates`` is a boolean mask over items (False = never recommend). Missing slots are
        padded with item -1 and score 0.
        """

    def similar_items(self, itemids: np.ndarray, N: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-N (items, scores) most similar to each of ``itemids``, for item-based models."""
        raise NotImplementedError(f"{type(self).__name__} has no item similarities")
