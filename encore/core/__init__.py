"""The recommender core: numpy, scipy and numba only.

Kernels (``kernels``: item-item top-K, user scoring), interaction weighting (``weighting``), the models
(``itemknn``, ``popularity``, ``ease``: one class each, following implicit's ``RecommenderBase`` contract
in ``base``) and the list merge with its cold-start backoff (``merge``). Nothing here imports Dask or
touches storage: every model is usable on one machine exactly as an implicit model is; ``encore.dist``
runs the same blocks on a cluster.
"""
