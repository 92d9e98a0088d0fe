"""Column names, dtypes and reject reasons shared by every stage: the lake's and the outputs' data contract."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

BIDS = pa.schema(
    [
        ("bid_id", pa.int64()),
        ("uid", pa.string()),
        ("listing_id", pa.int64()),
        ("amount", pa.float64()),
        ("created_at", pa.timestamp("us")),
    ]
)
LISTINGS = pa.schema(
    [
        ("listing_id", pa.int64()),
        ("title", pa.string()),
        ("category", pa.string()),
        ("sub_category", pa.string()),
        ("price", pa.float64()),
        ("seller_id", pa.string()),
        ("status", pa.string()),
        ("starts_at", pa.timestamp("us")),
        ("ends_at", pa.timestamp("us")),
    ]
)
USERS = pa.schema([("uid", pa.string()), ("user_name", pa.string()), ("created_at", pa.timestamp("us"))])

STATUSES = ("live", "sold", "unsold")

# Interactions: one row per (uid, listing_id) after validation.
INTERACTION_COLUMNS = [
    "uid",
    "item_id",
    "n_bids",
    "spend",
    "max_amount",
    "first_at",
    "last_at",
    "won",
    "category",
    "sub_category",
    "price",
]

# Reject reasons, in the order the rules are checked (a row gets the first that applies).
MISSING_ID = "missing_id"
BAD_AMOUNT = "unparseable_amount"
NEGATIVE_AMOUNT = "negative_amount"
ABSURD_AMOUNT = "absurd_amount"
BAD_TIMESTAMP = "unparseable_timestamp"
OUTSIDE_WINDOW = "outside_window"
CONTROL_CHARS = "control_characters"
UNKNOWN_LISTING = "unknown_listing"
DUPLICATE_BID = "duplicate_bid_id"
NON_FINITE = "non_finite_number"  # inf, -inf or NaN where a number is required
NOT_WHOLE = "not_whole_count"  # a count with a fractional part
UNREADABLE_FILE = "unreadable_file"  # an input file that cannot be parsed at all (one reject row per file)
SCHEMA_MISMATCH = "schema_mismatch"  # a file lacking a required column or holding one of an unusable type

UNKNOWN_CATEGORY = "unknown"  # label of a blank or missing category / sub-category (accepted, not rejected)

REJECT_COLUMNS = ["source", "row", "reason", "record"]

RECOMMENDATION_COLUMNS = ["uid", "rank", "item_id", "score", "source", "because"]


def stable_id(value: object) -> int:
    """A non-negative int64 for a non-integer id (UUID, text): the first 63 bits of its blake2b digest.

    Stable across runs, machines and Python versions (unlike ``hash``); collisions are negligible
    (about n² / 2⁶⁴: one in ~10⁷ for a million listings).
    """
    digest = hashlib.blake2b(str(value).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << 63) - 1)


def user_keys(uids: pd.Series | pd.Index | np.ndarray) -> np.ndarray:
    """A 64-bit key per uid (pandas' SipHash with its fixed key): numeric groupbys instead of string ones.

    Used inside a run only, never published. Collisions (about n² / 2⁶⁵) are checked where keys meet names.
    """
    return pd.util.hash_array(np.asarray(uids, dtype=object), categorize=False).view(np.int64)


def shard_of(uid: str, shards: int) -> int:
    """The shard holding ``uid``: blake2b-64 of its UTF-8 bytes (little-endian) modulo ``shards``.

    Documented so a reader in any language can find a user's file without listing the folder.
    """
    return int(shards_of([uid], shards)[0])


def shards_of(uids: Iterable[str], shards: int) -> np.ndarray:
    """:func:`shard_of` of each uid in ``uids``, in one tight loop (pass distinct uids: each is hashed).

    One generator feeds the digests to ``np.fromiter``, with no call of :func:`shard_of` per uid.
    """
    blake, little = hashlib.blake2b, int.from_bytes
    digests = np.fromiter((little(blake(u.encode("utf-8"), digest_size=8).digest(), "little") for u in uids),
                          np.uint64)
    return (digests % np.uint64(shards)).astype(np.int64)


def uid_runs(uids: pd.Series) -> np.ndarray | None:
    """Each row's user as a run number when ``uids`` are in ascending order (a shard as stored), else None.

    Compared by Arrow: pandas' own checks and factorize go through a Python string per row.
    """
    a = pa.array(uids, pa.string())
    if len(a) < 2:
        return np.zeros(len(a), np.int64)
    head, tail = a.slice(0, len(a) - 1), a.slice(1)
    if not pc.all(pc.less_equal(head, tail)).as_py():
        return None
    return np.concatenate([[0], np.cumsum(pc.not_equal(head, tail).to_numpy(zero_copy_only=False))])


DENSE_SPAN = 8  # ids spread over at most this many values per id are looked up in a table, not searched


def id_positions(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``np.searchsorted(ids, values)`` for sorted, distinct int64 ``ids``: the position of each value that is
    an id. When the values lie in the ids' range and the ids are packed densely enough (listing ids mostly
    are), a table of the number of ids below each value of the range answers with one read per value instead
    of a binary search's scattered reads."""
    values = np.asarray(values, np.int64)
    if len(values) == 0 or len(ids) == 0 or len(values) < len(ids) // DENSE_SPAN:
        return np.searchsorted(ids, values)
    lo, hi = int(ids[0]), int(ids[-1])
    if hi - lo >= DENSE_SPAN * len(ids) or values.min() < lo or values.max() > hi:
        return np.searchsorted(ids, values)
    present = np.zeros(hi - lo + 1, np.int32)
    present[ids - lo] = 1
    below = np.cumsum(present, dtype=np.int32) - present
    return below[values - lo].astype(np.int64)
