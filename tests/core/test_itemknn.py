"""ItemKNN in one process: neighbours and scores against dense references, whatever the blocks."""

import pickle

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse import random as sparse_random

from encore.core.itemknn import (
    ItemKNN,
    block_bounds,
    csr_arrays,
    item_topk,
    popular_first,
    row_visits,
    score_arrays,
    score_block,
    score_users,
)
from encore.core.kernels import cosine_topk_block, score_users_block
from encore.core.sparse_ease import SparseEASE
from encore.core.weighting import bm25_weight


def _arrays(X: csr_matrix) -> tuple:
    return X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data.astype(np.float32)


def weighted_matrix() -> csr_matrix:
    """300 users × 120 items, 5 % filled with weights in [0.5, 3)."""
    rng = np.random.default_rng(42)
    X = sparse_random(300, 120, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    X.data = rng.uniform(0.5, 3.0, X.nnz).astype(np.float32)
    return X


@pytest.fixture(scope="module")
def X() -> csr_matrix:
    return weighted_matrix()


def reference_topk(X: csr_matrix, k: int) -> tuple:
    """Single kernel call over all items, no Dask and no blocks."""
    norms = np.sqrt(np.bincount(X.indices, weights=X.data.astype(np.float64) ** 2, minlength=X.shape[1]))
    ids = np.arange(X.shape[1], dtype=np.int32)
    return cosine_topk_block(0, X.shape[1], *_arrays(X.T.tocsr()), *_arrays(X), norms, ids, row_visits(X), k, 1,
                             0.0)


def test_block_bounds_cover_rows_balanced():
    cost = np.array([10, 1, 1, 1, 1, 10, 1, 1], float)
    bounds = block_bounds(cost, 3)
    assert bounds[0] == 0 and bounds[-1] == cost.size and (np.diff(bounds) > 0).all()
    np.testing.assert_array_equal(block_bounds(np.array([]), 4), [0])


def test_fit_in_blocks_is_reference(X):
    for got, ref in zip(item_topk(X, k=7, block_size=33), reference_topk(X, 7), strict=True):
        np.testing.assert_array_equal(got, ref)


def test_bm25_weighting_applied(X):
    model = ItemKNN(K=5, weighting="bm25", alpha=0.5).fit(X)
    for got, ref in zip(
        (model.neighbours_, model.scores_), reference_topk(bm25_weight(X), 5)[:2], strict=True
    ):
        np.testing.assert_array_equal(got, ref)
    with pytest.raises(ValueError, match="weighting"):
        ItemKNN(weighting="tfidf").fit(X)


def test_recommend_matches_the_kernel(X):
    model = ItemKNN(K=10).fit(X)
    users = np.arange(0, 300, 3)
    candidates = np.arange(X.shape[1]) % 5 != 0
    want = score_users_block(
        users.astype(np.int64), *_arrays(X), model.neighbours_, model.scores_, candidates, model.rank_, 15, True
    )
    for block_size in (None, 7):
        got = ItemKNN(K=10, block_size=block_size).fit(X).recommend(users, X[users], 15, candidates=candidates,
                                                                    return_because=True)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
    items, scores = model.recommend(users, X[users], N=15, candidates=candidates)
    np.testing.assert_array_equal(items, want[0])
    assert items.dtype == np.int32 and scores.dtype == np.float32


def test_recommend_without_filter_can_return_seen(X):
    model = ItemKNN(K=20).fit(X)
    items, _ = model.recommend(np.arange(300), X, N=30, filter_already_liked_items=False)
    seen = [set(X[u].indices) & set(items[u]) for u in range(300)]
    assert any(seen)


def test_score_users_validates_shapes(X):
    model = ItemKNN(K=5).fit(X)
    with pytest.raises(ValueError, match="items"):
        score_users([0], X[:, :10], model.neighbours_, model.scores_)
    with pytest.raises(ValueError, match="candidates"):
        score_users([0], X, model.neighbours_, model.scores_, candidates=np.ones(3, bool))


def test_similar_items_are_the_item_then_its_neighbours_padded_beyond_k(X):
    model = ItemKNN(K=4, weighting="none", alpha=0.5).fit(X)
    items, scores = model.similar_items([3, 5], N=7)
    assert items.shape == (2, 7)
    np.testing.assert_array_equal(items[:, 0], [3, 5])
    np.testing.assert_allclose(scores[:, 0], 1.0)  # cosine of an item with itself
    np.testing.assert_array_equal(items[:, 1:5], model.neighbours_[[3, 5]])
    assert (items[:, 5:] == -1).all() and (scores[:, 5:] == 0).all()


def test_self_similarity_follows_the_pair_formula(X):
    W = bm25_weight(X)
    dense = W.toarray().astype(np.float64)
    model = ItemKNN(K=4, shrinkage=3.0).fit(X)
    users = np.diff(X.tocsc().indptr)
    np.testing.assert_allclose(model.self_scores_, (dense**2).sum(axis=0) * users / (users + 3.0), rtol=1e-5)
    assert (ItemKNN(K=4, min_support=1000).fit(X).self_scores_ == 0).all()


def test_empty_matrix():
    model = ItemKNN(K=3).fit(csr_matrix((4, 0), dtype=np.float32))
    assert model.neighbours_.shape == (0, 3)


def dense_similarity_topk(X: csr_matrix, k: int, alpha: float | None) -> np.ndarray:
    """Reference scores: dense dot(i, j) / (‖i‖^(2α) ‖j‖^(2(1−α))), diagonal removed, top-k per row."""
    dense = X.toarray().astype(np.float64)
    sim = dense.T @ dense
    if alpha is not None:
        sq = np.square(dense).sum(axis=0)
        sim = sim / (sq[:, None] ** alpha * sq[None, :] ** (1.0 - alpha))
    np.fill_diagonal(sim, 0)
    return -np.sort(-sim, axis=1)[:, :k]


@pytest.mark.parametrize("alpha", [None, 0.2, 0.8])
def test_alpha_matches_dense_reference(X, alpha):
    _, scores, _ = item_topk(X, k=6, alpha=alpha)
    np.testing.assert_allclose(scores, dense_similarity_topk(X, 6, alpha), rtol=1e-4, atol=1e-6)


def test_alpha_half_is_cosine(X):
    nbr, scores, _ = item_topk(X, k=6, alpha=0.5)
    ref_nbr, ref_scores, _ = item_topk(X, k=6)
    np.testing.assert_array_equal(nbr, ref_nbr)
    np.testing.assert_allclose(scores, dense_similarity_topk(X, 6, 0.5), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(scores, ref_scores)


def test_raw_dot_bm25_is_implicit_bm25_similarity(X):
    model = ItemKNN(K=6, weighting="bm25", alpha=None).fit(X)
    W = model.weight(X)
    np.testing.assert_allclose(model.scores_, dense_similarity_topk(W, 6, None), rtol=1e-4, atol=1e-6)


def test_bm25_on_binary_depends_on_k1_b_through_one_ratio(X):
    """On 0/1 data BM25 scales item i by (k1+1) / (1 + k1(1-b) + k1·b·len_i/mean), so two (k1, b)
    with the same k1·b / (1 + k1(1-b)) give proportional raw-dot scores and the same neighbours; the
    UCI validation tuning (k1 0.5, b 1.0) therefore moved a single knob."""
    binary = X.copy()
    binary.data[:] = 1.0
    a = ItemKNN(K=8, weighting="bm25", alpha=None, K1=0.5, B=0.9).fit(binary)
    b = ItemKNN(K=8, weighting="bm25", alpha=None, K1=0.6, B=0.8).fit(binary)
    np.testing.assert_array_equal(a.neighbours_, b.neighbours_)
    ratio = a.scores_[a.scores_ > 0] / b.scores_[a.scores_ > 0]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)
    assert (a.K1, a.B) == (0.5, 0.9)


def test_popular_first_permutes_columns_and_leaves_the_input_alone(X):
    before = X.copy()
    P, order = popular_first(X)
    np.testing.assert_array_equal(P.toarray(), X.toarray()[:, order])
    counts = np.diff(P.tocsc().indptr)
    assert (counts[:-1] >= counts[1:]).all() and P.has_sorted_indices
    assert (X != before).nnz == 0 and not np.array_equal(order, np.arange(X.shape[1]))


def test_equal_scores_go_to_the_more_popular_item_not_the_smaller_id():
    # user 0 has item 0; items 1..4 are each a neighbour of item 0 with the same similarity, and item 4
    # has the most users: the tie must put it first, then 3, 2, 1
    rows, cols = [0], [0]
    for item, users in ((1, 1), (2, 2), (3, 3), (4, 4)):
        for u in range(1, users + 1):
            rows += [u + 10 * item, u + 10 * item]
            cols += [0, item]
    X = csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(60, 5))
    model = ItemKNN(K=4, alpha=None, weighting="none").fit(X)
    assert list(model.rank_) == [0, 4, 3, 2, 1]  # item 0 has 11 users, item j has j
    model.scores_[0, :] = np.float32(1.0)  # force exact ties among item 0's neighbours
    items, scores = model.recommend(0, X[0], N=4)
    assert list(items) == [4, 3, 2, 1] and len(set(scores)) == 1


