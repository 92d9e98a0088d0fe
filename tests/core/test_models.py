"""Every encore model through the one behavioural suite (``tests/core/model_suite.py``)."""

import importlib.util

import pytest

from encore.core.als import ALS
from encore.core.ease import EASE
from encore.core.itemknn import ItemKNN
from encore.core.popularity import Popularity, Trending
from encore.core.sansa import SANSA
from encore.core.sparse_ease import SparseEASE
from tests.core.model_suite import ModelSuite


class TestItemKNN(ModelSuite):
    """The defaults: the daily job's model (K=50, BM25 weighting, raw dot product)."""

    item_item = explains = True

    def make(self):
        return ItemKNN()


class TestItemKNNCosine(ModelSuite):
    """Cosine with shrinkage, in small blocks of items and users; K=24 is every same-side item of the checker
    board (its pairs all tie) and fewer than most items' neighbours in the other tests."""

    item_item = explains = True

    def make(self):
        return ItemKNN(K=24, weighting="none", alpha=0.5, shrinkage=2.0, block_size=16)


class TestPopularity(ModelSuite):
    personalised = False

    def make(self):
        return Popularity()


class TestTrending(ModelSuite):
    personalised = False

    def make(self):
        return Trending(smoothing=2.0)


class TestEASE(ModelSuite):
    explains = True

    def make(self):
        return EASE(lam=5.0)


class TestSparseEASE(ModelSuite):
    """At most 8 history items regress on each item: the support is a real restriction on 40 items (K=24 covers
    every same-side item of the checker board, whose pairs all tie)."""

    explains = True

    def make(self):
        return SparseEASE(lam=5.0, K=24, max_support=8, fill=0.5)


class TestSparseEASEDebiased(ModelSuite):
    explains = True

    def make(self):
        return SparseEASE(lam=20.0, K=24, popularity_power=0.3, block_size=16)


class TestALS(ModelSuite):
    explains = True

    def make(self):
        return ALS(factors=8, iterations=5, regularization=0.1, num_threads=1)


@pytest.mark.skipif(importlib.util.find_spec("sansa") is None, reason="the sansa package (encore[sansa]) is not installed")
class TestSANSA(ModelSuite):
    explains = True

    def make(self):
        return SANSA(lam=5.0, density=0.5)
