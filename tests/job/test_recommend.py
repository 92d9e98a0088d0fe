"""Recommend: which users each output shard holds, and what its tasks score with."""

import copy

import numpy as np
import pandas as pd
from distributed.protocol import deserialize, serialize
from scipy.sparse import random as sparse_random

from encore.config import Settings
from encore.core.sparse_ease import SparseEASE
from encore.job.recommend import _serving, mmr_similar, shard_users
from encore.schema import shard_of


def test_shard_users_hashed_on_the_cluster_match_the_stable_hash(client):
    users = pd.Index([f"u{i:05d}" for i in range(1001)], name="uid")
    here, there = shard_users(users, 7), shard_users(users, 7, client)
    assert len(there) == 7
    for shard, (a, b) in enumerate(zip(here, there, strict=True)):
        assert np.array_equal(a, b)
        assert np.all(np.diff(b) > 0)  # each shard's rows in row order
        assert all(shard_of(users[r], 7) == shard for r in b)
    assert sorted(np.concatenate(there).tolist()) == list(range(len(users)))


def test_shard_tasks_get_the_support_lists_sparse_ease_shares_with_its_knn_once():
    """SparseEASE's support lists are the item-kNN's neighbours: sent to a worker, the two models that shard tasks
    read hold one array (distributed serialises a tuple's items apart, so the pair travels as one object)."""
    rng = np.random.default_rng(3)
    X = sparse_random(300, 200, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    template = SparseEASE(K=8)
    knn = template.knn().fit(X)
    model = copy.copy(template).solve(knn, np.bincount(X.indices, minlength=X.shape[1]), X.shape[0])
    model.neighbours_ = model.neighbours_.copy()  # as it comes back from another worker: equal, not the same
    sent = deserialize(*serialize(_serving(model, knn)))
    assert sent.model.neighbours_ is sent.similar.neighbours_
    assert sent.model.support_ is None and sent.similar.support_ is None  # scoring never reads the support
    np.testing.assert_array_equal(sent.model.scores_, model.scores_)
    np.testing.assert_array_equal(sent.similar.scores_, knn.scores_)
    assert _serving(knn, knn).similar is None  # the item-kNN's own lists serve its MMR


def test_the_similar_items_knn_is_served_only_to_an_mmr_that_reads_it():
    """Without MMR the shard tasks never read the similar items' lists, so they are not sent them."""
    knn = SparseEASE(K=8).knn()
    assert mmr_similar(knn, Settings()) is None
    assert mmr_similar(knn, Settings.model_validate({"rules": {"mmr_lambda": 0.5}})) is knn
