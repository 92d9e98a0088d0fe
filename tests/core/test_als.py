"""ALS: implicit's factors, scores of users recomputed from their rows, ``because`` as implicit's ``explain``."""

import numpy as np
import pytest
from implicit.als import AlternatingLeastSquares
from scipy.sparse import csr_matrix
from scipy.sparse import random as sparse_random
from threadpoolctl import threadpool_limits

from encore.core.als import ALS

PARAMS = {"factors": 6, "iterations": 4, "regularization": 0.1, "alpha": 2.0, "random_state": 3}


@pytest.fixture(scope="module")
def X() -> csr_matrix:
    rng = np.random.default_rng(11)
    X = sparse_random(90, 30, density=0.15, format="csr", random_state=rng, dtype=np.float32)
    X.data = rng.uniform(0.5, 3.0, X.nnz).astype(np.float32)
    return X


@pytest.fixture(scope="module")
def fitted(X) -> tuple[ALS, AlternatingLeastSquares]:
    ours = ALS(**PARAMS, num_threads=1).fit(X)
    theirs = AlternatingLeastSquares(**PARAMS, num_threads=1, use_gpu=False)
    with threadpool_limits(1, "blas"):
        theirs.fit(X, show_progress=False)
    return ours, theirs


def test_factors_are_implicits(fitted):
    ours, theirs = fitted
    np.testing.assert_array_equal(ours.item_factors_, theirs.item_factors)


def test_scores_are_implicits_with_the_user_recalculated(X, fitted):
    ours, theirs = fitted
    for u in range(0, 90, 7):
        items, scores = ours.recommend(u, X[u], N=5)
        want_items, want_scores = theirs.recommend(u, X[u], N=5, recalculate_user=True)
        keep = want_scores > 0
        np.testing.assert_array_equal(items[: keep.sum()], want_items[keep])
        np.testing.assert_allclose(scores[: keep.sum()], want_scores[keep], rtol=1e-4)


def test_because_is_the_top_contribution_of_explain(X, fitted):
    ours, theirs = fitted
    items, _, because = ours.recommend(np.arange(20), X[:20], N=4, return_because=True)
    for u in range(20):
        for j, why in zip(items[u], because[u], strict=True):
            if j >= 0:
                _, top, _ = theirs.explain(u, X, int(j), N=1)
                assert why == top[0][0]


def test_empty_history_gets_no_items(X, fitted):
    ours, _ = fitted
    items, scores = ours.recommend(0, csr_matrix((1, X.shape[1]), dtype=np.float32), N=5)
    assert (items == -1).all() and (scores == 0).all()
