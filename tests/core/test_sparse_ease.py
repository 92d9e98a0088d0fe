"""SparseEASE: EASE's ridge regression on each item's k-NN support, against direct regressions."""

from itertools import pairwise

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse import random as sparse_random

from encore.core.ease import EASE
from encore.core.itemknn import ItemKNN
from encore.core.sparse_ease import (
    SparseEASE,
    binary,
    in_lists,
    own_part,
    ridge_block,
    ridge_own,
    solve_transposed,
    with_scores,
)


def dense_weights(model: SparseEASE) -> np.ndarray:
    """The model's B as a dense items × items matrix (B[i, j]: weight of history item i towards j)."""
    n = model.n_items
    B = np.zeros((n, n))
    rows = np.repeat(np.arange(n), model.neighbours_.shape[1])
    ok = model.neighbours_.ravel() >= 0
    B[rows[ok], model.neighbours_.ravel()[ok]] = model.scores_.ravel()[ok]
    return B


@pytest.fixture(scope="module")
def X() -> csr_matrix:
    rng = np.random.default_rng(3)
    X = sparse_random(150, 40, density=0.12, format="csr", random_state=rng, dtype=np.float32)
    X.data = rng.uniform(0.5, 3.0, X.nnz).astype(np.float32)
    return X


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_equals_ease_when_every_pair_is_in_the_lists(dropout):
    rng = np.random.default_rng(0)
    X = sparse_random(200, 25, density=0.5, format="csr", random_state=rng, dtype=np.float32)
    model = SparseEASE(lam=3.0, K=24, max_support=24, dropout=dropout).fit(X)
    assert (model.neighbours_ >= 0).all()  # every pair co-occurs: the support is every other item
    np.testing.assert_allclose(dense_weights(model), EASE(lam=3.0, dropout=dropout).fit(binary(X)).weights_,
                               rtol=1e-4, atol=1e-6)


def test_each_column_is_the_ridge_regression_on_its_support(X):
    """Column j regressed on T_j (the items listing j, at most max_support, most co-occurrence first), with
    the Gram entries of listed pairs and fill · users(a) · users(b) / users for the others."""
    lam, fill, cap = 4.0, 2.0, 6
    model = SparseEASE(lam=lam, K=10, max_support=cap, fill=fill).fit(X)
    knn = ItemKNN(K=10).fit(binary(X))
    Xb = binary(X).toarray().astype(np.float64)
    G, users = Xb.T @ Xb, Xb.sum(axis=0)
    listed = np.zeros_like(G, bool)
    for i in range(G.shape[0]):
        listed[i, knn.neighbours_[i][knn.neighbours_[i] >= 0]] = True
    listed |= listed.T
    approx = np.where(listed, G, fill * np.outer(users, users) / Xb.shape[0])
    np.fill_diagonal(approx, np.diag(G))
    B = dense_weights(model)
    for j in range(G.shape[0]):
        T = np.flatnonzero((knn.neighbours_ == j).any(axis=1))
        T = T[np.lexsort((T, -G[T, j]))][:cap]
        want = np.zeros(G.shape[0])
        if T.size:
            want[T] = np.linalg.solve(approx[np.ix_(T, T)] + lam * np.eye(T.size), G[T, j])
        np.testing.assert_allclose(B[:, j], want, rtol=1e-4, atol=1e-6)


def test_support_counts_of_a_weighted_fit_are_the_binary_gram(X):
    """What lets the daily job solve on the item-kNN it fitted on weighted interactions."""
    knn = ItemKNN(K=10).fit(X)
    G = binary(X).T @ binary(X)
    rows = np.repeat(np.arange(X.shape[1]), 10)
    ok = knn.neighbours_.ravel() >= 0
    np.testing.assert_array_equal(knn.support_.ravel()[ok], np.asarray(G[rows[ok], knn.neighbours_.ravel()[ok]])[0])
    popularity = np.bincount(X.indices, minlength=X.shape[1])
    solved = SparseEASE(K=10, lam=4.0).solve(knn, popularity, X.shape[0])
    refit = SparseEASE(K=10, lam=4.0).solve(ItemKNN(K=10).fit(X), popularity, X.shape[0])
    np.testing.assert_array_equal(solved.scores_, refit.scores_)


def test_in_lists_caps_and_orders_by_support():
    neighbours = np.array([[1, 2], [2, 0], [1, -1]], np.int32)
    support = np.array([[5.0, 1.0], [7.0, 2.0], [3.0, 0.0]])
    indptr, rows, slots = in_lists(neighbours, support, 1)
    assert indptr.tolist() == [0, 1, 2, 3]
    assert list(zip(rows.tolist(), slots.tolist(), strict=True)) == [(1, 1), (0, 0), (1, 0)]


def lexsorted_lists(neighbours: np.ndarray, support: np.ndarray, max_support: int) -> list[list[tuple]]:
    """in_lists' definition by a sort of every pair: per item j its (row, slot) pairs, largest support first
    then smaller row, the first ``max_support``."""
    pairs = [(-support[i, t], i, t, j) for i, row in enumerate(neighbours) for t, j in enumerate(row) if j >= 0]
    return [[(i, t) for _, i, t, _ in sorted(p for p in pairs if p[3] == j)[:max_support]]
            for j in range(len(neighbours))]


