"""Session leases on the real PostgreSQL: one holder at a time, expiry, fencing tokens."""

from __future__ import annotations

import asyncio
import uuid

from backend.sessions.lease import Leases
from backend.store.postgres import PostgresStore


async def test_one_holder_then_expiry_then_a_new_token(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    await store.migrate()
    try:
        session = str(uuid.uuid4())
        a, b = Leases(store, "a", ttl=0.5), Leases(store, "b", ttl=0.5)
        held = await a.acquire(session)
        assert held is not None and await a.owner_of(session) == "a"
        assert await b.acquire(session) is None
        assert await a.acquire(session) is None  # not re-entrant: one command at a time
        # Not renewed: it expires and another replica takes it, with a higher token.
        for _ in range(200):  # up to 10 s on a loaded machine
            if (taken := await b.acquire(session)) is not None:
                break
            await asyncio.sleep(0.05)
        assert taken is not None and await a.owner_of(session) == "b"
        assert taken.token > held.token
        # The old holder can neither renew nor release the new holder's lease.
        assert not await store.renew_lease(session, "a", held.token, 5.0)
        await held.release()
        assert await b.owner_of(session) == "b"
        assert await store.renew_lease(session, "b", taken.token, 5.0)
        await taken.release()
        assert await a.owner_of(session) is None
        assert await a.acquire(session) is not None
    finally:
        await store.close()


async def test_a_kept_lease_outlives_its_ttl_and_a_lost_one_says_so(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    await store.migrate()
    try:
        session = str(uuid.uuid4())
        a, b = Leases(store, "a", ttl=0.6), Leases(store, "b", ttl=0.6)
        other = str(uuid.uuid4())
        kept_too = await a.acquire(other)  # one heartbeat renews every lease it holds
        assert kept_too is not None
        kept_too.keep()
        held = await a.acquire(session)
        assert held is not None
        lost = asyncio.Event()
        held.keep(on_lost=lost.set)
        await asyncio.sleep(1.5)  # well past one TTL: the heartbeat kept it
        assert await b.acquire(session) is None and await b.acquire(other) is None
        # Someone deletes the row (an operator, or a bug): the holder learns it lost it.
        await store.release_lease(session, "a", held.token)
        await asyncio.wait_for(lost.wait(), 5)
        assert held.lost
        await held.release()
        assert await b.acquire(session) is not None
    finally:
        await a.close()
        await store.close()
