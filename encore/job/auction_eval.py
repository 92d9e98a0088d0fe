"""``encore evaluate --rules``: the auction rules on and off, scored on held-out days.

The daily job is run as it would have run at a cut ``test_days`` before the last bid day: ingest stops
at the cut, listings are live when they started before it and end after it, and the model and backoff
are fitted on that past. Each variant of the rules then makes every user's list of ``k`` (the same
scored pool, the rules alone differ), and the lists are scored against what the users bid on in the
held-out days:

- ``NDCG@k`` and hit rate against every listing the user bid on in the test days (re-bids on listings
  they had bid on before included: an outbid buyer coming back is a hit), and ``NDCG@k new`` against
  the listings new to the user (the usual protocol, which never rewards an outbid reminder);
- catalogue ``coverage`` of the listings live at the cut;
- seller concentration: ``top seller share`` (the mean over lists of the largest share one seller
  holds), ``most of a seller`` (the most listings of one seller in any list) and ``seller HHI``
  (Herfindahl index of sellers over all recommendations);
- ``ends unbuyable``: the share of recommended listings ending before the lists are served
  (``rules.serve_after_hours`` after the cut), which nobody could buy.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from encore.config import Settings
from encore.errors import InputError
from encore.job import ingest as ingest_mod
from encore.job import matrix, models, rules
from encore.job.evaluate import hit_matrix, hit_rate, ndcg_at_k
from encore.job.recommend import keep_both, live_mask, mmr_similar, recommend_shards

NEUTRAL = {"serve_after_hours": 0.0, "ending_soon_boost": 0.0, "price_band_damping": 0.0, "max_per_seller": None,
           "exclude_own_listings": False, "outbid_slots": 0, "mmr_lambda": None}


def variants(settings: Settings) -> dict[str, dict[str, Any] | None]:
    """The rule settings compared: off, each rule alone (the others neutral), the defaults, the defaults
    with two outbid slots. None stands for ``rules.enabled: false``."""
    d = settings.rules
    alone = {"serve time": {"serve_after_hours": d.serve_after_hours},
             "ending soon": {"serve_after_hours": d.serve_after_hours, "ending_soon_boost": d.ending_soon_boost or 0.5},
             "price band": {"price_band_damping": d.price_band_damping or 1.0},
             "seller cap": {"max_per_seller": d.max_per_seller or 3},
             "own listings": {"exclude_own_listings": True},
             "outbid slots 2": {"outbid_slots": 2},
             "MMR 0.5": {"mmr_lambda": 0.5}}
    out: dict[str, dict[str, Any] | None] = {"rules off": None}
    out.update({f"only {name}": {**NEUTRAL, **change} for name, change in alone.items()})
    out["rules (defaults)"] = {}
    out["defaults + outbid slots 2"] = {"outbid_slots": max(2, d.outbid_slots)}
    return out


def with_rules(settings: Settings, change: dict[str, Any] | None) -> Settings:
    """``settings`` with the rules section changed (None: rules off)."""
    tree = settings.rules.model_dump()
    tree.update({"enabled": False} if change is None else change)
    return settings.model_copy(update={"rules": type(settings.rules).model_validate(tree)})


def as_of(listings: pd.DataFrame, cut: pd.Timestamp) -> pd.DataFrame:
    """The catalogue as it stood at ``cut``: live when started before it and ending after it."""
    starts, ends = pd.to_datetime(listings["starts_at"]), pd.to_datetime(listings["ends_at"])
    running = (starts.isna() | (starts <= cut)) & (ends.isna() | (ends > cut))
    return listings.assign(status=np.where(running, "live", np.where(listings["status"] == "live", "unsold",
                                                                      listings["status"])))


def with_window(settings: Settings, run_date: dt.date, days: int) -> Settings:
    """``settings`` reading ``days`` of bids ending on ``run_date``."""
    ingest = settings.ingest.model_copy(update={"run_date": run_date, "window_days": days})
    return settings.model_copy(update={"ingest": ingest})


def score_lists(recs: pd.DataFrame, truth_all: dict[str, np.ndarray], truth_new: dict[str, np.ndarray],
                listings: pd.DataFrame, n_live: int, serve: pd.Timestamp, k: int) -> dict[str, float]:
    """The metrics of one variant's lists (uid, rank, item_id) over the users with a truth."""
    users = list(truth_all)
    lists = recs.sort_values(["uid", "rank"]).groupby("uid")["item_id"].agg(list)
    top = np.full((len(users), k), -1, np.int64)
    for r, u in enumerate(users):
        got = lists.get(u, [])[:k]
        top[r, :len(got)] = got
    out: dict[str, float] = {}
    for label, truth in (("", truth_all), (" new", truth_new)):
        kept = [r for r, u in enumerate(users) if len(truth.get(u, ()))]
        hits = hit_matrix(top[kept], [truth[users[r]] for r in kept])
        per_user = ndcg_at_k(hits, np.array([len(truth[users[r]]) for r in kept]))
        out[f"NDCG@{k}{label}"] = float(per_user.mean())
        if not label:
            out[f"hit rate@{k}"] = float(hit_rate(hits).mean())
            out["_per_user"] = per_user
    cat = listings.set_index("listing_id")
    shown = recs[recs["rank"] <= k]
    seller = cat["seller_id"].reindex(shown["item_id"]).astype("string").fillna("?").to_numpy()
    ends = pd.to_datetime(cat["ends_at"].reindex(shown["item_id"])).to_numpy()
    per_list = pd.DataFrame({"uid": shown["uid"].to_numpy(), "seller": seller})
    sizes = per_list.groupby("uid").size()
    largest = per_list.groupby(["uid", "seller"]).size().groupby(level=0).max()
    share = pd.Series(seller).value_counts(normalize=True)
    out.update({"coverage": shown["item_id"].nunique() / max(n_live, 1),
                "top seller share": float((largest / sizes).mean()) if len(sizes) else float("nan"),
                "most of a seller": int(largest.max()) if len(largest) else 0,
                "seller HHI": float((share ** 2).sum()),
                "ends unbuyable": float((ends < np.datetime64(serve)).mean()) if len(ends) else 0.0})
    return out


