"""ItemKNN fitted and scored, SparseEASE solved, as Dask tasks: the same bits as in one process, whatever the
workers and blocks."""

import copy
import time

import numpy as np
import pytest
from distributed import Client, LocalCluster
from scipy.sparse import random as sparse_random

from encore.core.itemknn import ItemKNN
from encore.core.kernels import score_users_block
from encore.core.sparse_ease import SparseEASE, binary
from encore.dist.fit import fit, fit_on_cluster, score_users, solve_on_cluster
from tests.core.test_itemknn import _arrays, reference_topk, weighted_matrix


@pytest.fixture(scope="module")
def X():
    return weighted_matrix()


def _client(n_workers: int):
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=False, dashboard_address=":0")
    return cluster, Client(cluster)


@pytest.fixture(scope="module")
def clients():
    """A 1-worker and a 2-worker in-process cluster, closed after the module (newest first: each client
    restores the dask scheduler setting it found)."""
    made = [_client(1), _client(2)]
    yield [client for _, client in made]
    for cluster, client in reversed(made):
        client.close()
        cluster.close()


def test_fit_same_result_for_any_blocks_and_workers(X, clients):
    want = reference_topk(X, 10)
    n = X.shape[1]
    for client in clients:
        for block_size in (n, -(-n // 2), -(-n // 4), None):
            model = fit(ItemKNN(K=10, weighting="none", alpha=0.5, block_size=block_size), X, client)
            for got, ref in zip((model.neighbours_, model.scores_, model.support_), want, strict=True):
                np.testing.assert_array_equal(got, ref)


def test_recommend_same_with_and_without_dask(X, clients):
    model = ItemKNN(K=10).fit(X)
    users = np.arange(0, 300, 3)
    candidates = np.arange(X.shape[1]) % 5 != 0
    want = score_users_block(
        users.astype(np.int64), *_arrays(X), model.neighbours_, model.scores_, candidates, model.rank_, 15, True
    )
    for client in clients:
        for block_size in (None, 7):
            fitted = fit(ItemKNN(K=10, block_size=block_size), X, client)
            got = score_users(users, X, fitted.neighbours_, fitted.scores_, 15, candidates, True, block_size,
                              client, fitted.rank_)
            for g, w in zip(got, want, strict=True):
                np.testing.assert_array_equal(g, w)


def test_every_way_of_fitting_gives_the_same_model(X, clients):
    """In-process, on the cluster brought back, and left on the cluster (the daily job): the same arrays."""
    want = ItemKNN(K=10, shrinkage=1.0).fit(X)
    for client in clients:
        remade = fit_on_cluster(ItemKNN(K=10, shrinkage=1.0), X, client)
        for got in (fit(ItemKNN(K=10, shrinkage=1.0), X, client), remade.future().result()):
            for name in ItemKNN.fitted_arrays:
                np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
        del remade


def test_sparse_ease_solved_on_the_cluster_is_the_one_solved_here(clients):
    """Blocks of items solved as tasks beside the cluster's kNN: the model solved in one process."""
    rng = np.random.default_rng(5)
    X = sparse_random(400, 700, density=0.02, format="csr", random_state=rng, dtype=np.float32)
    popularity = np.bincount(X.indices, minlength=X.shape[1])
    template = SparseEASE(K=8, popularity_power=0.3)
    want = copy.copy(template).solve(template.knn().fit(binary(X)), popularity, X.shape[0])
    for client in clients:
        knn = fit_on_cluster(template.knn(), binary(X), client)
        got = solve_on_cluster(template, knn, popularity, X.shape[0], client).future().result()
        for name in SparseEASE.fitted_arrays:
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))


def test_a_model_fitted_on_the_cluster_lets_its_matrix_and_plan_go(X, clients):
    """Once fitted from a matrix held on the cluster, only the model stays in the workers' memory: the plan's
    arrays and (when nothing else holds it) the matrix are freed, and a lost model is recomputed from its
    lineage."""
    client = clients[-1]

    def in_memory(dask_scheduler) -> set[str]:
        return {str(k) for k, ts in dask_scheduler.tasks.items() if ts.state == "memory"}

    before = client.run_on_scheduler(in_memory)
    matrix = client.submit(copy.copy, X, pure=False)
    fitted = fit_on_cluster(ItemKNN(K=5), matrix, client)
    del matrix
    for _ in range(100):  # the client lets futures go asynchronously
        held = client.run_on_scheduler(in_memory) - before
        if len(held) == 1:
            break
        time.sleep(0.05)
    assert held == {str(fitted.future().key)}, held
    np.testing.assert_array_equal(fitted.future().result().neighbours_, ItemKNN(K=5).fit(X).neighbours_)
