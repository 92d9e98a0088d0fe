"""The behaviour every encore model shares, in the style of implicit's ``RecommenderBase`` tests.

``tests/core/test_models.py`` subclasses :class:`ModelSuite` once per model, naming it in ``make()``; every
test below then runs for that model. Class flags say which optional behaviour a model has.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse import random as sparse_random

from encore.core.base import NotFittedError, Recommender
from encore.core.ease import EASE
from encore.core.popularity import Popularity


def checker_board(n: int = 50) -> csr_matrix:
    """implicit's checker board: even users like the even items, odd users the odd ones, the diagonal withheld."""
    dense = np.zeros((n, n), np.float32)
    for i in range(n):
        dense[i, i % 2 :: 2] = 1.0
    dense[np.arange(n), np.arange(n)] = 0.0
    return csr_matrix(dense)


@cache
def _interactions() -> csr_matrix:
    rng = np.random.default_rng(5)
    X = sparse_random(120, 40, density=0.12, format="csr", random_state=rng, dtype=np.float32)
    X.data = rng.uniform(0.5, 3.0, X.nnz).astype(np.float32)
    return X


def interactions() -> csr_matrix:
    """120 users × 40 items with weights in [0.5, 3): continuous, so scores rarely tie. A fresh copy."""
    return _interactions().copy()


def real(ids: np.ndarray) -> list[int]:
    """The ids of one result row without the padding."""
    return [int(j) for j in ids if j >= 0]


