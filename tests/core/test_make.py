"""make_model: the settings' model, the same for the daily job, ``encore evaluate`` and the notebook."""

import pytest
from pydantic import ValidationError

import encore
from encore.config import ModelSettings, Settings
from encore.core.ease import EASE
from encore.core.itemknn import ItemKNN
from encore.core.make import MODEL_KINDS, make_model, with_model
from encore.core.popularity import Popularity, Trending


def test_default_settings_build_the_class_defaults():
    """ItemKNN's defaults are the daily job's: ``ItemKNN()`` is what runs every day."""
    model = make_model(Settings())
    assert type(model) is ItemKNN and model.get_params() == ItemKNN().get_params()
    assert (model.K, model.weighting, model.alpha) == (50, "bm25", None)


def test_every_model_setting_reaches_the_model():
    settings = Settings(model=ModelSettings(k=7, min_support=2, shrinkage=3.0, weighting="iuf", alpha=0.3,
                                            trending_smoothing=9.0))
    model = make_model(settings)
    assert (model.K, model.min_support, model.shrinkage, model.weighting, model.alpha) == (7, 2, 3.0, "iuf", 0.3)
    assert make_model(settings.model).get_params() == model.get_params()
    trending = make_model(settings, "trending")
    assert type(trending) is Trending and trending.smoothing == 9.0
    assert type(make_model(settings, "popularity")) is Popularity and type(make_model(settings, "ease")) is EASE
    assert MODEL_KINDS == ("itemknn", "popularity", "trending", "ease")


def test_unknown_kind_names_the_choices():
    with pytest.raises(ValueError, match="unknown model kind 'als': choose from itemknn, popularity, trending, ease"):
        make_model(Settings(), "als")


def test_with_model_changes_one_field_and_validates():
    settings = Settings()
    changed = with_model(settings, k=100)
    assert make_model(changed).K == 100 and settings.model.k == 50 and changed.lake == settings.lake
    with pytest.raises(ValidationError):
        with_model(settings, k=0)


def test_exported_from_the_package():
    assert encore.make_model is make_model and "make_model" in encore.__all__
    assert not hasattr(encore, "no_such_name")
