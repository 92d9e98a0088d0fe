"""The core's item-kNN fitted and scored, and its sparse EASE solved, block by block as Dask tasks.

The block functions are the core's own (:func:`~encore.core.itemknn.topk_block`,
:func:`~encore.core.itemknn.score_block`, :func:`~encore.core.sparse_ease.ridge_block`), so a cluster gives
the same bits as one process.
"""

from __future__ import annotations

import copy
from concurrent.futures import CancelledError
from itertools import pairwise

import numpy as np
from distributed import Future, wait
from scipy.sparse import csr_matrix

from encore.core import itemknn as knn
from encore.core import sparse_ease
from encore.dist.blocks import Remade, current_client, imap_blocks, n_worker_threads, retrying, scatter


def item_topk(user_items: csr_matrix, k: int = 50, min_support: int = 1, shrinkage: float = 0.0,
              block_size: int | None = None, client=None, alpha: float | None = 0.5
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`encore.core.itemknn.item_topk` with one task per item block (in-process without a client)."""
    client = current_client(client)
    blocks, arrays, settings, n_items, ids = knn.topk_inputs(user_items, k, min_support, shrinkage, block_size,
                                                             alpha, n_worker_threads(client))
    parts = imap_blocks(client, knn.topk_block, blocks, arrays, settings)
    return knn.stack(parts, blocks, n_items, settings[0], at=ids)


def score_users(userids: np.ndarray, user_items: csr_matrix, neighbours: np.ndarray, scores: np.ndarray,
                N: int = 10, candidates: np.ndarray | None = None, exclude_seen: bool = True,
                block_size: int | None = None, client=None, rank: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`encore.core.itemknn.score_users` with one task per block of users, each sent its own rows."""
    client = current_client(client)
    if client is None:
        return knn.score_users(userids, user_items, neighbours, scores, N, candidates, exclude_seen, block_size, rank)
    X, userids, candidate = knn.score_inputs(user_items, userids, neighbours.shape[0], candidates)
    cost = np.diff(X.indptr)[userids] + 1
    spans = list(pairwise(knn.plan_blocks(cost, block_size, n_worker_threads(client)).tolist()))
    blocks = [(np.arange(b - a, dtype=np.int64), knn.csr_arrays(X[userids[a:b]])) for a, b in spans]
    arrays = knn.score_arrays(neighbours, scores, candidate, rank)
    parts = imap_blocks(client, knn.score_block, blocks, arrays, (int(N), bool(exclude_seen)))
    return knn.stack(parts, spans, len(userids), N)


def fit(model: knn.ItemKNN, user_items: csr_matrix, client=None) -> knn.ItemKNN:
    """``model`` fitted on the cluster, its neighbour lists brought back (in-process without a client)."""
    client = current_client(client)
    blocks, arrays, settings, n_items, ids = model.fit_plan(user_items, n_worker_threads(client))
    parts = imap_blocks(client, knn.topk_block, blocks, arrays, settings)
    return knn.fill(model, parts, blocks, n_items, ids, arrays[0])


def _planned(model, plan: str, *args) -> tuple:
    """A task: a copy of ``model`` with what its ``plan`` method sets (``fit_plan``: ``rank_``; ``solve_plan``:
    ``popularity_`` and ``rank_``), and the plan itself."""
    model = copy.copy(model)
    return model, getattr(model, plan)(*args)


def _plan_shape(planned: tuple) -> tuple:
    """A task: the small parts of a plan (blocks, settings, number of items), for the client to submit blocks."""
    blocks, _, settings, n_items, _ = planned[1]
    return blocks, settings, n_items


def _plan_part(planned: tuple, at: int):
    """A task: the fitted copy (``at`` -1) or one of the plan's shared arrays, left on the worker."""
    return planned[0] if at < 0 else planned[1][1][at]


def fit_on_cluster(model: knn.ItemKNN, user_items: csr_matrix | Future, client) -> Remade:
    """``model`` fitted with the result left on the cluster: a fitted copy for tasks to take, as a
    :class:`~encore.dist.blocks.Remade` (its ``future()``), computed before this returns.

    ``user_items`` is the matrix or its future on the cluster. The plan (popular-first order, transpose,
    norms) is made by a task, and the block tasks' neighbour lists are written into the result by a chain of
    tasks, a block at a time (so a worker never holds every block beside the result), so neither the plan's
    arrays nor the lists pass through the client. Nothing but the result is held (and a matrix given
    here): the workers free the plan and, once its other holders let it go, the matrix, and the scheduler
    recomputes them from their lineage if a lost worker took the model. A matrix given here is kept on the
    client as long as the result lives, so a model lost with a worker after its scattered inputs were lost too
    is fitted again from it. Keep the result until the model's last use.
    """
    client = current_client(client)
    threads = n_worker_threads(client)

    source = [user_items]

    def submit() -> tuple[Future, list]:
        if not source:
            raise CancelledError("the matrix this model was fitted from was lost with every copy of its inputs")
        (x,) = scatter(client, (source[0],))
        planned = client.submit(_planned, model, "fit_plan", x, threads, pure=False)
        blocks, settings, n_items = client.submit(_plan_shape, planned, pure=False).result()
        template, *arrays = [client.submit(_plan_part, planned, at, pure=False) for at in range(-1, 5)]
        lists = client.submit(knn.empty_lists, n_items, settings[0], pure=False)
        for block in blocks:  # stacked a block at a time: each block's lists are freed once written
            part = client.submit(knn.topk_block, block, *arrays, *settings, pure=False)
            lists = client.submit(knn.put_block, lists, part, block, arrays[3], pure=False)
        done = client.submit(knn.fitted, template, lists, arrays[3], arrays[0], pure=False)
        wait(done)
        return done, [] if isinstance(x, Future) else [x]

    remade = Remade(lambda: retrying(submit))
    remade.future()
    if isinstance(user_items, Future):  # held here it would keep the matrix on a worker; once cancelled (its
        source.clear()  # inputs lost beyond their lineage), a fit from it would be cancelled too
    return remade


def _solve_shape(planned: tuple) -> tuple:
    """A task: the small parts of a solve plan (blocks, settings), for the client to submit blocks."""
    blocks, _, settings = planned[1]
    return blocks, settings


def _own_part(planned: tuple, block: tuple[int, int]) -> tuple:
    """A task: a block's own part of a solve plan (:func:`~encore.core.sparse_ease.own_part`), so a worker that
    solves it is sent its items' in-lists, not every item's."""
    return sparse_ease.own_part(block, planned[1][1])


def _solved(template: sparse_ease.SparseEASE, parts: list[np.ndarray], arrays: tuple) -> sparse_ease.SparseEASE:
    """A task: a solved copy of ``template`` from the blocks' scores (the weights never pass the client)."""
    return sparse_ease.with_scores(copy.copy(template), parts, arrays)


def solve_on_cluster(model: sparse_ease.SparseEASE, fitted_knn: Remade, popularity: np.ndarray, n_users: int,
                     client) -> Remade:
    """``model`` solved on the support lists of the item-kNN fitted on the cluster, one task per block of
    items, the result left there as a :class:`~encore.dist.blocks.Remade`, computed before this returns.

    The plan (in-lists, block bounds) is made by a task beside the kNN; each block task reads the shared lists
    and only its own items' in-lists; the blocks' scores are put in place by a task. Nothing but the result is
    held, so the workers free the plan once it is solved; a lost result is recomputed from its lineage, the
    kNN's included.
    """
    client = current_client(client)
    threads = n_worker_threads(client)

    def submit() -> tuple[Future, list]:
        planned = client.submit(_planned, model, "solve_plan", fitted_knn.future(), popularity, n_users, threads,
                                pure=False)
        blocks, settings = client.submit(_solve_shape, planned, pure=False).result()
        template, *arrays = [client.submit(_plan_part, planned, at, pure=False) for at in range(-1, 7)]
        parts = [client.submit(sparse_ease.ridge_own, client.submit(_own_part, planned, block, pure=False),
                               *arrays[3:6], *settings, pure=False) for block in blocks]
        done = client.submit(_solved, template, parts, arrays[:4], pure=False)
        wait(done)
        return done, []

    remade = Remade(lambda: retrying(submit))
    remade.future()
    return remade
