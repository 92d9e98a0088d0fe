import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import encore.job.store
from encore.errors import RejectRatioError
from encore.io.lake import filesystem
from encore.io.personalize import read_personalize
from encore.io.store import LATEST, STATUS, RecommendationStore
from encore.job.ingest import ingest
from encore.job.pipeline import run
from tests.helpers import small_settings


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, client):
    settings = small_settings(tmp_path_factory.mktemp("pipe"))
    return settings, run(settings, client=client)


def test_publishes_manifest_success_and_latest(first_run):
    settings, result = first_run
    out = Path(settings.output.path)
    assert (out / LATEST).read_text() == result.run_id
    folder = out / "runs" / result.run_id
    assert (folder / "_SUCCESS").exists()
    manifest = json.loads((folder / "manifest.json").read_text())
    c = manifest["counts"]
    assert c["rows_in"] == c["rows_accepted"] + c["rows_rejected"] > 0
    assert c["pair_visits"] > 0 and set(manifest["timings"]) >= {"ingest", "matrix", "models", "recommend", "store"}
    assert len(manifest["input"]["fingerprint"]) == 64
    for rel in manifest["files"]:
        assert (folder / rel).exists()
    assert len(list((folder / "recommendations").glob("shard-*.parquet"))) == settings.output.shards


def test_auction_rules_hold(first_run):
    settings, result = first_run
    recs = result.recommendations
    res = ingest(settings)
    status = res.listings.set_index("listing_id")["status"]
    ends = res.listings.set_index("listing_id")["ends_at"]
    assert (status.reindex(recs["item_id"]) == "live").all()
    assert (ends.reindex(recs["item_id"]) > res.window.end).all()
    seen = set(zip(res.interactions["uid"], res.interactions["item_id"]))
    assert not any((u, i) in seen for u, i in zip(recs["uid"], recs["item_id"]))
    assert not recs.duplicated(["uid", "item_id"]).any()
    assert recs.groupby("uid")["rank"].apply(lambda r: list(r) == list(range(1, len(r) + 1))).all()
    kind = settings.model.kind  # the model's own picks are labelled with its kind
    assert set(recs["source"]) <= {kind, "subcategory", "trending", "popular"}
    assert (recs["source"] == kind).any()
    knn = recs[recs["source"] == kind]
    assert knn["because"].notna().all()
    assert all((u, b) in seen for u, b in zip(knn["uid"], knn["because"]))


def test_for_user_matches_its_shard_and_unknown_gets_cold_start(first_run):
    settings, result = first_run
    store = RecommendationStore(settings.output.path)
    uid = result.recommendations["uid"].iloc[0]
    mine = store.for_user(uid)
    shard = pd.read_parquet(Path(settings.output.path, "runs", result.run_id, store.shard_path(uid)))
    expected = shard[shard["uid"] == uid].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine.drop(columns="cold_start"), expected)
    cold = store.for_user("not-a-user")
    assert cold["cold_start"].all() and len(cold) == settings.recommend.n
    assert set(cold["source"]) <= {"trending", "popular"}


def test_similar_items_never_self_and_ranked(first_run):
    settings, result = first_run
    store = RecommendationStore(settings.output.path)
    item = result.recommendations["item_id"].iloc[0]
    sims = store.similar(int(item))
    assert (sims["neighbour_id"] != item).all()
    assert sims["score"].is_monotonic_decreasing


def test_no_user_names_in_any_output(first_run):
    settings, _ = first_run
    names = pd.read_parquet(Path(settings.lake.path, "users"))["user_name"]
    blob = b"".join(p.read_bytes() for p in Path(settings.output.path).rglob("*") if p.is_file())
    assert not any(n.encode() in blob for n in names.head(200))


def test_rerun_gives_identical_recommendations(first_run, client):
    settings, result = first_run
    again = run(settings, client=client)
    assert again.run_id != result.run_id
    pd.testing.assert_frame_equal(again.recommendations, result.recommendations)


def test_failure_in_late_stage_leaves_previous_run_published(first_run, client, monkeypatch):
    settings, _ = first_run
    before = Path(settings.output.path, LATEST).read_text()
    uid = RecommendationStore(settings.output.path).for_user
    expected = uid("not-a-user")

    def boom(*args, **kwargs):
        raise RuntimeError("injected failure while writing popular tables")

    monkeypatch.setattr(encore.job.store, "popular_tables", boom)
    with pytest.raises(RuntimeError, match="injected"):
        run(settings, client=client)
    assert Path(settings.output.path, LATEST).read_text() == before
    store = RecommendationStore(settings.output.path)
    assert store.run_id == before
    pd.testing.assert_frame_equal(store.for_user("not-a-user"), expected)


