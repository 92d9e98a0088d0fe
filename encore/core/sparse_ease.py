"""Sparse EASE: EASE's ridge regression with each item's weights restricted to its item-kNN support.

EASE (Steck, WWW 2019) regresses every item column j on all other columns: B[:, j] = argmin
‖X_j − X b‖² + λ‖b‖², b_j = 0, solved for all j at once through a dense items × items inverse. The problem
separates by column, so restricting column j to a support set T gives an exact small ridge regression
b_T = (G[T, T] + λI)⁻¹ G[T, j], G = XᵀX: the feature-selection variant of SLIM (fsSLIM, Ning & Karypis,
ICDM 2011, §3.3, which picks each column's support with item-kNN) with an ℓ2 penalty only, hence closed form.

Here T_j = the items whose top-K list (``ItemKNN``, BM25 and raw dot by default) contains j, at most
``max_support`` of them (the largest co-occurrence first), and G[T, T] keeps only the pairs that are in one
another's lists (the Gram matrix sparsified to the kNN graph, as SANSA, Spišák et al. RecSys 2023, sparsifies
it before its factorisation); a pair in neither list gets ``fill`` times its co-occurrence under independence,
users(a) · users(b) / users, rather than 0, which dropping would claim (a pair outside the lists co-occurs less
than the listed pairs, not never: on the UCI validation windows 0 gives NDCG@10 0.081, the estimate 0.10,
exact counts 0.098, ``docs/quality.md``). With binary data G's entries are co-occurrence counts, which the kNN fit
already returns as ``support_``, and G's diagonal is each item's number of users; so the fit is one item-kNN
fit plus one m × m solve per item (m ≤ ``max_support``): O(items × K) memory, O(items × m³) time.

B is stored in the kNN lists' own layout (weight of history item i towards its neighbour j in the slot
of j in i's list), so scoring is item-kNN's Gustavson kernel (``encore.core.itemknn.score_users``) with
these weights, ``because`` included. When every pair of items co-occurs and K covers all items, the
result is EASE's B exactly (``tests/core/test_sparse_ease.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise

import numpy as np
from numba import njit, types
from numba.np.linalg import F_INT_nbtype, F_INT_nptype, ensure_lapack
from scipy.sparse import csr_matrix

from encore.core.base import Recommender, check_user_items
from encore.core.itemknn import ItemKNN, plan_blocks, score_rows


def binary(user_items: csr_matrix) -> csr_matrix:
    """The interaction pattern as 0/1 float32 (EASE fits best on it: ``docs/quality.md``)."""
    X = check_user_items(user_items)
    X = csr_matrix((np.ones(X.nnz, np.float32), X.indices, X.indptr), shape=X.shape)
    X.eliminate_zeros()
    return X


def in_lists(neighbours: np.ndarray, support: np.ndarray, max_support: int) -> tuple[np.ndarray, ...]:
    """For each item j, the (row i, slot t) pairs with neighbours[i, t] == j, at most ``max_support`` of
    them, largest support first then smaller i: (indptr int64, rows int32, slots int32)."""
    return _in_lists(np.ascontiguousarray(neighbours, np.int32), np.ascontiguousarray(support),
                     max(int(max_support), 0))


@njit(nogil=True, cache=True)
def _in_lists(neighbours, support, max_support):
    """:func:`in_lists` by a counting sort on j (rows stay ascending within each j), then each j's
    ``max_support`` largest supports kept by insertion, the earlier pair first on ties (a stable sort's first
    ``max_support``): O(pairs) plus the insertions, where a lexsort of all pairs is O(pairs log pairs), and
    no call of numba's merge sort, whose compilation costs seconds on a first run."""
    n_items, k = neighbours.shape
    start = np.zeros(n_items + 1, np.int64)
    for i in range(n_items):
        for t in range(k):
            if neighbours[i, t] >= 0:
                start[neighbours[i, t] + 1] += 1
    for j in range(n_items):
        start[j + 1] += start[j]
    at = start[:-1].copy()
    all_rows = np.empty(start[-1], np.int32)
    all_slots = np.empty(start[-1], np.int32)
    for i in range(n_items):
        for t in range(k):
            j = neighbours[i, t]
            if j >= 0:
                all_rows[at[j]], all_slots[at[j]] = i, t
                at[j] += 1
    indptr = np.zeros(n_items + 1, np.int64)
    for j in range(n_items):
        indptr[j + 1] = indptr[j] + min(start[j + 1] - start[j], max_support)
    rows = np.empty(indptr[-1], np.int32)
    slots = np.empty(indptr[-1], np.int32)
    kept = np.empty(max_support)  # the supports of j's pairs kept so far, largest first
    for j in range(n_items):
        first, size = indptr[j], 0
        if indptr[j + 1] == first:
            continue
        for p in range(start[j], start[j + 1]):
            s = support[all_rows[p], all_slots[p]]
            if size == max_support and not s > kept[size - 1]:
                continue
            q = min(size, max_support - 1)
            while q > 0 and kept[q - 1] < s:
                kept[q], rows[first + q], slots[first + q] = kept[q - 1], rows[first + q - 1], slots[first + q - 1]
                q -= 1
            kept[q], rows[first + q], slots[first + q] = s, all_rows[p], all_slots[p]
            size = min(size + 1, max_support)
    return indptr, rows, slots


