"""encore: the daily recommendation pipeline of a short-video auction marketplace."""

__version__ = "0.1.0"
