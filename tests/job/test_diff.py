"""Run over run: hand-built run folders with known differences, RBO against its formula, and the CLI end to end."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from encore.cli import main
from encore.errors import InputError
from encore.io.lake import filesystem
from encore.io.store import CATALOGUE, RunWriter, shard_name
from encore.job.diff import compare, rbo, run_figures, runs_to_compare
from encore.job.pipeline import run
from tests.helpers import small_settings


def rbo_direct(a: list, b: list, p: float, depth: int) -> float:
    """LensKit's rank_biased_overlap, term by term: sum_d p^(d-1) |A[:d] & B[:d]| / d over sum_d p^(d-1)."""
    weights = [p ** (d - 1) for d in range(1, depth + 1)]
    agreement = [len(set(a[:d]) & set(b[:d])) / d for d in range(1, depth + 1)]
    return sum(w * x for w, x in zip(weights, agreement)) / sum(weights)


def lists(rows: dict[str, list[tuple[int, float, str]]]) -> pd.DataFrame:
    """A recommendation frame from {uid: [(item, score, source), ...]} in rank order."""
    return pd.DataFrame([{"uid": uid, "rank": r, "item_id": item, "score": score, "source": source,
                          "because": pd.NA}
                         for uid, items in rows.items() for r, (item, score, source) in enumerate(items, 1)])


# yesterday: u1 [1,2,3], u2 [4,5,6], u3 [7,8,9]; today: u1 identical, u2 [6,5,10], u3 lost, u4 gained
YESTERDAY = lists({"u1": [(1, 1.0, "itemknn"), (2, 2.0, "itemknn"), (3, 3.0, "itemknn")],
                   "u2": [(4, 4.0, "itemknn"), (5, 5.0, "itemknn"), (6, 6.0, "itemknn")],
                   "u3": [(7, 7.0, "itemknn"), (8, 8.0, "itemknn"), (9, 9.0, "itemknn")]})
TODAY = lists({"u1": [(1, 0.5, "itemknn"), (2, 0.5, "itemknn"), (3, 0.5, "itemknn")],
               "u2": [(6, 0.5, "itemknn"), (5, 0.5, "subcategory"), (10, 0.5, "trending")],
               "u4": [(11, 0.1, "popular"), (12, 0.2, "popular"), (13, 0.3, "popular")]})
U2_RBO = (0 + 0.9 * 1 / 2 + 0.81 * 2 / 3) / (1 + 0.9 + 0.81)


@pytest.fixture
def two_runs(tmp_path):
    """Yesterday published with a manifest and a catalogue of listings 1..10; today's folder without a
    manifest yet, its lists in two shards written out of rank order."""
    out = str(tmp_path / "out")
    a = RunWriter(out, run_id="20260101T000000Z-aaaaaa")
    a.write_table(f"recommendations/{shard_name(0)}", YESTERDAY)
    a.write_table(CATALOGUE, pd.DataFrame({"listing_id": np.arange(1, 11)}))
    a.publish({"counts": {"rows_in": 100, "rows_accepted": 95, "rows_rejected": 5},
               "timings": {"ingest": 2.0, "recommend": 3.0}})
    b = RunWriter(out, run_id="20260102T000000Z-bbbbbb")
    b.write_table(f"recommendations/{shard_name(0)}", TODAY[TODAY["uid"] != "u4"].iloc[::-1])
    b.write_table(f"recommendations/{shard_name(1)}", TODAY[TODAY["uid"] == "u4"])
    b.write_table(CATALOGUE, pd.DataFrame({"listing_id": np.arange(1, 14)}))
    return a.fs, a.folder, b.folder


def test_run_figures_of_a_published_run(two_runs):
    fs, folder_a, _ = two_runs
    fig = run_figures(fs, folder_a)
    assert fig["users"] == 3 and fig["recommendations"] == 9 and fig["distinct_items"] == 9
    assert fig["coverage"] == pytest.approx(0.9)
    assert fig["source_share"] == {"itemknn": 1.0}
    assert fig["score"] == pytest.approx({"p10": 1.8, "p50": 5.0, "p90": 8.2})
    assert fig["rejected_ratio"] == pytest.approx(0.05) and fig["rows_in"] == 100
    assert fig["stage_seconds"] == {"ingest": 2.0, "recommend": 3.0}


def test_run_figures_without_a_manifest_read_the_shards_by_name(two_runs):
    fs, _, folder_b = two_runs
    fig = run_figures(fs, folder_b)
    assert fig["users"] == 3 and fig["recommendations"] == 9
    assert fig["coverage"] == pytest.approx(9 / 13)
    assert fig["source_share"] == pytest.approx({"itemknn": 4 / 9, "popular": 3 / 9, "subcategory": 1 / 9,
                                                 "trending": 1 / 9})
    assert fig["rejected_ratio"] is None and fig["rows_in"] is None and fig["stage_seconds"] == {}


