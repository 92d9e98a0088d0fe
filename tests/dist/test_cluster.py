"""Cluster backends: EC2 and Coiled built from their config files up to the network call, safe defaults.

EC2 and Coiled cannot be reached from here. ``EC2Cluster`` is constructed for real with
``asynchronous=True`` inside a running event loop: its ``__init__`` resolves every option and generates
the TLS certificates but launches nothing until awaited (the network call), so the built object is
inspected and closed unstarted. ``coiled.Cluster`` authenticates in its first line, so its keyword
arguments are bound against the installed signature, and ``connect`` is checked with the class replaced
at that one point by a LocalCluster.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import dask
import pytest
from distributed import LocalCluster

from encore.config import load_settings
from encore.dist import cluster as cluster_mod
from encore.dist.cluster import ClusterError, cluster_kwargs, connect

CONFIG = Path(__file__).resolve().parents[2] / "config"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def cloud_settings(kind: str, **kwargs):
    """Settings from config/<kind>.yaml with cluster.kwargs overridden (None removes a key)."""
    settings = load_settings(CONFIG / f"{kind}.yaml", environ={})
    merged = {k: v for k, v in {**settings.cluster.kwargs, **kwargs}.items() if v is not None}
    return settings.model_copy(update={"cluster": settings.cluster.model_copy(update={"kwargs": merged})})


@pytest.fixture
def aws_env(monkeypatch):
    """Fake AWS credentials in this process, as a developer's laptop would have them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def restore_dask_config():
    """EC2Cluster switches this process's Dask config to TLS-only when built; undo it for the other tests."""
    saved = copy.deepcopy(dask.config.config)
    yield
    dask.config.config.clear()
    dask.config.config.update(saved)


def test_s3_config_loads_with_retries():
    settings = load_settings(CONFIG / "s3.yaml", environ={})
    assert settings.lake.path.startswith("s3://") and settings.output.path.startswith("s3://")
    assert settings.output_storage_options()["config_kwargs"]["retries"]["max_attempts"] >= 3


def test_ec2_kwargs_from_config_hold_the_safe_defaults():
    kw = cluster_kwargs(cloud_settings("ec2"))
    assert kw["security"] is True and kw["use_private_ip"] is True
    assert kw["security_groups"] == ["sg-0123456789abcdef0"]
    assert kw["iam_instance_profile"] == {"Name": "encore-dask-worker"}
    assert kw["n_workers"] == 4 and kw["worker_options"]["nthreads"] == 4
    assert not any(k.startswith("AWS_") for k in kw.get("env_vars", {}))


def test_ec2_cluster_is_built_up_to_the_network_call(aws_env, restore_dask_config):
    pytest.importorskip("dask_cloudprovider")
    from dask_cloudprovider.aws import EC2Cluster

    kw = cluster_kwargs(cloud_settings("ec2", env_vars={"ENCORE_LOG": "info"}))

    async def build():
        ec2 = EC2Cluster(asynchronous=True, **kw)
        try:
            user_data = ec2.render_cloud_init(image=ec2.options["docker_image"], command="dask worker",
                                              env_vars=ec2.worker_options["env_vars"], gpu_instance=False,
                                              bootstrap=ec2.bootstrap, auto_shutdown=True, docker_args="",
                                              extra_bootstrap=None)
            return ec2, user_data
        finally:
            await ec2.close()

    ec2, user_data = asyncio.run(build())
    assert ec2.security is not None and ec2.security.require_encryption  # TLS, certificates generated
    assert ec2.protocol == "tls" and dask.config.get("distributed.comm.require-encryption") is True
    for options in (ec2.scheduler_options, ec2.worker_options):
        assert options["security_groups"] == ["sg-0123456789abcdef0"]
        assert options["iam_instance_profile"] == {"Name": "encore-dask-worker"}
        assert options["use_private_ip"] is True
    assert ec2.worker_options["instance_type"] == "m6i.xlarge"
    assert ec2.scheduler_options["instance_type"] == "m6i.large"
    assert "ENCORE_LOG" in user_data and SECRET not in user_data and "AWS_SECRET" not in user_data


