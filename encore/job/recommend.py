"""Auction-aware recommendations for every user: item-kNN first, then backoff, each with a reason.

Rules: only live listings are candidates (sold, unsold and ended ones never are); a user's own bid-on
or won listings are never recommended. Each user's list is item-kNN scores, then filled from their
favourite sub-categories (the same cosine machinery on sub-category keys reaches neighbouring
sub-categories and listings with no bids yet), then trending, then popular. ``source`` says which
step placed an item; ``because`` names the history item behind it. The auction rules
(:mod:`encore.job.rules`) then choose each list from a longer scored pool, and ``boosts`` names the rules
that moved a row.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from operator import attrgetter
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit
from scipy.sparse import csr_matrix

from encore import schema
from encore.config import ModelSettings, Settings
from encore.core.itemknn import ItemKNN, item_topk
from encore.core.make import make_model
from encore.core.popularity import top_items
from encore.dist.blocks import (
    Held,
    Remade,
    brought,
    computed,
    current_client,
    future_of,
    here,
    imap_blocks,
    n_worker_threads,
    where_held,
)
from encore.io.store import RunWriter, ShardWriter, shard_name
from encore.job import rules as auction
from encore.job.matrix import Matrix
from encore.report.tables import ListDigest


def live_mask(listings: pd.DataFrame, items: pd.Index, now: pd.Timestamp | None) -> np.ndarray:
    """True for listings that can be bid on at ``now``: status live, (when known) started and not yet ended."""
    cat = listings.set_index("listing_id").reindex(items)
    live = (cat["status"] == "live").fillna(False).to_numpy(dtype=bool).copy()
    if now is not None and "ends_at" in cat:
        ends = pd.to_datetime(cat["ends_at"])
        live &= (ends.isna() | (ends > now)).to_numpy(dtype=bool)
    if now is not None and "starts_at" in cat:
        starts = pd.to_datetime(cat["starts_at"])
        live &= (starts.isna() | (starts <= now)).to_numpy(dtype=bool)
    return live


@dataclass
class Backoff:
    """Per-item and per-sub-category lists used to fill lists that item-kNN leaves short."""

    sub_of_item: np.ndarray  # sub-category code per item (-1 unknown)
    sub_lists: list[np.ndarray]  # live items per sub-category, best first (new listings included)
    sub_similarity: np.ndarray  # sub-categories × sub-categories (see sub_similarity)
    trending: np.ndarray  # live items, best first
    popular: np.ndarray  # live items, best first
    trending_scores: np.ndarray
    popular_scores: np.ndarray


def sub_category_codes(listings: pd.DataFrame, items: pd.Index) -> tuple[np.ndarray, pd.MultiIndex]:
    """Sub-category code of each item column and the (category, sub-category) pairs they stand for.

    A sub-category is known by its pair: the same name under two categories ("7 day auction" under
    Watches and under Video Games) is two sub-categories, never one.
    """
    cat = listings.set_index("listing_id").reindex(items)[["category", "sub_category"]]
    pairs = pd.MultiIndex.from_frame(cat.astype("string").fillna(schema.UNKNOWN_CATEGORY))
    codes, uniques = pd.factorize(pairs, sort=True)
    return codes.astype(np.int64), pd.MultiIndex.from_tuples(uniques, names=["category", "sub_category"])


def user_sub_weights(X: csr_matrix, sub_of_item: np.ndarray, n_sub: int) -> csr_matrix:
    """Users × sub-categories: each user's total weight per sub-category."""
    onehot = csr_matrix((np.ones(len(sub_of_item), np.float32), (np.arange(len(sub_of_item)), sub_of_item)),
                        shape=(len(sub_of_item), n_sub))
    return (X @ onehot).tocsr().astype(np.float32)


