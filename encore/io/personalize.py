"""Recommendations as the JSON Lines an Amazon Personalize batch inference job writes, and a reader.

One line per user, in the shape of a USER_PERSONALIZATION batch inference output
(https://docs.aws.amazon.com/personalize/latest/dg/batch-inference-job-output-examples.html)::

    {"input":{"userId":"u-7"},"output":{"recommendedItems":["1042","77"],"scores":[0.8125,0.3]},"error":null}

Ids are JSON strings, as Personalize writes them; scores are JSON numbers at the float32 precision of
the recommendation shards (the shortest decimal that reads back to the same float32, always with a
decimal point or an exponent). Users come in uid order, each user's items in rank order: a line holds
the list, so a rank read back is the position in it (1, 2, ...).

The lines are built by Arrow string kernels over whole columns, with no Python object per row.
"""

from __future__ import annotations

import io
import json
import math
import re

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from encore.errors import InputError

_STR = pa.large_string()  # 64-bit offsets: one shard's lines may pass 2 GiB
_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'  # what a JSON string cannot hold verbatim
_ITEM_ID = re.compile(r"-?[0-9]+")
_MAX_RANK = int(np.iinfo(np.int16).max)  # rank is int16 in the recommendation shards
_INT64 = (int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max))

_SCHEMA = pa.schema([
    ("input", pa.struct([("userId", pa.string())])),
    ("output", pa.struct([("recommendedItems", pa.list_(pa.string())), ("scores", pa.list_(pa.float32()))])),
    ("error", pa.string()),
])


def personalize_name(shard: int) -> str:
    """File name, inside the run folder, of one shard's export (the shards of ``store.shard_name``)."""
    return f"personalize/shard-{shard:05d}.jsonl"


def personalize_lines(recs: pd.DataFrame) -> bytes:
    """``recs`` (uid, rank, item_id, score; other columns ignored) as Personalize batch output JSON Lines.

    UTF-8, one line per user with a trailing newline, users by uid, items by rank (ties in rank keep
    their input order); an empty frame gives ``b""``. Lists already by uid then rank (as the recommend
    step hands a shard over) are not sorted again.
    """
    if recs.empty:
        return b""
    table = _columns(recs)
    if not _in_order(table):
        table = table.take(_order(table))
    uid, item_id, score = (table[name].combine_chunks() for name in ("uid", "item_id", "score"))
    starts = _user_starts(uid)
    offsets = pa.array(np.append(starts, len(uid)), pa.int64())
    items = _join_lists(offsets, _cat('"', item_id.cast(_STR), '"'))
    scores = _join_lists(offsets, _score_text(score))
    users = _json_strings(uid.take(pa.array(starts)))
    lines = _cat('{"input":{"userId":', users, '},"output":{"recommendedItems":[', items,
                 '],"scores":[', scores, ']},"error":null}\n')
    return _buffer_bytes(lines)


def _columns(recs: pd.DataFrame) -> pa.Table:
    """The four exported columns as Arrow; a missing id or a non-finite score is a bug upstream."""
    table = pa.table({
        "uid": pa.array(recs["uid"], pa.string()).cast(_STR),
        "rank": pa.array(recs["rank"], pa.int64()),
        "item_id": pa.array(recs["item_id"], pa.int64()),
        "score": pa.array(recs["score"].to_numpy(np.float32, na_value=np.nan)),  # NaN stays NaN, not null
    })
    for name in ("uid", "rank", "item_id"):
        if table[name].null_count:
            raise ValueError(f"Personalize export: {table[name].null_count} recommendation rows have no {name}")
    finite = pc.is_finite(table["score"])
    if not pc.all(finite).as_py():
        bad = pc.index(finite, False).as_py()
        raise ValueError(f"Personalize export: the score of uid {table['uid'][bad].as_py()!r} rank "
                         f"{table['rank'][bad].as_py()} is {table['score'][bad].as_py()}, not a finite number")
    return table


