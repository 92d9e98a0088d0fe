"""The PostgreSQL extract against the real server: counts, reruns, look-back, failures, read-only."""

from __future__ import annotations

import datetime as dt
import json
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from encore import schema
from encore.config import Settings, SynthSettings
from encore.io import extract as ex
from encore.io import lake, pg
from encore.io.extract import ExtractError, extract, read_watermark, stable_id
from encore.io.pgload import load_marketplace
from encore.io.synth import Marketplace
from tests.helpers import requires_postgres

pytestmark = requires_postgres  # every test here talks to the real server

YESTERDAY = dt.date.today() - dt.timedelta(days=1)
PINNED = 0x580344408F1FF4E3  # stable_id("listing-1")


def _lake(settings: Settings) -> tuple[object, str]:
    return lake.filesystem(settings.lake.path)


def _lake_day(settings: Settings, day: dt.date):
    return pq.read_table(Path(lake.bids_partition(settings.lake.path, day)) / lake.PART)


def _db_days(pg: psycopg.Connection) -> dict[dt.date, tuple[int, float]]:
    rows = pg.execute('SELECT "createdAt"::date, count(*), coalesce(sum(amount), 0)::float8 FROM bids GROUP BY 1')
    return {day: (n, total) for day, n, total in rows}


def _state(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _settings_with(settings: Settings, **extract: object) -> Settings:
    """A copy of ``settings`` with some extract fields replaced (validated, so a DSN becomes a secret)."""
    return settings.model_copy(update={"extract": type(settings.extract).model_validate(
        {**settings.extract.model_dump(), **extract})})


def test_lake_matches_database_per_day(loaded: dict[str, int], settings: Settings, pg: psycopg.Connection) -> None:
    result = extract(settings)
    db = _db_days(pg)
    assert set(result.days) == set(db) == set(lake.bid_days(*_lake(settings)))
    for day, (rows, total) in db.items():
        table = _lake_day(settings, day)
        assert table.schema == schema.BIDS
        assert (table.num_rows, result.days[day].rows) == (rows, rows)
        assert sum(table.column("amount").to_pylist()) == pytest.approx(total)
        assert result.days[day].amount_sum == pytest.approx(total)
    assert result.bids == loaded["bids"]
    assert (result.listings, result.users) == (loaded["listing"], loaded["users"])
    assert result.watermark == read_watermark(*_lake(settings)) == YESTERDAY

    listings = lake.read_snapshot(*_lake(settings), "listings")
    joined = dict(pg.execute(
        "SELECT l.id, c.title || '/' || s.title FROM listing l JOIN category c ON c.id = l.\"categoryId\""
        " JOIN sub_category s ON s.id = l.\"subCategoryId\"").fetchall())
    assert dict(zip(listings.listing_id, listings.category + "/" + listings.sub_category)) == joined
    assert set(listings.status) <= set(schema.STATUSES)


def test_rerun_of_a_day_replaces_it_identically(loaded: dict[str, int], settings: Settings) -> None:
    extract(settings)
    day = YESTERDAY - dt.timedelta(days=2)
    folder = Path(lake.bids_partition(settings.lake.path, day))
    before = _state(folder)
    again = extract(settings, date=day)
    assert list(again.days) == [day]
    assert _state(folder) == before == {lake.PART: before[lake.PART]}
    assert again.watermark == YESTERDAY  # a rerun of a past day never moves the watermark back


def test_late_bid_is_picked_up_within_lookback(loaded: dict[str, int], settings: Settings,
                                                pg: psycopg.Connection) -> None:
    first = extract(settings)
    recent, old = YESTERDAY - dt.timedelta(days=1), YESTERDAY - dt.timedelta(days=4)
    insert = 'INSERT INTO bids (id, "userId", "listingId", amount, "createdAt") SELECT %s, "userId", "listingId", 9.99, %s FROM bids LIMIT 1'
    pg.execute(insert, (990001, dt.datetime.combine(recent, dt.time(23, 59))))
    pg.execute(insert, (990002, dt.datetime.combine(old, dt.time(12))))

    second = extract(settings)  # lookback_days=2 re-extracts yesterday and the day before
    assert (second.start, second.end) == (recent, dt.date.today())
    assert second.days[recent].rows == first.days[recent].rows + 1
    assert 990001 in _lake_day(settings, recent).column("bid_id").to_pylist()
    assert 990002 not in _lake_day(settings, old).column("bid_id").to_pylist()

    extract(settings, since=old)  # an older correction needs an explicit range
    assert 990002 in _lake_day(settings, old).column("bid_id").to_pylist()
    assert _db_days(pg)[old][0] == _lake_day(settings, old).num_rows


def test_day_emptied_in_database_is_removed_from_lake(loaded: dict[str, int], settings: Settings,
                                                      pg: psycopg.Connection) -> None:
    extract(settings)
    pg.execute('DELETE FROM bids WHERE "createdAt"::date = %s', (YESTERDAY,))
    result = extract(settings, date=YESTERDAY)
    assert result.removed_days == [YESTERDAY]
    assert YESTERDAY not in lake.bid_days(*_lake(settings))


def test_bad_rows_reach_ingest_rejects(loaded: dict[str, int], settings: Settings, pg: psycopg.Connection) -> None:
    ingest = pytest.importorskip("encore.job.ingest")
    at = dt.datetime.combine(YESTERDAY, dt.time(10))
    user, listing = pg.execute('SELECT "userId", "listingId" FROM bids LIMIT 1').fetchone()
    bad = {991: None, 992: -5.0, 993: 12.0}
    for bid_id, amount in bad.items():
        listed = 424242 if bid_id == 993 else listing
        pg.execute('INSERT INTO bids VALUES (%s, %s, %s, %s, %s)', (bid_id, user, listed, amount, at))
    pg.execute('INSERT INTO users VALUES (%s, NULL, %s)', ("nameless-user", at))

    extract(settings)
    result = ingest.ingest(settings)
    rejects = result.rejects
    by_bid = {int(json.loads(r.record)["bid_id"]): r.reason for r in rejects[rejects.source == "bids"].itertuples()}
    assert by_bid == {991: schema.BAD_AMOUNT, 992: schema.NEGATIVE_AMOUNT, 993: schema.UNKNOWN_LISTING}
    assert list(rejects[rejects.source == "users"].reason) == ["missing_name"]
    counts = result.counts
    assert counts["rows_in"] == counts["rows_accepted"] + counts["rows_rejected"]
    assert counts["sources"]["bids"]["rows_in"] == loaded["bids"] + len(bad)


@pytest.mark.parametrize("dsn", [
    "postgresql://encore:s3cr3t-pw@127.0.0.1:1/test",
    "host=127.0.0.1 port=1 dbname=test user=encore password=s3cr3t-pw",
])
def test_unreachable_database_is_one_masked_line(settings: Settings, dsn: str) -> None:
    with pytest.raises(ExtractError) as info:
        extract(_settings_with(settings, dsn=dsn))
    message = str(info.value)
    assert "\n" not in message and "s3cr3t-pw" not in message
    assert "***" in message and "Connection refused" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert not Path(settings.lake.path).exists()


def test_refused_login_and_echoed_password_are_masked() -> None:
    dsn = "postgresql://encore:s3cr3t-pw@db.example:5432/market"
    refused = psycopg.OperationalError(
        'connection failed: connection to server at "10.0.0.1", port 5432 failed: FATAL:  password '
        'authentication failed for user "encore"\n\tsomething else')
    line = pg.describe(refused, dsn)
    assert line == ("PostgreSQL postgresql://encore:***@db.example:5432/market: connection to server at "
                    '"10.0.0.1", port 5432 failed: password authentication failed for user "encore"')
    assert pg.scrub(f"bad option near s3cr3t-pw in {dsn}", dsn) == (
        "bad option near *** in postgresql://encore:***@db.example:5432/market")


@pytest.mark.parametrize(("dsn", "masked"), [
    ("postgresql://u:p%40ss@h:5/db", "postgresql://u:***@h:5/db"),
    ("host=h user=u password='a b' dbname=d", "host=h user=u password=*** dbname=d"),
    ("postgres://u@h/db?sslmode=require&password=xyz", "postgres://u@h/db?sslmode=require&password=***"),
    ("host=h dbname=d", "host=h dbname=d"),
])
def test_mask_dsn(dsn: str, masked: str) -> None:
    assert pg.mask_dsn(dsn) == masked


def test_missing_table_or_column_is_one_line_and_lake_untouched(loaded: dict[str, int], settings: Settings,
                                                                 pg: psycopg.Connection) -> None:
    extract(settings)
    root = Path(settings.lake.path)
    before = _state(root)
    pg.execute("DROP TABLE sub_category")
    with pytest.raises(ExtractError, match=rf"missing table {settings.extract.db_schema}\.sub_category"):
        extract(settings)
    renamed = _settings_with(settings, columns={"bids": {"amount": "price_paid"}})
    with pytest.raises(ExtractError, match=r"missing .*column bids\.price_paid"):
        extract(renamed)
    with pytest.raises(ExtractError, match="unknown tables/columns: bids.amont"):
        extract(_settings_with(settings, columns={"bids": {"amont": "x"}}))
    assert _state(root) == before


def test_extract_transaction_is_read_only(loaded: dict[str, int], settings: Settings,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}
    real = pg.snapshot

    @contextmanager
    def spy(dsn: str):
        with real(dsn) as conn:
            seen["mode"] = conn.execute("SELECT current_setting('transaction_read_only'),"
                                        " current_setting('transaction_isolation')").fetchone()
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), conn.transaction():
                conn.execute(sql.SQL("INSERT INTO {} (id, amount) VALUES (1, 1)").format(
                    sql.Identifier(settings.extract.db_schema, "bids")))
            seen["refused"] = True
            yield conn

    monkeypatch.setattr(pg, "snapshot", spy)
    assert extract(settings).bids == loaded["bids"]
    assert seen == {"mode": ("on", "repeatable read"), "refused": True}