@pytest.mark.parametrize(("override", "needle"), [
    ({"security_groups": None}, "security_groups is required"),
    ({"security_groups": []}, "security_groups is required"),
    ({"security": False}, "security must stay true"),
    ({"iam_instance_profile": None}, "iam_instance_profile is required"),
    ({"env_vars": {"AWS_SECRET_ACCESS_KEY": SECRET}}, "never ship AWS keys"),
    ({"docker_image": None}, "docker_image is required"),
])
def test_ec2_refuses_unsafe_settings_in_one_line(override, needle):
    with pytest.raises(ClusterError, match=needle) as err:
        cluster_kwargs(cloud_settings("ec2", **override))
    assert "\n" not in str(err.value) and SECRET not in str(err.value)


def test_coiled_kwargs_from_config_hold_the_safe_defaults():
    kw = cluster_kwargs(cloud_settings("coiled"))
    assert kw["allow_ingress_from"] == "me" and kw["credentials"] is None
    assert kw["shutdown_on_close"] is True and kw["idle_timeout"]
    assert kw["worker_vm_types"] == ["m6i.xlarge"] and kw["n_workers"] == 4
    coiled = pytest.importorskip("coiled")
    inspect.signature(coiled.Cluster).bind(**kw)  # every argument is one coiled.Cluster takes


@pytest.mark.parametrize(("override", "needle"), [
    ({"allow_ingress_from": "0.0.0.0/0"}, "whole internet"),
    ({"environ": {"AWS_ACCESS_KEY_ID": "AKIA…"}}, "never ship AWS keys"),
])
def test_coiled_refuses_unsafe_settings(override, needle):
    with pytest.raises(ClusterError, match=needle):
        cluster_kwargs(cloud_settings("coiled", **override))


@pytest.mark.parametrize("kind", ["ec2", "coiled"])
def test_connect_builds_the_chosen_class_with_the_config_kwargs(kind, aws_env, monkeypatch):
    """connect() -> class of cluster.kind(**kwargs) -> Client; the cloud class is stood in for at that call."""
    seen = {}

    def stand_in(**kwargs):
        seen.update(kwargs)
        return LocalCluster(n_workers=1, processes=False, dashboard_address=":0")

    monkeypatch.setattr(cluster_mod, "cloud_class", lambda k: stand_in if k == kind else None)
    settings = cloud_settings(kind)
    with dask.config.set({"coiled.token": "fake-token"}):
        client = connect(settings)
    try:
        assert client.submit(sum, [1, 2]).result() == 3
    finally:
        cluster_mod.close(client)
    assert seen == cluster_kwargs(settings)


@pytest.mark.parametrize(("kind", "module", "extra"), [("ec2", "dask_cloudprovider.aws", "aws"),
                                                        ("coiled", "coiled", "coiled")])
def test_missing_extra_says_what_to_install(kind, module, extra, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(ClusterError, match=rf"pip install 'encore\[{extra}\]'"):
        connect(cloud_settings(kind))


def test_missing_aws_credentials_say_what_to_do(monkeypatch, tmp_path):
    pytest.importorskip("dask_cloudprovider")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ClusterError, match="no AWS credentials.*AWS_PROFILE"):
        connect(cloud_settings("ec2"))


def test_missing_coiled_token_says_what_to_do(monkeypatch):
    pytest.importorskip("coiled")
    with dask.config.set({"coiled.token": None}), pytest.raises(ClusterError, match="coiled login"):
        connect(cloud_settings("coiled"))


def test_session_makes_its_client_current(client, tmp_path):
    """Collections computed inside the block go to the session's client, not the one current before."""
    from distributed import default_client

    from encore.dist.cluster import session
    from tests.helpers import small_settings

    settings = small_settings(tmp_path, cluster={"processes": False, "n_workers": 1})
    with client.as_current():
        with session(settings) as own:
            assert own is not client and default_client() is own
        with session(settings, client=client) as given:
            assert given is client and default_client() is client


def _worker_log_filters() -> list[str]:
    return [type(f).__name__ for f in logging.getLogger("distributed.worker").filters]


def test_local_cluster_samples_no_gil_and_quiets_closing_heartbeats():
    """gilknocker's sampling thread aborts a process that exits while it runs: scheduler, nanny and worker
    go without it. Each worker process filters its heartbeat failure once it closes."""
    pytest.importorskip("gilknocker")
    before = dask.config.get("distributed.admin.system-monitor.gil.enabled")
    client = connect(load_settings(overrides={"cluster": {"n_workers": 1}}, environ={}))
    try:
        sampling = {
            "scheduler": client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.monitor.monitor_gil_contention),
            "nanny": any(client.run(lambda dask_worker: dask_worker.monitor.monitor_gil_contention, nanny=True).values()),
            "worker": any(client.run(lambda dask_worker: dask_worker.monitor.monitor_gil_contention).values()),
        }
        filters = list(client.run(_worker_log_filters).values())
    finally:
        cluster_mod.close(client)
    assert sampling == {"scheduler": False, "nanny": False, "worker": False}
    assert dask.config.get("distributed.admin.system-monitor.gil.enabled") == before  # only for the cluster
    assert filters == [["_ClosingHeartbeatFilter"]]