def sub_similarity(X: csr_matrix, sub_of_item: np.ndarray, n_sub: int, k: int) -> np.ndarray:
    """Sub-categories × sub-categories: 1 on the diagonal, the cosine of each one's ``k`` nearest others
    (item-kNN on the coarse user × sub-category matrix), 0 elsewhere."""
    # In-process: tiny (sub-categories only).
    nbr, score, _ = item_topk(user_sub_weights(X, sub_of_item, n_sub), k=min(k, max(1, n_sub - 1)))
    S = np.eye(n_sub, dtype=np.float32)
    rows = np.repeat(np.arange(n_sub), nbr.shape[1])
    ok = nbr.ravel() >= 0
    S[rows[ok], nbr.ravel()[ok]] = score.ravel()[ok]
    return S


def user_sub_affinity(X: csr_matrix, sub_of_item: np.ndarray, similarity: np.ndarray) -> np.ndarray:
    """Rows of X × sub-categories: the user's weight share per sub-category, spread to neighbouring ones.

    Row by row, so a shard's task computes its own users' rows: only the small ``similarity`` is global.
    """
    dense = user_sub_weights(X, sub_of_item, similarity.shape[0]).toarray()
    totals = dense.sum(axis=1, keepdims=True)
    share = np.divide(dense, totals, out=np.zeros_like(dense), where=totals > 0)
    return share @ similarity


def build_backoff(m: Matrix, listings: pd.DataFrame, live: np.ndarray, settings: ModelSettings) -> Backoff:
    """Rank live listings globally, by trend (``m.recent`` against ``m.previous``, when the input has times) and
    by sub-category; relate sub-categories to each other. The models come from the settings, as the daily
    model does (:func:`encore.make_model`)."""
    popular = make_model(settings, "popularity").fit(m.X).item_scores_
    trend = (make_model(settings, "trending").fit(m.recent, previous=m.previous).item_scores_
             if m.recent is not None else popular * 0)
    k = settings.k
    sub_of_item, subs = sub_category_codes(listings, m.items)
    starts = listings.set_index("listing_id").reindex(m.items)["starts_at"]
    newness = pd.to_datetime(starts).rank(method="first").fillna(0).to_numpy() / (len(starts) + 1.0)
    within = trend + popular + 1e-3 * newness + 1e-6  # new listings with no bids still get a place
    sub_lists = [top_items(within, live & (sub_of_item == s)) for s in range(len(subs))]
    return Backoff(sub_of_item, sub_lists, sub_similarity(m.X, sub_of_item, len(subs), k),
                   top_items(trend, live), top_items(popular, live), trend, popular)


SOURCES = pd.Index(["itemknn", "subcategory", "trending", "popular", "outbid"])
_KNN, _SUB, _TRENDING, _POPULAR, _OUTBID = range(5)


@njit(nogil=True, cache=True)
def _add(stamp, mark, out_item, out_score, out_source, out_because, size, n, j, score, source, because):
    """Append j to one user's list unless already taken (history or earlier pick) or full; new size."""
    if size >= n or stamp[j] == mark:
        return size
    stamp[j] = mark
    out_item[size], out_score[size], out_source[size], out_because[size] = j, score, source, because
    return size + 1


@njit(nogil=True, cache=True)
def _heaviest(hist, weights, sub_of_item, sub):
    """The user's heaviest history item in ``sub`` (any sub when sub < 0), first on ties; -1 if none."""
    best, best_w = -1, np.float32(0)
    for p in range(len(hist)):
        if (sub < 0 or sub_of_item[hist[p]] == sub) and (best < 0 or weights[p] > best_w):
            best, best_w = hist[p], weights[p]
    return best


@njit(nogil=True, cache=True)
def _top_subs(prefs, max_subs):
    """Indices of the ``max_subs`` largest preferences, best first, smaller index first on ties."""
    chosen = np.full(min(max_subs, len(prefs)), -1, np.int64)
    for c in range(len(chosen)):
        for s in range(len(prefs)):
            taken = False
            for q in range(c):
                taken |= chosen[q] == s
            if not taken and (chosen[c] < 0 or prefs[s] > prefs[chosen[c]]):
                chosen[c] = s
    return chosen


