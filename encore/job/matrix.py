"""Indexing and the weighted user × item sparse matrix built from interactions.

Rows are users (sorted uids), columns the whole catalogue (sorted listing ids), so per-item arrays
(candidate masks, popularity) line up with matrix columns even for listings nobody has bid on yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from encore import schema
from encore.config import ModelSettings, Settings
from encore.core.weighting import cap_history, pair_visits
from encore.dist.blocks import brought, where_held


@dataclass
class Matrix:
    """The interaction matrix and the indexes that name its rows and columns."""

    users: pd.Index  # uid per row
    items: pd.Index  # listing id per column
    X: csr_matrix  # float32 interaction weights (or its future, when the matrix is held on the cluster)
    recency: np.ndarray | None  # per stored entry (aligned with X.data): last bid time in seconds, larger = newer
    recent: csr_matrix | None = None  # binary: bid on in the recent trending window
    previous: csr_matrix | None = None  # binary: bid on in the window before it

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.users), len(self.items)


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
    weight, recency = weights(inter, settings, now)
    order = row_major(rows, cols)
    if order is not None:
        rows, cols, weight, recency = rows[order], cols[order], weight[order], recency[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(users)))])
    X = csr_matrix((weight, cols, indptr), shape=shape)
    return Matrix(users, items, X, recency, *windows)


def weights(inter: pd.DataFrame, settings: ModelSettings, now: pd.Timestamp | None) -> tuple[np.ndarray, np.ndarray]:
    """Each interaction's weight (:func:`interaction_weight`, float32) and recency (its last bid in seconds,
    0 without one), computed ``CHUNK`` rows at a time so float64 temporaries stay that long."""
    weight, recency = np.empty(len(inter), np.float32), np.empty(len(inter), np.float64)
    for a in range(0, len(inter), CHUNK):
        part = inter.iloc[a:a + CHUNK]
        weight[a:a + CHUNK] = interaction_weight(part, settings, now)
        last = part["last_at"].to_numpy("datetime64[us]")
        recency[a:a + CHUNK] = np.where(np.isnat(last), 0.0, last.view(np.int64) / 1e6)
    return weight, recency


def _binary(keep: np.ndarray, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> csr_matrix:
    """The user × item matrix with a 1 where ``keep``."""
    return csr_matrix((np.ones(keep.sum(), np.float32), (rows[keep], cols[keep])), shape=shape)


@dataclass
class Matrices:
    """The matrix stage's result: the weighted matrix, its history-capped copy for the similarity, the
    pair visits (Σ deg²) of both and the number of interactions, for the manifest.

    When the matrices are held on the cluster (:func:`held`), ``m`` names the rows and columns here while its
    ``X`` and ``X_sim`` are futures, and ``whole`` is the future of the full :class:`Matrix`.
    """

    m: Matrix
    X_sim: csr_matrix | None
    visits: dict[str, int]
    interactions: int = 0
    whole: Any = None

    @property
    def full(self) -> Any:
        """The full matrix: ``m`` itself, or the future of the one held on the cluster."""
        return self.m if self.whole is None else self.whole


def run(inter: pd.DataFrame, listings: pd.DataFrame, settings: Settings, now: pd.Timestamp | None) -> Matrices:
    """Build the matrix over every listing of the catalogue and cap each user's history for the similarity."""
    return capped(build_matrix(inter, listings["listing_id"].to_numpy(), settings.model, now), settings)


def capped(m: Matrix, settings: Settings) -> Matrices:
    """``m`` with each user's history capped for the similarity, and the pair visits of both."""
    X_sim = cap_history(m.X, m.recency, settings.model.history_cap)
    return Matrices(m, X_sim, {"pair_visits": pair_visits(X_sim), "pair_visits_uncapped": pair_visits(m.X)},
                    int(m.X.nnz))


@dataclass
class Piece:
    """One partition's rows of the matrix, built where the partition is: its users (user keys, sorted), the
    entries per user, and per entry (by user, then column) the column in the catalogue's order, the weight,
    recency (:func:`build_matrix`'s), the trending flags, and the user's highest bid and last bid time (for
    the auction rules)."""

    keys: np.ndarray  # int64
    lengths: np.ndarray  # int64 entries per user
    cols: np.ndarray  # int32
    weight: np.ndarray  # float32
    recency: np.ndarray  # float64
    recent: np.ndarray  # int8
    previous: np.ndarray  # int8
    amount: np.ndarray  # float64 highest bid
    last: np.ndarray  # int64 µs, last bid


