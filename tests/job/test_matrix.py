import numpy as np
import pandas as pd
import pytest
from distributed import Future

from encore.config import ModelSettings
from encore.job import matrix
from encore.job.matrix import build_matrix, row_major


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 4 rows, so every chunk boundary of the chunked loops is crossed."""
    monkeypatch.setattr(matrix, "CHUNK", 4)


def test_row_major_finds_disorder_across_a_chunk_boundary(small_chunks):
    rows = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4], np.int32)
    cols = np.array([1, 5, 0, 2, 3, 4, 0, 1, 7], np.int32)
    assert row_major(rows, cols) is None
    rows[4], cols[4] = 1, 1  # entry 4 now belongs before entry 3, on the seam of two 4-row chunks
    order = row_major(rows, cols)
    assert order is not None and order.tolist() == [0, 1, 2, 4, 3, 5, 6, 7, 8]


def interactions(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pairs = pd.DataFrame({"uid": [f"u{u}" for u in rng.integers(0, 9, n)],
                          "item_id": rng.integers(100, 120, n)}).drop_duplicates()
    k = len(pairs)
    return pairs.assign(n_bids=rng.integers(1, 5, k), spend=rng.uniform(1, 50, k), price=rng.uniform(5, 20, k),
                        won=rng.random(k) < 0.2,
                        last_at=pd.Timestamp("2026-11-01") + pd.to_timedelta(rng.integers(0, 30 * 86400, k), "s"))


def test_build_matrix_in_chunks_equals_one_pass(small_chunks):
    inter = interactions(60, seed=3)  # unsorted, with uids as plain strings
    now = pd.Timestamp("2026-12-01")
    m = build_matrix(inter, np.array([100, 131]), ModelSettings(), now)
    assert list(m.users) == sorted(inter["uid"].unique()) and list(m.items) == sorted({*inter["item_id"], 131})
    weight = matrix.interaction_weight(inter, ModelSettings(), now)
    dense = np.zeros(m.shape, np.float32)
    dense[m.users.get_indexer(inter["uid"]), m.items.get_indexer(inter["item_id"])] = weight
    np.testing.assert_allclose(m.X.toarray(), dense, rtol=1e-6)
    assert m.X.has_sorted_indices and m.X.indices.dtype == np.int32
    seconds = (inter["last_at"].astype("datetime64[us]").astype("int64") / 1e6).to_numpy()
    order = np.lexsort((m.items.get_indexer(inter["item_id"]), m.users.get_indexer(inter["uid"])))
    np.testing.assert_array_equal(m.recency, seconds[order])


def _same_csr(a, b) -> bool:
    return (a.shape == b.shape and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
            and np.array_equal(a.data, b.data))


def test_rows_built_in_the_partitions_give_the_matrices_and_bid_state_of_the_gathered_interactions(tmp_path, client):
    from encore.job import ingest, prepare, rules
    from tests.helpers import small_settings

    settings = small_settings(tmp_path, synth={"users": 1500, "days": 10, "seed": 3})
    prepare.run(settings)
    gathered, kept = ingest.ingest(settings), ingest.ingest(settings, frame=False)
    assert kept.interactions.empty and isinstance(kept.rows, Future) and gathered.rows is None  # on a worker
    now = gathered.window.end
    rows = kept.rows.result()
    want, got = matrix.run(gathered.interactions, gathered.listings, settings, now), \
        matrix.from_rows(rows, kept.listings, settings, now)
    assert want.m.users.equals(got.m.users) and want.m.items.equals(got.m.items)
    for name in ("X", "recent", "previous"):
        assert _same_csr(getattr(want.m, name), getattr(got.m, name)), name
    assert np.array_equal(want.m.recency, got.m.recency) and _same_csr(want.X_sim, got.X_sim)
    assert want.visits == got.visits and want.m.X.nnz > 1_000
    a = rules.bid_state(gathered.interactions, want.m)
    b = rules.bid_state_of_rows(rows, got.m)
    assert np.array_equal(a.leader, b.leader) and np.array_equal(a.top, b.top, equal_nan=True)
    assert _same_csr(a.amounts, b.amounts)


def test_matrices_held_on_the_cluster_are_the_ones_built_here(tmp_path, client):
    """Rows left on a worker give matrices that stay there: the client holds futures of X and the capped
    matrix, the users and items, and the same counts as matrices built from the same rows here."""
    from encore.job import ingest, prepare
    from tests.helpers import small_settings

    settings = small_settings(tmp_path, synth={"users": 800, "days": 6, "seed": 5})
    prepare.run(settings)
    kept = ingest.ingest(settings, frame=False)
    now = kept.window.end
    here_ = matrix.from_rows(kept.rows.result(), kept.listings, settings, now)
    held = matrix.held(kept.rows, kept.listings, settings, now, client)
    assert all(isinstance(x, Future) for x in (held.m.X, held.X_sim, held.whole))
    assert held.m.recency is None and held.m.shape == here_.m.shape
    assert held.m.users.equals(here_.m.users) and held.m.items.equals(here_.m.items)
    assert (held.visits, held.interactions) == (here_.visits, here_.interactions) and held.interactions > 500
    assert _same_csr(held.m.X.result(), here_.m.X) and _same_csr(held.X_sim.result(), here_.X_sim)
    assert _same_csr(held.full.result().recent, here_.m.recent)
    assert matrix.held(kept.rows.result(), kept.listings, settings, now, client).whole is None  # rows here: here
