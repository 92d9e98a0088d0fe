import json
import math
import tempfile
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from encore.errors import InputError
from encore.io.personalize import personalize_lines, personalize_name, read_personalize
from encore.io.store import shard_name

LOCAL = fsspec.filesystem("file")


def recs_frame(rows: list[tuple[str, int, int, float]]) -> pd.DataFrame:
    """Recommendation rows as the recommend step makes them, with the columns the export ignores."""
    uid, rank, item, score = zip(*rows, strict=True)
    return pd.DataFrame({"uid": pd.array(uid, dtype="str"), "rank": np.array(rank, np.int16),
                         "item_id": np.array(item, np.int64), "score": np.array(score, np.float32),
                         "source": "knn", "because": pd.array([None] * len(rows), dtype="Int64")})


def expected(recs: pd.DataFrame) -> pd.DataFrame:
    return recs[["uid", "rank", "item_id", "score"]].sort_values(["uid", "rank"]).reset_index(drop=True)


def write_and_read(tmp: Path, data: bytes) -> pd.DataFrame:
    path = tmp / "shard.jsonl"
    path.write_bytes(data)
    return read_personalize(LOCAL, str(path))


UNSORTED = recs_frame([
    ("zoë", 2, 30, 0.5), ("ünï-çødé", 1, 11, 0.9), ("zoë", 1, 10, 0.5), ("用户-42", 3, 23, 0.1),
    ("ünï-çødé", 2, 12, 0.9), ("用户-42", 1, 21, 0.7), ("a", 1, 9_000_000_000_000_000_001, 0.25),
    ("用户-42", 2, 22, 0.1),
])


def test_name_mirrors_the_recommendation_shard():
    assert personalize_name(3) == "personalize/shard-00003.jsonl"
    for shard in (0, 17, 4095):
        stem = personalize_name(shard).removeprefix("personalize/").removesuffix(".jsonl")
        assert stem == shard_name(shard).removesuffix(".parquet")


def test_lines_have_exactly_the_personalize_keys_users_by_uid_items_by_rank():
    data = personalize_lines(UNSORTED)
    assert data.endswith(b"\n") and data.count(b"\n") == 4
    records = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    for record in records:
        assert set(record) == {"input", "output", "error"} and record["error"] is None
        assert set(record["input"]) == {"userId"} and set(record["output"]) == {"recommendedItems", "scores"}
        assert all(isinstance(i, str) for i in record["output"]["recommendedItems"])
        assert all(isinstance(s, float) and math.isfinite(s) for s in record["output"]["scores"])
    assert [r["input"]["userId"] for r in records] == ["a", "zoë", "ünï-çødé", "用户-42"]
    assert records[0]["output"]["recommendedItems"] == ["9000000000000000001"]
    assert records[3]["output"] == {"recommendedItems": ["21", "22", "23"], "scores": [0.7, 0.1, 0.1]}
    assert records[1]["output"]["recommendedItems"] == ["10", "30"]  # tied scores keep rank order
    assert "用户-42".encode() in data  # UTF-8 as is, not \u escapes


def test_round_trip_of_unsorted_users_with_ties_and_unicode(tmp_path):
    back = write_and_read(tmp_path, personalize_lines(UNSORTED))
    pd.testing.assert_frame_equal(back, expected(UNSORTED))
    assert personalize_lines(UNSORTED) == personalize_lines(expected(UNSORTED))


def test_empty_frame_gives_no_bytes_and_reads_back_empty(tmp_path):
    assert personalize_lines(UNSORTED.iloc[:0]) == b""
    back = write_and_read(tmp_path, b"")
    assert back.empty and list(back.columns) == ["uid", "rank", "item_id", "score"]


def test_uids_a_json_string_cannot_hold_verbatim_are_escaped(tmp_path):
    odd = ['quo"te', "back\\slash", "new\nline", "tab\tand\x01ctrl", "line\u2028sep", "plain"]
    recs = recs_frame([(u, 1, n, 1.0) for n, u in enumerate(odd)])
    data = personalize_lines(recs)
    assert data.count(b"\n") == len(odd)  # one line per user: no raw newline inside a line
    assert sorted(json.loads(line)["input"]["userId"] for line in data.split(b"\n")[:-1]) == sorted(odd)
    pd.testing.assert_frame_equal(write_and_read(tmp_path, data), expected(recs))


