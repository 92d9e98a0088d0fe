"""Item-item k-nearest-neighbours: top-K neighbours per item and history-based scoring.

The heavy lifting is in ``encore.core.kernels``; this module splits items (for fitting) and users (for
recommending) into blocks and loops over them in-process. ``encore.dist.fit`` runs the same block
functions as Dask tasks. Results are bit-identical whatever the number of workers or blocks, because each
row is computed independently in a fixed order.
"""

import copy
from collections.abc import Iterator
from itertools import pairwise

import numpy as np
from scipy.sparse import csr_matrix, diags

from encore.core.base import Recommender, check_user_items, padded
from encore.core.kernels import SMALL_ENTRIES, cosine_topk_block, relabel_lists, score_users_relabelled
from encore.core.weighting import bm25_weight, iuf_weight

WEIGHTINGS = ("none", "bm25", "iuf")
MIN_ROWS_PER_BLOCK = 256
BLOCKS_PER_THREAD = 32  # many small blocks, handed out as threads free up (see plan_blocks)


def csr_arrays(X: csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr int64, indices int32, data float32) of a CSR: one kernel signature for every input (no copy
    when the dtypes already match)."""
    return np.asarray(X.indptr, np.int64), np.asarray(X.indices, np.int32), np.asarray(X.data, np.float32)


def block_bounds(cost: np.ndarray, n_blocks: int) -> np.ndarray:
    """Boundaries cutting rows into at most ``n_blocks`` contiguous blocks of about equal cost."""
    n = cost.size
    if n == 0:
        return np.zeros(1, np.int64)
    cum = np.cumsum(cost, dtype=np.float64)
    targets = cum[-1] * np.arange(1, max(1, n_blocks)) / max(1, n_blocks)
    inner = np.searchsorted(cum, targets, side="left") + 1
    return np.unique(np.concatenate([[0], inner.clip(1, n), [n]])).astype(np.int64)


def plan_blocks(cost: np.ndarray, block_size: int | None, threads: int = 1) -> np.ndarray:
    """Fixed-size blocks when ``block_size`` is given, else ``BLOCKS_PER_THREAD`` cost-balanced blocks per
    worker thread (``threads``).

    The cost (pair visits) is only an estimate: the least popular items take longer per visit than the
    most popular (``benchmarks/contention.py --matrix M --popular-first`` measures it), so many small
    blocks, handed to workers as they free up, keep them equally busy where a few big ones leave one
    waiting on the last.
    """
    n = cost.size
    if block_size is not None:
        return np.unique(np.append(np.arange(0, n, block_size), n)).astype(np.int64)
    n_blocks = min(-(-n // MIN_ROWS_PER_BLOCK), BLOCKS_PER_THREAD * threads)
    return block_bounds(cost, n_blocks)


def topk_block(bounds, xt, x, norms, ids, visits, k, min_support, shrinkage):
    """Neighbours of the items in ``bounds`` (one block: a loop step here, a task on a cluster)."""
    return cosine_topk_block(bounds[0], bounds[1], *xt, *x, norms, ids, visits, k, min_support, shrinkage)


def score_block(block, nbr, score, candidate, rank, column, ids, small_entries, n, exclude_seen):
    """Top-n items for one block of (users, history CSR arrays), on the items as :func:`score_arrays` numbered
    them: the block's history indices are relabelled by ``column`` when it is not None; users with at most
    ``small_entries`` list entries merge them in a small table."""
    users, (indptr, indices, data) = block
    if column is not None:
        indices = column[indices]
    return score_users_relabelled(users, indptr, indices, data, nbr, score, candidate, rank, ids, n, exclude_seen,
                                  small_entries)


def popularity_rank(user_items: csr_matrix) -> np.ndarray:
    """Each item's place (int32) when items are ordered by number of users, most first, then by index.

    Scoring breaks equal scores by it: of two equally similar listings the one more people bid on
    comes first, rather than whichever has the smaller id.
    """
    X = check_user_items(user_items)
    order = np.argsort(-np.bincount(X.indices, minlength=X.shape[1]), kind="stable")
    rank = np.empty(len(order), np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return rank


def stack(parts: Iterator[tuple], bounds: list[tuple[int, int]], rows: int, width: int,
          at: np.ndarray | None = None) -> tuple:
    """Per-block kernel outputs (items int32, scores float32, third int32) stacked row-wise as they arrive,
    block rows [a, b) going to output rows ``at[a:b]`` (default: a to b).

    Filling preallocated arrays keeps one copy in memory; concatenating a list of parts would hold two.
    """
    out = empty_lists(rows, width)
    for bound, part in zip(bounds, parts, strict=True):
        put_block(out, part, bound, at)
    return out


def empty_lists(rows: int, width: int) -> tuple:
    """The three arrays :func:`stack` fills (int32, float32, int32), ``rows`` × ``width``, not initialised."""
    return tuple(np.empty((rows, width), dtype) for dtype in (np.int32, np.float32, np.int32))


def put_block(out: tuple, part: tuple, bounds: tuple[int, int], at: np.ndarray | None = None) -> tuple:
    """``out`` (:func:`empty_lists`) with one block's kernel outputs written in place into rows ``at[a:b]``
    (default: a to b), and returned: a step of :func:`stack` that a task can run, so a cluster can stack the
    blocks one at a time instead of holding them all beside the result. Writing the same block twice writes
    the same values."""
    a, b = bounds
    for dst, src in zip(out, part, strict=True):
        dst[slice(a, b) if at is None else at[a:b]] = src
    return out


def popular_first(X: csr_matrix) -> tuple[csr_matrix, np.ndarray]:
    """X with its columns ordered by number of users, most first, and the original column of each (int32).

    The similarity kernel's accumulator is indexed by column: with popular items together, most visits
    stay in a small hot region of it (``benchmarks/contention.py --order`` measures it). Results do not change: each
    item's sums add the same users in the same order, and ties are broken by original id.
    """
    order = np.argsort(-np.bincount(X.indices, minlength=X.shape[1]), kind="stable").astype(np.int32)
    new_column = np.empty_like(order)
    new_column[order] = np.arange(len(order), dtype=np.int32)
    out = csr_matrix((X.data.copy(), new_column[X.indices], X.indptr), shape=X.shape)  # sorting moves data
    out.sort_indices()
    return out, order


def _inverse_power(sq_norms: np.ndarray, power: float) -> np.ndarray:
    """sq_norms ** -power, with 0 for items without interactions."""
    out = np.zeros_like(sq_norms)
    np.power(sq_norms, -power, out=out, where=sq_norms > 0)
    return out


def _normalised(X: csr_matrix, alpha: float | None) -> tuple[csr_matrix, csr_matrix, np.ndarray]:
    """(Xt, X, norms) for the kernel so that it computes dot(i, j) / (‖i‖^(2α) · ‖j‖^(2(1−α))).

    α = 0.5 is cosine, done by the kernel's own norms; α = None is the raw dot product (implicit's
    BM25Recommender). Other values pre-scale the item rows of Xt by ‖i‖^(−2α) and the item columns
    of X by ‖j‖^(−2(1−α)), since the kernel reads item i from Xt and its neighbours j from X.
    """
    n_items = X.shape[1]
    sq_norms = np.bincount(X.indices, weights=np.square(X.data, dtype=np.float64), minlength=n_items)
    if alpha == 0.5:
        Xt = X.T.tocsr()
        Xt.sort_indices()
        return Xt, X, np.sqrt(sq_norms)
    if alpha is not None:
        Xt = (X @ diags(_inverse_power(sq_norms, alpha))).T.tocsr()
        X = check_user_items(X @ diags(_inverse_power(sq_norms, 1.0 - alpha)))
    else:
        Xt = X.T.tocsr()
    Xt.sort_indices()
    return Xt, X, np.ones(n_items)


def topk_inputs(user_items: csr_matrix, k: int, min_support: int, shrinkage: float, block_size: int | None,
                alpha: float | None, threads: int = 1) -> tuple[list[tuple[int, int]], tuple, tuple, int, np.ndarray]:
    """Item blocks, the kernel's shared arrays (Xt, X, norms, ids, :func:`row_visits`) and settings (k,
    min_support, shrinkage), the number of items and each row's original item."""
    X, ids = popular_first(check_user_items(user_items))
    n_items = X.shape[1]
    Xt, X, norms = _normalised(X, alpha)
    visits = row_visits(X)
    blocks = list(pairwise(plan_blocks(visits + 1.0, block_size, threads).tolist()))
    arrays = (csr_arrays(Xt), csr_arrays(X), norms, ids, visits)
    return blocks, arrays, (int(k), int(min_support), float(shrinkage)), n_items, ids


