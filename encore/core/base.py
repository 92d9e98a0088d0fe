"""The contract every encore model follows: implicit's (>= 0.5) ``RecommenderBase``, plus keyword-only extras.

``fit(user_items, show_progress=True)``, ``recommend(userid, user_items, N=10, filter_already_liked_items=True,
filter_items=None, recalculate_user=False, items=None)``, ``similar_items(itemid, N=10, recalculate_item=False,
item_users=None, filter_items=None, items=None)``, ``save(path)`` and ``load(path)`` take implicit's arguments in
implicit's order with implicit's meaning. encore's own options come after them and are keyword-only:
``candidates`` (a boolean mask over items) and ``return_because`` (the history item behind each
recommendation). Parameters are stored as given in ``__init__`` (scikit-learn style, so ``get_params`` and
``save`` read them back); fitted attributes end in ``_``.

Where encore departs from implicit, on purpose:

- Results always have N columns, padded with item -1 and score 0, for one user too. implicit pads batch rows
  with -1 and -FLT_MAX and returns shorter arrays for one user; a fixed width makes a user's row the same
  whether asked alone or in a batch, and a finite pad keeps score arrays summable. Item -1 marks the
  padding (item-kNN and popularity scores are all positive; EASE's can be negative).
- ``items`` restricts the candidates: at most N of them, each with a positive score. implicit's item-item
  models also append the requested items they cannot score (with -FLT_MAX), the old ``rank_items``.
- ``user_items`` may be any 2-D scipy sparse matrix or array: it is converted to CSR float32 (implicit
  raises on anything but CSR).
"""

from __future__ import annotations

import importlib
import inspect
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy.sparse import csr_matrix

FORMAT = "encore-model-1"
PARAMS_KEY = "__params__"
MODEL_CLASSES: dict[str, type[Recommender]] = {}
MODEL_MODULES = ("encore.core.itemknn", "encore.core.popularity", "encore.core.ease", "encore.core.sparse_ease",
                 "encore.core.als", "encore.core.sansa")


class NotFittedError(ValueError, AttributeError):
    """A model used before ``fit`` or ``load``."""


def check_user_items(user_items) -> csr_matrix:
    """A user × item CSR with float32 data and sorted indices (copied only when needed)."""
    X = user_items if isinstance(user_items, csr_matrix) else csr_matrix(user_items)
    if X.dtype != np.float32:
        X = X.astype(np.float32)
    if not X.has_sorted_indices:
        X = X.sorted_indices()
    return X