@pytest.mark.filterwarnings("ignore:Method expects CSR input")  # raised inside implicit's own fit
@pytest.mark.parametrize("kind", ["BM25Recommender", "CosineRecommender"])
def test_same_lists_as_implicit(X, kind):
    """The defaults are implicit's BM25Recommender and (weighting "none", alpha 0.5) its CosineRecommender,
    whose K counts the item itself: recommend and similar_items agree (continuous data, so no ties)."""
    nearest_neighbours = pytest.importorskip("implicit.nearest_neighbours")
    theirs = getattr(nearest_neighbours, kind)(K=11, num_threads=1)
    theirs.fit(X, show_progress=False)
    ours = ItemKNN(K=10) if kind == "BM25Recommender" else ItemKNN(K=10, weighting="none", alpha=0.5)
    ours.fit(X, show_progress=False)
    users, items = np.arange(0, 300, 2), np.arange(X.shape[1])
    for got, want in ((ours.recommend(users, X[users], N=5), theirs.recommend(users, X[users], N=5)),
                      (ours.similar_items(items, N=11), theirs.similar_items(items, N=11))):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], np.where(want[1] < -1e30, 0, want[1]), rtol=1e-4, atol=1e-5)


def tied_matrix(seed: int) -> csr_matrix:
    """200 users × 90 items of weights 1..2 (many equal scores and equal contributions), with an empty user, an
    empty item and single-item users."""
    rng = np.random.default_rng(seed)
    X = sparse_random(200, 90, density=0.06, format="lil", random_state=rng, dtype=np.float32)
    X[0, :] = 0
    X[:, 89] = 0
    for u in (1, 2, 3):
        X[u, :] = 0
        X[u, u * 7] = 1.0
    X = csr_matrix(X)
    X.data = rng.integers(1, 3, X.nnz).astype(np.float32)
    X.eliminate_zeros()
    return X


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("exclude_seen", [True, False])
@pytest.mark.parametrize("small_entries", [0, 24, 10**9])  # no user, those of up to 3 items, every user in a table
def test_scoring_on_relabelled_items_is_the_kernel(monkeypatch, seed, exclude_seen, small_entries):
    """Items numbered by popularity (large catalogues), their users' lists merged in small tables or the
    catalogue-wide records, give the bits of the kernel on the original numbering."""
    X = tied_matrix(seed)
    model = ItemKNN(K=8, weighting="none", alpha=0.5).fit(X)
    users = np.arange(X.shape[0], dtype=np.int64)
    candidates = np.arange(X.shape[1]) % 4 != 1
    want = score_users_block(users, *_arrays(X), model.neighbours_, model.scores_, candidates, model.rank_, 12,
                             exclude_seen)
    assert score_arrays(model.neighbours_, model.scores_, candidates, model.rank_)[6] == 0  # records in cache
    monkeypatch.setattr("encore.core.itemknn.RELABEL_RECORD_BYTES", 0)
    monkeypatch.setattr("encore.core.itemknn.SMALL_ENTRIES", small_entries)
    for block_size in (None, 9):
        got = score_users(users, X, model.neighbours_, model.scores_, 12, candidates, exclude_seen, block_size,
                          model.rank_)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)
    arrays = score_arrays(model.neighbours_, model.scores_, candidates, model.rank_)  # a cluster task's block
    assert arrays[4] is not None and arrays[6] == small_entries
    block = (np.arange(50, dtype=np.int64), csr_arrays(X[50:100]))
    for g, w in zip(score_block(block, *arrays, 12, exclude_seen), want, strict=True):
        np.testing.assert_array_equal(g, w[50:100])


