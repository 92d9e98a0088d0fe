"""The models stage: item-kNN fitted on the cluster (the result stays there), live listings and the backoff."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

import encore
from encore.config import Settings
from encore.dist.blocks import Remade
from encore.dist.fit import fit_on_cluster
from encore.job.matrix import Matrices
from encore.job.recommend import Backoff, build_backoff, live_mask


@dataclass
class Models:
    """What recommending needs: the fitted model (on the cluster), the live listings, the backoff lists."""

    model: Remade | None
    live: np.ndarray
    backoff: Backoff


def run(mats: Matrices, listings: pd.DataFrame, now: pd.Timestamp | None, settings: Settings, client) -> Models:
    """Fit the configured model on the capped matrix and rank the backoff lists over the live listings."""
    model = fit_on_cluster(encore.make_model(settings), mats.X_sim, client)
    live = live_mask(listings, mats.m.items, now)
    backoff = build_backoff(mats.m, listings, live, settings.model)
    return Models(model, live, backoff)
