"""Shared fixtures: small settings pointing into a temporary folder, and a real in-process Dask cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from encore.config import Settings, load_settings

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def client() -> Iterator[Client]:
    """A real distributed cluster: two single-threaded workers in this process."""
    with (LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
          Client(cluster) as c):
        yield c


def small_settings(tmp_path: Path, **sections: dict) -> Settings:
    """Settings for a small synthetic marketplace under ``tmp_path`` (generated on first use), ignoring
    ENCORE_* variables."""
    tree = {
        "lake": {"path": str(tmp_path / "lake"), "synthetic": True},
        "output": {"path": str(tmp_path / "out"), "shards": 4},
        "synth": {"users": 300, "days": 10, "seed": 7},
        "ingest": {"window_days": 10},
        "recommend": {"n": 10},
    }
    for name, values in sections.items():
        tree[name] = {**tree.get(name, {}), **values}
    return load_settings(overrides=tree, environ={})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return small_settings(tmp_path)


@pytest.fixture
def legacy_csv() -> Path:
    path = SHARED_DATA / "encore_bids_sample.csv"
    if not path.exists():
        pytest.skip(f"{path} is not there")
    return path
