"""Indexing and the weighted user × item sparse matrix built from interactions.

Rows are users (sorted uids), columns the whole catalogue (sorted listing ids), so per-item arrays
(candidate masks, popularity) line up with matrix columns even for listings nobody has bid on yet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from encore.config import ModelSettings, Settings
from encore.core.weighting import cap_history, pair_visits


@dataclass
class Matrix:
    """The interaction matrix and the indexes that name its rows and columns."""

    users: pd.Index  # uid per row
    items: pd.Index  # listing id per column
    X: csr_matrix  # float32 interaction weights
    recency: np.ndarray  # per stored entry (aligned with X.data): last bid time in seconds, larger = newer
    recent: csr_matrix | None = None  # binary: bid on in the recent trending window
    previous: csr_matrix | None = None  # binary: bid on in the window before it

    @property
    def shape(self) -> tuple[int, int]:
        return self.X.shape


def interaction_weight(inter: pd.DataFrame, settings: ModelSettings, now: pd.Timestamp | None) -> np.ndarray:
    """Weight of each (user, listing): grows with bids and relative spend, more if won, decays with age.

    ``w = (1 + ln n_bids) · (1 + spend_weight · ln(1 + spend / price)) · won_boost^won · 0.5^(age / half_life)``;
    without times (legacy input) there is no decay. Plain numpy, in place: no pandas datetime arithmetic
    and no new temporary per step.
    """
    spend = inter["spend"].to_numpy(dtype=np.float64)
    price = inter["price"].to_numpy(dtype=np.float64)
    rel = np.divide(spend, price, out=np.zeros_like(spend), where=np.nan_to_num(price) > 0)
    np.nan_to_num(rel, copy=False)
    np.log1p(rel.clip(min=0, out=rel), out=rel)
    weight = np.log(inter["n_bids"].to_numpy(dtype=np.float64).clip(min=1))
    weight += 1.0
    rel *= settings.spend_weight
    rel += 1.0
    weight *= rel
    weight[inter["won"].to_numpy(dtype=bool)] *= settings.won_boost
    last = inter["last_at"].to_numpy("datetime64[us]")
    if now is not None and not np.isnat(last).all():
        age = (pd.Timestamp(now).to_datetime64().astype("datetime64[us]") - last) / np.timedelta64(1, "D")
        np.nan_to_num(age, copy=False)
        weight *= np.power(0.5, age.clip(min=0, out=age) / settings.half_life_days)
    return weight.astype(np.float32)


CHUNK = 1 << 22  # rows per step when deriving per-entry arrays: bounds the temporaries to CHUNK rows


def row_major(rows: np.ndarray, cols: np.ndarray) -> np.ndarray | None:
    """The permutation sorting entries by (row, column), or None when they are sorted already.

    Both are non-negative indexes below 2³¹: one argsort of a packed int64 key, where ``np.lexsort``
    would sort by two keys in turn. Ingest hands interactions over sorted, so usually nothing moves, and
    the check runs chunk by chunk rather than building the whole key.
    """
    def key(a: int, b: int) -> np.ndarray:
        return (np.asarray(rows[a:b], dtype=np.int64) << 32) | np.asarray(cols[a:b], dtype=np.int64)

    for a in range(0, max(len(rows) - 1, 0), CHUNK):
        k = key(a, a + CHUNK + 1)
        if not bool(np.all(k[1:] >= k[:-1])):
            return np.argsort(key(0, len(rows)), kind="stable")
    return None


def user_rows(inter: pd.DataFrame, users: pd.Index | None = None) -> tuple[pd.Index, np.ndarray]:
    """The users (``users``, or every uid in ``inter``, sorted) and the row (int32) of each interaction.

    Ingest hands ``uid`` over as a categorical whose categories are already the users: then this costs
    nothing; plain strings (legacy input, tests) are categorised here.
    """
    uid = inter["uid"]
    if isinstance(uid.dtype, pd.CategoricalDtype) and (users is None or uid.cat.categories.equals(users)):
        return pd.Index(uid.cat.categories, name="uid"), uid.cat.codes.to_numpy().astype(np.int32, copy=False)
    cat = pd.Categorical(uid if isinstance(uid.dtype, pd.CategoricalDtype) else uid.astype(str), categories=users)
    return pd.Index(cat.categories, name="uid"), cat.codes.astype(np.int32, copy=False)


def item_columns(items: pd.Index, item_ids: pd.Series) -> np.ndarray:
    """The column (int32) of each interaction's listing, looked up chunk by chunk."""
    cols = np.empty(len(item_ids), np.int32)
    for a in range(0, len(item_ids), CHUNK):
        cols[a:a + CHUNK] = items.get_indexer(item_ids.iloc[a:a + CHUNK])
    return cols


