"""Migrations: the numbered files, their bookkeeping, locking, and database/schema.sql."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import sqlite3
import subprocess
from importlib import resources
from pathlib import Path

import asyncpg
import pytest

from backend import records
from backend.store.migrate import Migration, MigrationError, load_migrations, pending_migrations
from backend.store.postgres import PostgresStore
from backend.store.sqlite import SqliteStore
from tests.backend.store.factories import make_session

SCHEMA_SQL = resources.files("database") / "schema.sql"
ALL_SQLITE = [m.version for m in load_migrations("sqlite")]
ALL_POSTGRES = [m.version for m in load_migrations("postgres")]


def test_both_dialects_have_the_same_versions() -> None:
    postgres = [m.version for m in load_migrations("postgres")]
    sqlite = [m.version for m in load_migrations("sqlite")]
    assert postgres, "no PostgreSQL migrations found in the database package"
    assert postgres == sqlite


def test_misnamed_or_clashing_files_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "migrations" / "sqlite"
    directory.mkdir(parents=True)
    monkeypatch.setattr("backend.store.migrate.resources.files", lambda _package: tmp_path)
    load = load_migrations.__wrapped__  # bypass the cache of the real files
    (directory / "001_init.sql").write_text("SELECT 1;")
    (directory / "notes.txt").write_text("ignored")
    assert [m.version for m in load("sqlite")] == ["001_init"]
    (directory / "1-Bad Name.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNN_name"):
        load("sqlite")
    (directory / "1-Bad Name.sql").unlink()
    (directory / "001_again.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="share the number"):
        load("sqlite")


def test_checksums_ignore_crlf_line_endings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "migrations" / "postgres"
    directory.mkdir(parents=True)
    monkeypatch.setattr("backend.store.migrate.resources.files", lambda _package: tmp_path)
    (directory / "001_a.sql").write_bytes(b"SELECT 1;\nSELECT 2;\n")
    (directory / "002_b.sql").write_bytes(b"SELECT 1;\r\nSELECT 2;\r\n")
    first, second = load_migrations.__wrapped__("postgres")
    assert first.checksum == second.checksum


def test_pending_migrations() -> None:
    one, two = Migration("001_a", "", "c1"), Migration("002_b", "", "c2")
    assert pending_migrations((one, two), {}) == [one, two]
    assert pending_migrations((one, two), {"001_a": "c1"}) == [two]
    # A version the database has but this code lacks (a newer release) is no error.
    assert pending_migrations((one,), {"001_a": "c1", "003_c": "c3"}) == []
    with pytest.raises(MigrationError, match="001_a was edited"):
        pending_migrations((one, two), {"001_a": "other"})


# SQLite


async def test_sqlite_records_versions_and_refuses_an_edited_migration(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SqliteStore(path)
    try:
        assert await store.migrate() == ALL_SQLITE
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        (version, checksum, applied_at), *_ = db.execute(
            "SELECT version, checksum, applied_at FROM schema_migrations ORDER BY version"
        ).fetchall()
        assert (version, checksum) == ("001_init", load_migrations("sqlite")[0].checksum)
        assert applied_at.endswith("Z") and len(applied_at) == len("2026-11-25T12:00:00.000Z")
        db.execute("UPDATE schema_migrations SET checksum = 'edited'")
    store = SqliteStore(path)
    try:
        with pytest.raises(MigrationError, match="edited"):
            await store.migrate()
    finally:
        await store.close()


async def test_concurrent_sqlite_migrations_apply_once(tmp_path: Path) -> None:
    stores = [SqliteStore(tmp_path / "store.db") for _ in range(3)]
    try:
        results = await asyncio.gather(*(s.migrate() for s in stores))
    finally:
        for store in stores:
            await store.close()
    assert sorted(results) == [[], [], ALL_SQLITE]


# PostgreSQL


async def test_postgres_refuses_an_edited_migration(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn, connect_timeout=3.0)
    try:
        assert await store.migrate() == ALL_POSTGRES
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("UPDATE schema_migrations SET checksum = 'edited'")
        finally:
            await conn.close()
        with pytest.raises(MigrationError, match="edited"):
            await store.migrate()
    finally:
        await store.close()


async def test_concurrent_postgres_migrations_apply_once(pg_dsn: str) -> None:
    stores = [PostgresStore(pg_dsn, connect_timeout=3.0) for _ in range(3)]
    try:
        results = await asyncio.gather(*(s.migrate() for s in stores))
        # Each file runs in its own transaction: between them the migrators share the work,
        # but every version is applied exactly once, in order.
        assert sorted(v for r in results for v in r) == ALL_POSTGRES
        await stores[0].create_session(make_session())
    finally:
        for store in stores:
            await store.close()


async def _catalog(conn: asyncpg.Connection, schema: str) -> dict[str, list[tuple]]:
    """Tables, columns, indexes and constraints of ``schema``, with the schema name
    taken out so that two schemas can be compared."""

    def strip(text: str | None) -> str | None:
        return None if text is None else text.replace(f"{schema}.", "")

    columns = await conn.fetch(
        """SELECT table_name, ordinal_position, column_name, data_type, udt_name,
                  is_nullable, column_default, is_identity
           FROM information_schema.columns WHERE table_schema = $1 ORDER BY 1, 2""",
        schema,
    )
    indexes = await conn.fetch(
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = $1 ORDER BY 1, 2",
        schema,
    )
    constraints = await conn.fetch(
        """SELECT c.relname, k.conname, pg_get_constraintdef(k.oid)
           FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = $1 ORDER BY 1, 2""",
        schema,
    )
    return {
        "columns": [tuple(r) for r in columns],
        "indexes": [(r[0], r[1], strip(r[2])) for r in indexes],
        "constraints": [(r[0], r[1], strip(r[2])) for r in constraints],
    }


async def test_schema_sql_equals_the_migrations(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn, connect_timeout=3.0)
    try:
        await store.migrate()  # into "public"
    finally:
        await store.close()
    conn = await asyncpg.connect(pg_dsn)
    try:
        # schema.sql names no schema, so it lands in the first one on the search path.
        await conn.execute("CREATE SCHEMA from_file; SET search_path TO from_file")
        await conn.execute(SCHEMA_SQL.read_text())
        from_migrations = await _catalog(conn, "public")
        from_file = await _catalog(conn, "from_file")
        versions = await conn.fetch("SELECT version, checksum FROM from_file.schema_migrations")
        migrated = await conn.fetch("SELECT version, checksum FROM public.schema_migrations")
    finally:
        await conn.close()
    tables = {row[0] for row in from_migrations["columns"]}
    assert tables == {
        "api_keys",
        "sessions",
        "messages",
        "events",
        "usage_records",
        "permission_requests",
        "session_leases",
        "proxy_tokens",
        "schema_migrations",
    }
    assert from_file == from_migrations
    # schema.sql records what it contains, with the files' checksums.
    assert sorted(map(tuple, versions)) == sorted(map(tuple, migrated))


async def test_database_bootstrapped_with_psql_needs_no_migration(pg_dsn: str) -> None:
    psql = shutil.which("psql")
    if psql is not None:
        with resources.as_file(SCHEMA_SQL) as path:
            await asyncio.to_thread(
                subprocess.run,
                [psql, pg_dsn, "-q", "-v", "ON_ERROR_STOP=1", "-f", str(path)],
                check=True,
                capture_output=True,
            )
    else:  # the same text through asyncpg's simple query protocol
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(SCHEMA_SQL.read_text())
        finally:
            await conn.close()
    store = PostgresStore(pg_dsn, connect_timeout=3.0)
    try:
        assert await store.migrate() == []
        session = make_session()
        await store.create_session(session)
        assert await store.get_session(session.id) == session
    finally:
        await store.close()


async def test_both_dialects_define_the_same_columns_as_the_records(
    pg_dsn: str, tmp_path: Path
) -> None:
    pg = PostgresStore(pg_dsn, connect_timeout=3.0)
    lite = SqliteStore(tmp_path / "store.db")
    try:
        await pg.migrate()
        await lite.migrate()
    finally:
        await pg.close()
        await lite.close()
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch(
            """SELECT table_name, column_name FROM information_schema.columns
               WHERE table_schema = 'public' ORDER BY table_name, column_name"""
        )
    finally:
        await conn.close()
    pg_columns = {(r[0], r[1]) for r in rows}
    with sqlite3.connect(tmp_path / "store.db") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        lite_columns = {
            (table, r[1]) for table in tables for r in db.execute(f"PRAGMA table_info({table})")
        }
    assert lite_columns == pg_columns
    for table, record in {
        "api_keys": records.ApiKey,
        "sessions": records.SessionRecord,
        "messages": records.MessageRecord,
        "events": records.EventRecord,
        "usage_records": records.UsageRecord,
    }.items():
        fields = {f.name for f in dataclasses.fields(record)}
        columns = {c for t, c in pg_columns if t == table}
        assert fields <= columns, f"{table} lacks {fields - columns}"
        assert columns - fields <= {"pos"}, f"{table} has unknown columns {columns - fields}"
