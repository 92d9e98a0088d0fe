"""PostgreSQL fixtures: the server on 127.0.0.1:5432 (trust auth), one fresh schema per test, dropped after."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from encore.config import Settings, SynthSettings, load_settings
from tests.helpers import PG_DSN, postgres_problem


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The test database's DSN; the PostgreSQL tests skip when no server answers."""
    if postgres_problem():
        pytest.skip(postgres_problem())
    return PG_DSN


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    """A schema name unique to this test; the schema and everything in it is dropped afterwards."""
    name = f"encore_test_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def pg(pg_dsn: str, pg_schema: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection whose search_path is the test schema, to inspect and tamper with data."""
    with psycopg.connect(pg_dsn, autocommit=True, options=f"-c search_path={pg_schema}") as conn:
        yield conn


@pytest.fixture
def synth_settings() -> SynthSettings:
    """A small marketplace whose last bidding day is yesterday, so every day is complete."""
    return SynthSettings(users=60, days=6, seed=7, end_date=dt.date.today() - dt.timedelta(days=1))


@pytest.fixture
def loaded(pg_dsn: str, pg_schema: str, synth_settings: SynthSettings) -> dict[str, int]:
    """The synthetic marketplace loaded into the test schema; returns rows per table."""
    from encore.io.pgload import load_marketplace
    from encore.io.synth import Marketplace

    return load_marketplace(pg_dsn, Marketplace(synth_settings), schema=pg_schema)


@pytest.fixture
def settings(tmp_path: Path, pg_dsn: str, pg_schema: str) -> Settings:
    """Settings pointing the extract at the test schema and a fresh lake folder."""
    return load_settings(
        overrides={"lake": {"path": str(tmp_path / "lake")}, "extract": {"dsn": pg_dsn, "db_schema": pg_schema}},
        environ={},
    )