def _in_order(table: pa.Table) -> bool:
    """True when rows are by uid, and within a user by rank."""
    uid = table["uid"].combine_chunks()
    head, tail = uid.slice(0, len(uid) - 1), uid.slice(1)
    if not pc.all(pc.less_equal(head, tail)).as_py():
        return False
    rank = table["rank"].to_numpy()
    new_user = pc.not_equal(head, tail).to_numpy(zero_copy_only=False)
    return bool(np.all((np.diff(rank) >= 0) | new_user))


def _order(table: pa.Table) -> pa.Array:
    """Row order by uid, then rank, stable: the distinct uids are sorted as strings, the rows as integers,
    so the string sort has one string per user to order, not one per row."""
    users = pc.dictionary_encode(table["uid"].combine_chunks())
    position = np.empty(len(users.dictionary), np.int64)
    position[pc.sort_indices(users.dictionary).to_numpy()] = np.arange(len(users.dictionary))
    return pa.array(np.lexsort((table["rank"].to_numpy(), position[users.indices.to_numpy()])))


def _user_starts(uid: pa.Array) -> np.ndarray:
    """Row numbers where each user's run begins (rows grouped by uid)."""
    changed = pc.not_equal(uid.slice(0, len(uid) - 1), uid.slice(1)).to_numpy(zero_copy_only=False)
    return np.concatenate([[0], np.flatnonzero(changed) + 1]).astype(np.int64)


def _cat(*parts: str | pa.Array) -> pa.Array:
    """Element-wise concatenation of string columns and constant strings."""
    args = [pa.scalar(p, _STR) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*args, pa.scalar("", _STR))


def _join_lists(offsets: pa.Array, values: pa.Array) -> pa.Array:
    """``values`` joined with commas, one string per user (``offsets``: where each user's rows begin)."""
    lists = pa.LargeListArray.from_arrays(offsets, values)
    return pc.binary_join(lists, pa.scalar(",", _STR))


def _score_text(score: pa.Array) -> pa.Array:
    """Shortest round-trip float32 decimals, with ``.0`` added to whole numbers so they read as floats."""
    text = score.cast(_STR)
    bare = pc.and_(pc.equal(pc.floor(score), score), pc.equal(pc.find_substring(text, "e"), -1))
    return pc.replace_with_mask(text, bare, _cat(pc.filter(text, bare), ".0")) if pc.any(bare).as_py() else text


def _json_strings(values: pa.Array) -> pa.Array:
    """Each string as a JSON string literal; the rare ones holding quotes, backslashes or control
    characters are escaped by ``json.dumps``, the rest only quoted (UTF-8 kept as is)."""
    quoted = _cat('"', values, '"')
    escape = pc.match_substring_regex(values, _NEEDS_ESCAPE)
    if not pc.any(escape).as_py():
        return quoted
    escaped = [json.dumps(v, ensure_ascii=False) for v in pc.filter(values, escape).to_pylist()]
    return pc.replace_with_mask(quoted, escape, pa.array(escaped, _STR))


def _buffer_bytes(lines: pa.Array) -> bytes:
    """All lines of a string array back to back, copied once out of its data buffer."""
    offsets = np.frombuffer(lines.buffers()[1], np.int64)[lines.offset: lines.offset + len(lines) + 1]
    return lines.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0])).to_pybytes()


def read_personalize(fs: fsspec.AbstractFileSystem, path: str) -> pd.DataFrame:
    """A Personalize batch output file as uid, rank, item_id, score: a line's items get ranks 1, 2, ...

    Users keep the file's order. Item ids must be integers (as encore's are); a line that is not a
    successful user list raises :class:`InputError` naming the file and the line.
    """
    with fs.open(path, "rb") as fh:
        data = fh.read()
    if not data.strip():
        return _frame(pa.array([], pa.string()), np.zeros(0, np.int16), np.zeros(0, np.int64),
                      np.zeros(0, np.float32))
    url = fs.unstrip_protocol(path)
    try:
        table = pajson.read_json(io.BytesIO(data), read_options=pajson.ReadOptions(block_size=max(len(data), 1)),
                                 parse_options=pajson.ParseOptions(explicit_schema=_SCHEMA,
                                                                   unexpected_field_behavior="ignore"))
        return _flatten(table)
    except ValueError as exc:  # pyarrow's ArrowInvalid is one
        raise _explain(url, data, exc) from exc