def test_other_deployment_uuid_ids_timestamptz_and_renamed_columns(loaded: dict[str, int], settings: Settings,
                                                                    pg: psycopg.Connection) -> None:
    original = dict(pg.execute('SELECT id, "createdAt" FROM bids').fetchall())
    pg.execute("""
        ALTER TABLE listing ALTER COLUMN id TYPE uuid USING md5(id::text)::uuid;
        ALTER TABLE bids ALTER COLUMN "listingId" TYPE uuid USING md5("listingId"::text)::uuid;
        ALTER TABLE bids ALTER COLUMN "createdAt" TYPE timestamptz USING "createdAt" AT TIME ZONE 'UTC';
        ALTER TABLE bids RENAME TO bid;
        ALTER TABLE users RENAME COLUMN "userName" TO user_name;
        UPDATE listing SET status = upper(replace(replace(status, 'live', 'active'), 'unsold', 'expired'));
    """)
    mapped = _settings_with(settings, tables={"bids": "bid"}, columns={"users": {"userName": "user_name"}})
    result = extract(mapped)
    assert result.bids == loaded["bids"]

    listings = lake.read_snapshot(*_lake(mapped), "listings")
    uuids = [str(u) for (u,) in pg.execute("SELECT id FROM listing")]
    assert set(listings.listing_id) == {stable_id(u) for u in uuids}
    assert set(listings.status) <= set(schema.STATUSES)
    bids = pq.read_table(Path(mapped.lake.path) / "bids").to_pandas()
    assert set(bids.listing_id) <= set(listings.listing_id)
    assert dict(zip(bids.bid_id, bids.created_at.dt.to_pydatetime())) == original
    assert lake.read_snapshot(*_lake(mapped), "users").user_name.notna().all()


