"""A real multi-process cluster: a ``dask scheduler`` and two ``dask worker`` processes on loopback.

``encore run --scheduler tcp://…`` against it publishes the same recommendations as an in-process run,
and still does when one worker is killed (SIGKILL, nanny and all) in the middle of the run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from distributed import Client
from distributed.diagnostics.plugin import SchedulerPlugin

from encore.io import synth
from encore.cli import main
from encore.io import lake
from encore.job.pipeline import run
from encore.io.store import RecommendationStore
from tests.helpers import small_settings

DASK = str(Path(sys.executable).with_name("dask"))
HERE = Path(__file__).resolve().parent
SETTINGS = {"synth": {"users": 300, "days": 10, "seed": 11}}


def spawn(args: list[str], log: Path) -> subprocess.Popen:
    """Start a dask CLI process in its own process group (so a kill takes its nanny's child too).

    This folder and the checkout are on its path so that the scheduler can load :class:`KillOnTask` from this
    module (which imports ``tests.helpers``).
    """
    paths = [str(HERE), str(HERE.parent.parent), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    with log.open("wb") as out:
        return subprocess.Popen([DASK, *args], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env=env)


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout}s")


@pytest.fixture
def dask_cluster(tmp_path) -> Iterator[tuple[str, dict[str, subprocess.Popen]]]:
    """Scheduler and workers ``w0``, ``w1`` (one thread each, no dashboards) on 127.0.0.1; killed afterwards.

    Should pytest itself be killed (so this never cleans up), the scheduler stops after 5 idle minutes
    and the workers a minute after it: a leaked cluster had been slowing the benchmarks run after it.
    """
    info = tmp_path / "scheduler.json"
    procs = {"scheduler": spawn(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                 "--scheduler-file", str(info), "--idle-timeout", "300s"],
                                tmp_path / "scheduler.log")}
    try:
        address = wait_for(lambda: info.exists() and json.loads(info.read_text() or "{}").get("address"), 30,
                           "scheduler")
        for name in ("w0", "w1"):
            procs[name] = spawn(["worker", address, "--name", name, "--nthreads", "1", "--no-dashboard",
                                 "--host", "127.0.0.1", "--memory-limit", "2GB", "--death-timeout", "60s"], tmp_path / f"{name}.log")
        with Client(address, timeout="30s") as c:
            c.wait_for_workers(2, timeout=60)
        yield address, procs
    finally:
        for proc in procs.values():
            kill(proc)


class KillOnTask(SchedulerPlugin):
    """Runs in the scheduler: SIGKILLs process group ``pgid`` (a worker and its nanny) the moment the
    first task whose key holds ``prefix`` is sent to a worker. The default prefix is ingest's first task,
    so the worker dies while the bids are being read and persisted, and the survivor must redo its share."""

    def __init__(self, pgid: int, prefix: str = "_read_bid_file") -> None:
        self.pgid, self.prefix = pgid, prefix
        self.killed_during: str | None = None

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if finish == "processing" and self.killed_during is None and self.prefix in str(key):
            self.killed_during = str(key)
            os.killpg(self.pgid, signal.SIGKILL)


@pytest.fixture(scope="module")
def shared_lake(tmp_path_factory) -> Path:
    """One synthetic lake read by the local run and the cluster runs."""
    root = tmp_path_factory.mktemp("mp")
    settings = small_settings(root, **SETTINGS)
    fs, path = lake.filesystem(settings.lake.path)
    synth.write_lake(settings.synth, fs, path)
    return root


@pytest.fixture(scope="module")
def local_recs(shared_lake, client) -> pd.DataFrame:
    settings = small_settings(shared_lake, **SETTINGS, output={"path": str(shared_lake / "out-local")})
    return run(settings, client=client).recommendations


def cluster_run(shared_lake: Path, tmp_path: Path, address: str) -> pd.DataFrame:
    """``encore run --scheduler address`` on a copy of the lake into a fresh output; its recommendations.

    The copy gives the run's tasks new keys, so nothing is reused from an earlier run's memory.
    """
    tmp_path.mkdir()
    shutil.copytree(shared_lake / "lake", tmp_path / "lake")
    settings = small_settings(tmp_path, **SETTINGS)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(settings.model_dump(mode="json")))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["--config", str(cfg), "-q", "--debug", "run", "--scheduler", address, "--output", str(out)])
    assert res.exit_code == 0, res.output + "".join(traceback.format_exception(*res.exc_info))
    store = RecommendationStore(str(out))
    shards = sorted(f for f in store.manifest["files"] if f.startswith("recommendations/"))
    recs = pd.concat([store._read(f) for f in shards], ignore_index=True)
    return recs.sort_values(["uid", "rank"]).reset_index(drop=True)


def same(recs: pd.DataFrame, expected: pd.DataFrame) -> None:
    expected = expected.astype({"uid": str, "source": str}).sort_values(["uid", "rank"]).reset_index(drop=True)
    expected = expected[recs.columns]
    pd.testing.assert_frame_equal(recs, expected, check_dtype=False)


def test_cluster_run_matches_local_and_survives_a_killed_worker(shared_lake, local_recs, dask_cluster, tmp_path):
    address, procs = dask_cluster
    same(cluster_run(shared_lake, tmp_path / "clean", address), local_recs)
    with Client(address) as c:  # the whole run went to this cluster, ingest included
        prefixes = c.run_on_scheduler(lambda dask_scheduler: set(dask_scheduler.task_prefixes))
    assert {"topk_block", "shard_task"} <= prefixes, " ".join(sorted(prefixes))
    assert any("read_bid_file" in p for p in prefixes), prefixes

    with Client(address) as c:
        c.register_plugin(KillOnTask(procs["w1"].pid), name="kill-w1")
    recs = cluster_run(shared_lake, tmp_path / "killed", address)
    with Client(address) as c:
        killed = c.run_on_scheduler(lambda dask_scheduler: dask_scheduler.plugins["kill-w1"].killed_during)
        workers = [w["name"] for w in c.scheduler_info(n_workers=-1)["workers"].values()]
    assert killed and "_read_bid_file" in killed, killed
    assert workers == ["w0"] and procs["w1"].wait(10) == -signal.SIGKILL
    same(recs, local_recs)


@pytest.mark.parametrize("stage_task", ["piece_of", "topk_block", "_serving", "_shard_task"])
def test_worker_killed_in_a_late_stage_still_gives_identical_output(shared_lake, local_recs, dask_cluster,
                                                                     tmp_path, stage_task):
    address, procs = dask_cluster
    with Client(address) as c:
        c.register_plugin(KillOnTask(procs["w1"].pid, prefix=stage_task), name="kill-w1")
    recs = cluster_run(shared_lake, tmp_path / "killed", address)
    with Client(address) as c:
        killed = c.run_on_scheduler(lambda dask_scheduler: dask_scheduler.plugins["kill-w1"].killed_during)
    assert killed and stage_task in killed, killed
    same(recs, local_recs)
