import hashlib

import pandas as pd
import pyarrow.parquet as pq

from encore.io.store import RunWriter, complete_runs
from encore.schema import shard_of, shards_of


def test_shard_is_blake2b_modulo_and_stable():
    uid = "7ec3c81f-4340-428c-89d4-8f2dbe17d8a1"
    digest = int.from_bytes(hashlib.blake2b(uid.encode(), digest_size=8).digest(), "little")
    assert shard_of(uid, 16) == digest % 16
    counts = pd.Series([shard_of(f"user-{i}", 8) for i in range(4000)]).value_counts()
    assert len(counts) == 8 and counts.min() > 400  # spread evenly
    uids = [f"user-{i}" for i in range(300)] + ["é-ünïcode", ""]
    assert shards_of(uids, 7).tolist() == [shard_of(u, 7) for u in uids]


def test_shard_writer_stores_lists_by_uid_then_rank_and_reports_what_it_wrote(tmp_path):
    writer = RunWriter(str(tmp_path))
    recs = pd.DataFrame({"uid": ["b", "a", "b", "a"], "rank": [2, 2, 1, 1], "item_id": [4, 3, 2, 1]})
    relpath, info = writer.shard_writer()(3, recs)
    assert relpath == "recommendations/shard-00003.parquet" and info["rows"] == 4 and info["bytes"] > 0
    stored = pq.read_table(tmp_path / "runs" / writer.run_id / relpath).to_pandas()
    assert stored["item_id"].tolist() == [1, 3, 2, 4]
    writer.record(relpath, info)
    writer.publish({})
    assert writer.files[relpath] == info


def test_unpublished_run_is_invisible(tmp_path):
    writer = RunWriter(str(tmp_path))
    writer.write_table("popular/global.parquet", pd.DataFrame({"item_id": [1]}))
    assert complete_runs(writer.fs, writer.root) == []
    assert not (tmp_path / "LATEST").exists()
    writer.publish({"settings": {}})
    assert complete_runs(writer.fs, writer.root) == [writer.run_id]
    assert (tmp_path / "LATEST").read_text() == writer.run_id


def test_prune_keeps_newest_runs(tmp_path):
    ids = []
    for i in range(4):
        w = RunWriter(str(tmp_path), run_id=f"2026010{i}T000000Z-aaaaaa")
        w.publish({})
        ids.append(w.run_id)
    assert w.prune(2) == ids[:2]
    assert complete_runs(w.fs, w.root) == ids[2:]
