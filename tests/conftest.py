"""Shared fixtures: small settings pointing into a temporary folder, and a real in-process Dask cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from encore.config import Settings
from tests.helpers import SHARED_DATA, small_settings


@pytest.fixture(scope="session")
def client() -> Iterator[Client]:
    """A real distributed cluster: two single-threaded workers in this process."""
    with (LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
          Client(cluster) as c):
        yield c


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return small_settings(tmp_path)


@pytest.fixture
def legacy_csv() -> Path:
    path = SHARED_DATA / "encore_bids_sample.csv"
    if not path.exists():
        pytest.skip(f"{path} is not there")
    return path