@pytest.mark.parametrize("max_support", [1, 3, 100])
def test_in_lists_keeps_the_largest_supports_in_sort_order(max_support):
    """Many ties and long in-lists: the kept pairs and their order are a sort's."""
    rng = np.random.default_rng(8)
    neighbours = rng.integers(-1, 12, (60, 9)).astype(np.int32)
    support = rng.integers(0, 4, (60, 9)).astype(np.float64)
    indptr, rows, slots = in_lists(neighbours, support, max_support)
    got = [list(zip(rows[a:b].tolist(), slots[a:b].tolist(), strict=True)) for a, b in pairwise(indptr)]
    assert got == lexsorted_lists(neighbours, support, max_support)


def test_solve_transposed_solves_the_system_of_the_transpose():
    """``at`` holds A's transpose: the solution is A's, on matrices that are not symmetric."""
    rng = np.random.default_rng(4)
    for n in (1, 2, 7, 40):
        A = rng.random((n, n)) + n * np.eye(n)
        b = rng.random(n)
        x = b.copy()
        solve_transposed(np.ascontiguousarray(A.T), x)
        np.testing.assert_allclose(x, np.linalg.solve(A, b), rtol=1e-12)


@pytest.mark.parametrize("at, b", [(np.zeros((2, 2)), np.ones(2)), (np.eye(2), np.array([1.0, np.nan]))])
def test_solve_transposed_refuses_singular_or_non_finite_systems(at, b):
    with pytest.raises(np.linalg.LinAlgError):
        solve_transposed(at, b)


def test_popularity_power_divides_weights_by_users(X):
    plain = SparseEASE(lam=4.0, K=10).fit(X)
    debiased = SparseEASE(lam=4.0, K=10, popularity_power=0.5).fit(X)
    users = np.bincount(X.indices, minlength=X.shape[1])
    np.testing.assert_array_equal(debiased.popularity_, users)
    expect = plain.scores_ / np.sqrt(np.maximum(users, 1))[plain.neighbours_.clip(min=0)]
    np.testing.assert_allclose(debiased.scores_, np.where(plain.neighbours_ >= 0, expect, 0), rtol=1e-6)


def test_scores_are_history_times_weights(X):
    model = SparseEASE(lam=4.0, K=10).fit(X)
    items, scores, because = model.recommend(np.arange(30), X[:30], N=5, return_because=True)
    B = dense_weights(model)
    for u in range(30):
        x = X[u].toarray()[0].astype(np.float64)
        dense = x @ B
        for j, s, why in zip(items[u], scores[u], because[u], strict=True):
            if j < 0:
                continue
            assert s == pytest.approx(dense[j], rel=1e-5) and s > 0
            seen = X[u].indices
            assert why == seen[np.argmax(x[seen] * B[seen, j])]


@pytest.mark.parametrize("bad", [{"popularity_power": -0.1}, {"fill": -1.0}, {"max_support": 0}, {"dropout": 1.0}])
def test_bad_parameters_are_rejected(X, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        SparseEASE(**bad).fit(X)


@pytest.mark.parametrize("popularity_power", [0.0, 0.5])
def test_any_split_of_the_items_solves_the_same(X, popularity_power):
    """Items solve apart: blocks of any size, in any number, give the bits of one whole solve, read from the
    whole plan or from each block's own part of it."""
    knn = SparseEASE(K=8).knn().fit(binary(X))
    popularity = np.bincount(X.indices, minlength=X.shape[1])
    want = SparseEASE(K=8, popularity_power=popularity_power).solve(knn, popularity, X.shape[0])
    n = X.shape[1]
    for cuts in ([0, n], [0, 1, n], [0, 7, 8, 30, n], list(range(n + 1))):
        model = SparseEASE(K=8, popularity_power=popularity_power)
        _, arrays, settings = model.solve_plan(knn, popularity, X.shape[0], threads=3)
        blocks = list(pairwise(cuts))
        whole = [ridge_block(block, *arrays, *settings) for block in blocks]
        for block, scores in zip(blocks, whole, strict=True):  # a block sent only its own in-lists
            np.testing.assert_array_equal(ridge_own(own_part(block, arrays), *arrays[3:6], *settings), scores)
        got = with_scores(model, whole, arrays)
        np.testing.assert_array_equal(got.neighbours_, want.neighbours_)
        np.testing.assert_array_equal(got.scores_, want.scores_)
    assert (want.scores_ != 0).any()


def test_the_plan_cuts_the_items_into_blocks_in_order():
    """With several threads the plan cuts a larger catalogue into blocks that cover it, in order."""
    rng = np.random.default_rng(5)
    X = sparse_random(400, 700, density=0.02, format="csr", random_state=rng, dtype=np.float32)
    knn = SparseEASE(K=8).knn().fit(binary(X))
    blocks, _, _ = SparseEASE(K=8).solve_plan(knn, np.bincount(X.indices, minlength=700), 400, threads=2)
    assert len(blocks) > 1
    assert blocks[0][0] == 0 and blocks[-1][1] == 700
    assert all(a[1] == b[0] for a, b in pairwise(blocks))
