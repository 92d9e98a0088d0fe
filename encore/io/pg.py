"""PostgreSQL connections for the extract: read-only snapshots, masked DSNs, one-line errors.

A DSN carries a password, and libpq errors may quote parts of it, so every message that leaves this module
goes through :func:`scrub`: the DSN is shown with its password replaced by ``***`` and any literal
occurrence of the password is removed. Failures become :class:`ExtractError` with one line saying what
went wrong (unreachable server, refused login, missing table) so the CLI can print it and exit non-zero.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict

from encore.errors import ExtractError

MASK = "***"
APPLICATION_NAME = "encore-extract"
_URL_PASSWORD = re.compile(r"(?P<head>^[a-z][a-z0-9+.-]*://[^:/@?#]*:)(?P<pw>[^@/?#]*)(?=@)", re.IGNORECASE)
_KV_PASSWORD = re.compile(r"(?P<head>(?:^|[\s?&])password\s*=\s*)(?P<pw>'(?:\\.|[^'])*'?|[^\s&]*)", re.IGNORECASE)


def mask_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ``***``, in both URL and ``key=value`` forms."""
    masked = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, dsn)
    return _KV_PASSWORD.sub(lambda m: m.group("head") + MASK, masked)


def _passwords(dsn: str) -> set[str]:
    """Every spelling of the DSN's password that could appear in a message (raw, quoted, URL-decoded)."""
    found = {m.group("pw") for m in _URL_PASSWORD.finditer(dsn)} | {m.group("pw") for m in _KV_PASSWORD.finditer(dsn)}
    found |= {urllib.parse.unquote(p) for p in found} | {p.strip("'") for p in found}
    try:
        found.add(conninfo_to_dict(dsn).get("password") or "")
    except psycopg.Error:
        pass
    return {p for p in found if p and p != MASK}


def scrub(text: str, dsn: str) -> str:
    """``text`` with the DSN masked and every literal occurrence of its password replaced."""
    text = text.replace(dsn, mask_dsn(dsn))
    for password in sorted(_passwords(dsn), key=len, reverse=True):
        text = text.replace(password, MASK)
    return text


def _reason(exc: BaseException) -> str:
    """The first meaningful line of a libpq / psycopg error, without its boilerplate prefixes."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    first = re.sub(r"^connection (failed|is bad):\s*", "", first)
    return re.sub(r"\bFATAL:\s+", "", first)


def describe(exc: BaseException, dsn: str) -> str:
    """One safe line for a connection or query failure against ``dsn``."""
    return scrub(f"PostgreSQL {mask_dsn(dsn)}: {_reason(exc)}", dsn)


def connect(dsn: str, *, connect_timeout: int = 10) -> psycopg.Connection:
    """Open a connection (session time zone UTC) or raise :class:`ExtractError` with one safe line."""
    try:
        return psycopg.connect(
            dsn, connect_timeout=connect_timeout, application_name=APPLICATION_NAME, options="-c TimeZone=UTC"
        )
    except (psycopg.Error, OSError) as exc:
        raise ExtractError(f"cannot connect to {describe(exc, dsn)}") from None


@contextmanager
def snapshot(dsn: str) -> Iterator[psycopg.Connection]:
    """A connection inside ONE read-only REPEATABLE READ transaction, rolled back at the end.

    Every query sees the same snapshot of the database, so a day's bids, the listings and the users agree;
    the server refuses any write, so the extract cannot harm the marketplace database.
    """
    conn = connect(dsn)
    try:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction(force_rollback=True):
            yield conn
    finally:
        conn.close()


def table_columns(conn: psycopg.Connection, db_schema: str, table: str) -> dict[str, str]:
    """Column name → data type of ``db_schema.table`` (empty when the table does not exist)."""
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (db_schema, table),
    ).fetchall()
    return {name: dtype for name, dtype in rows}
