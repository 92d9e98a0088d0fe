"""``make_model``: the one place settings become a model (the daily job, ``encore evaluate``, the notebook).

Every caller builds its models here, so a setting means the same thing everywhere; a variant (a cosine
item-kNN for comparison, K=100) is ``make_model`` on settings with that field changed.
"""

from __future__ import annotations

from collections.abc import Callable

from encore.config import ModelSettings, Settings
from encore.core.als import ALS
from encore.core.base import Recommender
from encore.core.ease import EASE
from encore.core.itemknn import ItemKNN
from encore.core.popularity import Popularity, Trending
from encore.core.sansa import SANSA
from encore.core.sparse_ease import SparseEASE


def _itemknn(m: ModelSettings) -> Recommender:
    """The daily job's model: item-kNN with the configured neighbours, weighting and normalisation."""
    return ItemKNN(K=m.k, weighting=m.weighting, alpha=m.alpha, min_support=m.min_support, shrinkage=m.shrinkage)


def _sparse_ease(m: ModelSettings) -> Recommender:
    """EASE on the item-kNN support: the support is the daily item-kNN's lists (k, weighting, alpha)."""
    return SparseEASE(lam=m.sparse_ease_lambda, K=m.k, weighting=m.weighting, alpha=m.alpha,
                      min_support=m.min_support, max_support=m.sparse_ease_support, fill=m.sparse_ease_fill,
                      popularity_power=m.popularity_power)


BUILDERS: dict[str, Callable[[ModelSettings], Recommender]] = {
    "itemknn": _itemknn,
    "popularity": lambda m: Popularity(),
    "trending": lambda m: Trending(m.trending_smoothing),
    "ease": lambda m: EASE(lam=m.ease_lambda, popularity_power=m.popularity_power, max_items=m.ease_max_items),
    "sparse_ease": _sparse_ease,
    "als": lambda m: ALS(factors=m.als_factors, regularization=m.als_regularization, alpha=m.als_alpha,
                         iterations=m.als_iterations),
    "sansa": lambda m: SANSA(lam=m.sansa_lambda, density=m.sansa_density),
}
MODEL_KINDS = tuple(BUILDERS)
#: The kinds ``model.kind`` may name: each recommends to every user from their history.
DAILY_KINDS = ("itemknn", "sparse_ease", "als", "sansa", "ease")


def make_model(settings: Settings | ModelSettings, kind: str | None = None) -> Recommender:
    """An unfitted model of ``kind`` (one of ``MODEL_KINDS``; default ``model.kind``, the daily job's model)
    built from ``settings.model`` (full settings or the model section)."""
    m = settings.model if isinstance(settings, Settings) else settings
    kind = m.kind if kind is None else kind
    if kind not in BUILDERS:
        raise ValueError(f"unknown model kind {kind!r}: choose from {', '.join(MODEL_KINDS)}")
    return BUILDERS[kind](m)


def with_model(settings: Settings, **changes) -> Settings:
    """``settings`` with fields of its model section changed (validated as in a config file)."""
    model = ModelSettings.model_validate({**settings.model.model_dump(), **changes})
    return settings.model_copy(update={"model": model})
