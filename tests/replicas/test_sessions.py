"""Sessions across three ``agent-tui serve`` processes on one PostgreSQL and one Redis.

Every request goes to a replica picked at random; a session must behave exactly
as on one server. ``kill -9`` of the replica running a turn must lose nothing
but that turn, which ends with ``stopReason: "lost"``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from tests.fakes.fake_anthropic import FakeAnthropic, reply
from tests.fakes.tcp_proxy import TcpProxy
from tests.replicas.conftest import ReplicaFactory
from tests.replicas.harness import ReplicaSet


class Client:
    """Sends each request to a random replica (or the one named)."""

    def __init__(self, replicas: ReplicaSet, http: httpx.AsyncClient, key: str) -> None:
        self.replicas = replicas
        self.http = http
        self.headers = replicas.auth(key)

    def url(self, path: str, at: int | None = None) -> str:
        index = random.randrange(len(self.replicas)) if at is None else at
        return self.replicas.urls[index] + path

    async def request(
        self, method: str, path: str, at: int | None = None, **kw: Any
    ) -> httpx.Response:
        return await self.http.request(method, self.url(path, at), headers=self.headers, **kw)

    async def events(
        self,
        method: str,
        path: str,
        at: int | None = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> AsyncIterator[dict[str, Any]]:
        async with aconnect_sse(
            self.http, method, self.url(path, at), headers={**self.headers, **(headers or {})}, **kw
        ) as es:
            assert es.response.status_code in (200, 201), (await es.response.aread()).decode()
            async for sse in es.aiter_sse():
                data = json.loads(sse.data)
                assert sse.id == str(data["seq"]), sse
                yield data

    async def until(self, method: str, path: str, end: str, **kw: Any) -> list[dict[str, Any]]:
        out = []
        async for event in self.events(method, path, **kw):
            out.append(event)
            if event["type"] == end:
                break
        return out


async def _client(replicas: ReplicaSet, http: httpx.AsyncClient) -> Client:
    return Client(replicas, http, await replicas.create_key("alice"))


async def _ready_session(client: Client) -> str:
    events = await client.until("POST", "/v1/sessions", "session.ready", json={"title": "r"})
    assert events[-1]["type"] == "session.ready", events
    return events[0]["sessionId"]


def _contiguous(events: list[dict[str, Any]]) -> bool:
    seqs = [e["seq"] for e in events]
    return seqs == list(range(seqs[0], seqs[0] + len(seqs)))


async def test_a_whole_session_through_random_replicas(
    replicas: ReplicaSet, replica_model: FakeAnthropic
) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        client = await _client(replicas, http)
        session = await _ready_session(client)
        base = f"/v1/sessions/{session}"
        replica_model.enqueue(
            reply().tool_use("write_file", {"path": "notes/a.txt", "content": "alpha"}),
            reply().tool_use("shell", {"command": "cat notes/a.txt > b.txt"}),
            reply().text("Both files written."),
        )
        turn = await client.until(
            "POST", f"{base}/messages", "session.idle", json={"content": "go"}
        )
        assert turn[0]["type"] == "session.running" and _contiguous(turn)
        assert [e["data"]["stopReason"] for e in turn if e["type"] == "message.complete"] == [
            "end_turn"
        ]
        assert [e["data"]["status"] for e in turn if e["type"] == "message.tool"].count(
            "result"
        ) == 2
        for path, body in (("notes/a.txt", "alpha"), ("b.txt", "alpha")):
            r = await client.request("GET", f"{base}/files/{path}")
            assert r.status_code == 200 and r.text == body, r.text
        # Replay of the whole session from any replica: the same events, once each.
        replays = [
            await client.until(
                "GET", f"{base}/events", "session.idle", at=i, headers={"Last-Event-ID": "0"}
            )
            for i in range(3)
        ]
        assert replays[0] == replays[1] == replays[2]
        assert _contiguous(replays[0]) and replays[0][-len(turn) :] == turn
        r = await client.request("POST", f"{base}/pause")
        assert r.status_code == 200 and r.json()["status"] == "paused", r.text
        for i in range(3):
            r = await client.request("GET", base, at=i)
            assert r.json()["status"] == "paused", (i, r.json())
        replica_model.enqueue(reply().text("back"))
        turn = await client.until(
            "POST", f"{base}/messages", "session.idle", json={"content": "more"}
        )
        assert "session.resumed" in [e["type"] for e in turn]
        r = await client.request("GET", f"{base}/files/b.txt")
        assert r.status_code == 200 and r.text == "alpha"
        r = await client.request("GET", f"{base}/messages")
        assert [m["role"] for m in r.json()["messages"]] == ["user", "assistant"] * 2
        r = await client.request("DELETE", base)
        assert r.status_code == 200 and r.json()["status"] == "terminated", r.text
        for i in range(3):
            r = await client.request("POST", f"{base}/messages", at=i, json={"content": "x"})
            assert r.status_code == 409 and r.json()["error"]["code"] == "SESSION_TERMINATED"


async def test_fifty_followers_on_three_replicas_get_every_event_once(
    replicas: ReplicaSet, replica_model: FakeAnthropic
) -> None:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as http:
        client = await _client(replicas, http)
        session = await _ready_session(client)
        base = f"/v1/sessions/{session}"
        start = (await client.request("GET", base)).json()["lastEventId"]
        connected = 0
        all_in = asyncio.Event()

        async def follow(i: int) -> list[dict[str, Any]]:
            nonlocal connected
            out = []
            events = client.events(
                "GET", f"{base}/events", at=i % 3, headers={"Last-Event-ID": str(start)}
            )
            async with asyncio.timeout(120):
                it = aiter(events)
                connected += 1
                if connected == 50:
                    all_in.set()
                async for event in it:
                    out.append(event)
                    if event["type"] == "session.idle":
                        break
            return out

        followers = [asyncio.create_task(follow(i)) for i in range(50)]
        await all_in.wait()
        replica_model.enqueue(reply().text("", chunks=["tok "] * 2000))
        turn = await client.until(
            "POST", f"{base}/messages", "session.idle", json={"content": "burst"}
        )
        results = await asyncio.gather(*followers)
        text = "".join(
            e["data"]["content"]
            for e in turn
            if e["type"] == "message.assistant" and e["data"]["isPartial"]
        )
        assert text == "tok " * 2000
        for events in results:
            assert events[0]["seq"] == start + 1 and _contiguous(events)
            assert events[-len(turn) :] == turn


async def test_kill_9_of_the_runner_loses_only_the_turn(
    replicas: ReplicaSet, replica_model: FakeAnthropic
) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        client = await _client(replicas, http)
        session = await _ready_session(client)
        base = f"/v1/sessions/{session}"
        start = (await client.request("GET", base)).json()["lastEventId"]
        runner, survivors = 0, (1, 2)
        # ~20 s of paced deltas: the turn is surely running when its replica dies.
        replica_model.enqueue(reply().text("", chunks=["slow "] * 1000).delay(0.02))
        streaming = asyncio.Event()
        followed: dict[int, list[dict[str, Any]]] = {i: [] for i in survivors}

        async def follow(i: int) -> None:
            async for event in client.events(
                "GET", f"{base}/events", at=i, headers={"Last-Event-ID": str(start)}
            ):
                followed[i].append(event)
                if event["type"] == "message.assistant":
                    streaming.set()
                if event["type"] == "session.idle":
                    return

        followers = [asyncio.create_task(follow(i)) for i in survivors]

        async def turn() -> None:
            async for _ in client.events(
                "POST", f"{base}/messages", at=runner, json={"content": "keep me"}
            ):
                pass

        turn_task = asyncio.create_task(turn())
        await asyncio.wait_for(streaming.wait(), 60)
        await replicas.kill(runner)
        killed_at = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*followers), 60)
        took = time.monotonic() - killed_at
        turn_task.cancel()
        for i in survivors:
            events = followed[i]
            assert events[0]["seq"] == start + 1 and _contiguous(events), [e["seq"] for e in events]
            assert [e["type"] for e in events[-2:]] == ["message.complete", "session.idle"]
            assert events[-2]["data"]["stopReason"] == "lost"
        assert followed[1] == followed[2]
        assert took < 30, f"the survivors ended the lost turn {took:.1f} s after the kill"
        # The session takes the next message on another replica; the first one is kept.
        replica_model.enqueue(reply().text("after"))
        again = await client.until(
            "POST", f"{base}/messages", "session.idle", at=1, json={"content": "next"}
        )
        assert [e["data"]["stopReason"] for e in again if e["type"] == "message.complete"] == [
            "end_turn"
        ]
        messages = (await client.request("GET", f"{base}/messages", at=2)).json()["messages"]
        assert [(m["role"], m.get("stopReason")) for m in messages][:2] == [
            ("user", None),
            ("assistant", "lost"),
        ]
        streamed = "".join(
            e["data"]["content"]
            for e in followed[1]
            if e["type"] == "message.assistant" and e["data"]["isPartial"]
        )
        assert messages[0]["content"] == "keep me" and streamed.startswith("slow ")
        assert messages[1]["content"] == streamed == followed[1][-2]["data"]["content"]


async def test_redis_down_answers_503_and_recovers(
    start_replicas: ReplicaFactory, replica_model: FakeAnthropic, redis_url: str
) -> None:
    host, port = redis_url.removeprefix("redis://").split("/")[0].split(":")
    proxy = await TcpProxy(host, int(port)).start()
    try:
        replicas = await start_replicas(2, env={"REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0"})
        async with httpx.AsyncClient(timeout=60) as http:
            client = await _client(replicas, http)
            session = await _ready_session(client)
            base = f"/v1/sessions/{session}"
            await proxy.down()
            r = await client.request("POST", f"{base}/messages", at=0, json={"content": "x"})
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "SERVICE_UNAVAILABLE" and "retry-after" in r.headers
            r = await client.request("GET", f"{base}/events", at=1)
            assert r.status_code == 503, r.text
            r = await client.request("GET", base, at=1)  # the database alone answers
            assert r.status_code == 200 and r.json()["status"] == "idle"
            await proxy.up()
            replica_model.enqueue(reply().text("back"))
            deadline = time.monotonic() + 30
            while True:
                try:
                    turn = await client.until(
                        "POST", f"{base}/messages", "session.idle", at=0, json={"content": "again"}
                    )
                    break
                except AssertionError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            assert turn[-1]["type"] == "session.idle"
    finally:
        await proxy.close()
