"""encore: the daily recommendation pipeline of a short-video auction marketplace.

``encore.make_model(settings)`` builds the configured model; the models (``ItemKNN``, ``Popularity``,
``Trending``, ``EASE``) and ``run`` (the daily job) are imported on first use, so ``import encore`` (and
the command line) stays light.
"""

from importlib import import_module

__version__ = "0.1.0"
_LAZY = {"make_model": "encore.core.make", "ItemKNN": "encore.core.itemknn", "Popularity": "encore.core.popularity",
         "Trending": "encore.core.popularity", "EASE": "encore.core.ease", "Recommender": "encore.core.base",
         "run": "encore.job.pipeline", "load_settings": "encore.config"}
__all__ = ["EASE", "ItemKNN", "Popularity", "Recommender", "Trending", "__version__", "load_settings", "make_model", "run"]


def __getattr__(name: str):
    """The public names, each imported from its module on first access."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'encore' has no attribute {name!r}")
