"""Metrics on hand-computed cases, splitters (no leakage, reproducible) and the holdout protocol."""


import numpy as np
import pandas as pd
import pytest

from encore.job import evaluate as ev
from tests.helpers import SHARED_DATA, requires_shared_data

DATA = SHARED_DATA

# Three users, k = 3.
#   A: recs [1, 2, 3], truth {2, 5}  -> hits [0, 1, 0]
#   B: recs [4, 5, 6], truth {4}     -> hits [1, 0, 0]
#   C: recs [7, 8],    truth {9}     -> hits [0, 0, 0] (a short list, padded)
RECS = {"A": [1, 2, 3], "B": [4, 5, 6], "C": [7, 8]}
TRUTH = {"A": {2, 5}, "B": {4}, "C": {9}}


@pytest.fixture
def hits_and_sizes():
    lists, truth = ev.as_lists(RECS, TRUTH, k=3)
    return ev.hit_matrix(lists, truth), np.array([2, 1, 1])


def test_hit_matrix_pads_and_marks_hits(hits_and_sizes):
    hits, _ = hits_and_sizes
    assert hits.tolist() == [[False, True, False], [True, False, False], [False, False, False]]


def test_precision_divides_by_k(hits_and_sizes):
    hits, _ = hits_and_sizes
    # 1 hit / 3, 1 hit / 3, 0 / 3 (the short list of C still divides by k).
    np.testing.assert_allclose(ev.precision_at_k(hits), [1 / 3, 1 / 3, 0])


def test_recall_divides_by_truth_size(hits_and_sizes):
    hits, sizes = hits_and_sizes
    # A: 1 of its 2 truth items, B: 1 of 1, C: 0 of 1.
    np.testing.assert_allclose(ev.recall_at_k(hits, sizes), [0.5, 1.0, 0.0])


def test_ndcg_binary_with_ideal_over_min_truth_k(hits_and_sizes):
    hits, sizes = hits_and_sizes
    # A: DCG = 1/log2(3) = 0.630930; ideal puts min(2, 3) = 2 hits at ranks 1, 2: 1 + 0.630930.
    #    NDCG = 0.630930 / 1.630930 = 0.386853.  B: hit at rank 1 = ideal -> 1.  C: 0.
    np.testing.assert_allclose(ev.ndcg_at_k(hits, sizes), [0.386853, 1.0, 0.0], atol=1e-6)


def test_average_precision_divides_by_min_truth_k(hits_and_sizes):
    hits, sizes = hits_and_sizes
    # A: one hit at rank 2, precision@2 = 1/2, divided by min(2, 3) = 2 -> 0.25.  B: 1/1.  C: 0.
    np.testing.assert_allclose(ev.average_precision_at_k(hits, sizes), [0.25, 1.0, 0.0])


def test_reciprocal_rank_and_hit_rate(hits_and_sizes):
    hits, _ = hits_and_sizes
    # First hits at rank 2 (A) and 1 (B); none for C.
    np.testing.assert_allclose(ev.reciprocal_rank(hits), [0.5, 1.0, 0.0])
    np.testing.assert_allclose(ev.hit_rate(hits), [1.0, 1.0, 0.0])


def test_repeated_item_hits_once():
    # recs [2, 2] against truth {2}: only rank 1 counts, so precision@2 = 1/2, not 2/2.
    hits = ev.hit_matrix(np.array([[2, 2]]), [np.array([2])])
    assert hits.tolist() == [[True, False]]


def test_catalogue_coverage():
    # Distinct recommended items {1..8} = 8 out of a catalogue of 10 (padding -1 ignored).
    lists, _ = ev.as_lists(RECS, TRUTH, k=3)
    assert ev.catalogue_coverage(lists, n_items=10) == pytest.approx(0.8)


def test_novelty_is_mean_self_information():
    # pop = [8, 4, 2], 8 users: -log2(8/8) = 0, -log2(4/8) = 1, -log2(2/8) = 2.
    # Items shown 0, 1, 1, 2 -> (0 + 1 + 1 + 2) / 4 = 1.0 bit.
    recs = np.array([[0, 1], [1, 2]])
    assert ev.novelty(recs, np.array([8, 4, 2]), n_users=8) == pytest.approx(1.0)


