"""``connect(settings)``: a Dask client for the configured cluster kind.

``local`` starts a LocalCluster sized to this machine, ``address`` joins a running scheduler; ``ec2``
(dask-cloudprovider's ``EC2Cluster``) and ``coiled`` (``coiled.Cluster``) build cloud clusters, their
libraries imported only when chosen. Cloud clusters get safe defaults that ``cluster.kwargs`` can extend
but not weaken: TLS between every party, no scheduler open to the whole internet, and S3 access from an
instance profile rather than credentials copied onto the machines (see docs/deploy.md).

:func:`close` shuts down in order (client, then the cluster: workers and their nannies before the scheduler)
within a bounded time and never raises: it runs once the work is done, so a slow or failed shutdown must
neither fail the run nor keep a cron job waiting.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dask
from distributed import Client, LocalCluster, Worker, WorkerPlugin
from distributed.core import Status

from encore.config import ClusterSettings, Settings
from encore.dist.frames import IN_PROCESS
from encore.errors import ClusterError

# Variables that would copy long- or short-lived AWS keys onto cluster machines (user data, container env).
CREDENTIAL_VARS = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                             "AWS_SECURITY_TOKEN"})
OPEN_CIDRS = frozenset({"0.0.0.0/0", "::/0"})
CLOUD_CLASSES = {"ec2": ("dask_cloudprovider.aws", "EC2Cluster", "aws"), "coiled": ("coiled", "Cluster", "coiled")}
DEFAULT_CLOUD_WORKERS = 4
CLOSE_TIMEOUT = 15.0  # seconds for the whole shutdown, then give up
CLIENT_CLOSE_TIMEOUT = 5.0
# distributed samples GIL contention with gilknocker when it is installed (the coiled extra brings it): Rust
# threads asking for the GIL every millisecond. One can outlive its server's close (or the close is given
# up), and asking for the GIL while the interpreter exits aborts the process: "FATAL: exception not
# rethrown", SIGABRT, exit status -6; the scheduler's and nannies' threads run in this process, each
# worker's in its own. The metric only feeds the dashboard.
NO_GIL_SAMPLING = {"distributed.admin.system-monitor.gil.enabled": False}
HEARTBEAT_FAILED = "Failed to communicate with scheduler during heartbeat"
CLOSING = frozenset({Status.closing, Status.closing_gracefully, Status.closed})
# What a shutdown step raises when it runs out of time (TimeoutError), loses a connection (OSError, which
# CommClosedError is), finds its loop gone (RuntimeError), its work cancelled, or a server in an odd state.
SHUTDOWN_ERRORS = (TimeoutError, OSError, RuntimeError, AssertionError, asyncio.CancelledError)

log = logging.getLogger("encore")


def use_processes(cfg: ClusterSettings, input_bytes: int | None = None) -> bool:
    """Whether a local cluster starts worker processes: as ``cluster.processes`` says when it is set; unset,
    threads in this process for an input smaller than ``cluster.in_process_below_mb`` (starting processes
    and importing the stack into each costs more than such a run), processes otherwise or when the input's
    size is not known."""
    if cfg.processes is not None:
        return cfg.processes
    return input_bytes is None or input_bytes >= cfg.in_process_below_mb * 1e6


def local_cluster(cfg: ClusterSettings, input_bytes: int | None = None) -> LocalCluster:
    """A LocalCluster: one single-threaded worker process per core unless configured otherwise; for a small
    input (:func:`use_processes`) one worker in this process with as many threads as the workers would have
    had in all, so the work is cut into the same blocks.

    Built without GIL sampling (see ``NO_GIL_SAMPLING``); the nannies hand that setting on to the worker
    processes they start, restarts included.
    """
    n_workers = cfg.n_workers or max(1, (os.cpu_count() or 1) // cfg.threads_per_worker)
    processes, threads = use_processes(cfg, input_bytes), cfg.threads_per_worker
    if not processes and cfg.processes is None:
        n_workers, threads = 1, n_workers * threads
    with dask.config.set(NO_GIL_SAMPLING):
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads,
            processes=processes,
            memory_limit=cfg.memory_limit,
            dashboard_address=cfg.kwargs.get("dashboard_address", ":0"),
            protocol=cfg.kwargs.get("protocol", "tcp" if processes else "inproc"),
            **{k: v for k, v in cfg.kwargs.items() if k not in ("dashboard_address", "protocol")},
        )


class _ClosingHeartbeatFilter(logging.Filter):
    """Drops the heartbeat-failure record of a worker that is closing; every other record passes."""

    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self._worker = weakref.ref(worker)

    def filter(self, record: logging.LogRecord) -> bool:
        worker = self._worker()
        closing = worker is not None and worker.status in CLOSING
        return not (closing and record.getMessage().startswith(HEARTBEAT_FAILED))


class QuietClosingHeartbeat(WorkerPlugin):
    """Keeps a closing worker from logging its last heartbeat as an ERROR with a traceback.

    ``Worker.close`` closes the worker's connections while a heartbeat may still wait on one, and
    distributed logs that as "Failed to communicate with scheduler during heartbeat". Nothing is lost (the
    worker is going away), so it is dropped then; the same failure while the worker runs is still logged.
    For worker processes only: in-process workers share one logger, which cannot tell them apart.
    """

    name = "encore-quiet-closing-heartbeat"

    def setup(self, worker: Worker) -> None:
        logging.getLogger("distributed.worker").addFilter(_ClosingHeartbeatFilter(worker))


def _worker_options(cfg: ClusterSettings) -> dict[str, Any]:
    return {"nthreads": cfg.threads_per_worker, "memory_limit": cfg.memory_limit}


def _refuse_credentials(env: dict[str, Any] | None, field: str) -> None:
    """Refuse AWS keys in environment variables shipped to cluster machines: use an instance profile."""
    leaked = sorted(CREDENTIAL_VARS & set(env or {}))
    if leaked:
        raise ClusterError(f"cluster.kwargs.{field} holds {', '.join(leaked)}: never ship AWS keys to cluster "
                           "machines; give the instances an IAM instance profile instead (docs/deploy.md)")


def ec2_kwargs(cfg: ClusterSettings) -> dict[str, Any]:
    """Keyword arguments for ``EC2Cluster``: ``cluster.kwargs`` over safe defaults, checked.

    Without ``security_groups`` dask-cloudprovider creates a group open to 0.0.0.0/0 on 8786-8787, so one
    is required; TLS (``security``) stays on; S3 access comes from ``iam_instance_profile``.
    """
    kw = {"n_workers": cfg.n_workers or DEFAULT_CLOUD_WORKERS, "worker_options": _worker_options(cfg),
          "security": True, "use_private_ip": True, **cfg.kwargs}
    if kw["security"] is not True:
        raise ClusterError("cluster.kwargs.security must stay true for ec2: it turns on TLS between client, "
                           "scheduler and workers")
    if not kw.get("security_groups"):
        raise ClusterError("cluster.kwargs.security_groups is required for ec2: without it dask-cloudprovider "
                           "opens ports 8786-8787 to the whole internet; create a group that allows them only "
                           "from your VPC (docs/deploy.md)")
    profile = kw.get("iam_instance_profile")
    if not profile:
        raise ClusterError("cluster.kwargs.iam_instance_profile is required for ec2: the workers read and write "
                           "S3 through it (docs/deploy.md has the policy)")
    if isinstance(profile, str):
        kw["iam_instance_profile"] = {"Arn" if profile.startswith("arn:") else "Name": profile}
    _refuse_credentials(kw.get("env_vars"), "env_vars")
    if not kw.get("docker_image"):
        raise ClusterError("cluster.kwargs.docker_image is required for ec2: an image with encore installed, "
                           "built from the same versions as this client (docs/deploy.md)")
    return kw


def coiled_kwargs(cfg: ClusterSettings) -> dict[str, Any]:
    """Keyword arguments for ``coiled.Cluster``: ``cluster.kwargs`` over safe defaults, checked.

    Coiled opens the scheduler to 0.0.0.0/0 and forwards local AWS credentials unless told otherwise, so
    ingress defaults to this machine only and no credentials are forwarded (the workspace's instance
    profile reads S3); workers shut down with the client or after an idle hour.
    """
    kw = {"n_workers": cfg.n_workers or DEFAULT_CLOUD_WORKERS, "worker_options": _worker_options(cfg),
          "allow_ingress_from": "me", "credentials": None, "shutdown_on_close": True,
          "idle_timeout": "1 hour", **cfg.kwargs}
    if str(kw["allow_ingress_from"]).strip() in OPEN_CIDRS:
        raise ClusterError("cluster.kwargs.allow_ingress_from must not open the scheduler to the whole internet: "
                           "use 'me' or your network's CIDR")
    _refuse_credentials(kw.get("environ"), "environ")
    return kw


def cluster_kwargs(settings: Settings | ClusterSettings) -> dict[str, Any]:
    """The checked keyword arguments for the cloud cluster class of ``cluster.kind`` (ec2 or coiled)."""
    cfg = settings.cluster if isinstance(settings, Settings) else settings
    builders = {"ec2": ec2_kwargs, "coiled": coiled_kwargs}
    if cfg.kind not in builders:
        raise ClusterError(f"cluster.kind={cfg.kind!r} is not a cloud cluster")
    return builders[cfg.kind](cfg)


def cloud_class(kind: str) -> Callable[..., Any]:
    """Import the cluster class for ``kind`` only now, with one line saying how to install it."""
    module, name, extra = CLOUD_CLASSES[kind]
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:
        raise ClusterError(f"cluster.kind={kind} needs the {extra!r} extra: pip install 'encore[{extra}]'") from None


def check_credentials(kind: str) -> None:
    """Fail early, in one line, when the cloud account cannot be reached for lack of credentials."""
    if kind == "ec2":
        import botocore.session

        if botocore.session.get_session().get_credentials() is None:
            raise ClusterError("no AWS credentials for cluster.kind=ec2: set AWS_PROFILE (aws configure / aws sso "
                               "login) or run where an IAM role is attached")
    elif kind == "coiled" and not dask.config.get("coiled.token", None):
        raise ClusterError("no Coiled token for cluster.kind=coiled: run `coiled login` (or set DASK_COILED__TOKEN)")


def build_cluster(cfg: ClusterSettings, input_bytes: int | None = None):
    """The cluster object for ``cfg.kind`` (None for ``address``); cloud clusters start here."""
    if cfg.kind == "local":
        return local_cluster(cfg, input_bytes)
    if cfg.kind == "address":
        return None
    kwargs = cluster_kwargs(cfg)
    factory = cloud_class(cfg.kind)
    check_credentials(cfg.kind)
    return factory(**kwargs)


def connect(settings: Settings | ClusterSettings, input_bytes: int | None = None) -> Client:
    """A client for the configured cluster; ``input_bytes``, the size of the run's input, lets a local
    cluster run a small input in this process (:func:`use_processes`). The caller closes it (or use
    :func:`session`)."""
    cfg = settings.cluster if isinstance(settings, Settings) else settings
    cluster = build_cluster(cfg, input_bytes)
    if cluster is None:
        try:
            return Client(cfg.address, timeout="10s")
        except OSError as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {cfg.address}: {exc}") from None
    client = Client(cluster)
    client._encore_owns_cluster = True  # close the cluster with the client
    if cfg.kind == "local" and cfg.processes is None and not use_processes(cfg, input_bytes):
        setattr(client, IN_PROCESS, True)  # frames of a small input computed on local threads (frames._on_cluster)
    if cfg.kind == "local" and use_processes(cfg, input_bytes):  # one worker per process: the filter tells whose
        client.register_plugin(QuietClosingHeartbeat())
    return client


def _gave_up(what: str, exc: BaseException) -> None:
    """One warning line for a shutdown step given up on: no traceback, the run's outcome stands."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    log.warning("%s did not shut down cleanly (%s%s); leaving it to end with this process", what,
                type(exc).__name__, f": {first}" if first else "")