def row_visits(X: csr_matrix) -> np.ndarray:
    """Pair visits of each item's row of the similarity product (int64): Σ deg(u) over the item's users."""
    deg = np.diff(X.indptr)
    return np.bincount(X.indices, weights=np.repeat(deg, deg), minlength=X.shape[1]).astype(np.int64)


def item_topk(
    user_items: csr_matrix,
    k: int = 50,
    min_support: int = 1,
    shrinkage: float = 0.0,
    block_size: int | None = None,
    alpha: float | None = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k neighbours of every item of an already weighted (and capped) user × item matrix.

    The similarity is dot(i, j) / (‖i‖^(2α) · ‖j‖^(2(1−α))): cosine at α = 0.5 (the default),
    the raw dot product with α = None. Returns (neighbours int32, scores float32, support int32),
    each n_items × k, best first, padded with -1 / 0 / 0. Memory stays O(n_items × k): the
    item × item product is never materialised.
    """
    blocks, arrays, settings, n_items, ids = topk_inputs(user_items, k, min_support, shrinkage, block_size, alpha)
    return stack((topk_block(block, *arrays, *settings) for block in blocks), blocks, n_items, settings[0], at=ids)


def self_similarity(xt: tuple, ids: np.ndarray, alpha: float | None, min_support: int, shrinkage: float
                    ) -> np.ndarray:
    """Each item's similarity to itself (float32, by original item id) under the kernel's formula, from the
    kernel's item × user arrays ``xt`` (row r is item ``ids[r]``); 0 for items without users.

    dot(i, i) / (‖i‖^(2α) · ‖i‖^(2(1−α))) is 1 for any α and ‖i‖² for the raw dot product (α = None, where
    ``xt`` is not rescaled); the item's own support is its number of users, so ``min_support`` and
    ``shrinkage`` apply as to a pair.
    """
    indptr, _, data = xt
    support = np.diff(indptr)
    rows = np.repeat(np.arange(support.size, dtype=np.int32), support)
    sq = np.bincount(rows, weights=np.square(data, dtype=np.float64), minlength=support.size)
    own = sq if alpha is None else (sq > 0).astype(np.float64)
    if shrinkage > 0:
        own = own * support / (support + shrinkage)
    own[(support < min_support) | (sq <= 0)] = 0.0
    out = np.empty(support.size, np.float32)
    out[ids] = own
    return out


def fill(model: "ItemKNN", parts: Iterator[tuple], blocks: list[tuple[int, int]], n_items: int, ids: np.ndarray,
         xt: tuple) -> "ItemKNN":
    """``model`` given its neighbour lists, stacked from the block results, and ``self_scores_`` from the
    item × user arrays ``xt`` the blocks read: how every way of fitting ends."""
    return with_lists(model, stack(parts, blocks, n_items, model.K, at=ids), ids, xt)


def with_lists(model: "ItemKNN", lists: tuple, ids: np.ndarray, xt: tuple) -> "ItemKNN":
    """``model`` given its stacked neighbour lists (neighbours, scores, support) and ``self_scores_`` (see
    :func:`fill`)."""
    model.neighbours_, model.scores_, model.support_ = lists
    model.self_scores_ = self_similarity(xt, ids, model.alpha, model.min_support, model.shrinkage)
    return model


def fitted(model: "ItemKNN", lists: tuple, ids: np.ndarray, xt: tuple) -> "ItemKNN":
    """A fitted copy of ``model`` given its stacked lists (what a cluster task returns, so the lists never pass
    the client)."""
    return with_lists(copy.copy(model), lists, ids, xt)


def score_inputs(user_items: csr_matrix, userids: np.ndarray, n_items: int, candidates: np.ndarray | None
                 ) -> tuple[csr_matrix, np.ndarray, np.ndarray]:
    """Checked scoring inputs: float32 CSR, int64 user rows and a boolean candidate mask over items."""
    X = check_user_items(user_items)
    if X.shape[1] != n_items:
        raise ValueError(f"user_items has {X.shape[1]} items, the neighbour lists {n_items}")
    candidate = np.ones(n_items, np.bool_) if candidates is None else np.asarray(candidates, np.bool_)
    if candidate.shape != (n_items,):
        raise ValueError("candidates must be a boolean mask over items")
    return X, np.asarray(userids, dtype=np.int64), candidate


RELABEL_RECORD_BYTES = 2 << 20  # catalogues whose 24-byte scoring records outgrow this (one core's L2) are relabelled


def score_arrays(neighbours: np.ndarray, scores: np.ndarray, candidate: np.ndarray, rank: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, int]:
    """The scoring kernel's shared arrays and setting (lists, candidate mask, rank, ``column``, ids,
    ``small_entries``: see :func:`score_block`); equal scores go by ``rank`` (default: item index).

    On a catalogue whose per-item scoring records (24 bytes each) exceed ``RELABEL_RECORD_BYTES``, items are
    numbered by ``rank`` (``column`` maps an item to its number, ``ids`` back): the popular items that most
    list entries update then share a small, cache-resident stretch of the records, and their lists a
    contiguous stretch of rows. There, users with at most ``SMALL_ENTRIES`` list entries merge them in a table
    of their own, which stays in the fastest caches; on a smaller catalogue the records stay in the core's
    cache and are faster. The output is the same bits either way.
    """
    n_items = len(candidate)
    rank = np.arange(n_items, dtype=np.int32) if rank is None else np.asarray(rank, np.int32)
    if n_items * 24 <= RELABEL_RECORD_BYTES:
        return (np.ascontiguousarray(neighbours, np.int32), np.ascontiguousarray(scores, np.float32), candidate,
                rank, None, np.arange(n_items, dtype=np.int32), 0)
    ids = np.empty(n_items, np.int32)
    ids[rank] = np.arange(n_items, dtype=np.int32)
    lists, list_scores = relabel_lists(np.asarray(neighbours, np.int32), np.asarray(scores, np.float32), ids, rank)
    return lists, list_scores, candidate[ids], np.arange(n_items, dtype=np.int32), rank, ids, SMALL_ENTRIES


def score_rows(model: Recommender, user_items: csr_matrix, N: int, mask: np.ndarray | None, exclude_seen: bool
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`score_users` of every row of ``user_items`` on a list model's ``neighbours_``, ``scores_`` and
    ``rank_`` (ItemKNN's, SparseEASE's): one kernel call, or blocks of its ``block_size`` users when set, on
    the scoring arrays kept for ``mask`` (:func:`kept_score_arrays`)."""
    rows = np.arange(user_items.shape[0], dtype=np.int64)
    candidate = np.ones(model.n_items, np.bool_) if mask is None else mask
    return score_users(rows, user_items, model.neighbours_, model.scores_, N, mask, exclude_seen,
                       model.block_size or max(1, rows.size), model.rank_, kept_score_arrays(model, candidate))


