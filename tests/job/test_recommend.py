"""Recommend: which users each output shard holds."""

import numpy as np
import pandas as pd

from encore.job.recommend import shard_users
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
