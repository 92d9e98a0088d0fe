"""The numba kernels against dense numpy references on small seeded matrices."""

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse import random as sparse_random

from encore.core.itemknn import row_visits
from encore.core.kernels import SMALL_ENTRIES, cosine_topk_block, score_users_block, score_users_relabelled


def _arrays(X: csr_matrix) -> tuple:
    return X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data.astype(np.float32)


def random_matrix(n_users: int, n_items: int, density: float, seed: int) -> csr_matrix:
    """Integer-valued (1..3) user × item matrix with an empty user, an empty item and single-item users."""
    rng = np.random.default_rng(seed)
    X = sparse_random(n_users, n_items, density=density, format="lil", random_state=rng, dtype=np.float32)
    X[0, :] = 0
    X[:, n_items - 1] = 0
    X[1, :] = 0
    X[1, 2] = 1.0
    X = csr_matrix(X)
    X.data = rng.integers(1, 4, X.nnz).astype(np.float32)
    X.eliminate_zeros()
    X.sort_indices()
    return X


def norms_of(X: csr_matrix) -> np.ndarray:
    return np.sqrt(np.bincount(X.indices, weights=X.data.astype(np.float64) ** 2, minlength=X.shape[1]))


def run_topk(X: csr_matrix, k: int, min_support: int = 1, shrinkage: float = 0.0) -> tuple:
    Xt = X.T.tocsr()
    ids = np.arange(X.shape[1], dtype=np.int32)
    return cosine_topk_block(0, X.shape[1], *_arrays(Xt), *_arrays(X), norms_of(X), ids, row_visits(X), k,
                             min_support, shrinkage)


def dense_topk(X: csr_matrix, k: int, min_support: int = 1, shrinkage: float = 0.0) -> tuple:
    """Reference: full dense cosine, filtered and sorted by (score desc, item asc)."""
    D = X.toarray().astype(np.float64)
    dot = (D.T @ D).astype(np.float32).astype(np.float64)
    support = (D.T != 0).astype(np.int64) @ (D != 0).astype(np.int64)
    norms = norms_of(X)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = dot / np.outer(norms, norms)
    if shrinkage > 0:
        score = score * (support / (support + shrinkage))
    score32 = np.nan_to_num(score).astype(np.float32)
    n = X.shape[1]
    nbr = np.full((n, k), -1, np.int32)
    out_s = np.zeros((n, k), np.float32)
    out_c = np.zeros((n, k), np.int32)
    for i in range(n):
        keep = np.flatnonzero((np.arange(n) != i) & (support[i] >= min_support) & (score32[i] > 0))
        order = keep[np.lexsort((keep, -score32[i, keep]))][:k]
        nbr[i, : order.size] = order
        out_s[i, : order.size] = score32[i, order]
        out_c[i, : order.size] = support[i, order]
    return nbr, out_s, out_c


@pytest.mark.parametrize(
    ("shape", "density", "k", "min_support", "shrinkage"),
    [
        ((40, 25), 0.15, 5, 1, 0.0),
        ((60, 40), 0.1, 50, 1, 0.0),
        ((10, 70), 0.3, 8, 2, 0.0),
        ((80, 30), 0.2, 10, 3, 5.0),
        ((5, 12), 0.5, 3, 1, 1.0),
        ((600, 500), 0.003, 5, 1, 0.0),  # light rows: the sparse touched-list path
    ],
)
def test_cosine_topk_matches_dense_reference(shape, density, k, min_support, shrinkage):
    X = random_matrix(*shape, density, seed=sum(shape))
    got = run_topk(X, k, min_support, shrinkage)
    want = dense_topk(X, k, min_support, shrinkage)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def test_cosine_topk_invariants():
    X = random_matrix(50, 30, 0.2, seed=7)
    nbr, score, support = run_topk(X, k=6, min_support=2)
    rows = np.arange(nbr.shape[0])[:, None]
    assert not (nbr == rows).any()
    assert (support[nbr >= 0] >= 2).all()
    assert (nbr[-1] == -1).all() and (score[-1] == 0).all()
    assert (np.diff(score, axis=1) <= 0).all()


def test_cosine_topk_block_equals_slice_of_full_run():
    X = random_matrix(60, 40, 0.15, seed=3)
    full = run_topk(X, k=7)
    ids = np.arange(X.shape[1], dtype=np.int32)
    part = cosine_topk_block(10, 25, *_arrays(X.T.tocsr()), *_arrays(X), norms_of(X), ids, row_visits(X), 7, 1,
                             0.0)
    for f, p in zip(full, part, strict=True):
        np.testing.assert_array_equal(f[10:25], p)