def test_scores_are_float32_decimals_and_whole_numbers_stay_floats(tmp_path):
    recs = recs_frame([("u", 1, 1, 0.1), ("u", 2, 2, 1.0), ("u", 3, 3, 0.0), ("u", 4, 4, -0.0),
                       ("u", 5, 5, 16777216.0), ("u", 6, 6, 1e20), ("u", 7, 7, 1e-45)])
    data = personalize_lines(recs)
    assert b'"scores":[0.1,1.0,0.0,-0.0,16777216.0,1e+20,1e-45]' in data
    assert all(isinstance(s, float) for s in json.loads(data)["output"]["scores"])
    back = write_and_read(tmp_path, data)
    assert back["score"].to_numpy().view(np.uint32).tolist() == recs["score"].to_numpy().view(np.uint32).tolist()


def test_a_non_finite_score_is_refused_naming_the_user():
    recs = recs_frame([("u1", 1, 1, 0.5), ("u2", 1, 2, float("nan"))])
    with pytest.raises(ValueError, match=r"uid 'u2' rank 1 .*not a finite number"):
        personalize_lines(recs)


def test_reads_personalize_output_as_aws_writes_it(tmp_path):
    data = (b'{"input":{"userId":"81"},"output":{"recommendedItems":["5120","404"],'
            b'"scores":[0.0231457,0.0098012]},"error":null}\n'
            b'{"input": {"userId": "9"}, "output": {"recommendedItems": ["77"], "scores": [0.0301776]}, '
            b'"error": null}\n')
    back = write_and_read(tmp_path, data)
    assert back["uid"].tolist() == ["81", "81", "9"] and back["rank"].tolist() == [1, 2, 1]
    assert back["item_id"].tolist() == [5120, 404, 77]
    assert back["score"].tolist() == pytest.approx([0.0231457, 0.0098012, 0.0301776], rel=1e-6)


GOOD = b'{"input":{"userId":"u"},"output":{"recommendedItems":["1"],"scores":[0.5]},"error":null}'


@pytest.mark.parametrize(("bad", "problem"), [
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"input":{"userId":"v"},"error":"Item not found"}', "Personalize reported an error for this user"),
    (b'{"input":{},"output":{"recommendedItems":["1"],"scores":[0.5]},"error":null}', "input.userId is missing"),
    (b'{"input":{"userId":"v"},"output":{"recommendedItems":["1","2"],"scores":[0.5]},"error":null}',
     "2 recommendedItems but 1 scores"),
    (b'{"input":{"userId":"v"},"output":{"recommendedItems":["sku-1"],"scores":[0.5]},"error":null}',
     "item id 'sku-1' is not a 64-bit integer"),
    (b'{"input":{"userId":"v"},"output":{"recommendedItems":["1"],"scores":[1e39]},"error":null}',
     "score 1e+39 is not a finite float32"),
    (b'{"input":{"userId":"\xff"},"output":{"recommendedItems":["1"],"scores":[0.5]},"error":null}', "not UTF-8"),
])
def test_a_bad_line_is_one_error_naming_the_file_and_line(tmp_path, bad, problem):
    with pytest.raises(InputError) as caught:
        write_and_read(tmp_path, GOOD + b"\n\n" + bad + b"\n" + GOOD + b"\n")
    message = str(caught.value)
    assert "\n" not in message and "shard.jsonl: line 3: " in message and problem in message
    assert "fix or remove that line" in message


uids = st.text(min_size=0, max_size=12)
rows = st.lists(st.tuples(uids, st.integers(-2**63, 2**63 - 1),
                          st.floats(width=32, allow_nan=False, allow_infinity=False)), max_size=60)


@settings(max_examples=100, deadline=None)
@given(rows=rows, seed=st.integers(0, 2**32 - 1))
def test_read_back_equals_the_lists_sorted_for_any_uids_items_and_scores(rows, seed):
    recs = pd.DataFrame(rows, columns=["uid", "item_id", "score"]).astype({"uid": "str", "item_id": np.int64, "score": np.float32})
    recs["rank"] = (recs.groupby("uid").cumcount() + 1).astype(np.int16)
    recs = recs.sample(frac=1, random_state=seed)  # any input order
    with tempfile.TemporaryDirectory() as tmp:
        back = write_and_read(Path(tmp), personalize_lines(recs))
    want = expected(recs)
    pd.testing.assert_frame_equal(back, want)
    assert back["score"].to_numpy().view(np.uint32).tolist() == want["score"].to_numpy().view(np.uint32).tolist()