@njit(nogil=True, cache=True)
def merge_lists(users, indptr, indices, data, knn_items, knn_scores, knn_because, sub_of_item, sub_ptr,
                sub_items, user_sub_scores, trending, trending_scores, popular, popular_scores, n, max_subs, width):
    """Each user's final list: kNN picks, then sub-category, trending and popular fills (see merge_block).

    The fills scan as far as a list of ``n`` needs; ``width`` >= n slots are kept, so the first ``n`` are
    the list of ``n`` and the rest continue it (the pool the auction rules choose from).
    Returns (item, score, source, because), each len(users) × width, unused slots with item -1.
    """
    m = len(users)
    out_item = np.full((m, width), -1, np.int64)
    out_score = np.zeros((m, width), np.float64)
    out_source = np.zeros((m, width), np.int8)
    out_because = np.full((m, width), -1, np.int64)
    stamp = np.zeros(len(sub_of_item), np.int64)
    for row in range(m):
        u, mark = users[row], row + 1
        hist, weights = indices[indptr[u]:indptr[u + 1]], data[indptr[u]:indptr[u + 1]]
        for p in range(len(hist)):
            stamp[hist[p]] = mark
        args = (out_item[row], out_score[row], out_source[row], out_because[row])
        size = 0
        for c in range(knn_items.shape[1]):
            if knn_items[row, c] >= 0:
                size = _add(stamp, mark, *args, size, width, np.int64(knn_items[row, c]),
                            np.float64(knn_scores[row, c]), _KNN, np.int64(knn_because[row, c]))
        if size < width:
            prefs = user_sub_scores[u]
            fallback = _heaviest(hist, weights, sub_of_item, np.int64(-1))
            for sub in _top_subs(prefs, max_subs):
                if prefs[sub] <= 0 or size >= width:
                    break
                because = _heaviest(hist, weights, sub_of_item, sub)
                because = fallback if because < 0 else because
                for q in range(sub_ptr[sub], min(sub_ptr[sub + 1], sub_ptr[sub] + n + len(hist))):
                    j = sub_items[q]
                    size = _add(stamp, mark, *args, size, width, j, np.float64(prefs[sub]), _SUB, because)
        for q in range(min(len(trending), 2 * n + len(hist))):
            j = trending[q]
            size = _add(stamp, mark, *args, size, width, j, trending_scores[j], _TRENDING, -1)
        for q in range(min(len(popular), 2 * n + len(hist))):
            j = popular[q]
            size = _add(stamp, mark, *args, size, width, j, popular_scores[j], _POPULAR, -1)
    return out_item, out_score, out_source, out_because


def merge_block(users: np.ndarray, X: csr_matrix, knn: tuple[np.ndarray, np.ndarray, np.ndarray],
                backoff: Backoff, n: int, max_subs: int = 3, width: int | None = None, frame: bool = True
                ) -> pd.DataFrame | tuple[np.ndarray, ...]:
    """Final lists for a block of users: kNN picks, then sub-category, trending and popular fills.

    Never an item from the user's history nor one twice. Sub-category fills take the user's best
    ``max_subs`` sub-categories (positive affinity only), ``because`` being the heaviest history item in
    that sub-category, else the heaviest overall. The per-user loop is a numba kernel
    (:func:`merge_lists`): it runs for every slot of every user's list. ``width`` (default ``n``) slots are
    kept per user; ``frame=False`` returns the kernel's arrays (the rules' pool) instead of a frame.
    """
    sub_ptr = np.zeros(len(backoff.sub_lists) + 1, np.int64)
    sub_ptr[1:] = np.cumsum([len(s) for s in backoff.sub_lists])
    sub_items = np.concatenate([np.asarray(s, np.int64) for s in backoff.sub_lists] or [np.zeros(0, np.int64)])
    knn_items, knn_scores, knn_because = knn
    item, score, source, because = merge_lists(
        np.asarray(users, np.int64), X.indptr, X.indices, X.data, knn_items, knn_scores, knn_because,
        backoff.sub_of_item, sub_ptr, sub_items, user_sub_affinity(X, backoff.sub_of_item, backoff.sub_similarity),
        np.asarray(backoff.trending, np.int64),
        backoff.trending_scores, np.asarray(backoff.popular, np.int64), backoff.popular_scores, n, max_subs,
        n if width is None else max(width, n))
    if not frame:
        return item, score, source, because
    return list_frame(users, item, score, source, because)


