"""PostgresStore specifics: DSN handling, and failures of the database and its connections."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from urllib.parse import urlsplit

import asyncpg
import pytest

from backend.errors import StoreUnavailable
from backend.store.postgres import PostgresStore, prepare_dsn
from tests.backend.store.factories import make_session


@pytest.mark.parametrize(
    ("dsn", "expected", "pooled"),
    [
        (
            "postgresql://u:p@db.example.com:5432/app",
            "postgresql://u:p@db.example.com:5432/app",
            False,
        ),
        (
            "postgresql://u:p@ep-cool-1-pooler.us-east-2.aws.neon.tech/neondb"
            "?sslmode=require&channel_binding=require",
            "postgresql://u:p@ep-cool-1-pooler.us-east-2.aws.neon.tech/neondb?sslmode=require",
            True,
        ),
        (
            "postgresql://u:p@ep-cool-1.us-east-2.aws.neon.tech/neondb?channel_binding=prefer",
            "postgresql://u:p@ep-cool-1.us-east-2.aws.neon.tech/neondb",
            False,
        ),
        ("postgres://u@bouncer:6432/app?pgbouncer=true", "postgres://u@bouncer:6432/app", True),
        ("postgres://u@bouncer:6432/app?pgbouncer=false", "postgres://u@bouncer:6432/app", False),
        (
            "postgresql:///app?host=ep-x-pooler.neon.tech",
            "postgresql:///app?host=ep-x-pooler.neon.tech",
            True,
        ),
        (
            "postgresql:///app?host=%2Frun%2Fpg&channel_binding=disable&sslmode=prefer",
            "postgresql:///app?host=%2Frun%2Fpg&sslmode=prefer",
            False,
        ),
    ],
)
def test_prepare_dsn(dsn: str, expected: str, pooled: bool) -> None:
    assert prepare_dsn(dsn) == (expected, pooled)


def test_repr_shows_no_password() -> None:
    text = repr(PostgresStore("postgresql://user:s3cret@db.example.com/app"))
    assert "s3cret" not in text and "db.example.com" in text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _via(dsn: str, port: int) -> str:
    """``dsn`` pointed at 127.0.0.1:``port`` instead of its own host and port."""
    parts = urlsplit(dsn)
    user = parts.netloc.rpartition("@")[0]
    return parts._replace(netloc=f"{user}@127.0.0.1:{port}").geturl()


async def test_closed_port_raises_store_unavailable_quickly() -> None:
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{_free_port()}/db", connect_timeout=2.0)
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.get_session(make_session().id)
        with pytest.raises(StoreUnavailable):
            await store.create_session(make_session())
        with pytest.raises(StoreUnavailable):
            await store.migrate()
    finally:
        await store.close()
    assert time.monotonic() - started < 3.0


async def test_silent_server_times_out_as_store_unavailable() -> None:
    # Accepts TCP connections and never answers: only the connect timeout ends it.
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{port}/db", connect_timeout=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable):
            await store.ping()
    finally:
        await store.close()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert time.monotonic() - started < 3.0


class TcpProxy:
    """Forwards a local port to PostgreSQL. ``stop()`` drops every connection and
    refuses new ones, as a database restart would; ``start()`` brings it back on
    the same port."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        self._writers |= {writer, upstream_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


async def test_store_works_again_when_the_database_comes_back(pg_dsn: str) -> None:
    parts = urlsplit(pg_dsn)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    store = PostgresStore(_via(pg_dsn, proxy.port), connect_timeout=2.0)
    try:
        await store.migrate()
        session = make_session()
        await store.create_session(session)

        await proxy.stop()  # the database "goes away"
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.get_session(session.id)
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.create_session(make_session())
        assert time.monotonic() - started < 3.0

        await proxy.start()  # ... and comes back: no new store needed
        assert await store.get_session(session.id) == session
        await store.create_session(make_session())
    finally:
        await store.close()
        await proxy.stop()


def _terminate_backends_blocking(dsn: str) -> int:
    """Kill every other backend of the database, from another thread, while this
    thread (and so the store's event loop) is blocked: the store's connection
    cannot notice before it is next used."""
    result: list[int] = []

    async def terminate() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            result.append(
                await conn.fetchval(
                    """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                       WHERE datname = current_database() AND pid <> pg_backend_pid()"""
                )
            )
            # pg_terminate_backend only signals; wait for the backends to exit.
            for _ in range(100):
                others = await conn.fetchval(
                    """SELECT count(*) FROM pg_stat_activity
                       WHERE datname = current_database() AND pid <> pg_backend_pid()"""
                )
                if others == 0:
                    break
                await asyncio.sleep(0.01)
        finally:
            await conn.close()

    thread = threading.Thread(target=asyncio.run, args=(terminate(),))
    thread.start()
    thread.join()
    return result[0]


async def test_terminated_connections_are_replaced(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresStore(pg_dsn, min_size=1, max_size=1, connect_timeout=3.0)
    try:
        await store.migrate()
        session = make_session()
        await store.create_session(session)

        # A read on a killed connection is retried once on a fresh one.
        assert _terminate_backends_blocking(pg_dsn) >= 1
        with caplog.at_level(logging.INFO, logger="backend.store.postgres"):
            assert await store.get_session(session.id) == session
        assert "retrying once" in caplog.text

        # An insert is not retried (it may have committed): it fails cleanly...
        assert _terminate_backends_blocking(pg_dsn) >= 1
        with pytest.raises(StoreUnavailable):
            await store.create_session(make_session())
        # ... and the call after that succeeds.
        await store.create_session(make_session())

        # Killed while idle, with the event loop running: asyncpg may or may not have
        # seen the socket close before the next call; either way the one after works.
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(
                """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                   WHERE datname = current_database() AND pid <> pg_backend_pid()"""
            )
        finally:
            await conn.close()
        try:
            await store.ping()
        except StoreUnavailable:
            pass  # allowed: the next call must work
        assert await store.get_session(session.id) == session
    finally:
        await store.close()


async def test_pooler_dsn_disables_the_statement_cache_and_still_works(pg_dsn: str) -> None:
    store = PostgresStore(
        pg_dsn + "?pgbouncer=true&channel_binding=require&sslmode=disable", connect_timeout=3.0
    )
    assert store.pooled
    try:
        await store.migrate()
        session = make_session()
        await store.create_session(session)
        for _ in range(3):  # the same statement again: nothing cached to go stale
            assert await store.get_session(session.id) == session
    finally:
        await store.close()


async def test_a_connection_that_failed_is_not_handed_out_again(pg_dsn: str) -> None:
    # White-box: the symptom of a connection killed while idle, injected directly.
    store = PostgresStore(pg_dsn, min_size=1, max_size=1, connect_timeout=3.0)
    pids: list[int] = []

    async def work(conn: asyncpg.Connection) -> int:
        pids.append(conn.get_server_pid())
        if len(pids) == 1:
            raise asyncpg.exceptions.InternalClientError("cannot switch to state 11")
        return await conn.fetchval("SELECT 1")

    try:
        await store.migrate()
        assert await store._run(work, retry=True) == 1
        assert len(pids) == 2 and pids[0] != pids[1]  # retried on a fresh connection
        pids.clear()
        with pytest.raises(StoreUnavailable):
            await store._run(work)  # no retry for writes
        await store.ping()
    finally:
        await store.close()