def test_stable_id_is_a_fixed_63_bit_hash() -> None:
    assert stable_id("3f2a8c4e-0000-4000-8000-000000000001") == stable_id("3f2a8c4e-0000-4000-8000-000000000001")
    assert stable_id("a") != stable_id("b")
    assert 0 <= stable_id("x") < 2**63
    assert stable_id("listing-1") == PINNED  # pinned: a changed hash would re-key every lake


def test_plan_and_watermark_rules() -> None:
    today, w = dt.date(2026, 11, 27), dt.date(2026, 11, 26)
    day = dt.timedelta(days=1)
    assert ex.plan(today, None, 2) == (None, today)
    assert ex.plan(today, w, 2) == (w - day, today)
    assert ex.plan(today, w, 0) == (today, today)
    assert ex.plan(today, w, 2, date=w - 9 * day) == (w - 9 * day, w - 8 * day)
    assert ex.plan(today, w, 2, since=w - 9 * day) == (w - 9 * day, today)
    with pytest.raises(ExtractError, match="either"):
        ex.plan(today, w, 2, date=w, since=w)
    assert ex.next_watermark(None, None, today, today) == w
    assert ex.next_watermark(w - 5 * day, w - 3 * day, today, today) == w - 5 * day  # a gap: stay
    assert ex.next_watermark(w - 5 * day, w - 4 * day, today, today) == w
    assert ex.next_watermark(w, w - 9 * day, w - 8 * day, today) == w  # never backwards
    assert ex.next_watermark(None, today, today + day, today) is None  # today is never complete


def test_load_refuses_existing_tables(loaded: dict[str, int], pg_dsn: str, pg_schema: str,
                                     synth_settings: SynthSettings) -> None:
    with pytest.raises(ExtractError, match="tables already exist"):
        load_marketplace(pg_dsn, Marketplace(synth_settings), schema=pg_schema)