def _flatten(table: pa.Table) -> pd.DataFrame:
    """One row per recommended item; ValueError at the first thing a well-formed export cannot hold."""
    uid = pc.struct_field(table["input"], "userId").combine_chunks()
    uid.validate(full=True)  # the JSON reader lets invalid UTF-8 through
    output = table["output"].combine_chunks()
    items, scores = pc.struct_field(output, "recommendedItems"), pc.struct_field(output, "scores")
    lengths = pc.list_value_length(items).to_numpy(zero_copy_only=False)
    if (uid.null_count or table["error"].null_count < len(table) or items.null_count or scores.null_count
            or np.any(lengths != pc.list_value_length(scores).to_numpy(zero_copy_only=False))
            or (len(lengths) and lengths.max() > _MAX_RANK)):
        raise ValueError("not a successful user list")
    item_ids, score = pc.list_flatten(items), pc.list_flatten(scores)
    if item_ids.null_count or score.null_count or pc.any(pc.invert(pc.is_finite(score))).as_py():
        raise ValueError("a missing item id or a non-finite score")
    starts = np.cumsum(lengths) - lengths
    rank = (np.arange(int(lengths.sum())) - np.repeat(starts, lengths) + 1).astype(np.int16)
    return _frame(uid.take(pa.array(np.repeat(np.arange(len(uid)), lengths))), rank,
                  item_ids.cast(pa.int64()).to_numpy(), score.to_numpy(zero_copy_only=False))


def _frame(uid: pa.Array, rank: np.ndarray, item_id: np.ndarray, score: np.ndarray) -> pd.DataFrame:
    """The columns in the dtypes of a recommendation shard."""
    return pd.DataFrame({"uid": pd.array(uid, dtype="str"), "rank": rank, "item_id": item_id,
                         "score": score.astype(np.float32)})


def _explain(url: str, data: bytes, exc: Exception) -> InputError:
    """The first line of ``data`` that is not a successful user list, as one actionable message."""
    fix = "each line must be one user's Personalize batch output, as recommend.personalize_export writes it"
    for number, line in enumerate(data.split(b"\n"), 1):
        problem = _line_problem(line) if line.strip() else None
        if problem:
            return InputError(f"{url}: line {number}: {problem}; fix or remove that line ({fix})")
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return InputError(f"{url}: not readable as Personalize batch output ({reason}); {fix}")


def _line_problem(line: bytes) -> str | None:
    """What is wrong with one line, or None when it is a well-formed user list."""
    try:
        record = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return f"not UTF-8 (byte {exc.start + 1} of the line)"
    except ValueError as exc:
        return f"not valid JSON ({exc})"
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("error") is not None:
        return f"Personalize reported an error for this user ({str(record['error'])[:200]})"
    user = record.get("input")
    if not isinstance(user, dict) or not isinstance(user.get("userId"), str):
        return "input.userId is missing or not a string"
    output = record.get("output")
    items = output.get("recommendedItems") if isinstance(output, dict) else None
    scores = output.get("scores") if isinstance(output, dict) else None
    if not isinstance(items, list) or not isinstance(scores, list):
        return "output.recommendedItems or output.scores is missing or not a list"
    if len(items) != len(scores):
        return f"{len(items)} recommendedItems but {len(scores)} scores"
    if len(items) > _MAX_RANK:
        return f"{len(items)} recommendedItems, more than the {_MAX_RANK} a list can hold"
    for item in items:
        if not (isinstance(item, str) and _ITEM_ID.fullmatch(item) and _INT64[0] <= int(item) <= _INT64[1]):
            return f"item id {item!r} is not a 64-bit integer in a string"
    for score in scores:
        if isinstance(score, bool) or not isinstance(score, int | float) or not _finite32(score):
            return f"score {score!r} is not a finite float32 number"
    return None


def _finite32(score: float) -> bool:
    """True when ``score`` is finite once stored as a float32."""
    with np.errstate(over="ignore"):
        return math.isfinite(float(np.float32(score)))
