"""The store stage: the run's popular, trending and cold-start tables and its catalogue, written into the run."""

from __future__ import annotations

import numpy as np
import pandas as pd

from encore.config import Settings
from encore.io.store import CATALOGUE, RunWriter
from encore.job.matrix import Matrix
from encore.job.models import Models
from encore.job.recommend import cold_start


def run(models: Models, m: Matrix, listings: pd.DataFrame, settings: Settings, writer: RunWriter) -> None:
    """Write popular/{global,by_category,by_sub_category,trending,cold_start}.parquet and the catalogue."""
    for name, table in popular_tables(models.backoff, m, listings, models.live).items():
        writer.write_table(f"popular/{name}.parquet", table)
    writer.write_table("popular/cold_start.parquet", cold_start(models.backoff, m.items, settings.recommend.n))
    writer.write_table(CATALOGUE, catalogue(listings, m.items))


def popular_tables(backoff, m: Matrix, listings: pd.DataFrame, live: np.ndarray, top: int = 100
                   ) -> dict[str, pd.DataFrame]:
    """Global, per-category, per-sub-category and trending lists of live listings."""
    cat = listings.set_index("listing_id").reindex(m.items)
    frame = pd.DataFrame({"item_id": m.items.to_numpy(), "category": cat["category"].to_numpy(),
                          "sub_category": cat["sub_category"].to_numpy(),
                          "bidders": backoff.popular_scores, "trending": backoff.trending_scores})[live]
    frame = frame.sort_values(["bidders", "item_id"], ascending=[False, True])

    def ranked(df: pd.DataFrame, by: list[str], score: str) -> pd.DataFrame:
        df = df[df[score] > 0].sort_values([*by, score, "item_id"], ascending=[*[True] * len(by), False, True])
        df = df.assign(rank=df.groupby(by).cumcount() + 1 if by else np.arange(1, len(df) + 1))
        return df[df["rank"] <= top][[*by, "rank", "item_id", score]].rename(columns={score: "score"})

    return {"global": ranked(frame, [], "bidders"), "by_category": ranked(frame, ["category"], "bidders"),
            "by_sub_category": ranked(frame, ["category", "sub_category"], "bidders"),
            "trending": ranked(frame, [], "trending")}


def catalogue(listings: pd.DataFrame, items: pd.Index) -> pd.DataFrame:
    """The listings of the run's matrix as readers show them: title, category, price, end time (no seller).

    Published with the run so ``encore recommend`` and app teams can name what a list holds.
    """
    columns = ["listing_id", "title", "category", "sub_category", "price", "status", "ends_at"]
    found = listings.set_index("listing_id").reindex(items)
    return found.reset_index(names="listing_id").reindex(columns=columns)
