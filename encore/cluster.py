"""``connect(settings)``: a Dask client for the configured cluster kind.

``local`` starts a LocalCluster sized to this machine, ``address`` joins a running scheduler; ``ec2``
and ``coiled`` build cloud clusters, their libraries imported only when chosen.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster

from encore.config import ClusterSettings, Settings


class ClusterError(RuntimeError):
    """The cluster cannot be reached or built; the message says what to do."""


def local_cluster(cfg: ClusterSettings) -> LocalCluster:
    """A LocalCluster: one single-threaded worker per core unless configured otherwise."""
    n_workers = cfg.n_workers or max(1, (os.cpu_count() or 1) // cfg.threads_per_worker)
    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=cfg.threads_per_worker,
        processes=cfg.processes,
        memory_limit=cfg.memory_limit,
        dashboard_address=cfg.kwargs.get("dashboard_address", ":0"),
        protocol=cfg.kwargs.get("protocol", "tcp" if cfg.processes else "inproc"),
        **{k: v for k, v in cfg.kwargs.items() if k not in ("dashboard_address", "protocol")},
    )


def build_cluster(cfg: ClusterSettings):
    """The cluster object for ``cfg.kind`` (None for ``address``)."""
    if cfg.kind == "local":
        return local_cluster(cfg)
    if cfg.kind == "address":
        return None
    raise ClusterError(f"cluster.kind={cfg.kind!r} is not available in this version; use local or address")


def connect(settings: Settings | ClusterSettings) -> Client:
    """A client for the configured cluster. The caller closes it (or use :func:`session`)."""
    cfg = settings.cluster if isinstance(settings, Settings) else settings
    cluster = build_cluster(cfg)
    if cluster is None:
        try:
            return Client(cfg.address, timeout="10s")
        except OSError as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {cfg.address}: {exc}") from None
    client = Client(cluster)
    client._encore_owns_cluster = True  # close the cluster with the client
    return client


def close(client: Client) -> None:
    """Close the client, and the cluster too when :func:`connect` started it."""
    cluster = client.cluster if getattr(client, "_encore_owns_cluster", False) else None
    client.close()
    if cluster is not None:
        cluster.close()


@contextmanager
def session(settings: Settings, client: Client | None = None) -> Iterator[Client]:
    """Use ``client`` if given, else connect for the duration of the block and close afterwards."""
    if client is not None:
        yield client
        return
    client = connect(settings)
    try:
        yield client
    finally:
        close(client)
