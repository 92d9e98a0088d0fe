"""EASE: the closed form equals per-item ridge regressions, and recommend follows the base contract."""

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse import random as sparse_random

from encore.core.ease import EASE, ease_weights


@pytest.fixture(scope="module")
def X() -> csr_matrix:
    rng = np.random.default_rng(7)
    X = sparse_random(80, 25, density=0.15, format="csr", random_state=rng, dtype=np.float32)
    X.data[:] = 1.0
    return X


def ridge_reference(X: csr_matrix, lam: float, dropout: float = 0.0) -> np.ndarray:
    """Column j regressed on every other column with the penalty Σ_i Λ_i b_i², Λ_i = p / (1 − p) · users(i) + λ:
    the definition of EASE (p = 0) and of EDLAE."""
    dense = X.toarray().astype(np.float64)
    n = dense.shape[1]
    penalty = dropout / (1 - dropout) * (dense**2).sum(axis=0) + lam
    B = np.zeros((n, n))
    for j in range(n):
        others = np.delete(np.arange(n), j)
        A = dense[:, others]
        B[others, j] = np.linalg.solve(A.T @ A + np.diag(penalty[others]), A.T @ dense[:, j])
    return B


@pytest.mark.parametrize("dropout", [0.0, 0.25, 0.5])
def test_closed_form_equals_ridge_per_item(X, dropout):
    np.testing.assert_allclose(ease_weights(X, 3.0, dropout), ridge_reference(X, 3.0, dropout), rtol=1e-4, atol=1e-5)
    if dropout:
        assert not np.allclose(ease_weights(X, 3.0, dropout), ease_weights(X, 3.0), atol=1e-3)


def test_dropout_outside_zero_to_one_is_rejected(X):
    with pytest.raises(ValueError, match="dropout must be in"):
        EASE(dropout=1.0).fit(X)


def test_recommend_excludes_seen_and_non_candidates(X):
    model = EASE(lam=3.0).fit(X)
    candidates = np.ones(X.shape[1], bool)
    candidates[:5] = False
    items, scores = model.recommend(np.arange(10), X[:10], N=5, candidates=candidates)
    assert items.shape == scores.shape == (10, 5)
    for row, recs in enumerate(items):
        assert not set(recs) & set(X[row].indices)
        assert (recs >= 5).all()
    assert (np.diff(scores, axis=1) <= 0).all()


def test_recommend_matches_dense_ranking(X):
    model = EASE(lam=3.0).fit(X)
    items, _ = model.recommend(3, X[3], N=4)
    dense = X[3].toarray()[0] @ ease_weights(X, 3.0)
    dense[X[3].indices] = -np.inf
    np.testing.assert_array_equal(items, np.argsort(-dense, kind="stable")[:4])


def test_pads_when_catalogue_is_small(X):
    items, scores = EASE(lam=3.0).fit(X).recommend(0, X[0], N=30)
    n_left = X.shape[1] - X[0].nnz
    assert (items[n_left:] == -1).all() and (scores[n_left:] == 0).all() and (items[:n_left] >= 0).all()


def test_refuses_large_catalogue(X):
    with pytest.raises(ValueError, match="max_items"):
        EASE(max_items=10).fit(X)


def test_popularity_power_divides_scores_by_buyers(X):
    plain = EASE(lam=3.0).fit(X)
    debiased = EASE(lam=3.0, popularity_power=0.5).fit(X)
    buyers = np.diff(X.tocsc().indptr)
    np.testing.assert_array_equal(debiased.popularity_, buyers)
    assert debiased.popularity_power == 0.5 and plain.popularity_power == 0.0
    expected = plain.weights_ / np.sqrt(np.maximum(buyers, 1))[None, :]
    np.testing.assert_allclose(debiased.weights_, expected, rtol=1e-6)
    items, _ = debiased.recommend(3, X[3], N=4)
    dense = X[3].toarray()[0] @ plain.weights_ / np.sqrt(np.maximum(buyers, 1))
    dense[X[3].indices] = -np.inf
    np.testing.assert_array_equal(items, np.argsort(-dense, kind="stable")[:4])


def test_negative_popularity_power_rejected(X):
    with pytest.raises(ValueError, match="popularity_power"):
        EASE(popularity_power=-0.1).fit(X)


def test_because_is_the_history_item_contributing_most(X):
    model = EASE(lam=3.0).fit(X)
    items, _, because = model.recommend(np.arange(20), X[:20], N=4, return_because=True)
    B = ease_weights(X, 3.0)
    for row in range(20):
        seen = X[row].indices
        for j, why in zip(items[row], because[row], strict=True):
            assert why == (seen[np.argmax(B[seen, j])] if j >= 0 and seen.size else -1)