ensure_lapack()
# numba's wrapper of LAPACK's xgesv (scipy's), the routine np.linalg.solve calls in numba code:
# (kind, n, nrhs, a, lda, ipiv, b, ldb) -> info.
_XGESV = types.ExternalFunction("numba_xgesv", types.intc(
    types.char, types.intp, types.intp, types.CPointer(types.float64), types.intp, types.CPointer(F_INT_nbtype),
    types.CPointer(types.float64), types.intp))
_FLOAT64 = ord("d")  # xgesv's kind


@njit(nogil=True, cache=True)
def solve_transposed(at, b):
    """Solve A x = b in place for a square float64 A given as its transpose ``at`` (C order, so its buffer is
    A in LAPACK's column order): x into ``b``, ``at`` overwritten. np.linalg.solve's routine and bits without
    its copies and generic checks, whose compilation costs seconds on a first run."""
    for v in at.ravel():
        if not np.isfinite(v):
            raise np.linalg.LinAlgError("Array must not contain infs or NaNs.")
    for v in b:
        if not np.isfinite(v):
            raise np.linalg.LinAlgError("Array must not contain infs or NaNs.")
    n = len(b)
    pivots = np.empty(n, F_INT_nptype)
    if n and _XGESV(_FLOAT64, n, 1, at.ctypes, n, pivots.ctypes, b.ctypes, n) != 0:
        raise np.linalg.LinAlgError("Matrix is singular to machine precision.")


@njit(nogil=True, cache=True)
def ridge_columns(indptr, rows, slots, neighbours, support, diagonal, lam, independence, lo, hi, out,
                  diagonal_scale):
    """Solve (G[T, T] + Λ) b = G[T, j] for every item j in [lo, hi), T = rows[indptr[j]:indptr[j + 1]], into
    ``out`` (b of the entries indptr[lo]:indptr[hi], in that order). G[a, b] is ``support`` where b is in a's
    list (or a in b's), else the estimate diagonal[a] · diagonal[b] / ``independence``; G[a, a] is
    ``diagonal[a]``; Λ_aa = (diagonal_scale − 1) · diagonal[a] + λ (EDLAE's dropout penalty when
    diagonal_scale > 1). Items are independent, so blocks of items solve apart."""
    n_items, k = neighbours.shape
    pos = np.full(n_items, -1, np.int64)
    first = indptr[lo]
    for j in range(lo, hi):
        start = indptr[j]
        m = indptr[j + 1] - start
        if m == 0:
            continue
        at = np.empty((m, m))  # the transpose of the system: at[q, p] = A[p, q]
        r = np.empty(m)
        for p in range(m):
            pos[rows[start + p]] = p
        for q in range(m):
            for p in range(m):
                at[q, p] = diagonal[rows[start + p]] * diagonal[rows[start + q]] / independence
        for p in range(m):
            a = rows[start + p]
            at[p, p] = diagonal[a] * diagonal_scale + lam
            r[p] = support[a, slots[start + p]]
            for t in range(k):
                b = neighbours[a, t]
                if b < 0:
                    break
                q = pos[b]
                if q >= 0 and q != p:
                    at[p, q] = support[a, t]
                    at[q, p] = support[a, t]
        solve_transposed(at, r)
        for p in range(m):
            out[start - first + p] = r[p]
            pos[rows[start + p]] = -1


