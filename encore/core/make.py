"""``make_model``: the one place settings become a model (the daily job, ``encore evaluate``, the notebook).

Every caller builds its models here, so a setting means the same thing everywhere; a variant (a cosine
item-kNN for comparison, K=100) is ``make_model`` on settings with that field changed.
"""

from __future__ import annotations

from collections.abc import Callable

from encore.config import ModelSettings, Settings
from encore.core.base import Recommender
from encore.core.ease import EASE
from encore.core.itemknn import ItemKNN
from encore.core.popularity import Popularity, Trending


def _itemknn(m: ModelSettings) -> Recommender:
    """The daily job's model: item-kNN with the configured neighbours, weighting and normalisation."""
    return ItemKNN(K=m.k, weighting=m.weighting, alpha=m.alpha, min_support=m.min_support, shrinkage=m.shrinkage)


BUILDERS: dict[str, Callable[[ModelSettings], Recommender]] = {
    "itemknn": _itemknn,
    "popularity": lambda m: Popularity(),
    "trending": lambda m: Trending(m.trending_smoothing),
    "ease": lambda m: EASE(),
}
MODEL_KINDS = tuple(BUILDERS)


def make_model(settings: Settings | ModelSettings, kind: str = "itemknn") -> Recommender:
    """An unfitted model of ``kind`` (one of ``MODEL_KINDS``; default the daily job's item-kNN) built from
    ``settings.model`` (full settings or the model section)."""
    if kind not in BUILDERS:
        raise ValueError(f"unknown model kind {kind!r}: choose from {', '.join(MODEL_KINDS)}")
    return BUILDERS[kind](settings.model if isinstance(settings, Settings) else settings)


def with_model(settings: Settings, **changes) -> Settings:
    """``settings`` with fields of its model section changed (validated as in a config file)."""
    model = ModelSettings.model_validate({**settings.model.model_dump(), **changes})
    return settings.model_copy(update={"model": model})