@pytest.mark.parametrize("kind", [ItemKNN, SparseEASE])
def test_scoring_arrays_are_kept_per_mask_and_not_pickled(X, kind):
    """A list model makes its scoring arrays once per candidate mask and lists: the same lists as a fresh copy
    gives, made again for another mask or after a refit, and left out of a pickled copy."""
    model = kind(K=10).fit(X)
    users = np.arange(0, 300, 7)
    masks = [np.arange(X.shape[1]) % 3 != 0, np.arange(X.shape[1]) % 4 != 1]

    def lists(m, mask):
        return m.recommend(users, X[users], N=8, candidates=mask, return_because=True)

    first = lists(model, masks[0])
    kept = model._kept[3]
    for got, want in zip(lists(model, masks[0]), first, strict=True):
        np.testing.assert_array_equal(got, want)
    assert model._kept[3] is kept
    fresh = pickle.loads(pickle.dumps(model))
    assert "_kept" not in fresh.__dict__
    for got, want in zip(lists(model, masks[1]), lists(fresh, masks[1]), strict=True):
        np.testing.assert_array_equal(got, want)
    assert model._kept[3] is not kept
    model.fit(X[::2])
    for got, want in zip(lists(model, masks[1]), lists(kind(K=10).fit(X[::2]), masks[1]), strict=True):
        np.testing.assert_array_equal(got, want)