def ridge_block(bounds: tuple[int, int], indptr: np.ndarray, rows: np.ndarray, slots: np.ndarray,
                neighbours: np.ndarray, support: np.ndarray, diagonal: np.ndarray, debias: np.ndarray | None,
                lam: float, independence: float, diagonal_scale: float) -> np.ndarray:
    """The scores of items [lo, hi)'s in-list entries (float32, ``indptr[lo]:indptr[hi]`` in order): their
    ridge weights (:func:`ridge_columns`), each divided by its item's buyers^γ (``debias``; None: γ = 0)."""
    lo, hi = bounds
    out = np.empty(int(indptr[hi] - indptr[lo]))
    ridge_columns(indptr, rows, slots, neighbours, support, diagonal, lam, independence, lo, hi, out,
                  diagonal_scale)
    if debias is not None:
        out *= np.repeat(debias[lo:hi], np.diff(indptr[lo:hi + 1]))
    return out.astype(np.float32)


def own_part(bounds: tuple[int, int], arrays: tuple) -> tuple:
    """Block [lo, hi)'s own part of :meth:`SparseEASE.solve_plan`'s arrays: its items' in-lists and ``debias``,
    numbered from 0 (slices, so no copy where they are made), with the bounds that go with them. A cluster
    sends each block task only this part beside the shared lists: :func:`ridge_own` on it gives the scores
    :func:`ridge_block` gives on the whole plan."""
    lo, hi = bounds
    indptr, rows, slots, _, _, _, debias = arrays
    a, b = int(indptr[lo]), int(indptr[hi])
    return (0, hi - lo), indptr[lo:hi + 1] - a, rows[a:b], slots[a:b], None if debias is None else debias[lo:hi]


def ridge_own(own: tuple, neighbours: np.ndarray, support: np.ndarray, diagonal: np.ndarray, lam: float,
              independence: float, diagonal_scale: float) -> np.ndarray:
    """:func:`ridge_block` of a block given its :func:`own_part` and the plan's shared lists and diagonal."""
    bounds, indptr, rows, slots, debias = own
    return ridge_block(bounds, indptr, rows, slots, neighbours, support, diagonal, debias, lam, independence,
                       diagonal_scale)


def with_scores(model: SparseEASE, parts: Iterable[np.ndarray], arrays: tuple) -> SparseEASE:
    """``model`` given its support lists and the scores of :func:`ridge_block` over blocks covering every
    item in order (``arrays``: :meth:`SparseEASE.solve_plan`'s): how every way of solving ends. Each block's
    scores are put in place as they come, so no second copy of them all is made."""
    _, rows, slots, neighbours = arrays[:4]
    scores = np.zeros(neighbours.shape, np.float32)
    at = 0
    for part in parts:
        scores[rows[at:at + len(part)], slots[at:at + len(part)]] = part
        at += len(part)
    model.neighbours_, model.scores_ = neighbours, scores
    return model