def test_cosine_topk_float_weights_close_to_reference():
    rng = np.random.default_rng(11)
    X = random_matrix(70, 35, 0.2, seed=11)
    X.data = rng.uniform(0.1, 2.0, X.nnz).astype(np.float32)
    nbr, score, _ = run_topk(X, k=35)
    _, want_score, _ = dense_topk(X, k=35)
    np.testing.assert_allclose(score, want_score, rtol=1e-5, atol=1e-6)
    D = X.toarray().astype(np.float64)
    cos = (D.T @ D) / np.maximum(np.outer(norms_of(X), norms_of(X)), 1e-30)
    valid = nbr >= 0
    rows = np.broadcast_to(np.arange(nbr.shape[0])[:, None], nbr.shape)
    np.testing.assert_allclose(score[valid], cos[rows[valid], nbr[valid]], rtol=1e-5)


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_cosine_topk_cuts_many_tied_candidates_to_the_smallest_ids(k):
    """Every pair ties at cosine 1 and each row has many more candidates than k, so the kept candidates are cut
    back many times: what is left must still be the k smallest other ids, as the dense reference orders ties."""
    X = csr_matrix(np.ones((6, 60), np.float32))
    nbr, score, support = run_topk(X, k)
    for i in range(X.shape[1]):
        np.testing.assert_array_equal(nbr[i], [j for j in range(X.shape[1]) if j != i][:k])
    assert (score == 1.0).all() and (support == 6).all()
    for g, w in zip((nbr, score, support), dense_topk(X, k), strict=True):
        np.testing.assert_array_equal(g, w)