def piece_of(inter: pd.DataFrame, item_ids: np.ndarray, price: np.ndarray, has_winner: np.ndarray,
             winner: np.ndarray, settings: ModelSettings, now: pd.Timestamp | None) -> Piece:
    """The :class:`Piece` of one partition of ingest's interactions (``ukey``, ``listing_id``, ``n_bids``,
    ``spend``, ``max_amount``, ``last_at``, ``recent``, ``previous``), every listing in ``item_ids`` (sorted;
    ``price`` per listing), each sold listing's winner given as a user key (``winner`` where ``has_winner``).

    Weights are :func:`interaction_weight`'s, element by element, so pieces concatenated in user-key order
    give the arrays :func:`build_matrix` gives from the gathered interactions."""
    ukey = inter["ukey"].to_numpy(np.int64)
    listing = inter["listing_id"].to_numpy(np.int64)
    if len(ukey) > 1 and not bool(np.all((ukey[1:] > ukey[:-1]) | ((ukey[1:] == ukey[:-1]) &
                                                                    (listing[1:] > listing[:-1])))):
        order = np.lexsort((listing, ukey))
        inter, ukey, listing = inter.iloc[order], ukey[order], listing[order]
    cols = schema.id_positions(item_ids, listing).astype(np.int32)
    won = has_winner[cols] & (winner[cols] == ukey)
    last = inter["last_at"].to_numpy("datetime64[us]")
    rows = pd.DataFrame({"spend": inter["spend"].to_numpy(np.float64), "price": price[cols],
                         "n_bids": inter["n_bids"].to_numpy(), "won": won, "last_at": last}, copy=False)
    weight, recency = weights(rows, settings, now)
    new = np.r_[True, ukey[1:] != ukey[:-1]] if len(ukey) else np.zeros(0, bool)
    starts = np.flatnonzero(new)
    return Piece(ukey[new], np.diff(np.append(starts, len(ukey))).astype(np.int64), cols, weight, recency,
                 inter["recent"].to_numpy(np.int8), inter["previous"].to_numpy(np.int8),
                 inter["max_amount"].to_numpy(np.float64), last.view(np.int64))


@dataclass
class Rows:
    """Every user's matrix rows, the pieces concatenated in user-key order (users named by ``users``)."""

    users: pd.Index
    indptr: np.ndarray
    cols: np.ndarray
    weight: np.ndarray
    recency: np.ndarray
    recent: np.ndarray
    previous: np.ndarray
    amount: np.ndarray
    last: np.ndarray

    @classmethod
    def of(cls, pieces: list[Piece], users: pd.Index) -> Rows:
        """The pieces joined into preallocated arrays, each piece dropped from ``pieces`` once copied."""
        n = sum(len(p.cols) for p in pieces)
        names = ("cols", "weight", "recency", "recent", "previous", "amount", "last")
        out = {name: np.empty(n, getattr(pieces[0], name).dtype if pieces else np.float64) for name in names}
        lengths = np.concatenate([p.lengths for p in pieces]) if pieces else np.zeros(0, np.int64)
        at = 0
        for i in range(len(pieces)):
            piece, pieces[i] = pieces[i], None
            size = len(piece.cols)
            for name in names:
                out[name][at:at + size] = getattr(piece, name)
            at += size
        return cls(users, np.concatenate([[0], np.cumsum(lengths)]), **out)

    def row_of_entry(self) -> np.ndarray:
        """The user row (int32) of each entry."""
        return np.repeat(np.arange(len(self.users), dtype=np.int32), np.diff(self.indptr))


def catalogue_items(listings: pd.DataFrame) -> pd.Index:
    """The matrix columns: every listing id of the catalogue, sorted."""
    return pd.Index(_sorted_ids(listings["listing_id"].to_numpy()), name="item_id")


def from_rows(rows: Rows, listings: pd.DataFrame, settings: Settings, now: pd.Timestamp | None) -> Matrices:
    """:func:`run` from rows built in the partitions (:func:`piece_of`): the same matrices, with no
    interactions frame on the client."""
    items = catalogue_items(listings)
    shape = (len(rows.users), len(items))
    windows = [None, None]
    if now is not None:
        row = rows.row_of_entry()
        windows = [_binary(flags > 0, row, rows.cols, shape) for flags in (rows.recent, rows.previous)]
    X = csr_matrix((rows.weight, rows.cols, rows.indptr), shape=shape)
    return capped(Matrix(rows.users, items, X, rows.recency, *windows), settings)


def _summary(mats: Matrices) -> tuple[pd.Index, pd.Index, dict[str, int], int]:
    """A task: what the client keeps of matrices held on the cluster (users, items, pair visits, interactions)."""
    return mats.m.users, mats.m.items, mats.visits, mats.interactions


def held(rows: Any, listings: Any, settings: Settings, now: pd.Timestamp | None, client) -> Matrices:
    """:func:`from_rows` where ``rows`` is: a future of :class:`Rows` on the cluster gives matrices that stay
    there (see :class:`Matrices`), so no per-interaction array reaches the client; rows here give them here.
    ``listings`` may be held on the cluster too (a future)."""
    mats = where_held(client, from_rows, rows, listings, settings, now)
    if isinstance(mats, Matrices):
        return mats
    users, items, visits, interactions = brought(client, _summary, mats)
    X, X_sim, whole = (where_held(client, attrgetter(name), mats) for name in ("m.X", "X_sim", "m"))
    return Matrices(Matrix(users, items, X, None), X_sim, visits, interactions, whole)
