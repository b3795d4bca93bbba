"""Model-proxy tokens in the store, on SQLite and PostgreSQL alike: what one store
instance (one replica) mints, another verifies and revokes; only digests are kept."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from backend.model_proxy.tokens import ProxyTokens, token_digest
from backend.records import new_id, utcnow
from backend.store.base import Store
from tests.backend.store.conftest import make_store
from tests.backend.store.factories import make_session


@pytest.fixture
async def two_stores(store_target: tuple[str, Any]) -> AsyncIterator[tuple[Store, Store]]:
    """Two store instances on one database: two replicas' views of it."""
    first, second = make_store(*store_target), make_store(*store_target)
    await first.migrate()
    await second.migrate()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def _raw_rows(target: tuple[str, Any], statement: str) -> list[tuple[Any, ...]]:
    kind, where = target
    if kind == "sqlite":
        with sqlite3.connect(where) as conn:
            conn.execute("PRAGMA foreign_keys = ON")
            return list(conn.execute(statement).fetchall())
    conn = await asyncpg.connect(where)
    try:
        return [tuple(row) for row in await conn.fetch(statement)]
    finally:
        await conn.close()


async def test_minted_on_one_replica_verified_and_revoked_on_another(
    two_stores: tuple[Store, Store],
) -> None:
    store_a, store_b = two_stores
    one, two = make_session(user_id="ann"), make_session(user_id="ann")
    await store_a.create_session(one)
    await store_a.create_session(two)
    on_a, on_b = ProxyTokens(store_a), ProxyTokens(store_b)
    token = await on_a.mint(one.id, "ann")
    assert token.startswith("atp_") and len(token) > 40
    grant = await on_b.verify(token, one.id)
    assert grant is not None and (grant.session_id, grant.user_id) == (one.id, "ann")
    assert await on_b.verify(token, one.id.upper()) == grant  # the path's case does not matter
    # Another session's path, a forged or foreign token, nothing: refused.
    assert await on_b.verify(token, two.id) is None
    assert await on_b.verify("atp_" + "x" * 43, one.id) is None
    assert await on_b.verify(token[:-1], one.id) is None
    assert await on_b.verify("sk-ant-something", one.id) is None
    assert await on_b.verify(None, one.id) is None
    assert await on_b.verify(token, "not-a-uuid") is None
    # Revoked on B: refused on A at once (no cache anywhere).
    await on_b.revoke(token)
    assert await on_a.verify(token, one.id) is None
    await on_b.revoke(token)  # idempotent


async def test_revoke_session_and_a_terminated_session(store: Store) -> None:
    tokens = ProxyTokens(store)
    one, two = make_session(), make_session()
    await store.create_session(one)
    await store.create_session(two)
    first, second = await tokens.mint(one.id, one.user_id), await tokens.mint(one.id, one.user_id)
    other = await tokens.mint(two.id, two.user_id)
    await tokens.revoke_session(one.id)
    assert await tokens.verify(first, one.id) is None
    assert await tokens.verify(second, one.id) is None
    assert await tokens.verify(other, two.id) is not None
    await tokens.revoke_session("not-a-uuid")  # nothing to do, no error
    # A terminated session's tokens are refused even without a revocation.
    await store.update_session(two.id, {"status": "terminated"})
    assert await tokens.verify(other, two.id) is None


async def test_minting_needs_the_session(store: Store) -> None:
    with pytest.raises(ValueError):
        await ProxyTokens(store).mint(new_id(), "ann")


async def test_only_digests_are_stored_and_rows_go_with_their_session(
    store: Store, store_target: tuple[str, Any]
) -> None:
    session = make_session()
    await store.create_session(session)
    token = await ProxyTokens(store).mint(session.id, session.user_id)
    live = await store.live_proxy_token(token_digest(token))
    assert live is not None and live.revoked_at is None
    assert live.created_at <= utcnow()
    rows = await _raw_rows(store_target, "SELECT * FROM proxy_tokens")
    assert len(rows) == 1
    assert token not in repr(rows) and token_digest(token) in repr(rows)
    await store.close()  # SQLite: the raw connection writes alone
    await _raw_rows(store_target, f"DELETE FROM sessions WHERE id = '{session.id}'")
    assert await _raw_rows(store_target, "SELECT * FROM proxy_tokens") == []
