"""SqliteStore specifics: the file, its locking, and recovery from an unusable file."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from backend.errors import StoreUnavailable
from backend.store.migrate import load_migrations
from backend.store.sqlite import SqliteStore
from tests.backend.store.factories import make_message, make_session


async def test_creates_a_private_file_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "agent-tui.db"
    store = SqliteStore(path)
    try:
        await store.migrate()
    finally:
        await store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_an_unopenable_path_is_unavailable_until_it_is_fixed(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data directory should be")
    store = SqliteStore(blocker / "agent-tui.db")
    try:
        with pytest.raises(StoreUnavailable):
            await store.migrate()
        with pytest.raises(StoreUnavailable):
            await store.ping()
        blocker.unlink()  # fixed: the same store now works
        assert await store.migrate() == [m.version for m in load_migrations("sqlite")]
        await store.ping()
    finally:
        await store.close()


async def test_a_locked_database_is_unavailable_and_reads_still_work(tmp_path: Path) -> None:
    path = tmp_path / "agent-tui.db"
    store = SqliteStore(path, busy_timeout_ms=100)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        await store.migrate()
        session = make_session()
        await store.create_session(session)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        started = time.monotonic()
        assert await store.get_session(session.id) == session  # WAL: readers go on
        with pytest.raises(StoreUnavailable):
            await store.create_session(make_session())
        assert time.monotonic() - started < 2.0
        other.execute("COMMIT")
        await store.create_session(make_session())  # the lock is gone: writes work again
    finally:
        other.close()
        await store.close()


async def test_two_stores_on_one_file_write_concurrently(tmp_path: Path) -> None:
    first, second = SqliteStore(tmp_path / "db"), SqliteStore(tmp_path / "db")
    try:
        await first.migrate()
        await second.migrate()
        session = make_session()
        await first.create_session(session)
        await asyncio.gather(
            *(store.add_message(make_message(session.id)) for store in [first, second] * 25)
        )
        assert len(await second.list_messages(session.id)) == 50
    finally:
        await first.close()
        await second.close()


async def test_in_memory_database(tmp_path: Path) -> None:
    store = SqliteStore(":memory:")
    try:
        assert await store.migrate() == [m.version for m in load_migrations("sqlite")]
        session = make_session()
        await store.create_session(session)
        assert await store.get_session(session.id) == session
    finally:
        await store.close()
    assert not (Path.cwd() / ":memory:").exists()


async def test_lookups_on_the_loop_thread_fall_back_when_the_file_is_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Point lookups read on the loop thread with busy_timeout 0 (never waiting
    there); an SQLITE_BUSY answer sends the read to the threaded reader."""
    store = SqliteStore(tmp_path / "agent-tui.db")
    try:
        await store.migrate()
        session = make_session()
        await store.create_session(session)
        assert await store.get_session(session.id) == session
        inline = store._inline
        assert inline is not None  # that lookup used the loop-thread reader
        assert inline.execute("PRAGMA busy_timeout").fetchone()[0] == 0

        class Busy:
            calls = 0

            def execute(self, *args: object) -> None:
                Busy.calls += 1
                error = sqlite3.OperationalError("database is locked")
                error.sqlite_errorcode = sqlite3.SQLITE_BUSY
                raise error

        monkeypatch.setattr(store, "_inline_connection", Busy)
        assert await store.get_session(session.id) == session
        assert await store.list_keys("nobody") == []
        assert Busy.calls == 2
    finally:
        await store.close()