def padded(n_rows: int, N: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empty result arrays (items int32 -1, scores float32 0, because int32 -1), ``n_rows`` × ``N``."""
    return np.full((n_rows, N), -1, np.int32), np.zeros((n_rows, N), np.float32), np.full((n_rows, N), -1, np.int32)


def _id_count(ids, name: str) -> tuple[bool, int]:
    """(whether ``ids`` is one id, how many ids) of a scalar or 1-D ``userid`` / ``itemid``."""
    if np.ndim(ids) == 0:
        return True, 1
    if np.ndim(ids) != 1:
        raise ValueError(f"{name} must be one id or a 1-D array of ids, got shape {np.shape(ids)}")
    return False, len(ids)


def _item_ids(ids, n_items: int, name: str) -> np.ndarray:
    """``ids`` as int64 item ids, IndexError (as implicit) when one is not an item of the model."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    bad = ids[(ids < 0) | (ids >= n_items)]
    if bad.size:
        raise IndexError(f"{name} holds ids that are not items of the model (0..{n_items - 1}): {bad[:5].tolist()}")
    return ids


def item_mask(n_items: int, filter_items=None, items=None, candidates=None) -> np.ndarray | None:
    """The boolean mask of items that may be returned, or None when every item may.

    ``candidates`` (encore's mask), ``items`` (only these ids) and ``filter_items`` (never these ids) all
    narrow it. As in implicit, ``items`` and ``filter_items`` cannot be combined, ``items`` must name items
    of the model, and ``filter_items`` ids outside the model are ignored (they are never returned anyway).
    """
    if filter_items is not None and items is not None:
        raise ValueError("filter_items and items cannot be combined (as in implicit): pass only the allowed items")
    mask = None
    if candidates is not None:
        mask = np.asarray(candidates)
        if mask.dtype != np.bool_ or mask.shape != (n_items,):
            raise ValueError(f"candidates must be a boolean mask over the {n_items} items, got {mask.dtype} of "
                             f"shape {mask.shape} (to allow item ids, pass items=)")
    if items is not None:
        allowed = np.zeros(n_items, np.bool_)
        allowed[_item_ids(items, n_items, "items")] = True
        mask = allowed if mask is None else mask & allowed
    if filter_items is not None:
        ids = np.asarray(filter_items, dtype=np.int64).reshape(-1)
        mask = np.ones(n_items, np.bool_) if mask is None else mask.copy()
        mask[ids[(ids >= 0) & (ids < n_items)]] = False
    return mask


def one_row_per_user(user_items, n_users: int, n_items: int) -> csr_matrix:
    """``user_items`` checked to hold one row per requested user and the model's items."""
    X = check_user_items(user_items)
    if X.shape[0] != n_users:
        raise ValueError(f"user_items has {X.shape[0]} rows for {n_users} userid(s): pass one row per requested "
                         "user, in the order of userid (user_items[userid], as in implicit)")
    if X.shape[1] != n_items:
        raise ValueError(f"user_items has {X.shape[1]} items, the model was fitted on {n_items}")
    return X


def _plain(value: Any) -> Any:
    """A numpy scalar parameter as the Python number JSON can hold."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"parameter value {value!r} cannot be saved as JSON")


class Recommender(ABC):
    """Base class: fit on a user × item matrix, recommend items to users from their rows.

    A subclass names its fitted arrays in ``fitted_arrays`` (the first one has a row per item) and
    implements ``fit`` and ``_recommend``; item-item models also implement ``_similar``.
    """

    fitted_arrays: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Register the class by name, so :meth:`load` finds the class a file was saved from."""
        super().__init_subclass__(**kwargs)
        MODEL_CLASSES[cls.__name__] = cls

    @abstractmethod
    def fit(self, user_items: csr_matrix, show_progress: bool = True) -> Recommender:
        """Learn from the user × item interaction matrix; return self.

        ``show_progress`` is accepted for implicit's signature; encore's fits show no progress bar.
        """

    @abstractmethod
    def _recommend(self, user_items: csr_matrix, N: int, mask: np.ndarray | None, exclude_seen: bool,
                   because: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(items, scores, because or None) for every row of the checked ``user_items``, padded to N."""

    def _similar(self, itemids: np.ndarray, N: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(items, scores) most similar to each of ``itemids``, padded to N (item-item models only)."""
        raise NotImplementedError(f"{type(self).__name__} has no item-item similarities")

    def __getstate__(self) -> dict[str, Any]:
        """The model without what it keeps only to be faster (``_kept``): a copy sent elsewhere makes its own."""
        return {k: v for k, v in self.__dict__.items() if k != "_kept"}

    @property
    def n_items(self) -> int:
        """Number of items the model was fitted on; NotFittedError before ``fit``."""
        array = getattr(self, self.fitted_arrays[0], None)
        if array is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(user_items) or load(path) first")
        return int(array.shape[0])

    def get_params(self) -> dict[str, Any]:
        """The ``__init__`` parameters as stored on the model."""
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        names = [p.name for p in inspect.signature(type(self).__init__).parameters.values() if p.kind in named]
        return {name: getattr(self, name) for name in names if name != "self"}

    def recommend(
        self,
        userid,
        user_items: csr_matrix,
        N: int = 10,
        filter_already_liked_items: bool = True,
        filter_items=None,
        recalculate_user: bool = False,
        items=None,
        *,
        candidates: np.ndarray | None = None,
        return_because: bool = False,
    ) -> tuple[np.ndarray, ...]:
        """Top-N (item ids int32, scores float32[, because int32]) for one user or a batch of users.

        ``user_items`` holds the requested users' rows only, one per id of ``userid`` in that order
        (``user_items[userid]`` of the full matrix, as in implicit); a different row count is a ValueError.
        The models score from these rows alone, so ``userid`` only says how many users there are and
        whether the result is 1-D (one id) or 2-D (an array of ids). ``filter_already_liked_items`` drops
        the items of each user's row; ``filter_items`` are ids never returned; ``items`` restricts the
        result to these ids. ``recalculate_user`` is accepted and changes nothing: no encore model keeps
        per-user state, every call computes from the rows given.

        Keyword-only extras: ``candidates`` is a boolean mask over items (False: never returned; the daily
        job passes the live auctions); ``return_because`` adds a third array, the history item behind
        each recommendation (-1 when the model has none, and for padding). Rows are padded with item -1
        and score 0.
        """
        n_items = self.n_items
        scalar, n_users = _id_count(userid, "userid")
        if int(N) < 0:
            raise ValueError(f"N must be >= 0, got {N}")
        X = one_row_per_user(user_items, n_users, n_items)
        mask = item_mask(n_items, filter_items, items, candidates)
        out = self._recommend(X, int(N), mask, bool(filter_already_liked_items), bool(return_because))
        out = out if return_because else out[:2]
        return tuple(a[0] for a in out) if scalar else tuple(out)

    def similar_items(self, itemid, N: int = 10, recalculate_item: bool = False, item_users=None,
                      filter_items=None, items=None) -> tuple[np.ndarray, np.ndarray]:
        """Top-N (item ids int32, scores float32) most similar to one item (1-D) or each of an array (2-D).

        Item-item models only (others raise NotImplementedError). As in implicit's item-item models the item
        itself is a candidate, with its similarity to itself; ``filter_items`` are ids never returned,
        ``items`` restricts the result to these ids. ``recalculate_item`` (and its ``item_users``) is not
        supported, as in implicit's item-item models. Padded with item -1 and score 0.
        """
        if recalculate_item:
            raise NotImplementedError("recalculate_item is not supported: similarities come from the fitted model")
        n_items = self.n_items
        scalar, _ = _id_count(itemid, "itemid")
        if int(N) < 0:
            raise ValueError(f"N must be >= 0, got {N}")
        ids, scores = self._similar(_item_ids(itemid, n_items, "itemid"), int(N),
                                    item_mask(n_items, filter_items, items))
        return (ids[0], scores[0]) if scalar else (ids, scores)

    def save(self, path: str | Path) -> Path:
        """Write the fitted arrays and the parameters (JSON) to ``path`` as ``.npz`` (no pickled code).

        As with numpy and implicit, ``.npz`` is appended when missing; returns the path written.
        """
        header = {"format": FORMAT, "class": type(self).__name__, "n_items": self.n_items,
                  "params": self.get_params()}
        path = Path(path)
        path = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
        arrays = {name: getattr(self, name) for name in self.fitted_arrays if getattr(self, name, None) is not None}
        np.savez(path, **{PARAMS_KEY: np.array(json.dumps(header, default=_plain))}, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """The model saved at ``path`` by :meth:`save` (``.npz`` appended when missing).

        ``Recommender.load`` returns whichever model the file holds; ``ItemKNN.load`` insists on an ItemKNN.
        """
        for module in MODEL_MODULES:  # registers their classes, whichever the caller imported
            importlib.import_module(module)
        path = Path(path)
        path = path if path.suffix == ".npz" or path.exists() else path.with_name(path.name + ".npz")
        with np.load(path, allow_pickle=False) as data:
            if PARAMS_KEY not in data.files:
                raise ValueError(f"{path} is not an encore model file (no {PARAMS_KEY} entry): write it with save()")
            header = json.loads(str(data[PARAMS_KEY]))
            model_cls = MODEL_CLASSES.get(header.get("class"))
            if header.get("format") != FORMAT or model_cls is None:
                raise ValueError(f"{path} holds an unknown model {header.get('class')!r} "
                                 f"(format {header.get('format')!r}): save it again with this version of encore")
            if not issubclass(model_cls, cls):
                raise TypeError(f"{path} holds a {model_cls.__name__} model, not a {cls.__name__}: load it with "
                                 f"{model_cls.__name__}.load or Recommender.load")
            model = model_cls(**header["params"])
            for name in model_cls.fitted_arrays:
                setattr(model, name, data[name] if name in data.files else None)
        return model