class ModelSuite:
    """Tests every model passes; subclasses implement ``make`` and set the flags."""

    personalised = True  # scores come from the user's own history (the checker board test applies)
    item_item = False  # similar_items is implemented
    explains = False  # return_because names history items (else it is all -1)

    def make(self) -> Recommender:
        raise NotImplementedError

    def fitted(self, X: csr_matrix | None = None) -> Recommender:
        return self.make().fit(interactions() if X is None else X, show_progress=False)

    def all_users(self, model: Recommender, X: csr_matrix, N: int, **kwargs) -> tuple[np.ndarray, ...]:
        return model.recommend(np.arange(X.shape[0]), X, N=N, **kwargs)

    # fit

    def test_fit_returns_self_with_or_without_show_progress(self):
        X = interactions()
        model = self.make()
        assert model.fit(X) is model
        quiet = self.make().fit(X, False)
        for a, b in zip(self.all_users(model, X, 5), self.all_users(quiet, X, 5), strict=True):
            np.testing.assert_array_equal(a, b)

    def test_unfitted_model_says_so(self, tmp_path):
        with pytest.raises(NotFittedError, match="not fitted: call fit"):
            self.make().recommend(0, interactions()[0])
        with pytest.raises(NotFittedError):
            self.make().save(tmp_path / "model")

    def test_accepts_float64_and_other_sparse_formats(self):
        X = interactions()
        want = self.all_users(self.fitted(X), X, 6)
        for other in (X.astype(np.float64), X.tocsc(), X.tocoo()):
            got = self.all_users(self.fitted(other), other, 6)
            for a, b in zip(got, want, strict=True):
                np.testing.assert_array_equal(a, b)

    def test_deterministic_and_leaves_inputs_alone(self):
        X = interactions()
        before = X.copy()
        mask = np.arange(X.shape[1]) % 3 != 0
        runs = [self.all_users(self.fitted(X), X, 8, candidates=mask, return_because=True) for _ in range(2)]
        for a, b in zip(*runs, strict=True):
            np.testing.assert_array_equal(a, b)
        assert (X != before).nnz == 0 and mask.sum() == 26

    # shapes, padding, ids

    def test_batch_shapes_and_dtypes(self):
        X = interactions()
        model = self.fitted(X)
        ids, scores = self.all_users(model, X, 7)
        assert ids.shape == scores.shape == (120, 7) and ids.dtype == np.int32 and scores.dtype == np.float32
        assert self.all_users(model, X, 0)[0].shape == (120, 0)
        with pytest.raises(ValueError, match="N must be >= 0"):
            self.all_users(model, X, -1)

    def test_scalar_userid_gives_1d_arrays_equal_to_its_batch_row(self):
        X = interactions()
        model = self.fitted(X)
        ids, scores = self.all_users(model, X, 7)
        for u in (0, 5, np.int64(17)):
            one_ids, one_scores = model.recommend(u, X[u], N=7)
            assert one_ids.shape == one_scores.shape == (7,)
            np.testing.assert_array_equal(one_ids, ids[u])
            np.testing.assert_array_equal(one_scores, scores[u])

    def test_padding_comes_after_the_real_items(self):
        X = interactions()
        n_items = X.shape[1]
        ids, scores = self.all_users(self.fitted(X), X, n_items + 5)
        for row_ids, row_scores in zip(ids, scores, strict=True):
            n = len(real(row_ids))
            assert n <= n_items and len(set(real(row_ids))) == n
            assert (row_ids[n:] == -1).all() and (row_scores[n:] == 0).all()
            assert (np.diff(row_scores[:n]) <= 0).all()

    # the rows of the users asked for

    def test_rows_of_the_users_give_the_lists_of_the_full_matrix_indexed_by_them(self):
        X = interactions()
        model = self.fitted(X)
        full_ids, full_scores = self.all_users(model, X, 6)
        users = np.random.default_rng(1).permutation(X.shape[0])[:30]
        ids, scores = model.recommend(users, X[users], N=6)
        np.testing.assert_array_equal(ids, full_ids[users])
        np.testing.assert_array_equal(scores, full_scores[users])

    def test_implicit_style_call_gives_each_user_their_own_list(self):
        X = sparse_random(50, 30, density=0.2, format="csr", random_state=0, dtype=np.float32)
        model = self.make().fit(X)
        u = np.array([1, 0])
        a, _ = model.recommend(u, X[u], N=5)
        for row, user in enumerate(u):
            np.testing.assert_array_equal(a[row], model.recommend(user, X[user], N=5)[0])
            assert not set(real(a[row])) & set(X[user].indices)
        if self.personalised:
            assert not np.array_equal(a[0], a[1])
        with pytest.raises(ValueError, match="user_items has 50 rows for 2 userid"):
            model.recommend(u, X, N=5)

    def test_row_count_or_item_count_mismatch_is_a_clear_error(self):
        X = interactions()
        model = self.fitted(X)
        with pytest.raises(ValueError, match=r"user_items has 3 rows for 1 userid.*user_items\[userid\]"):
            model.recommend(0, X[:3])
        with pytest.raises(ValueError, match="user_items has 39 items, the model was fitted on 40"):
            model.recommend([0, 1], X[:2, :39])
        with pytest.raises(ValueError, match="1-D array of ids"):
            model.recommend(np.zeros((2, 1), int), X[:2])

    # what may be returned

    def test_filter_already_liked_items(self):
        X = interactions()
        model = self.fitted(X)
        n_items = X.shape[1]
        kept, _ = self.all_users(model, X, n_items)
        every, _ = self.all_users(model, X, n_items, filter_already_liked_items=False)
        some_seen = False
        for u in range(X.shape[0]):
            seen = set(X[u].indices)
            assert not set(real(kept[u])) & seen
            some_seen |= bool(set(real(every[u])) & seen)
            assert [j for j in real(every[u]) if j not in seen][: len(real(kept[u]))] == real(kept[u])
        assert some_seen

    def test_filter_items_are_never_returned_and_the_rest_keep_their_order(self):
        X = interactions()
        model = self.fitted(X)
        n_items = X.shape[1]
        full, _ = self.all_users(model, X, n_items)
        dropped = np.arange(0, n_items, 3)
        ids, _ = self.all_users(model, X, n_items, filter_items=dropped)
        for u in range(X.shape[0]):
            assert real(ids[u]) == [j for j in real(full[u]) if j not in set(dropped)]
        outside, _ = self.all_users(model, X, n_items, filter_items=[-1, n_items, 10**6])
        np.testing.assert_array_equal(outside, full)

    def test_items_restricts_the_result_to_those_ids(self):
        X = interactions()
        model = self.fitted(X)
        n_items = X.shape[1]
        full, _ = self.all_users(model, X, n_items)
        allowed = np.arange(1, n_items, 2)
        ids, _ = self.all_users(model, X, n_items, items=allowed)
        for u in range(X.shape[0]):
            assert real(ids[u]) == [j for j in real(full[u]) if j in set(allowed)]
        for bad in ([n_items], [-1]):
            with pytest.raises(IndexError, match="not items of the model"):
                model.recommend(0, X[0], items=bad)
        with pytest.raises(ValueError, match="cannot be combined"):
            model.recommend(0, X[0], items=allowed, filter_items=[1])

    def test_candidates_mask_is_items_as_a_mask(self):
        X = interactions()
        model = self.fitted(X)
        n_items = X.shape[1]
        mask = np.arange(n_items) % 4 != 0
        ids, scores = self.all_users(model, X, 9, candidates=mask)
        assert mask[ids[ids >= 0]].all()
        by_ids = self.all_users(model, X, 9, items=np.flatnonzero(mask))
        np.testing.assert_array_equal(ids, by_ids[0])
        np.testing.assert_array_equal(scores, by_ids[1])
        both, _ = self.all_users(model, X, 9, candidates=mask, items=np.arange(20))
        assert (both[both >= 0] < 20).all() and mask[both[both >= 0]].all()
        with pytest.raises(ValueError, match="boolean mask over the 40 items.*items="):
            model.recommend(0, X[0], candidates=mask.astype(int))
        with pytest.raises(ValueError, match="boolean mask over the 40 items"):
            model.recommend(0, X[0], candidates=mask[:-1])

    def test_recalculate_user_changes_nothing(self):
        X = interactions()
        model = self.fitted(X)
        for a, b in zip(self.all_users(model, X, 5), self.all_users(model, X, 5, recalculate_user=True), strict=True):
            np.testing.assert_array_equal(a, b)

    def test_because_names_a_history_item_or_minus_one(self):
        X = interactions()
        model = self.fitted(X)
        ids, scores, because = self.all_users(model, X, 8, return_because=True)
        np.testing.assert_array_equal((ids, scores), self.all_users(model, X, 8))
        assert because.shape == ids.shape and because.dtype == np.int32 and (because[ids < 0] == -1).all()
        if not self.explains:
            assert (because == -1).all()
            return
        for u in range(X.shape[0]):
            picked = ids[u] >= 0
            assert set(because[u, picked]) <= set(X[u].indices)
            assert (because[u, picked] >= 0).all() or X[u].nnz == 0
        one = model.recommend(3, X[3], N=8, return_because=True)
        assert len(one) == 3 and one[2].shape == (8,)
        np.testing.assert_array_equal(one[2], because[3])

    def test_item_without_users_is_never_recommended(self):
        dense = checker_board(50).toarray()
        dense[42, :] = 0
        dense[:, 42] = 0
        X = csr_matrix(dense)
        model = self.fitted(X)
        ids, scores = self.all_users(model, X, 10)
        assert not ((ids == 42) & (scores > 0)).any()
        if self.item_item:
            similar, _ = model.similar_items(np.arange(40), N=10)
            assert 42 not in similar

    def test_checker_board_recommends_the_withheld_item(self):
        if not self.personalised:
            pytest.skip("the same list for every user")
        X = checker_board(50)
        ids, _ = self.all_users(self.fitted(X), X, 1)
        np.testing.assert_array_equal(ids[:, 0], np.arange(50))

    # similar items

    def test_similar_items_start_with_the_item_and_keep_to_its_side(self):
        X = checker_board(50)
        model = self.fitted(X)
        if not self.item_item:
            with pytest.raises(NotImplementedError, match="no item-item similarities"):
                model.similar_items(0)
            return
        ids, scores = model.similar_items(np.arange(50), N=10)
        assert ids.shape == scores.shape == (50, 10) and ids.dtype == np.int32 and scores.dtype == np.float32
        np.testing.assert_array_equal(ids[:, 0], np.arange(50))
        assert all(j % 2 == i % 2 for i in range(50) for j in real(ids[i]))
        one_ids, one_scores = model.similar_items(7, N=10)
        assert one_ids.shape == (10,)
        np.testing.assert_array_equal(one_ids, ids[7])
        np.testing.assert_array_equal(one_scores, scores[7])

    def test_similar_items_filters(self):
        model = self.fitted(checker_board(50))
        if not self.item_item:
            pytest.skip("no similar items")
        dropped = np.arange(0, 50, 5)
        ids, _ = model.similar_items(np.arange(50), N=10, filter_items=dropped)
        assert not set(ids.ravel()) & set(dropped)
        ids, _ = model.similar_items(np.arange(50), N=10, items=np.arange(10))
        assert set(ids.ravel()) <= set(range(10)) | {-1} and (ids[:10, 0] == np.arange(10)).all()
        wide, _ = model.similar_items(3, N=60)
        assert (wide[len(real(wide)):] == -1).all() and len(real(wide)) < 60
        with pytest.raises(IndexError, match="not items of the model"):
            model.similar_items(50)
        with pytest.raises(NotImplementedError, match="recalculate_item"):
            model.similar_items(3, recalculate_item=True)

    # persistence

    def test_save_and_load_round_trip(self, tmp_path):
        X = interactions()
        model = self.fitted(X)
        path = model.save(tmp_path / "model")
        assert path == tmp_path / "model.npz" and path.exists()
        with np.load(path, allow_pickle=False) as data:  # no pickled code in the file
            assert "__params__" in data.files
        for loaded in (type(model).load(tmp_path / "model"), Recommender.load(path)):
            assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
            for a, b in zip(self.all_users(loaded, X, 8, return_because=True),
                            self.all_users(model, X, 8, return_because=True), strict=True):
                np.testing.assert_array_equal(a, b)
            if self.item_item:
                np.testing.assert_array_equal(loaded.similar_items(np.arange(40))[0], model.similar_items(np.arange(40))[0])
        other = EASE if isinstance(model, Popularity) else Popularity
        with pytest.raises(TypeError, match=f"holds a {type(model).__name__} model, not a {other.__name__}"):
            other.load(path)
        np.savez(tmp_path / "plain.npz", a=np.arange(3))
        with pytest.raises(ValueError, match="not an encore model file"):
            Recommender.load(tmp_path / "plain.npz")
