"""Every encore model through the one behavioural suite (``tests/core/model_suite.py``)."""

from encore.core.ease import EASE
from encore.core.itemknn import ItemKNN
from encore.core.popularity import Popularity, Trending
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