class SparseEASE(Recommender):
    """EASE restricted to each item's item-kNN support; score(u, j) = Σ_i x_ui · B_ij / buyers(j)^γ.

    Parameters
    ----------
    lam : L2 regularisation λ on the Gram matrix's diagonal (as EASE's).
    K, K1, B, weighting, alpha, min_support : the item-kNN that picks the support (``ItemKNN``'s meaning;
        the defaults are the daily job's item-kNN).
    max_support : at most this many history items regress on each item j (those with the most users
        in common with j): the per-item solve is max_support³.
    fill : a pair of support items outside both kNN lists is taken to co-occur fill · users(a) · users(b) /
        users times (0: never).
    popularity_power : γ ≥ 0, every weight towards j divided by buyers(j)^γ (as ``EASE``).
    dropout : p in [0, 1), EDLAE's penalty p / (1 − p) · users(a) added to λ on each support item's diagonal
        (as ``EASE``; 0: off).
    block_size : users per scoring block (``ItemKNN``'s meaning).

    The model is fitted on the binary pattern of ``user_items``; ``recommend`` scores whatever history
    weights it is given. Fitted attributes: ``neighbours_`` (int32 items × K, the support lists),
    ``scores_`` (float32, the regression weights in the same slots), ``popularity_`` (int64 users per item)
    and ``rank_`` (ties, as ``ItemKNN``). Only positive scores are recommended. No ``similar_items``:
    the weights are regression weights, not similarities.
    """

    fitted_arrays = ("neighbours_", "scores_", "popularity_", "rank_")

    def __init__(self, lam: float = 400.0, K: int = 50, K1: float = 1.2, B: float = 0.75, weighting: str = "bm25",
                 alpha: float | None = None, min_support: int = 1, max_support: int = 100,
                 fill: float = 2.0, popularity_power: float = 0.0, block_size: int | None = None,
                 dropout: float = 0.0):
        self.lam = lam
        self.K = K
        self.K1 = K1
        self.B = B
        self.weighting = weighting
        self.alpha = alpha
        self.min_support = min_support
        self.max_support = max_support
        self.popularity_power = popularity_power
        self.block_size = block_size
        self.fill = fill
        self.dropout = dropout

    def knn(self) -> ItemKNN:
        """The unfitted item-kNN that picks each item's support."""
        return ItemKNN(K=self.K, K1=self.K1, B=self.B, weighting=self.weighting, alpha=self.alpha,
                       min_support=self.min_support)

    def fit(self, user_items: csr_matrix, show_progress: bool = True) -> SparseEASE:
        """Fit the support kNN on the binary pattern of ``user_items``, then solve every item's ridge
        regression in this process. ``show_progress``: implicit's signature, no progress bar."""
        X = binary(user_items)
        return self.solve(self.knn().fit(X), np.bincount(X.indices, minlength=X.shape[1]), X.shape[0])

    def solve(self, knn: ItemKNN, popularity: np.ndarray, n_users: int) -> SparseEASE:
        """The ridge weights from a fitted support kNN, the users per item and the number of users.

        The kNN's ``support_`` (users in common) are the binary Gram matrix's entries whatever weights it was
        fitted on, so the daily job passes the item-kNN it fitted for its similar items."""
        blocks, arrays, settings = self.solve_plan(knn, popularity, n_users)
        return with_scores(self, (ridge_own(own_part(block, arrays), *arrays[3:6], *settings) for block in blocks),
                           arrays)

    def solve_plan(self, knn: ItemKNN, popularity: np.ndarray, n_users: int, threads: int = 1
                   ) -> tuple[list[tuple[int, int]], tuple, tuple]:
        """Check the settings, set ``popularity_`` and ``rank_``, and return the solve's item blocks
        (balanced by their m³ cost), :func:`ridge_block`'s shared arrays and its settings: for :meth:`solve`
        here and for ``encore.dist.fit`` to solve the same blocks as tasks."""
        if self.popularity_power < 0:
            raise ValueError(f"popularity_power must be >= 0, got {self.popularity_power}")
        if self.fill < 0:
            raise ValueError(f"fill must be >= 0, got {self.fill}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.max_support < 1:
            raise ValueError(f"max_support must be >= 1, got {self.max_support}")
        self.popularity_ = np.asarray(popularity, np.int64)
        order = np.argsort(-self.popularity_, kind="stable")
        self.rank_ = np.empty(order.size, np.int32)
        self.rank_[order] = np.arange(order.size, dtype=np.int32)  # popularity_rank's order
        neighbours = np.ascontiguousarray(knn.neighbours_, np.int32)
        support = np.ascontiguousarray(knn.support_, np.int32)  # users in common: counts, exact as float64 too
        indptr, rows, slots = in_lists(neighbours, support, int(self.max_support))
        m = np.diff(indptr).astype(np.float64)
        blocks = list(pairwise(plan_blocks(m ** 3 + m * neighbours.shape[1] + 1.0, None, threads).tolist()))
        debias = np.power(np.maximum(self.popularity_, 1), -float(self.popularity_power)) \
            if self.popularity_power else None
        independence = n_users / self.fill if self.fill else np.inf
        arrays = (indptr, rows, slots, neighbours, support, self.popularity_.astype(np.float64), debias)
        return blocks, arrays, (float(self.lam), float(independence), 1.0 + self.dropout / (1.0 - self.dropout))

    def _recommend(self, user_items, N, mask, exclude_seen, because):
        """item-kNN's scoring kernel on the regression weights."""
        return score_rows(self, user_items, N, mask, exclude_seen)