def test_compare_gives_the_hand_computed_diff(two_runs):
    fs, folder_a, folder_b = two_runs
    diff = compare(fs, folder_a, folder_b)
    assert (diff["yesterday"], diff["today"]) == ("20260101T000000Z-aaaaaa", "20260102T000000Z-bbbbbb")
    assert (diff["users_gained"], diff["users_lost"], diff["users_in_both"]) == (1, 1, 2)
    assert diff["jaccard_mean"] == pytest.approx((1 + 2 / 4) / 2)
    assert diff["rbo_mean"] == pytest.approx((1 + U2_RBO) / 2) and diff["rbo_depth"] == 3
    assert diff["new_listing_share"] == pytest.approx(3 / 9)  # 11, 12, 13; 10 was in yesterday's catalogue
    fig = diff["figures"]
    assert fig["users"] == {"today": 3, "yesterday": 3, "change": 0}
    assert fig["source_share.popular"] == pytest.approx({"today": 1 / 3, "yesterday": 0.0, "change": 1 / 3})
    assert fig["source_share.itemknn"]["change"] == pytest.approx(4 / 9 - 1)
    assert fig["coverage"]["change"] == pytest.approx(9 / 13 - 0.9)
    assert fig["rejected_ratio"] == {"today": None, "yesterday": pytest.approx(0.05), "change": None}
    assert fig["stage_seconds.ingest"] == {"today": None, "yesterday": 2.0, "change": None}
    assert json.loads(json.dumps(diff)) == diff


def test_a_run_compared_with_itself_agrees_fully(two_runs):
    fs, folder_a, _ = two_runs
    diff = compare(fs, folder_a, folder_a)
    assert diff["jaccard_mean"] == diff["rbo_mean"] == 1.0 and diff["new_listing_share"] == 0.0
    assert diff["users_gained"] == diff["users_lost"] == 0
    assert all(v["change"] in (0, None) for v in diff["figures"].values())


def test_rbo_of_identical_and_disjoint_lists():
    assert rbo([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert rbo([1, 2, 3], [4, 5, 6]) == 0.0
    assert rbo([1, 2, 3], [3, 2, 1], p=0.5) == pytest.approx(rbo_direct([1, 2, 3], [3, 2, 1], 0.5, 3))
    # a shorter list is the whole list at every deeper depth, as LensKit slices it
    short = rbo([1, 2], [1, 2, 3, 4])
    assert short == pytest.approx(rbo_direct([1, 2], [1, 2, 3, 4], 0.9, 4)) and short < 1


@given(st.lists(st.integers(0, 30), max_size=12, unique=True), st.lists(st.integers(0, 30), max_size=12, unique=True),
       st.floats(0.05, 0.95))
def test_vectorised_rbo_matches_the_formula(a, b, p):
    if not a and not b:
        return
    assert rbo(a, b, p) == pytest.approx(rbo_direct(a, b, p, max(len(a), len(b))))


def test_unreadable_or_missing_shards_are_one_line(two_runs, tmp_path):
    fs = two_runs[0]
    empty = tmp_path / "out" / "runs" / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="has no recommendation shards"):
        run_figures(fs, str(empty))
    (empty / "recommendations").mkdir()
    (empty / "recommendations" / shard_name(0)).write_bytes(b"not parquet")
    with pytest.raises(InputError, match=f"{shard_name(0)}: cannot read columns"):
        run_figures(fs, str(empty))


def test_defaults_need_a_complete_run_before_the_latest(two_runs, tmp_path):
    fs, root = filesystem(str(tmp_path / "out"))
    with pytest.raises(InputError, match="no complete run before 20260101T000000Z-aaaaaa"):
        runs_to_compare(fs, root)
    with pytest.raises(InputError, match="no run folder .*nope"):
        runs_to_compare(fs, root, "nope", "20260101T000000Z-aaaaaa")
    res = CliRunner().invoke(main, ["-q", "diff", "--output", str(tmp_path / "out")])
    assert res.exit_code == 1 and res.output.startswith("error: no complete run before")


def test_two_pipeline_runs_then_encore_diff_json(tmp_path, client):
    first = run(small_settings(tmp_path), client=client, run_id="20260101T000000Z-aaaaaa")
    second = run(small_settings(tmp_path, recommend={"n": 5}), client=client, run_id="20260102T000000Z-bbbbbb")
    out = str(tmp_path / "out")
    res = CliRunner().invoke(main, ["-q", "diff", "--output", out, "--json"])
    assert res.exit_code == 0, res.output
    diff = json.loads(res.output)
    fs, root = filesystem(out)
    assert diff == compare(fs, *runs_to_compare(fs, root, first.run_id, second.run_id))
    assert (diff["yesterday"], diff["today"]) == (first.run_id, second.run_id)
    assert diff["users_gained"] == diff["users_lost"] == 0 and diff["users_in_both"] == first.manifest["counts"]["users"]
    # same input, shorter lists: today's lists are yesterday's top 5, so Jaccard is 5/10 and RBO below 1
    assert diff["jaccard_mean"] == pytest.approx(0.5, abs=0.05) and 0.5 < diff["rbo_mean"] < 1
    assert diff["new_listing_share"] == 0.0 and diff["rbo_depth"] == 10
    rows = diff["figures"]["recommendations"]
    assert rows["today"] == second.manifest["counts"]["recommendations"]
    assert rows["change"] == rows["today"] - rows["yesterday"] < 0
    table = CliRunner().invoke(main, ["-q", "diff", first.run_id, second.run_id, "--output", out])
    kind = first.manifest["settings"]["model"]["kind"]  # the model's own picks are labelled with its kind
    assert table.exit_code == 0 and "mean RBO" in table.output and f"source_share.{kind}" in table.output