def _sorted_ids(item_ids: np.ndarray) -> np.ndarray:
    """The distinct ids, sorted: a catalogue usually comes sorted and distinct, then nothing is hashed."""
    ids = np.asarray(item_ids, dtype=np.int64)
    return ids if len(ids) < 2 or bool(np.all(ids[1:] > ids[:-1])) else np.unique(ids)


def build_matrix(inter: pd.DataFrame, item_ids: np.ndarray, settings: ModelSettings,
                 now: pd.Timestamp | None) -> Matrix:
    """The weighted CSR over all users in ``inter`` and all listings in ``item_ids``, and (when ``inter`` has the
    trending flags and times) the binary matrices of the recent window and the one before.

    Weights and recency are computed chunk by chunk into preallocated arrays, so their float64
    temporaries are ``CHUNK`` rows long rather than a whole column each.
    """
    users, rows = user_rows(inter)
    items = pd.Index(_sorted_ids(item_ids), name="item_id")
    cols = item_columns(items, inter["item_id"])
    if len(cols) and cols.min() < 0:  # bids on listings missing from the catalogue (legacy input): add them
        items = pd.Index(np.union1d(items, inter["item_id"].to_numpy(np.int64)[cols < 0]), name="item_id")
        cols = item_columns(items, inter["item_id"])
    shape = (len(users), len(items))
    windows = [None, None]
    if now is not None and "recent" in inter.columns:
        windows = [_binary(inter[flag].to_numpy() > 0, rows, cols, shape) for flag in ("recent", "previous")]
    weight, recency = np.empty(len(inter), np.float32), np.empty(len(inter), np.float64)
    for a in range(0, len(inter), CHUNK):
        part = inter.iloc[a:a + CHUNK]
        weight[a:a + CHUNK] = interaction_weight(part, settings, now)
        last = part["last_at"].to_numpy("datetime64[us]")
        recency[a:a + CHUNK] = np.where(np.isnat(last), 0.0, last.view(np.int64) / 1e6)
    order = row_major(rows, cols)
    if order is not None:
        rows, cols, weight, recency = rows[order], cols[order], weight[order], recency[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(users)))])
    X = csr_matrix((weight, cols, indptr), shape=shape)
    return Matrix(users, items, X, recency, *windows)


def _binary(keep: np.ndarray, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> csr_matrix:
    """The user × item matrix with a 1 where ``keep``."""
    return csr_matrix((np.ones(keep.sum(), np.float32), (rows[keep], cols[keep])), shape=shape)


@dataclass
class Matrices:
    """The matrix stage's result: the weighted matrix, its history-capped copy for the similarity, and the
    pair visits (Σ deg²) of both, for the manifest."""

    m: Matrix
    X_sim: csr_matrix | None
    visits: dict[str, int]


def run(inter: pd.DataFrame, listings: pd.DataFrame, settings: Settings, now: pd.Timestamp | None) -> Matrices:
    """Build the matrix over every listing of the catalogue and cap each user's history for the similarity."""
    m = build_matrix(inter, listings["listing_id"].to_numpy(), settings.model, now)
    X_sim = cap_history(m.X, m.recency, settings.model.history_cap)
    return Matrices(m, X_sim, {"pair_visits": pair_visits(X_sim), "pair_visits_uncapped": pair_visits(m.X)})
