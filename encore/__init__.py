"""encore: the daily recommendation pipeline of a short-video auction marketplace.

``encore.make_model(settings)`` builds the configured model; it is imported on first use, so
``import encore`` (and the command line) stays light.
"""

__version__ = "0.1.0"
__all__ = ["__version__", "make_model"]


def __getattr__(name: str):
    """``make_model``, imported from ``encore.core.make`` on first access."""
    if name == "make_model":
        from encore.core.make import make_model

        return make_model
    raise AttributeError(f"module 'encore' has no attribute {name!r}")