def kept_score_arrays(model: Recommender, candidate: np.ndarray) -> tuple:
    """:func:`score_arrays` of ``model``'s lists (``neighbours_``, ``scores_``, ``rank_``) for ``candidate``, kept
    on the model for the next call with the same mask and lists: a worker scores every block of a run with one
    mask, and on a large catalogue making them is a pass over every list. Two threads may both make them; they
    make the same arrays. Not pickled (``Recommender.__getstate__``)."""
    key = np.packbits(candidate).tobytes()
    kept = model.__dict__.get("_kept")
    if kept is None or kept[0] != key or kept[1] is not model.neighbours_ or kept[2] is not model.scores_:
        kept = (key, model.neighbours_, model.scores_,
                score_arrays(model.neighbours_, model.scores_, candidate, model.rank_))
        model._kept = kept
    return kept[3]


def score_users(
    userids: np.ndarray,
    user_items: csr_matrix,
    neighbours: np.ndarray,
    scores: np.ndarray,
    N: int = 10,
    candidates: np.ndarray | None = None,
    exclude_seen: bool = True,
    block_size: int | None = None,
    rank: np.ndarray | None = None,
    arrays: tuple | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-N (items, scores, because) for rows ``userids`` of ``user_items`` from neighbour lists.

    score(u, j) = Σ_i w_ui · sim(i, j) over the user's history items i; ``because`` is the history
    item contributing most. Items where ``candidates`` is False, and seen items when
    ``exclude_seen``, are never returned. Equal scores go by ``rank`` (default: item index). Padded
    with -1 / 0 / -1. ``arrays``: :func:`score_arrays` of these lists and mask, when already made.
    """
    X, userids, candidate = score_inputs(user_items, userids, neighbours.shape[0], candidates)
    spans = list(pairwise(plan_blocks(np.diff(X.indptr)[userids] + 1, block_size).tolist()))
    nbr, score, candidate, rank, column, ids, small = arrays or score_arrays(neighbours, scores, candidate, rank)
    indptr, indices, data = csr_arrays(X)
    x = (indptr, indices if column is None else column[indices], data)  # relabelled once for every block
    return stack((score_block((userids[a:b], x), nbr, score, candidate, rank, None, ids, small, int(N),
                              bool(exclude_seen))
                  for a, b in spans), spans, len(userids), N)


def first_kept(ids: np.ndarray, scores: np.ndarray, keep: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
    """The first N kept (ids, scores) of each row, in row order, padded with -1 / 0."""
    order = np.argsort(~keep, axis=1, kind="stable")[:, :N]
    kept = np.take_along_axis(keep, order, axis=1)
    out_ids, out_scores, _ = padded(ids.shape[0], N)
    width = order.shape[1]
    out_ids[:, :width] = np.where(kept, np.take_along_axis(ids, order, axis=1), -1)
    out_scores[:, :width] = np.where(kept, np.take_along_axis(scores, order, axis=1), 0)
    return out_ids, out_scores


class ItemKNN(Recommender):
    """Item-item k-NN: BM25-weighted interactions and their raw dot product by default, as the daily job runs.

    One class rather than implicit's one per similarity (CosineRecommender, BM25Recommender,
    TFIDFRecommender): the similarity is two independent choices, the weighting and the normalisation
    ``alpha``, plus ``shrinkage`` and ``min_support``, and one class per combination would multiply classes.
    The defaults are the daily job's (``encore.config.ModelSettings``), so ``ItemKNN()`` is what runs every
    day. implicit's ``K`` counts the item itself among its neighbours, encore's other items only, so
    ``BM25Recommender(K=K + 1, K1=K1, B=B)`` gives the lists of ``ItemKNN(K, K1, B)`` and
    ``CosineRecommender(K=K + 1)`` those of ``ItemKNN(K, weighting="none", alpha=0.5)`` (``recommend`` and
    ``similar_items`` alike); TF-IDF has no equivalent.

    Parameters
    ----------
    K : neighbours kept per item.
    K1, B : BM25 parameters (``weighting="bm25"``), as implicit's.
    weighting : "bm25", "none" or "iuf" applied before the similarity.
    alpha : normalisation dot(i, j) / (‖i‖^(2α) ‖j‖^(2(1−α))) of history item i and neighbour j:
        0.5 is cosine, larger favours popular neighbours; None is the raw dot product, which with
        ``weighting="bm25"`` is implicit's BM25Recommender (BM25 already normalises item length).
    min_support : minimum number of users a pair of items must share to be neighbours.
    shrinkage : if > 0, the similarity is multiplied by support / (support + shrinkage).
    block_size : items (fit) and users (recommend) per block; None picks ~32 cost-balanced blocks
        per worker thread, at least 256 rows each, for the fit and for Dask tasks, and scores the users of
        one ``recommend`` call in one block.

    Fitted attributes: ``neighbours_`` (int32 n_items × K, other items only), ``scores_`` (float32),
    ``support_`` (int32), padded with -1 / 0 / 0; ``self_scores_`` (float32 per item, its similarity to
    itself, for :meth:`similar_items`); ``rank_`` (int32 per item, :func:`popularity_rank`) orders equal
    recommendation scores.

    Scores never count an item's similarity to itself, so with ``filter_already_liked_items=False`` a seen
    item scores from its neighbours only (implicit's item-item models add w · sim(i, i)); with the default
    filter both give the same lists. ``recommend(..., return_because=True)`` adds the history item that
    contributed most to each recommendation.
    """

    fitted_arrays = ("neighbours_", "scores_", "support_", "self_scores_", "rank_")

    def __init__(
        self,
        K: int = 50,
        K1: float = 1.2,
        B: float = 0.75,
        weighting: str = "bm25",
        alpha: float | None = None,
        min_support: int = 1,
        shrinkage: float = 0.0,
        block_size: int | None = None,
    ):
        self.K = K
        self.K1 = K1
        self.B = B
        self.weighting = weighting
        self.alpha = alpha
        self.min_support = min_support
        self.shrinkage = shrinkage
        self.block_size = block_size

    def weight(self, user_items: csr_matrix) -> csr_matrix:
        """Apply the configured weighting to a user × item matrix."""
        if self.weighting == "bm25":
            return bm25_weight(user_items, self.K1, self.B)
        if self.weighting == "iuf":
            return iuf_weight(user_items)
        if self.weighting == "none":
            return check_user_items(user_items)
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")

    def fit(self, user_items: csr_matrix, show_progress: bool = True) -> "ItemKNN":
        """Weight ``user_items`` (users × items, already history-capped) and compute neighbours in this
        process (``encore.dist.fit`` does it on a cluster). ``show_progress`` is accepted for implicit's
        signature; no progress bar is shown."""
        blocks, arrays, settings, n_items, ids = self.fit_plan(user_items)
        return fill(self, (topk_block(block, *arrays, *settings) for block in blocks), blocks, n_items, ids,
                    arrays[0])

    def fit_plan(self, user_items: csr_matrix, threads: int = 1) -> tuple:
        """Set ``rank_`` and return the fit's block plan (:func:`topk_inputs` of the weighted matrix), for
        :meth:`fit` here and for ``encore.dist.fit`` to run the same blocks as tasks."""
        X = check_user_items(user_items)
        self.rank_ = popularity_rank(X)
        return topk_inputs(self.weight(X), self.K, self.min_support, self.shrinkage, self.block_size, self.alpha,
                           threads)

    def _recommend(self, user_items, N, mask, exclude_seen, because):
        """History-based scores of every row (:func:`score_rows`; in one process, blocks of ``block_size``
        only add accumulator resets)."""
        return score_rows(self, user_items, N, mask, exclude_seen)

    def _similar(self, itemids, N, mask):
        """Each item itself (when it has users) and its neighbours, best first, ties keeping the item first."""
        ids = np.hstack([itemids[:, None].astype(np.int32), self.neighbours_[itemids]])
        scores = np.hstack([self.self_scores_[itemids][:, None], self.scores_[itemids]])
        order = np.argsort(-scores, axis=1, kind="stable")
        ids, scores = np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)
        keep = (ids >= 0) & (scores > 0)
        if mask is not None:
            keep &= mask[ids.clip(min=0)]
        return first_kept(ids, scores, keep, N)