def test_reject_ratio_stops_before_publishing(tmp_path, client):
    settings = small_settings(tmp_path, ingest={"max_amount": 20.0, "max_reject_ratio": 0.01})
    with pytest.raises(RejectRatioError, match="max_reject_ratio") as info:
        run(settings, client=client)
    assert not Path(settings.output.path, LATEST).exists()
    status = json.loads(Path(settings.output.path, STATUS).read_text())
    rejects = Path(str(info.value).rsplit("the rejects are in ", 1)[1].removeprefix("file://"))
    assert status["published"] is False and "max_reject_ratio" in status["error"] and rejects.exists()
    assert status["run_id"] in str(rejects)


def grocery_extract(path: Path) -> Path:
    """A grocery basket extract in the legacy layout (departments as categories), as real catalogues have it:
    one blank department, blank and whitespace-only product categories, a category name under two departments."""
    rng = np.random.default_rng(11)
    products = [("GROCERY", "FROZEN", f"frozen {i}") for i in range(8)] + \
        [("DELI", "FROZEN", f"deli frozen {i}") for i in range(4)] + \
        [("PRODUCE", "", f"produce {i}") for i in range(6)] + [("PRODUCE", "   ", "melon")] + \
        [("", "BREAD", f"bread {i}") for i in range(3)] + [("GROCERY", "BREAD", f"loaf {i}") for i in range(5)]
    lines = ['"uid","userName","catagory","sub_catagory","product","listing_amount","counts","total_bid_amount"']
    for u in range(60):
        for p in rng.choice(len(products), size=5, replace=False):
            cat, sub, title = products[p]
            lines.append(f'"hh-{u:03d}","user_{u:010x}","{cat}","{sub}","{title}","2","1","2"')
    path.write_text("\n".join(lines) + "\n")
    return path


def test_grocery_extract_with_blank_categories_runs_end_to_end(tmp_path, client):
    csv = grocery_extract(tmp_path / "baskets.csv")
    result = run(small_settings(tmp_path, lake={"legacy_csv": str(csv)}, recommend={"n": 5},
                                model={"kind": "itemknn"}), client=client)  # item-kNN's tie order is pinned below
    c = result.manifest["counts"]
    assert c["rows_in"] == 300 == c["rows_accepted"] + c["rows_rejected"] and c["rows_rejected"] == 0
    assert Path(result.output, "runs", result.run_id, "report", "report.html").exists()
    recs = result.recommendations
    assert len(recs) > 0
    # equal scores in a list are ordered by popularity (distinct households), most first
    users = pd.read_csv(csv).groupby("product")["uid"].nunique()
    titles = result.store.catalogue().set_index("listing_id")["title"]
    recs = recs.assign(pop=users.reindex(titles.reindex(recs["item_id"]).to_numpy()).to_numpy())
    knn = recs[recs["source"] == "itemknn"]
    tied = knn.groupby(["uid", "score"])["pop"].apply(lambda p: p.is_monotonic_decreasing)
    assert knn.duplicated(["uid", "score"]).any() and tied.all()


def test_personalize_export_mirrors_the_shards(tmp_path, client):
    result = run(small_settings(tmp_path, recommend={"n": 5, "personalize_export": True}), client=client)
    manifest = result.store.manifest
    files = sorted(f for f in manifest["files"] if f.startswith("personalize/"))
    assert len(files) == result.manifest["settings"]["output"]["shards"]
    fs, root = filesystem(str(Path(result.output, "runs", result.run_id)))
    back = pd.concat([read_personalize(fs, f"{root}/{f}") for f in files], ignore_index=True)
    recs = result.recommendations
    key = ["uid", "rank"]
    want = recs[["uid", "rank", "item_id", "score"]].sort_values(key).reset_index(drop=True)
    got = back.sort_values(key).reset_index(drop=True)
    assert (got["uid"].to_numpy() == want["uid"].to_numpy()).all()
    assert (got["item_id"].to_numpy() == want["item_id"].to_numpy()).all()
    np.testing.assert_array_equal(got["score"].to_numpy(), want["score"].to_numpy(np.float32))
    assert sum(manifest["files"][f]["rows"] for f in files) == recs["uid"].nunique()


def test_daily_holdout_backtest_goes_into_the_manifest(tmp_path, client):
    result = run(small_settings(tmp_path, evaluate={"daily_holdout": True}, recommend={"n": 5}), client=client)
    backtest = result.manifest["backtest"]
    assert backtest["model"] == "sparse_ease" and backtest["test_users"] > 0 and 0 <= backtest["ndcg"] <= 1
    assert "backtest" in result.timings
    assert run(small_settings(tmp_path / "off"), client=client).manifest["backtest"] is None
