"""Test helpers shared by every test module: small settings, the reference data, and ``requires_*`` marks
that skip a test when a real part (PostgreSQL, Chromium, the shared data) is not on this machine."""

from __future__ import annotations

import os
import shutil
from functools import cache
from pathlib import Path

import pytest

from encore.config import Settings, load_settings

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PG_DSN = os.environ.get("ENCORE_TEST_PG_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")


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


def chromium() -> str | None:
    """Path of the chromium binary, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@cache
def postgres_problem() -> str | None:
    """Why the PostgreSQL tests cannot run here (None when the server answers)."""
    import psycopg

    try:
        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        return f"no PostgreSQL server for the extract tests: {str(exc).splitlines()[0]}"
    return None


def requires_shared_data(name: str) -> pytest.MarkDecorator:
    """Skip unless ``../shared/data/<name>`` is there (the reference data is read in place, never copied)."""
    return pytest.mark.skipif(not (SHARED_DATA / name).exists(), reason=f"no {SHARED_DATA / name}")


requires_chromium = pytest.mark.skipif(chromium() is None,
                                       reason="Debian's chromium is not installed (.ci/run installs it)")
requires_postgres = pytest.mark.skipif(postgres_problem() is not None, reason=str(postgres_problem()))
