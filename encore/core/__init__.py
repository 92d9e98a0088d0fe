"""The recommender core: numpy, scipy and numba only.

Kernels (``kernels``: item-item top-K, user scoring), interaction weighting (``weighting``), the models
(``itemknn``, ``popularity``, ``ease``: one class each, following implicit's ``RecommenderBase`` contract
in ``base``) and ``make``, where settings become a model (it reads ``encore.config``'s settings classes,
nothing else outside the core). Nothing here imports Dask or touches storage: every model is usable on
one machine exactly as an implicit model is; ``encore.dist`` runs the same blocks on a cluster.
"""
