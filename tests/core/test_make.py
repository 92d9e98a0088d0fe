"""make_model: the settings' model, the same for the daily job, ``encore evaluate`` and the notebook."""

import pytest
from pydantic import ValidationError

import encore
from encore.config import ModelSettings, Settings
from encore.core.als import ALS
from encore.core.ease import EASE
from encore.core.itemknn import ItemKNN
from encore.core.make import DAILY_KINDS, MODEL_KINDS, make_model, with_model
from encore.core.popularity import Popularity, Trending
from encore.core.sansa import SANSA
from encore.core.sparse_ease import SparseEASE


def test_default_settings_build_the_class_defaults():
    """The classes' defaults are the daily job's: ``SparseEASE()`` scores every day, on the support lists of
    ``ItemKNN()``, which also gives the similar items."""
    model = make_model(Settings())
    assert type(model) is SparseEASE and model.get_params() == SparseEASE().get_params()
    knn = make_model(Settings(), "itemknn")
    assert type(knn) is ItemKNN and knn.get_params() == ItemKNN().get_params()
    assert (knn.K, knn.weighting, knn.alpha) == (50, "bm25", None)
    assert model.knn().get_params() == {**knn.get_params(), "block_size": None}


def test_every_model_setting_reaches_the_model():
    settings = Settings(model=ModelSettings(k=7, min_support=2, shrinkage=3.0, weighting="iuf", alpha=0.3,
                                            trending_smoothing=9.0))
    model = make_model(settings, "itemknn")
    assert (model.K, model.min_support, model.shrinkage, model.weighting, model.alpha) == (7, 2, 3.0, "iuf", 0.3)
    assert make_model(settings.model, "itemknn").get_params() == model.get_params()
    assert make_model(settings.model).get_params() == make_model(settings).get_params()
    trending = make_model(settings, "trending")
    assert type(trending) is Trending and trending.smoothing == 9.0
    assert type(make_model(settings, "popularity")) is Popularity and type(make_model(settings, "ease")) is EASE
    assert MODEL_KINDS == ("itemknn", "popularity", "trending", "ease", "sparse_ease", "als", "sansa")


def test_model_kind_chooses_the_daily_model_and_its_settings_reach_it():
    settings = Settings(model=ModelSettings(
        k=30, weighting="iuf", alpha=0.5, min_support=2, popularity_power=0.2, ease_lambda=100.0, ease_max_items=50,
        sparse_ease_lambda=300.0, sparse_ease_support=40, sparse_ease_fill=1.5, als_factors=8, als_iterations=3,
        als_regularization=0.5, als_alpha=2.0, sansa_lambda=30.0, sansa_density=0.2))
    assert type(make_model(settings)) is SparseEASE
    built = {kind: make_model(with_model(settings, kind=kind)) for kind in DAILY_KINDS}
    assert {kind: type(m) for kind, m in built.items()} == {"itemknn": ItemKNN, "sparse_ease": SparseEASE,
                                                            "als": ALS, "sansa": SANSA, "ease": EASE}
    sparse = built["sparse_ease"]
    assert (sparse.lam, sparse.K, sparse.weighting, sparse.alpha, sparse.min_support, sparse.max_support,
            sparse.fill, sparse.popularity_power) == (300.0, 30, "iuf", 0.5, 2, 40, 1.5, 0.2)
    assert sparse.knn().get_params() == {**make_model(settings, "itemknn").get_params(), "shrinkage": 0.0,
                                         "block_size": None}
    als = built["als"]
    assert (als.factors, als.iterations, als.regularization, als.alpha) == (8, 3, 0.5, 2.0)
    assert (built["sansa"].lam, built["sansa"].density) == (30.0, 0.2)
    assert (built["ease"].lam, built["ease"].popularity_power, built["ease"].max_items) == (100.0, 0.2, 50)
    assert type(make_model(with_model(settings, kind="als"), "itemknn")) is ItemKNN  # an explicit kind wins
    with pytest.raises(ValidationError):
        with_model(settings, kind="slim")


def test_unknown_kind_names_the_choices():
    with pytest.raises(ValueError, match="unknown model kind 'slim': choose from itemknn, popularity, trending, ease, "
                                         "sparse_ease, als, sansa"):
        make_model(Settings(), "slim")


def test_with_model_changes_one_field_and_validates():
    settings = Settings()
    changed = with_model(settings, k=100)
    assert make_model(changed, "itemknn").K == 100 and make_model(changed).K == 100 and settings.model.k == 50 and changed.lake == settings.lake
    with pytest.raises(ValidationError):
        with_model(settings, k=0)


def test_exported_from_the_package():
    assert encore.make_model is make_model and "make_model" in encore.__all__
    assert not hasattr(encore, "no_such_name")
