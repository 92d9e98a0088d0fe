"""Tiny pure functions that reweight or trim a user × item CSR matrix before the similarity step.

Every function takes a scipy CSR matrix (rows = users, columns = items) and returns a new float32
CSR matrix with sorted indices; the input is never modified.
"""

import numpy as np
from scipy.sparse import csr_matrix


def _canonical(X) -> csr_matrix:
    """A float32 CSR copy of X with sorted indices and summed duplicates."""
    X = csr_matrix(X, dtype=np.float32, copy=True)
    X.sum_duplicates()
    return X


def _row_of_entry(X: csr_matrix) -> np.ndarray:
    """Row index of every stored entry of a CSR matrix."""
    return np.repeat(np.arange(X.shape[0], dtype=np.int32), np.diff(X.indptr))


def bm25_weight(X, k1: float = 1.2, b: float = 0.75) -> csr_matrix:
    """BM25-weight X exactly as implicit's ``BM25Recommender`` does.

    implicit applies ``bm25_weight`` to the item × user matrix: items are the documents (length
    normalised by their total weight) and users the terms, so a user active on many items gets a
    small idf = log(n_items) - log1p(deg(u)). Computed in float64, returned as float32.
    """
    X = _canonical(X)
    if X.nnz == 0:
        return X  # nothing to weight (and no mean item length to normalise by)
    n_items = X.shape[1]
    deg = np.diff(X.indptr)
    idf = np.log(float(n_items)) - np.log1p(deg)
    item_sums = np.bincount(X.indices, weights=X.data, minlength=n_items)
    length_norm = (1.0 - b) + b * item_sums / item_sums.mean()
    data = X.data.astype(np.float64)
    weighted = data * (k1 + 1.0) / (k1 * length_norm[X.indices] + data) * idf[_row_of_entry(X)]
    X.data = weighted.astype(np.float32)
    return X


def iuf_weight(X) -> csr_matrix:
    """Scale each item column j by the inverse user frequency log(n_users / df_j).

    df_j is the number of users with a stored entry for item j. Note that a per-column factor
    cancels in item-item cosine: it only removes items every user has (factor 0).
    """
    X = _canonical(X)
    df = np.bincount(X.indices, minlength=X.shape[1])
    iuf = np.log(X.shape[0] / np.maximum(df, 1))
    X.data = (X.data * iuf[X.indices]).astype(np.float32)
    return X


def binarize(X) -> csr_matrix:
    """Replace every non-zero value by 1, dropping explicit zeros."""
    X = _canonical(X)
    X.eliminate_zeros()
    X.data[:] = 1.0
    return X


def cap_history(X, recency: np.ndarray, cap: int) -> csr_matrix:
    """Keep for each user only the ``cap`` entries with the largest ``recency`` (most recent).

    ``recency`` is aligned with ``X.data`` (larger = more recent); ties keep the smaller item index.
    The similarity step costs Σ deg(u)², so one bot with 50,000 bids costs as much as a million
    ordinary users: capping bounds that. Only rows longer than ``cap`` are sorted.
    """
    X = csr_matrix(X)
    recency = np.asarray(recency)
    if recency.shape != X.data.shape:
        raise ValueError("recency must be aligned with X.data")
    rows = _row_of_entry(X)
    deg = np.diff(X.indptr)
    keep = np.ones(X.nnz, dtype=bool)
    heavy = np.flatnonzero(deg[rows] > cap)
    if heavy.size:
        order = heavy[np.lexsort((X.indices[heavy], -recency[heavy], rows[heavy]))]
        rank = np.arange(order.size) - np.searchsorted(rows[order], rows[order], side="left")
        keep[order[rank >= cap]] = False
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=X.shape[0]))])
    capped = csr_matrix((X.data[keep].astype(np.float32), X.indices[keep], indptr), shape=X.shape)
    capped.sum_duplicates()
    return capped


def pair_visits(X) -> int:
    """Σ_u deg(u)², the number of (user, item, item) visits the similarity kernel makes."""
    deg = np.diff(csr_matrix(X).indptr).astype(np.int64)
    return int(np.dot(deg, deg))
