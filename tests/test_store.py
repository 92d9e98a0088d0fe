import hashlib

import pandas as pd

from encore.schema import shard_of
from encore.store import RunWriter, complete_runs


def test_shard_is_blake2b_modulo_and_stable():
    uid = "7ec3c81f-4340-428c-89d4-8f2dbe17d8a1"
    digest = int.from_bytes(hashlib.blake2b(uid.encode(), digest_size=8).digest(), "little")
    assert shard_of(uid, 16) == digest % 16
    counts = pd.Series([shard_of(f"user-{i}", 8) for i in range(4000)]).value_counts()
    assert len(counts) == 8 and counts.min() > 400  # spread evenly


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