def test_heartbeat_filter_drops_only_a_closing_workers_heartbeat_failure():
    """The filter passes everything while its worker runs; once it is closed, only the heartbeat failure goes."""
    client = connect(load_settings(overrides={"cluster": {"n_workers": 1, "processes": False}}, environ={}))
    worker = next(iter(client.cluster.workers.values()))
    keep = cluster_mod._ClosingHeartbeatFilter(worker)

    def passes() -> list[bool]:
        return [keep.filter(logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, msg, None, None))
                for msg in (cluster_mod.HEARTBEAT_FAILED + ".", "Unexpected exception during heartbeat.")]

    running = passes()
    cluster_mod.close(client)
    assert worker.status.name == "closed"
    assert running == [True, True]
    assert passes() == [False, True]


HUNG_CLOSE = """
import time
from encore.dist import cluster
from encore.config import load_settings

client = cluster.connect(load_settings(overrides={"cluster": {"n_workers": 1}}, environ={}))
assert client.submit(sum, [1, 2]).result() == 3
start = time.monotonic()
cluster.close(client, timeout=3)
print(time.monotonic() - start, time.time())
"""


def test_hung_shutdown_is_given_up_in_time_and_the_process_exits_0(tmp_path):
    """A scheduler whose teardown hangs (a preload here): close gives up after its timeout with one warning,
    and the process exits at once with status 0: no traceback, no second wait in distributed's exit hook."""
    preload = tmp_path / "hang_teardown.py"
    preload.write_text("import asyncio\n\n\nasync def dask_teardown(scheduler):\n    await asyncio.sleep(120)\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ENCORE_")},
           "DASK_DISTRIBUTED__SCHEDULER__PRELOAD": repr([str(preload)])}
    proc = subprocess.run([sys.executable, "-c", HUNG_CLOSE], check=False, cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=90)
    exited = time.time()
    assert proc.returncode == 0, proc.stderr
    close_seconds, closed_at = map(float, proc.stdout.split())
    assert 2.5 <= close_seconds < 6
    assert exited - closed_at < 5  # the exit hook's retry of the close would wait 10 s
    assert "the Dask cluster did not shut down cleanly (TimeoutError" in proc.stderr
    assert "Traceback" not in proc.stderr and "FATAL" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(("processes", "size", "expected"), [
    (None, 1_000_000, False), (None, 300_000_000, True), (None, None, True), (True, 1, True), (False, 10**12, False)])
def test_local_cluster_runs_a_small_input_in_this_process(processes, size, expected):
    """Unset, ``cluster.processes`` follows the input's size against ``in_process_below_mb`` (an unknown size
    starts processes, as for a large run); set, it is obeyed whatever the size."""
    cfg = load_settings(overrides={"cluster": {"processes": processes}}, environ={}).cluster
    assert cfg.in_process_below_mb == 256.0
    assert cluster_mod.use_processes(cfg, size) is expected
    assert cluster_mod.use_processes(cfg.model_copy(update={"in_process_below_mb": 0}), size) is (
        expected if processes is not None else True)


def test_small_input_session_is_one_worker_in_this_process_with_blas_on_one_thread(tmp_path):
    """A small input: one in-process worker with every thread the workers would have had, frames on local
    threads, BLAS on one thread as in a worker process while the session lasts, and as before afterwards."""
    from threadpoolctl import threadpool_info

    from encore.dist import frames
    from encore.dist.cluster import session
    from tests.helpers import small_settings

    def blas() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas()
    settings = small_settings(tmp_path, cluster={"n_workers": 2, "threads_per_worker": 1})
    with session(settings, input_bytes=1000) as client:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        inside = blas()
        assert frames._on_cluster() is None and frames._scheduler() == {"scheduler": "threads"}
    assert [w["nthreads"] for w in workers.values()] == [2]
    assert all(w["type"] == "Worker" for w in workers.values())  # not a nanny's process
    assert set(inside) == {1} and blas() == before
