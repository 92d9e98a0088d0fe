"""A small input runs the daily job in this process (threads, no worker processes) and publishes the same
bits as worker processes do: BLAS summing on one thread in both, frames computed on local threads."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from encore.job.pipeline import run
from tests.helpers import small_settings

TABLES = ("recommendations", "similar_items", "popular", "catalogue")


def tables(run_folder: Path) -> dict[str, object]:
    return {str(p.relative_to(run_folder)): pq.read_table(p) for p in sorted(run_folder.rglob("*.parquet"))
            if p.relative_to(run_folder).parts[0] in TABLES}


def test_in_process_run_publishes_what_worker_processes_publish(tmp_path):
    lake = {"path": str(tmp_path / "lake"), "synthetic": True}
    common = {"n_workers": 2, "threads_per_worker": 1}
    threads = run(small_settings(tmp_path, lake=lake, output={"path": str(tmp_path / "a")}, cluster=common))
    procs = run(small_settings(tmp_path, lake=lake, output={"path": str(tmp_path / "b")},
                               cluster={**common, "processes": True}))
    a = tables(Path(threads.output) / "runs" / threads.run_id)
    b = tables(Path(procs.output) / "runs" / procs.run_id)
    assert a.keys() == b.keys() and any(name.startswith("recommendations/") for name in a)
    assert [name for name in a if not a[name].equals(b[name])] == []
    assert threads.manifest["counts"] == procs.manifest["counts"]
