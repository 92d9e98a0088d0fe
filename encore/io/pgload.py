"""Load a synthetic marketplace into PostgreSQL, in the marketplace's schema (``extract.SOURCE``).

This gives the extract a real database to read, so the chain database → lake → recommendations can be
demonstrated and tested. Tables are created with the marketplace's camelCase column names, rows are sent
with ``COPY`` (one CSV stream per table, bids one day at a time), and keys and the ``bids."createdAt"``
index are added after the load, as a bulk load should. No foreign keys: the tests insert deliberately bad
rows (a bid on a missing listing) to prove the pipeline quarantines them.
"""

from __future__ import annotations

import io

import pandas as pd
import psycopg
from psycopg import sql

from encore.io.pg import ExtractError, connect, describe
from encore.io.synth import Marketplace

NULL = r"\N"

#: Table → (column, type) in load order; users hold buyers and sellers.
TABLES: dict[str, list[tuple[str, str]]] = {
    "category": [("id", "bigint"), ("title", "text")],
    "sub_category": [("id", "bigint"), ("title", "text"), ("categoryId", "bigint")],
    "users": [("id", "text"), ("userName", "text"), ("createdAt", "timestamp")],
    "listing": [
        ("id", "bigint"), ("title", "text"), ("price", "numeric(12,2)"), ("categoryId", "bigint"),
        ("subCategoryId", "bigint"), ("sellerId", "text"), ("status", "text"), ("startsAt", "timestamp"),
        ("endsAt", "timestamp"),
    ],
    "bids": [("id", "bigint"), ("userId", "text"), ("listingId", "bigint"), ("amount", "numeric(12,2)"),
             ("createdAt", "timestamp")],
}

#: Marketplace frame column feeding each table column, in the order of ``TABLES``.
SOURCE_COLUMNS: dict[str, list[str]] = {
    "category": ["category_id", "title"],
    "sub_category": ["sub_category_id", "title", "category_id"],
    "users": ["uid", "user_name", "created_at"],
    "listing": ["listing_id", "title", "price", "category_id", "sub_category_id", "seller_id", "status",
                "starts_at", "ends_at"],
    "bids": ["bid_id", "uid", "listing_id", "amount", "created_at"],
}


def load_marketplace(dsn: str, marketplace: Marketplace, schema: str = "public",
                     replace: bool = False) -> dict[str, int]:
    """Create the marketplace tables in ``schema`` and COPY ``marketplace`` into them; rows per table.

    Existing tables are an error unless ``replace`` is true (then they are dropped first), so a typo in
    the DSN cannot wipe a real marketplace. Raises :class:`ExtractError` with one password-free line.
    """
    try:
        with connect(dsn) as conn:
            _create(conn, schema, replace)
            counts = _load(conn, schema, marketplace)
            _index(conn, schema)
            conn.commit()
    except psycopg.Error as exc:
        raise ExtractError(f"loading the marketplace failed: {describe(exc, dsn)}") from None
    return counts


def _create(conn: psycopg.Connection, schema: str, replace: bool) -> None:
    """Create the schema and empty tables (dropping old ones only when ``replace``)."""
    existing = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_name = ANY(%s)",
        (schema, list(TABLES)),
    ).fetchall()
    if existing and not replace:
        names = ", ".join(sorted(f"{schema}.{name}" for (name,) in existing))
        raise ExtractError(f"tables already exist: {names} (load with replace=True to drop them first)")
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    for table, columns in TABLES.items():
        ident = sql.Identifier(schema, table)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
        cols = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns)
        conn.execute(sql.SQL("CREATE TABLE {} ({})").format(ident, cols))


def _load(conn: psycopg.Connection, schema: str, market: Marketplace) -> dict[str, int]:
    """COPY every table; bids go first, one day at a time, so listing status needs no second pass."""
    counts = {}
    counts["bids"], listings, users = market.export(lambda _day, bids: _copy(conn, schema, "bids", bids))
    counts["category"] = _copy(conn, schema, "category", market.categories())
    counts["sub_category"] = _copy(conn, schema, "sub_category", market.sub_categories())
    counts["users"] = _copy(conn, schema, "users", users)
    counts["listing"] = _copy(conn, schema, "listing", listings)
    return counts


def _copy(conn: psycopg.Connection, schema: str, table: str, frame: pd.DataFrame) -> int:
    """Stream ``frame`` into ``schema.table`` as CSV through COPY; returns the row count."""
    columns = [c for c, _ in TABLES[table]]
    buffer = io.StringIO()
    frame[SOURCE_COLUMNS[table]].to_csv(buffer, header=False, index=False, na_rep=NULL)
    query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, NULL {})").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Literal(NULL)
    )
    with conn.cursor().copy(query) as copy:
        copy.write(buffer.getvalue())
    return len(frame)


def _index(conn: psycopg.Connection, schema: str) -> None:
    """Primary keys on every ``id``, the ``bids."createdAt"`` index the extract's day ranges use, stats."""
    for table in TABLES:
        conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (id)").format(sql.Identifier(schema, table)))
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, table)))
    conn.execute(sql.SQL("CREATE INDEX ON {} ({})").format(sql.Identifier(schema, "bids"),
                                                            sql.Identifier("createdAt")))