def test_popularity_percentile():
    # pop = [8, 4, 2, 2]: average ranks 4, 3, 1.5, 1.5 -> percentiles 1, 0.75, 0.375, 0.375.
    # Shown items 0, 1, 2 -> (1 + 0.75 + 0.375) / 3 = 0.708333.
    recs = np.array([[0, 1], [2, -1]])
    assert ev.popularity_percentile(recs, np.array([8, 4, 2, 2])) == pytest.approx(0.708333, abs=1e-6)


def test_diversity_by_category():
    # Categories a, a, b, c.  List [0, 1, 2]: pairs (0,1) same, (0,2) and (1,2) differ -> 2/3.
    # List [0, 1]: the one pair is the same -> 0.  List [3] has no pair and is skipped.  Mean = 1/3.
    recs = np.array([[0, 1, 2], [0, 1, -1], [3, -1, -1]])
    assert ev.intra_list_diversity(recs, np.array(["a", "a", "b", "c"])) == pytest.approx(1 / 3)


def test_diversity_by_cosine():
    # Rows [1,0], [0,1], [1,1]: cosines 0, 1/sqrt(2), 1/sqrt(2); dissimilarities 1, 0.292893, 0.292893.
    # Mean = (1 + 2 * 0.292893) / 3 = 0.528595.
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert ev.intra_list_diversity(np.array([[0, 1, 2]]), feats) == pytest.approx(0.528595, abs=1e-6)


def test_evaluate_aggregates_means_and_drops_empty_truth():
    # Means over A, B, C from the cases above; D has an empty truth and is not counted.
    # P = (1/3 + 1/3 + 0)/3 = 2/9; R = (0.5 + 1 + 0)/3 = 0.5; NDCG = (0.386853 + 1)/3 = 0.462284;
    # MAP = (0.25 + 1)/3 = 0.416667; MRR = (0.5 + 1)/3 = 0.5; hit = 2/3; coverage = 8/10.
    out = ev.evaluate({**RECS, "D": [1]}, {**TRUTH, "D": set()}, k=3, n_items=10)
    expected = {
        "users": 3,
        "P@3": 2 / 9,
        "R@3": 0.5,
        "NDCG@3": 0.462284,
        "MAP@3": 0.416667,
        "MRR@3": 0.5,
        "hit@3": 2 / 3,
        "coverage": 0.8,
    }
    assert out == pytest.approx(expected, abs=1e-6)


def test_evaluate_accepts_aligned_arrays():
    out = ev.evaluate(np.array([[1, 2, 3], [4, 5, 6]]), [[2, 5], [4]], k=3, n_items=10)
    assert out["P@3"] == pytest.approx(1 / 3)


def test_evaluate_rejects_ambiguous_inputs():
    with pytest.raises(TypeError):
        ev.evaluate(RECS, [[2, 5]], k=3, n_items=10)
    with pytest.raises(ValueError, match="n_users"):
        ev.evaluate(RECS, TRUTH, k=3, n_items=10, item_popularity=np.ones(10))


def test_segment_scores_split_users_by_history_and_truth_by_new_items():
    recs = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [1, 4, 7]])
    truth = [np.array([1]), np.array([6, 9]), np.array([0]), np.array([7])]
    history = np.array([1, 2, 5, 40])
    new = np.zeros(10, bool)
    new[[6, 7]] = True
    out = ev.segment_scores(recs, truth, history, 3, new)
    disc = 1 / np.log2(np.arange(2, 5))
    assert out["NDCG 1-2"] == pytest.approx((1.0 + disc[2] / (disc[0] + disc[1])) / 2)
    assert out["NDCG 3-10"] == 0.0 and out["NDCG >10"] == pytest.approx(disc[2])
    assert out["NDCG new"] == pytest.approx((disc[2] + disc[2]) / 2)  # users 1 (item 6) and 3 (item 7)
    assert ev.segment_users(truth, history, new) == {"1-2": 2, "3-10": 1, ">10": 1, "new": 2}
    assert np.isnan(ev.segment_scores(recs, truth, np.full(4, 5), 3)["NDCG >10"])
    assert "NDCG new" not in ev.segment_scores(recs, truth, history, 3)
    overall = ev.evaluate(recs, truth, 3, 10)["NDCG@3"]
    assert overall == pytest.approx(np.mean([out["NDCG 1-2"]] * 2 + [out["NDCG 3-10"], out["NDCG >10"]]))


