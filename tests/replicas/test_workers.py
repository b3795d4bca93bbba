"""``agent-tui serve --workers N``: N replicas behind one port, and a graceful stop
that hands running turns over (drain)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.fakes.fake_anthropic import FakeAnthropic, reply
from tests.replicas.conftest import ReplicaFactory
from tests.replicas.harness import ReplicaSet, free_port, serve_command
from tests.replicas.test_sessions import Client, _client, _ready_session


def test_workers_need_postgres_and_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")} | {
        "AGENT_TUI_DATA_DIR": str(tmp_path / "d"),
        "AGENT_TUI_CONFIG_DIR": str(tmp_path / "c"),
    }
    done = subprocess.run(
        [*serve_command(), "--workers", "2", "--unsafe-local-sandbox"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "DATABASE_URL=postgresql://" in done.stderr and "REDIS_URL=" in done.stderr
    done = subprocess.run(
        [*serve_command(), "--unsafe-local-sandbox"],
        env=env | {"REDIS_URL": "redis://127.0.0.1:6379/0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "needs a PostgreSQL DATABASE_URL" in done.stderr


def _start_workers(
    count: int, port: int, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [*serve_command(), "--port", str(port), "--workers", str(count)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def test_two_workers_behind_one_port(
    start_replicas: ReplicaFactory, replica_model: FakeAnthropic, tmp_path: Path
) -> None:
    # The harness gives the shared database and Redis; this test starts the workers itself.
    one = await start_replicas(1)
    port = free_port()
    env = one.environment(one[0]) | {"AGENT_TUI_REPLICA_ID": "w"}
    process = _start_workers(2, port, env, tmp_path / "workers.log")
    try:
        url = f"http://127.0.0.1:{port}"
        ids: set[str] = set()
        deadline = time.monotonic() + 90
        while len(ids) < 2:
            assert process.poll() is None and time.monotonic() < deadline, (
                tmp_path / "workers.log"
            ).read_text()
            ids = set(re.findall(r"ready: replica=(\S+)", (tmp_path / "workers.log").read_text()))
            await asyncio.sleep(0.1)
        assert ids == {"w-0", "w-1"}
        async with httpx.AsyncClient(timeout=60) as http:
            client = Client(one, http, await one.create_key("bob"))
            client.url = lambda path, at=None: url + path  # type: ignore[method-assign]
            session = await _ready_session(client)
            replica_model.enqueue(reply().text("hi from a worker"))
            turn = await client.until(
                "POST", f"/v1/sessions/{session}/messages", "session.idle", json={"content": "x"}
            )
            assert turn[-1]["type"] == "session.idle"
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


async def test_sigterm_drains_the_running_turn(
    replicas: ReplicaSet, replica_model: FakeAnthropic
) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        client = await _client(replicas, http)
        session = await _ready_session(client)
        base = f"/v1/sessions/{session}"
        start = (await client.request("GET", base)).json()["lastEventId"]
        # ~2 s of deltas: shorter than the drain bound, so the turn ends normally.
        replica_model.enqueue(reply().text("", chunks=["d "] * 100).delay(0.02))
        streaming = asyncio.Event()
        seen: list[dict] = []

        async def follow() -> None:
            events = client.events(
                "GET", f"{base}/events", at=1, headers={"Last-Event-ID": str(start)}
            )
            async for event in events:
                seen.append(event)
                if event["type"] == "message.assistant":
                    streaming.set()
                if event["type"] == "session.idle":
                    return

        follower = asyncio.create_task(follow())
        turn = asyncio.create_task(
            client.until("POST", f"{base}/messages", "session.idle", at=0, json={"content": "x"})
        )
        await asyncio.wait_for(streaming.wait(), 60)
        await replicas.kill(0, signal.SIGTERM, within=60)
        await asyncio.wait_for(follower, 60)
        turn.cancel()
        complete = [e for e in seen if e["type"] == "message.complete"]
        assert [e["data"]["stopReason"] for e in complete] == ["end_turn"]
        assert complete[0]["data"]["content"] == "d " * 100
        r = await client.request("POST", f"{base}/messages", at=2, json={"content": "y"})
        assert r.status_code == 200, r.text
