"""Weighting and history-capping functions."""

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse import random as sparse_random

from encore.core.weighting import binarize, bm25_weight, cap_history, iuf_weight, pair_visits


@pytest.fixture
def X() -> csr_matrix:
    rng = np.random.default_rng(0)
    X = sparse_random(50, 30, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    X.data = rng.integers(1, 6, X.nnz).astype(np.float32)
    return X


def test_bm25_matches_implicit(X):
    nn = pytest.importorskip("implicit.nearest_neighbours")
    for k1, b in [(1.2, 0.75), (100.0, 0.8)]:
        want = csr_matrix(nn.bm25_weight(X.T, k1, b).T)
        got = bm25_weight(X, k1, b)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got.toarray(), want.toarray(), rtol=1e-6, atol=1e-6)


def test_iuf_hand_computed():
    X = csr_matrix(np.array([[1, 2, 0], [0, 3, 0], [4, 0, 0], [0, 5, 0]], dtype=np.float32))
    got = iuf_weight(X).toarray()
    a, b = np.log(4 / 2), np.log(4 / 3)  # item 0 has 2 users of 4, item 1 has 3, item 2 none
    want = np.array([[a, 2 * b, 0], [0, 3 * b, 0], [4 * a, 0, 0], [0, 5 * b, 0]])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert iuf_weight(X).dtype == np.float32


def test_binarize_drops_explicit_zeros(X):
    Y = X.copy()
    Y.data[0] = 0
    B = binarize(Y)
    assert B.dtype == np.float32 and (B.data == 1).all() and B.nnz == X.nnz - 1
    assert Y.data[0] == 0 and (X.data != 1).any()


def test_cap_history_keeps_most_recent_ties_by_smaller_item():
    X = csr_matrix(np.array([[1, 1, 1, 1, 1], [2, 0, 3, 0, 0], [0, 0, 0, 0, 0]], dtype=np.float32))
    recency = np.array([5.0, 9.0, 5.0, 5.0, 1.0, 7.0, 8.0])
    C = cap_history(X, recency, cap=2)
    np.testing.assert_array_equal(
        C.toarray(), np.array([[1, 1, 0, 0, 0], [2, 0, 3, 0, 0], [0, 0, 0, 0, 0]], dtype=np.float32)
    )
    assert C.dtype == np.float32 and C.has_sorted_indices


def test_cap_history_random_against_loop(X):
    recency = np.random.default_rng(1).integers(0, 4, X.nnz).astype(float)
    C = cap_history(X, recency, cap=3)
    for u in range(X.shape[0]):
        lo, hi = X.indptr[u], X.indptr[u + 1]
        order = sorted(range(lo, hi), key=lambda p: (-recency[p], X.indices[p]))[:3]
        assert sorted(X.indices[order]) == list(C[u].indices)
        np.testing.assert_array_equal(C[u].data, X[u, C[u].indices].toarray().ravel())


def test_pair_visits(X):
    deg = np.diff(X.indptr)
    assert pair_visits(X) == int((deg.astype(np.int64) ** 2).sum())
    assert pair_visits(csr_matrix((3, 4))) == 0