def paired(rows: list[dict[str, Any]], k: int) -> None:
    """Add each variant's NDCG@k change against the first row (rules off) and its standard error, paired
    by user (the same users score every variant), so a change within noise reads as one."""
    base = rows[0].pop("_per_user")
    rows[0].update({f"dNDCG@{k}": 0.0, "se": 0.0})
    for row in rows[1:]:
        diff = row.pop("_per_user") - base
        row.update({f"dNDCG@{k}": float(diff.mean()), "se": float(diff.std(ddof=1) / np.sqrt(max(len(diff), 1)))})


def truths(test: pd.DataFrame, train: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per user, the listings bid on in the test days: all of them, and those new to the user."""
    test = test[["uid", "item_id"]].astype({"uid": str}).drop_duplicates()
    seen = set(zip(train["uid"].astype(str), train["item_id"], strict=True))
    new = test[[(u, i) not in seen for u, i in zip(test["uid"], test["item_id"], strict=True)]]
    every = {u: np.sort(g.to_numpy()) for u, g in test.groupby("uid")["item_id"]}
    fresh = {u: np.sort(g.to_numpy()) for u, g in new.groupby("uid")["item_id"]}
    return every, fresh


def evaluate_rules(settings: Settings, k: int = 10, test_days: int = 1, client=None
                   ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Fit on the days before the cut, make every variant's lists, score them on the held-out days (the
    input made sure of first, a synthetic lake generated when it is not there yet)."""
    from encore.dist.cluster import session
    from encore.job.prepare import ensure_lake

    if settings.lake.legacy_csv:
        raise InputError("encore evaluate --rules needs bids with dates: the legacy extract has none; "
                         "evaluate the rules on a lake")
    ensure_lake(settings)
    with session(settings, client) as active:
        return _evaluate(settings, k, test_days, active)


def _evaluate(settings: Settings, k: int, test_days: int, client) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    settings = settings.model_copy(update={"recommend": settings.recommend.model_copy(update={"n": k})})
    full = ingest_mod.ingest(with_window(settings, ingest_mod.resolve_window(settings, _days(settings)).end.date()
                                         - dt.timedelta(days=1), test_days))
    cut = full.window.start
    train_settings = with_window(settings, (cut - pd.Timedelta(days=1)).date(), settings.ingest.window_days)
    res = ingest_mod.ingest(train_settings)
    listings = as_of(res.listings, cut)
    every, fresh = truths(full.interactions, res.interactions)
    mats = matrix.run(res.interactions, listings, train_settings, cut)
    bids = rules.bid_state(res.interactions, mats.m)
    train_users = set(mats.m.users.astype(str))
    every = {u: t for u, t in every.items() if u in train_users}
    fresh = {u: t for u, t in fresh.items() if u in train_users}
    fitted = models.run(mats, listings, live_mask(listings, mats.m.items, cut), train_settings, client)
    serve = cut + pd.Timedelta(hours=settings.rules.serve_after_hours)
    rows = []
    for name, change in variants(settings).items():
        s = with_rules(train_settings, change)
        ctx = rules.run(s, mats.m, listings, fitted.live, cut, bids)
        parts = recommend_shards(mats.m, fitted.model, fitted.backoff, fitted.live, k, 4, client, keep_both, ctx,
                                 similar=mmr_similar(fitted.similar, s), kind=settings.model.kind)
        recs = pd.concat([p[0] for _, p in parts], ignore_index=True)
        rows.append({"model": name, **score_lists(recs, every, fresh, listings, int(fitted.live.sum()), serve, k)})
    paired(rows, k)
    split = {"kind": "rules", "cut": str(cut), "test_days": test_days, "train_users": int(mats.m.shape[0]),
             "test_users": len(every), "live_at_cut": int(fitted.live.sum()), "k": k,
             "serve_after_hours": settings.rules.serve_after_hours}
    return rows, split


def _days(settings: Settings) -> list[dt.date]:
    from encore.io import lake

    return lake.bid_days(*lake.filesystem(settings.lake.path, settings.lake.storage_options))


def run_rules_evaluation(settings: Settings, k: int = 10, test_days: int = 1, client=None
                         ) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """Compare the rules (:func:`evaluate_rules`) and write the results; returns rows, split, folder."""
    from encore.job.evaluation import write_evaluation

    rows, split = evaluate_rules(settings, k, test_days, client)
    return rows, split, write_evaluation(settings, rows, split)
