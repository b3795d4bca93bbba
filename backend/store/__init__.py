"""Persistence: the ``Store`` interface and its SQLite and PostgreSQL implementations."""

from __future__ import annotations

from backend.settings import Settings
from backend.store.base import SessionCursor, Store, UsageSummary

__all__ = ["SessionCursor", "Store", "UsageSummary", "open_store"]


def open_store(settings: Settings) -> Store:
    """The store the settings name: PostgreSQL for a ``postgres(ql)://`` URL, else SQLite.

    The returned store is not connected yet; call ``await store.migrate()`` (which
    connects) before use.
    """
    path = settings.sqlite_path
    if path is None:
        from backend.store.postgres import PostgresStore

        # Replicas mode adds lease and stream bookkeeping to every turn's start: a
        # burst of turns needs more than the default 10 connections.
        return PostgresStore(settings.database_url, max_size=20 if settings.uses_redis else 10)
    from backend.store.sqlite import SqliteStore

    return SqliteStore(path)