def test_markdown_table():
    text = ev.markdown_table([{"model": "pop", "P@10": 0.03059, "users": 1288.0}])
    assert text.splitlines() == ["| model | P@10 | users |", "|---|---|---|", "| pop | 0.0306 | 1288 |"]


# --------------------------------------------------------------------------------------- splitters
@pytest.fixture
def frame():
    rng = np.random.default_rng(1)
    n = 60
    return (
        pd.DataFrame(
            {
                "uid": rng.choice(["u1", "u2", "u3", "u4", "u5"], n),
                "item_id": np.arange(n),
                "first_at": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 30, n), unit="D"),
            }
        )
        .assign(last_at=lambda d: d["first_at"])
        .sample(frac=1, random_state=0)
    )


def assert_partition(df, train, test):
    assert not set(train.index) & set(test.index)
    assert sorted([*train.index, *test.index]) == sorted(df.index)


def test_split_time_has_no_leakage(frame):
    train, test = ev.split_time(frame, "2024-01-15")
    assert_partition(frame, train, test)
    assert train["first_at"].max() < pd.Timestamp("2024-01-15") <= test["first_at"].min()


def test_split_last_n_takes_latest_per_user(frame):
    frame = pd.concat([frame, frame.iloc[:1].assign(uid="solo")])  # a one-row user stays in train
    frame = frame.reset_index(drop=True)
    train, test = ev.split_last_n(frame, n=2)
    assert_partition(frame, train, test)
    assert (test.groupby("uid").size() == 2).all() and "solo" not in set(test["uid"])
    latest_train = train.groupby("uid")["last_at"].max()
    earliest_test = test.groupby("uid")["last_at"].min()
    assert (latest_train.loc[earliest_test.index] <= earliest_test).all()


def test_split_fraction_keeps_users_on_both_sides_and_is_seeded(frame):
    frame = pd.concat([frame, frame.iloc[:1].assign(uid="solo")]).reset_index(drop=True)
    train, test = ev.split_fraction(frame, frac=0.25, seed=7)
    assert_partition(frame, train, test)
    assert set(test["uid"]) == set(train["uid"]) - {"solo"}
    again, _ = ev.split_fraction(frame, frac=0.25, seed=7)
    other, _ = ev.split_fraction(frame, frac=0.25, seed=8)
    assert again.index.equals(train.index) and not other.index.equals(train.index)
    sizes = frame.groupby("uid").size().drop("solo")
    assert (test.groupby("uid").size() == np.clip(np.rint(0.25 * sizes), 1, sizes - 1)).all()


# ---------------------------------------------------------------------------------------- protocol
def test_holdout_protocol_truth_excludes_train_and_unknown_items():
    train = pd.DataFrame({"uid": ["a", "a", "b", "c"], "item_id": [10, 20, 20, 30]})
    # a: 10 again (seen in train: excluded), 30 (new: truth), 99 (not a train item: excluded)
    # b: 20 again only -> empty truth -> dropped.  z: no train history -> not a user.
    test = pd.DataFrame({"uid": ["a", "a", "a", "b", "z"], "item_id": [10, 30, 99, 20, 10]})
    p = ev.holdout_protocol(train, test)
    assert p.users.tolist() == ["a", "b", "c"] and p.items.tolist() == [10, 20, 30]
    assert p.X.toarray().tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert p.test_rows.tolist() == [0] and [t.tolist() for t in p.truth] == [[2]]
    assert p.item_popularity.tolist() == [1, 2, 1]


@pytest.mark.realdata
@requires_shared_data("online_retail_uci.csv.gz")
def test_uci_protocol_reproduces_reference_popularity():
    from encore.io.uci import read_uci

    p = ev.protocol_uci(read_uci(DATA / "online_retail_uci.csv.gz")[0])
    assert len(p.test_rows) == 1288
    # Most popular by distinct buyers, ties by item order, the user's train items excluded.
    seen = p.X[p.test_rows].toarray() > 0
    recs = np.argsort(np.where(seen, 1, -p.item_popularity), axis=1, kind="stable")[:, :10]
    out = p.score(recs, k=10)
    # README reference: P@10 0.0306, NDCG@10 0.0340, hit@10 0.228.
    assert out["P@10"] == pytest.approx(0.0306, abs=5e-4)
    assert out["NDCG@10"] == pytest.approx(0.0340, abs=5e-4)
    assert out["hit@10"] == pytest.approx(0.228, abs=5e-3)