def list_frame(users: np.ndarray, item: np.ndarray, score: np.ndarray, source: np.ndarray, because: np.ndarray,
               boosts: np.ndarray | None = None) -> pd.DataFrame:
    """Users × slots arrays (item -1 unused) as one row per list entry, rank from 1 (and boosts, a bit mask)."""
    keep = item >= 0
    row, rank = np.nonzero(keep)
    return pd.DataFrame({"user": np.asarray(users, np.int64)[row], "rank": (rank + 1).astype(np.int16),
                         "item": item[keep], "score": score[keep].astype(np.float32),
                         "source": pd.Categorical.from_codes(source[keep], categories=SOURCES),
                         "because": because[keep],
                         **({} if boosts is None else {"boosts": boosts[keep]})})


def keep_lists(shard: int, recs: pd.DataFrame, outbid: pd.DataFrame | None = None,
               effects: dict[str, int] | None = None) -> pd.DataFrame:
    """The default shard sink: the lists themselves, returned to the caller."""
    return recs


def keep_both(shard: int, recs: pd.DataFrame, outbid: pd.DataFrame | None = None,
              effects: dict[str, int] | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """A shard sink returning the lists and the shard's outbid table (None without the rules)."""
    return recs, outbid


def _shard_task(block: tuple[int, np.ndarray], X: csr_matrix, uids: pa.Array, serving: Serving, live: np.ndarray,
                backoff: Backoff, items: np.ndarray, rules: auction.Rules | None, n: int, sink: Callable[..., Any],
                kind: str = "itemknn") -> Any:
    """One Dask task: one shard's lists, model scoring, backoff and the auction rules in one go, handed to
    ``sink`` there (with the shard's outbid table when the rules publish one).

    ``block`` is (shard, the matrix rows of its users); X and the uids are broadcast once, so the task
    slices its own rows and the client only sends row numbers. ``serving``'s similar items' item-kNN is the
    one whose neighbour lists the rules' MMR reads (None: the model's own, when it is the item-kNN); ``kind``
    labels the model's picks in ``source``.
    """
    model, similar = serving.model, serving.similar
    shard, rows = block
    uids = uids.take(pa.array(rows))
    order = pc.sort_indices(uids).to_numpy()  # lists come out by uid then rank, as a shard is stored
    uids, X = uids.take(pa.array(order)), X[rows[order]]
    local = np.arange(len(uids), dtype=np.int64)
    width = n if rules is None else n * rules.settings.pool
    if model is None:
        empty = np.full((len(uids), 0), -1)
        knn = (empty.astype(np.int32), empty.astype(np.float32), empty.astype(np.int32))
    else:
        knn = model.recommend(local, X, N=width, candidates=live, return_because=True)
    if rules is None:
        return sink(shard, _named(merge_block(local, X, knn, backoff, n), uids, items, kind))
    pool = merge_block(local, X, knn, backoff, n, width=width, frame=False)
    lists_of = model if similar is None else similar
    neighbours = (lists_of.neighbours_, lists_of.scores_) if hasattr(lists_of, "neighbours_") else None
    lists, removed, user = auction.apply(rules, rows[order], pool, n, _OUTBID, neighbours)
    recs = _named(list_frame(local, *lists), uids, items, kind)
    effects = {f"removed:{k}": int(v) for k, v in zip(auction.REMOVED, removed.tolist(), strict=True)}
    effects.update(auction.category_spread(lists[0], rules.category))
    effects.update(auction.boost_counts(lists[0], lists[4]))
    outbid = auction.outbid_frame(rules, user, uids.to_numpy(zero_copy_only=False), items) \
        if rules.settings.outbid_table else None
    return sink(shard, recs, outbid, effects)


def _scorer(model: ItemKNN | None) -> ItemKNN | None:
    """The model as shard tasks use it: neighbours and scores, without the support scoring never reads."""
    if model is None:
        return None
    scorer = copy.copy(model)
    scorer.support_ = None
    return scorer


@dataclass
class Serving:
    """What shard tasks score and diversify with: the model and the similar items' item-kNN (None when it is
    the model or unused), as :func:`_scorer` makes them. One object, so one pickle: distributed serialises
    a tuple's items one by one, and an array two of them share would travel and land twice."""

    model: ItemKNN | None
    similar: ItemKNN | None


def _serving(model: ItemKNN | None, similar: ItemKNN | None) -> Serving:
    """The :class:`Serving` of a model and the similar items' item-kNN, made together so that lists they share
    are one array: SparseEASE's support lists are the item-kNN's neighbours."""
    scorer = _scorer(model)
    lists = None if similar is None or similar is model else _scorer(similar)
    if lists is not None and getattr(scorer, "neighbours_", None) is not None \
            and np.array_equal(scorer.neighbours_, lists.neighbours_):
        scorer.neighbours_ = lists.neighbours_
    return Serving(scorer, lists)


def uid_array(users: pd.Index | np.ndarray) -> pa.Array:
    """The uids as one Arrow string array: pickled as buffers, not as a Python string per user."""
    return pa.array(users.array if isinstance(users, pd.Index) else users, pa.string())


def _shards_task(bounds: tuple[int, int], uids: pa.Array, shards: int) -> np.ndarray:
    """One Dask task: :func:`schema.shards_of` of uids[a:b]."""
    a, b = bounds
    return schema.shards_of(uids[a:b].to_pylist(), shards)


def shard_users(users: pd.Index | pa.Array, shards: int, client=None) -> list[np.ndarray]:
    """Matrix rows of the users of each shard (``schema.shard_of`` of their uid), in row order.

    With a client the uids are hashed on the workers, a slice per worker thread: the hash is a Python
    loop over the uids, which costs far more than sending the strings.
    """
    uids = users if isinstance(users, pa.Array) else uid_array(users)
    bounds = np.linspace(0, len(uids), n_worker_threads(client) + 1).astype(int)  # one slice without a client
    shard = np.concatenate(list(imap_blocks(client, _shards_task, zip(bounds[:-1].tolist(), bounds[1:].tolist()),
                                            (uids,), (shards,))))
    order = np.argsort(shard, kind="stable")
    return np.split(order, np.cumsum(np.bincount(shard, minlength=shards))[:-1])


def mmr_similar(similar: ItemKNN | Remade | None, settings: Settings) -> ItemKNN | Remade | None:
    """The similar items' item-kNN when the auction rules' MMR reads its lists (``rules.mmr_lambda`` set), else
    None: without MMR the shard tasks never read it, so no worker is sent a copy."""
    return similar if settings.rules.mmr_lambda is not None else None


def serving_of(model: ItemKNN | Remade | None, similar: ItemKNN | Remade | None, client=None) -> Serving | Remade:
    """What shard tasks score and diversify with (:class:`Serving`): made on the cluster from models fitted
    there, as a :class:`Remade` computed before this returns (made again if lost beyond its lineage), so the
    fitted models themselves may be let go; else here."""
    if isinstance(model, Remade) or isinstance(similar, Remade):
        return computed(Remade(lambda: (current_client(client).submit(_serving, future_of(model), future_of(similar),
                                                                       pure=False), [])))
    return _serving(model, similar)


def recommend_shards(m: Matrix, model: ItemKNN | Remade | None, backoff: Backoff, live: np.ndarray, n: int, shards: int,
                     client=None, sink: Callable[..., Any] = keep_lists, rules: auction.Rules | Held | None = None,
                     similar: ItemKNN | Remade | None = None, kind: str = "itemknn") -> Iterator[tuple[int, Any]]:
    """``(shard, sink(shard, lists))`` for every shard in order, each as soon as its task is done
    (:func:`shard_lists` with the :func:`serving_of` ``model`` and, with ``rules``, ``similar``)."""
    client = current_client(client)
    serving = serving_of(model, similar if rules is not None else None, client)
    yield from shard_lists(m, serving, backoff, live, n, shards, client, sink, rules, kind)


def shard_lists(m: Matrix, serving: Serving | Remade, backoff: Backoff, live: np.ndarray, n: int, shards: int,
                client=None, sink: Callable[..., Any] = keep_lists, rules: auction.Rules | Held | None = None,
                kind: str = "itemknn") -> Iterator[tuple[int, Any]]:
    """``(shard, sink(shard, lists))`` for every shard in order, each as soon as its task is done.

    Lists are uid, rank, item_id, score, source, because (item ids). One task per shard scores, merges
    and hands its lists to ``sink`` on the cluster: the pipeline's sink writes the shard and returns a
    digest, so neither the lists nor their writing pass through the client, which sends each task only
    its users' row numbers: X is broadcast once, and each task slices its own rows, rather than the client
    slicing and pickling X per shard. With ``rules`` the lists are chosen by the auction rules
    (:mod:`encore.job.rules`) from listings they allow, and gain ``boosts``; their MMR reads the neighbour
    lists of ``serving``'s similar items' item-kNN (None: the model's, when it is that item-kNN), so every
    kind gets its diversity from item-kNN neighbours. ``kind`` (``model.kind``) labels the model's picks.
    """
    client = current_client(client)
    uids = uid_array(m.users)
    blocks = enumerate(shard_users(uids, shards, client))
    if rules is not None:
        servable = brought(client, attrgetter("servable"), rules)
        live, backoff = live & servable, auction.narrow(backoff, servable)
    shared = (m.X, uids, serving, live, backoff, m.items.to_numpy(), rules)
    parts = imap_blocks(client, _shard_task, blocks, shared, (n, sink, kind), window=2 * n_worker_threads(client))
    yield from enumerate(parts)


def _named(part: pd.DataFrame, uids: np.ndarray, item_ids: np.ndarray, kind: str = "itemknn") -> pd.DataFrame:
    """Block rows and matrix columns of a block's lists replaced by uid and listing ids; the model's picks are
    labelled ``kind`` in ``source``.

    The string columns are gathered by Arrow from one string per user (or source), with no Python object
    per row.
    """
    because = part["because"].to_numpy()
    boosts = {} if "boosts" not in part else {"boosts": _strings(auction.boost_labels(), part["boosts"].to_numpy())}
    return pd.DataFrame({
        "uid": _strings(uids, part["user"].to_numpy()),
        "rank": part["rank"].to_numpy(),
        "item_id": item_ids[part["item"].to_numpy()],
        "score": part["score"].to_numpy(),
        "source": _strings(np.array([kind, *SOURCES[1:]]), part["source"].cat.codes.to_numpy()),
        "because": pd.Series(item_ids[because.clip(min=0)], dtype="Int64").mask(because < 0).array,
        **boosts,
    })


def _strings(values: np.ndarray | pa.Array, at: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """``values[at]`` as pandas' Arrow-backed ``str`` array, taken by Arrow."""
    values = values if isinstance(values, pa.Array) else pa.array(values, pa.string())
    return pd.array(values.take(pa.array(at)), dtype="str")


def cold_start(backoff: Backoff, items: pd.Index, n: int) -> pd.DataFrame:
    """The list for users with no history: trending, then popular."""
    picks: dict[int, tuple[float, str]] = {}
    for ranked, scores, source in ((backoff.trending, backoff.trending_scores, "trending"),
                                   (backoff.popular, backoff.popular_scores, "popular")):
        for j in ranked[: 2 * n]:
            if len(picks) < n:
                picks.setdefault(int(j), (float(scores[j]), source))
    return pd.DataFrame({"rank": np.arange(1, len(picks) + 1, dtype=np.int16),
                         "item_id": items.to_numpy()[list(picks)].astype(np.int64),
                         "score": np.asarray([p[0] for p in picks.values()], np.float32),
                         "source": [p[1] for p in picks.values()]})


def similar_table(model: ItemKNN, items: pd.Index, n: int) -> pd.DataFrame:
    """Published similar items: item_id, rank, neighbour_id, score, support."""
    width = min(n, model.neighbours_.shape[1])
    nbr, score, support = (a[:, :width] for a in (model.neighbours_, model.scores_, model.support_))
    ok = nbr >= 0
    rows, rank = np.nonzero(ok)
    ids = items.to_numpy()
    return pd.DataFrame({"item_id": ids[rows], "rank": (rank + 1).astype(np.int16),
                         "neighbour_id": ids[nbr[ok]], "score": score[ok], "support": support[ok]})


def write_similar(items: pd.Index, model: ItemKNN, n: int, write: ShardWriter) -> tuple[str, dict[str, int]]:
    """Runs in a task beside the fitted model: the similar-items table, written there."""
    return write.table("similar_items/part-0.parquet", similar_table(model, items, n))


def publish_shard(write: ShardWriter, personalize: bool, shard: int, recs: pd.DataFrame,
                  outbid: pd.DataFrame | None = None, effects: dict[str, int] | None = None
                  ) -> tuple[list[tuple[str, dict[str, int]]], ListDigest]:
    """Runs in a shard's task: write its lists (its outbid table, and the Personalize export when asked) and
    digest them for the report, so only a summary returns."""
    files = [write(shard, recs), *([write.personalize(shard, recs)] if personalize else [])]
    if outbid is not None:
        files.append(write.table(f"outbid/{shard_name(shard)}", outbid))
    digest = ListDigest.of(recs)
    if "boosts" in recs:
        digest.rules = rule_counts(outbid, effects or {})
    return files, digest


def rule_counts(outbid: pd.DataFrame | None, effects: dict[str, int]) -> dict[str, int]:
    """What the rules did to one shard's lists: ``effects`` (listings each took out of a list, the category
    spread, rows each rule moved) and the outbid rows published."""
    return {**effects, "outbid_rows": 0 if outbid is None else len(outbid)}


def run(m: Matrix, models, settings: Settings, writer: RunWriter, client, rules: auction.Rules | Held | None = None
        ) -> ListDigest:
    """Every user's list written shard by shard on the cluster (and the similar items beside the model);
    returns the digest of the lists for the report and records every file in ``writer``.

    With ``rules`` (:func:`encore.job.rules.prepare`) the lists obey the auction rules, and the cold-start
    list the store stage writes leaves out what they do not allow (``models.backoff`` is narrowed: its
    scores, which the popular tables read, stay as they are).
    """
    lists = ListDigest()
    similar = where_held(client, write_similar, m.items, future_of(models.similar), settings.recommend.similar_n,
                         writer.shard_writer())
    serving = serving_of(models.model, mmr_similar(models.similar, settings) if rules is not None else None, client)
    writer.record(*here(similar))
    for fitted in (models.model, models.similar):  # the shard tasks need only the serving copies: workers free
        if isinstance(fitted, Remade):  # the fitted models (the kNN's support, the solve's own lists)
            fitted.release()
    sink = partial(publish_shard, writer.shard_writer(), settings.recommend.personalize_export)
    parts = shard_lists(m, serving, models.backoff, models.live, settings.recommend.n, settings.output.shards,
                        client, sink, rules, settings.model.kind)
    if rules is not None:
        servable, removed = brought(client, auction.summary, rules)
        models.backoff = auction.narrow(models.backoff, servable)
        lists.rules = {f"removed:{k}": v for k, v in removed.items()}
    for _, (files, digest) in parts:
        for relpath, info in files:
            writer.record(relpath, info)
        lists.merge(digest)
    return lists
