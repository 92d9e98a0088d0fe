"""The models stage: the configured model (``model.kind``) and the item-kNN of the similar items, fitted on
the cluster where they can be (the results stay there), the live listings and the backoff."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

import encore
from encore.config import Settings
from encore.core.base import Recommender
from encore.core.sparse_ease import SparseEASE
from encore.dist.blocks import Held, Remade, brought, here, where_held
from encore.dist.fit import fit_on_cluster, solve_on_cluster
from encore.errors import ConfigError
from encore.job.matrix import Matrices
from encore.job.recommend import Backoff, build_backoff


@dataclass
class Models:
    """What recommending needs: the fitted model (on the cluster, or in the client for the in-process kinds),
    the item-kNN of the published similar items (the same object when ``model.kind`` is itemknn), the live
    listings and the backoff lists."""

    model: Remade | Recommender | None
    live: np.ndarray
    backoff: Backoff
    similar: Remade | None = None


def check_kind(settings: Settings, n_items: int) -> None:
    """Refuse a dense ``ease`` on a catalogue larger than ``model.ease_max_items``, before any fitting."""
    m = settings.model
    if m.kind == "ease" and n_items > m.ease_max_items:
        raise ConfigError(f"config error: model.kind ease needs items² memory and items³ time: {n_items} items > "
                          f"model.ease_max_items {m.ease_max_items}; use model.kind sparse_ease (the same regression "
                          "on each item's k-NN support) for this catalogue")


def _counts(X: csr_matrix) -> tuple[np.ndarray, int]:
    """Users per item (int64) of a user × item matrix, and its number of users."""
    return np.bincount(X.indices, minlength=X.shape[1]), X.shape[0]


def fit_model(X, settings: Settings, knn: Remade, client) -> Remade | Recommender:
    """The ``model.kind`` model fitted on the capped matrix ``X`` (or its future on the cluster); ``knn`` is
    the fitted item-kNN."""
    kind = settings.model.kind
    if kind == "itemknn":
        return knn
    model = encore.make_model(settings)
    if isinstance(model, SparseEASE):  # the same kNN lists are its support: one similarity fit for both
        popularity, n_users = brought(client, _counts, X)
        return solve_on_cluster(model, knn, popularity, n_users, client)
    return model.fit(here(X), show_progress=False)  # als, sansa, ease: in this process


def run(mats: Matrices, listings: pd.DataFrame | Held, live: np.ndarray, settings: Settings, client) -> Models:
    """Fit the configured model and the similar items' item-kNN on the capped matrix, and rank the backoff
    lists over the ``live`` listings (:func:`~encore.job.recommend.live_mask` of the matrix's items), each where
    the matrices are. The backoff is submitted first, so it runs while a worker would otherwise wait on the
    fits' serial steps (plan, stacking)."""
    check_kind(settings, mats.m.shape[1])
    backoff = where_held(client, build_backoff, mats.full, listings, live, settings.model)
    knn = fit_on_cluster(encore.make_model(settings, "itemknn"), mats.X_sim, client)
    model = fit_model(mats.X_sim, settings, knn, client)
    return Models(model, live, here(backoff), knn)