def close(client: Client, timeout: float = CLOSE_TIMEOUT) -> None:
    """Close the client, then the cluster when :func:`connect` started it, in about ``timeout`` seconds.

    The cluster closes its workers, waiting for their nannies, before its scheduler. A step that fails or
    runs out of time is logged as one warning and not raised; a cluster given up on is not closed again
    by distributed's exit hook (which would wait another 10 s): its processes end with this one.
    """
    cluster = client.cluster if getattr(client, "_encore_owns_cluster", False) else None
    deadline = time.monotonic() + timeout
    try:
        client.close(timeout=min(CLIENT_CLOSE_TIMEOUT, timeout))
    except SHUTDOWN_ERRORS as exc:
        _gave_up("the Dask client", exc)
    if cluster is None:
        return
    try:
        cluster.close(timeout=max(deadline - time.monotonic(), 1.0))
    except SHUTDOWN_ERRORS as exc:
        cluster.shutdown_on_close = False
        _gave_up("the Dask cluster", exc)


@contextmanager
def blas_as_workers(client: Client) -> Iterator[None]:
    """For a cluster running in this process, BLAS on one thread while the block runs, as distributed starts
    every worker process (``distributed.nanny.pre-spawn-environ``: ``OPENBLAS_NUM_THREADS=1``): a matrix
    product summed by more threads can differ in its last bit, and a run must give the same bits however its
    cluster was started. Worker processes and clusters elsewhere are left alone."""
    if not getattr(client, IN_PROCESS, False):
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@contextmanager
def session(settings: Settings, client: Client | None = None, input_bytes: int | None = None) -> Iterator[Client]:
    """Use ``client`` if given, else connect (:func:`connect`, with ``input_bytes``) for the duration of the
    block and close afterwards.

    The client is made current inside the block, so Dask collections computed there (ingest's
    ``persist`` / ``compute``) run on it too, not on whichever client the process made current before
    (a notebook's, a test's ``with Client(...)``).
    """
    owned = client is None
    client = connect(settings, input_bytes) if owned else client
    try:
        with client.as_current(), blas_as_workers(client):
            yield client
    finally:
        if owned:
            close(client)
