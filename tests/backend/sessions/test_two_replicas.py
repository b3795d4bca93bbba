"""Replicas mode in one process: two apps on one PostgreSQL and one Redis. The
separate-process tests (``tests/replicas/``) cover ``kill -9``; these cover the
protocol: leases, the shared event stream and forwarded commands."""

from __future__ import annotations

import asyncio
import json

from httpx_sse import aconnect_sse

from tests.backend.api.conftest import Api
from tests.backend.api.test_sessions import collect, new_session, types
from tests.fakes.fake_anthropic import reply


async def test_a_session_moves_between_replicas(two_replicas: tuple[Api, Api]) -> None:
    a, b = two_replicas
    key = await a.key()
    session = await new_session(a, key)
    a.model.enqueue(reply().tool_use("shell", {"command": "echo hi > f.txt"}), reply().text("done"))
    events = await collect(
        b,
        "POST",
        f"/v1/sessions/{session}/messages",
        key,
        until="session.idle",
        json={"content": "make a file"},
    )
    assert types(events)[0] == "session.running" and events[-1]["type"] == "session.idle"
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    # Replay through the other replica: the same events, from the stream.
    replay = await collect(
        a,
        "GET",
        f"/v1/sessions/{session}/events",
        key,
        limit=len(events),
        headers={"Last-Event-ID": str(seqs[0] - 1)},
    )
    assert replay == events
    r = await a.http.get(f"/v1/sessions/{session}/files/f.txt", headers=a.auth(key))
    assert r.status_code == 200 and r.text == "hi\n"
    for api in (a, b):
        r = await api.http.get(f"/v1/sessions/{session}", headers=api.auth(key))
        assert r.json()["status"] == "idle", r.json()
    r = await b.http.post(f"/v1/sessions/{session}/pause", headers=b.auth(key))
    assert r.status_code == 200 and r.json()["status"] == "paused", r.text
    r = await a.http.post(f"/v1/sessions/{session}/resume", headers=a.auth(key))
    assert r.status_code == 200 and r.json()["status"] == "idle", r.text
    r = await a.http.get(f"/v1/sessions/{session}/files/f.txt", headers=a.auth(key))
    assert r.status_code == 200 and r.text == "hi\n"
    r = await b.http.delete(f"/v1/sessions/{session}", headers=b.auth(key))
    assert r.status_code == 200 and r.json()["status"] == "terminated"


async def test_busy_and_interrupt_across_replicas(two_replicas: tuple[Api, Api]) -> None:
    a, b = two_replicas
    key = await a.key()
    session = await new_session(b, key)
    a.model.enqueue(reply().text("", chunks=["x "] * 400).delay(0.02))
    seen: list[dict] = []
    streaming = asyncio.Event()

    async def run_turn() -> None:
        async with aconnect_sse(
            a.http,
            "POST",
            f"/v1/sessions/{session}/messages",
            headers=a.auth(key),
            json={"content": "long"},
        ) as es:
            async for sse in es.aiter_sse():
                seen.append(json.loads(sse.data))
                if seen[-1]["type"] == "message.assistant":
                    streaming.set()
                if seen[-1]["type"] == "session.idle":
                    return

    turn = asyncio.create_task(run_turn())
    await asyncio.wait_for(streaming.wait(), 30)
    r = await b.http.post(
        f"/v1/sessions/{session}/messages", json={"content": "again"}, headers=b.auth(key)
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "SESSION_BUSY", r.text
    r = await b.http.post(f"/v1/sessions/{session}/interrupt", headers=b.auth(key))
    assert r.status_code == 200, r.text
    await asyncio.wait_for(turn, 30)
    complete = [e for e in seen if e["type"] == "message.complete"]
    assert complete and complete[0]["data"]["stopReason"] == "interrupted"
    r = await b.http.get(f"/v1/sessions/{session}", headers=b.auth(key))
    assert r.json()["status"] == "idle"


async def test_idle_pause_runs_once_across_replicas(
    tmp_path, fake_model, pg_dsn: str, redis_url: str, redis_prefix: str
) -> None:
    from contextlib import AsyncExitStack

    from tests.backend.api.conftest import api_for
    from tests.backend.sessions.conftest import replica_settings

    async with AsyncExitStack() as stack:
        apis = []
        for name in ("a", "b"):
            settings = replica_settings(
                tmp_path, fake_model.url, pg_dsn, redis_url, redis_prefix, name
            ).replace(sandbox_idle_pause_seconds=1.0)
            apis.append(await stack.enter_async_context(api_for(settings, fake_model)))
        a, b = apis
        key = await a.key()
        session = await new_session(a, key)
        # Followed from b: the pause made by whichever replica reaches it first.
        events = await collect(
            b,
            "GET",
            f"/v1/sessions/{session}/events",
            key,
            until="session.paused",
            headers={"Last-Event-ID": "0"},
        )
        assert types(events).count("session.paused") == 1
        for api in (a, b):
            r = await api.http.get(f"/v1/sessions/{session}", headers=api.auth(key))
            assert r.json()["status"] == "paused"
        a.model.enqueue(reply().text("awake"))
        turn = await collect(
            a,
            "POST",
            f"/v1/sessions/{session}/messages",
            key,
            until="session.idle",
            json={"content": "hi"},
        )
        assert "session.resumed" in types(turn)
