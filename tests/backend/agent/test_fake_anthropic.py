"""The fake Anthropic server itself: its wire format and its command line.

(It lives in ``tests/fakes/``; its tests sit next to the agent loop's, its main user.)
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from anthropic import AsyncAnthropic

from tests.fakes.fake_anthropic import FakeAnthropic, reply

ROOT = Path(__file__).resolve().parents[3]


async def test_wire_format_frames(fake: FakeAnthropic) -> None:
    fake.enqueue(reply().text("Hi there").tool_use("shell", {"command": "ls"}, id="toolu_1"))
    async with httpx.AsyncClient(base_url=fake.url) as http:
        response = await http.post(
            "/v1/messages",
            headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
            json={
                "model": "m",
                "max_tokens": 10,
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["request-id"].startswith("req_")
    frames = [f for f in response.text.split("\n\n") if f]
    names = [f.split("\n")[0].removeprefix("event: ") for f in frames]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert "ping" in names
    for frame in frames:
        event, data = frame.split("\n")
        assert event.startswith("event: ") and data.startswith("data: ")
        assert f'"type":"{event.removeprefix("event: ")}"' in data
    json_deltas = [f for f in frames if "input_json_delta" in f]
    assert '"partial_json":""' in json_deltas[0]
    assert '"stop_reason":"tool_use"' in frames[-2]


async def test_http_error_shape_and_headers(fake: FakeAnthropic) -> None:
    fake.enqueue(reply().http_error(429, retry_after=3, should_retry=False))
    async with httpx.AsyncClient(base_url=fake.url) as http:
        response = await http.post(
            "/v1/messages",
            headers={"authorization": "Bearer k"},
            json={"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]},
        )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.headers["x-should-retry"] == "false"
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert body["request_id"].startswith("req_")


async def test_non_streaming_requests_get_a_message(fake: FakeAnthropic, client: AsyncAnthropic):
    fake.enqueue(reply().text("plain").tool_use("shell", {"command": "ls"}, id="t"))
    message = await client.messages.create(
        model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
    )
    assert message.stop_reason == "tool_use"
    assert message.content[1].input == {"command": "ls"}  # type: ignore[union-attr]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def cli_server():
    processes: list[subprocess.Popen] = []

    def start(*args: str) -> str:
        port = _free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.fake_anthropic", "--port", str(port), *args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        processes.append(process)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return f"http://127.0.0.1:{port}"
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(process.stderr.read().decode() if process.stderr else "no start")

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=5)


async def test_command_line_bench_and_echo(cli_server) -> None:
    bench_url, echo_url = await asyncio.gather(
        asyncio.to_thread(cli_server, "--script", "bench", "--deltas", "300"),
        asyncio.to_thread(cli_server),
    )
    async with AsyncAnthropic(api_key="k", base_url=bench_url) as client:
        async with client.messages.stream(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "go"}]
        ) as stream:
            deltas = [t async for t in stream.text_stream]
    assert len(deltas) == 300
    async with AsyncAnthropic(api_key="k", base_url=echo_url) as client:
        message = await client.messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "run: ls -la"}]
        )
    assert message.stop_reason == "tool_use"
    assert message.content[-1].input == {"command": "ls -la"}  # type: ignore[union-attr]
