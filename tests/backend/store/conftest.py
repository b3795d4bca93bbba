"""Fixtures for the store tests: a migrated store of each kind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backend.store.base import Store
from backend.store.postgres import PostgresStore
from backend.store.sqlite import SqliteStore


@pytest.fixture(params=["sqlite", "postgres"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Any]:
    """(kind, where): a SQLite file path, or a throwaway PostgreSQL database's DSN.

    Only the postgres param asks for ``pg_dsn``, so the SQLite half runs (and the
    PostgreSQL half skips with a reason, or fails under CI=true) without a server.
    """
    if request.param == "postgres":
        return "postgres", request.getfixturevalue("pg_dsn")
    return "sqlite", tmp_path / "data" / "agent-tui.db"


def make_store(kind: str, where: Any) -> Store:
    """An unconnected store of ``kind``, with short timeouts for tests."""
    if kind == "postgres":
        return PostgresStore(where, min_size=1, max_size=4, connect_timeout=3.0)
    return SqliteStore(where)


@pytest.fixture
async def store(store_target: tuple[str, Any]) -> AsyncIterator[Store]:
    """A migrated, empty store: SQLite and PostgreSQL in turn."""
    instance = make_store(*store_target)
    await instance.migrate()
    try:
        yield instance
    finally:
        await instance.close()