def random_neighbours(n_items: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour lists with distinct non-self items, scores on a 1/16 grid (many exact ties)."""
    rng = np.random.default_rng(seed)
    nbr = np.full((n_items, k), -1, np.int32)
    score = np.zeros((n_items, k), np.float32)
    for i in range(n_items):
        others = np.delete(np.arange(n_items), i)
        m = rng.integers(0, min(k, others.size) + 1)
        nbr[i, :m] = rng.choice(others, m, replace=False)
        score[i, :m] = np.sort(rng.integers(1, 17, m) / 16)[::-1]
    return nbr, score


def dense_scores(X, users, nbr, score, candidate, n, exclude_seen) -> tuple:
    """Reference: history row times a dense similarity matrix, argmax contribution for because."""
    n_items = nbr.shape[0]
    S = np.zeros((n_items, n_items))
    for i in range(n_items):
        valid = nbr[i] >= 0
        S[i, nbr[i, valid]] = score[i, valid]
    D = X.toarray().astype(np.float64)
    items = np.full((len(users), n), -1, np.int32)
    out_s = np.zeros((len(users), n), np.float32)
    because = np.full((len(users), n), -1, np.int32)
    for r, u in enumerate(users):
        total = (D[u] @ S).astype(np.float32)
        ok = candidate & (total > 0)
        if exclude_seen:
            ok &= D[u] == 0
        keep = np.flatnonzero(ok)
        order = keep[np.lexsort((keep, -total[keep]))][:n]
        items[r, : order.size] = order
        out_s[r, : order.size] = total[order]
        because[r, : order.size] = np.argmax(D[u][:, None] * S[:, order], axis=0)
    return items, out_s, because


@pytest.mark.parametrize("small_entries", [0, SMALL_ENTRIES])  # catalogue-wide records / a table per user
@pytest.mark.parametrize(
    ("n_users", "n_items", "k", "n", "exclude_seen"),
    [(40, 30, 5, 4, True), (30, 20, 8, 25, True), (25, 50, 3, 10, False), (12, 6, 10, 10, True)],
)
def test_score_users_matches_dense_reference(n_users, n_items, k, n, exclude_seen, small_entries):
    X = random_matrix(n_users, n_items, 0.2, seed=n_users + n_items)
    nbr, score = random_neighbours(n_items, k, seed=k)
    candidate = np.random.default_rng(n).random(n_items) > 0.2
    users = np.arange(n_users, dtype=np.int64)[::-1].copy()
    ids = np.arange(n_items, dtype=np.int32)
    got = score_users_relabelled(users, *_arrays(X), nbr, score, candidate, ids, ids, n, exclude_seen, small_entries)
    want = dense_scores(X, users, nbr, score, candidate, n, exclude_seen)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def test_score_users_excludes_seen_and_non_candidates():
    X = random_matrix(30, 20, 0.3, seed=5)
    nbr, score = random_neighbours(20, 6, seed=5)
    candidate = np.ones(20, bool)
    candidate[::3] = False
    users = np.arange(30, dtype=np.int64)
    items, scores, because = score_users_block(users, *_arrays(X), nbr, score, candidate, np.arange(20, dtype=np.int32), 20,
                                                 True)
    for u in users:
        got = items[u][items[u] >= 0]
        assert not set(got) & set(X[u].indices)
        assert candidate[got].all()
        assert set(because[u][items[u] >= 0]) <= set(X[u].indices)
    assert (items[0] == -1).all() and (because[0] == -1).all() and (scores[0] == 0).all()


def test_score_users_reads_non_contiguous_neighbour_lists():
    """The kernel prefetches lists by flat offset: on a strided view (a prefix of wider lists) the hint points
    elsewhere, and the results must still be those of the contiguous copy."""
    X = random_matrix(30, 20, 0.3, seed=9)
    wide_nbr, wide_score = random_neighbours(20, 12, seed=9)
    nbr, score = wide_nbr[:, :6], wide_score[:, :6]
    assert not nbr.flags.c_contiguous
    users = np.arange(30, dtype=np.int64)
    args = (np.ones(20, bool), np.arange(20, dtype=np.int32), 8, True)
    got = score_users_block(users, *_arrays(X), nbr, score, *args)
    want = score_users_block(users, *_arrays(X), np.ascontiguousarray(nbr), np.ascontiguousarray(score), *args)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def float_history(n_users: int, n_items: int, seed: int) -> csr_matrix:
    """Float weights (sums depend on the order of additions), with an empty user, single-item users and users of
    every history length up to the longest, in unsorted column order."""
    X = random_matrix(n_users, n_items, 0.12, seed=seed)
    rng = np.random.default_rng(seed)
    X.data = rng.uniform(0.3, 3.0, X.nnz).astype(np.float32)
    X.data[::7] = 1.0  # equal contributions (ties for ``because``)
    return X


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("exclude_seen", [True, False])
@pytest.mark.parametrize("masked", [True, False])
def test_small_tables_give_the_bits_of_the_records(seed, exclude_seen, masked):
    """Whatever the crossover between a table per user and the catalogue-wide records, every output is the same
    bits: float sums added in the same order, ties (equal scores, equal contributions) broken the same way, on
    items relabelled by a permutation."""
    n_items, k = 300, 12
    X = float_history(120, n_items, seed)
    nbr, score = random_neighbours(n_items, k, seed=seed)
    score[:, ::3] = np.float32(0.1)  # non-dyadic equal scores
    score = -np.sort(-score, axis=1)
    rng = np.random.default_rng(seed + 10)
    candidate = rng.random(n_items) > 0.25 if masked else np.ones(n_items, bool)
    rank = rng.permutation(n_items).astype(np.int32)
    ids = rng.permutation(n_items).astype(np.int32)
    users = rng.permutation(X.shape[0]).astype(np.int64)
    lengths = np.diff(X.indptr)
    assert lengths.min() == 0 and (lengths == 1).any()
    want = score_users_relabelled(users, *_arrays(X), nbr, score, candidate, rank, ids, 15, exclude_seen, 0)
    for small_entries in (int(np.median(lengths)) * k, 10**9):  # mixed, then every user in a table
        got = score_users_relabelled(users, *_arrays(X), nbr, score, candidate, rank, ids, 15, exclude_seen,
                                     small_entries)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g.view(np.uint8), w.view(np.uint8))


def test_small_tables_probe_past_colliding_items():
    """Items equal in their low bits share a first slot: the table probes on and keeps them apart."""
    n_items, k = 1024, 6
    nbr = np.full((n_items, k), -1, np.int32)
    score = np.zeros((n_items, k), np.float32)
    for i in range(8):
        nbr[i] = (i + 1 + np.arange(k)) * 64  # multiples of 64: two low-bits slots in these users' tables
        score[i] = np.float32(1.0) - np.arange(k, dtype=np.float32) / 8
    X = csr_matrix(np.array([[1, 1, 0, 0, 0, 0, 0, 0], [1, 0, 1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1, 1, 1]],
                            np.float32), shape=(3, n_items))
    users = np.arange(3, dtype=np.int64)
    ids = np.arange(n_items, dtype=np.int32)
    candidate = np.ones(n_items, bool)
    want = dense_scores(X, users, nbr, score, candidate, 10, True)
    for small_entries in (0, 10**9):
        got = score_users_relabelled(users, *_arrays(X), nbr, score, candidate, ids, ids, 10, True, small_entries)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
