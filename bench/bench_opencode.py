"""engine=opencode: one turn of N text deltas (2,000 by default), send → idle.

Rows, each the median of ``--runs`` turns against the fake model streaming as
fast as it can:

1. the fake model alone (httpx reads the whole stream);
2. ``engine=builtin`` through ``agent-tui serve``;
3. ``engine=opencode`` through ``agent-tui serve`` (OpenCode in a local sandbox,
   its model calls through the model proxy);
4. ``opencode serve`` reached directly, its provider pointed at the fake model.

The figure the issue names: row 3 over row 4, the overhead this server adds on
top of OpenCode (target ≤ 10 %). Needs ``make opencode``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx

from backend.agent.opencode import find_opencode
from backend.agent.opencode.config import opencode_config
from bench.common import ROOT, free_port, median, serve, table

KEY = "bench-model-key"
MODEL = "claude-sonnet-5-5"


@contextlib.contextmanager
def fake_model(deltas: int) -> Iterator[str]:
    """The tests' fake model in bench mode (on CPU 1 when taskset exists)."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "tests.fakes.fake_anthropic", "--port", str(port),
        "--script", "bench", "--deltas", str(deltas), "--api-key", KEY,
    ]  # fmt: skip
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "1", *cmd]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url, "/")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_http(url: str, path: str, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            httpx.get(url + path, timeout=1)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer") from None
            time.sleep(0.05)


async def model_alone(url: str) -> float:
    body = {"model": MODEL, "max_tokens": 8192, "stream": True,
            "messages": [{"role": "user", "content": "go"}]}  # fmt: skip
    async with httpx.AsyncClient(timeout=120) as http:
        started = time.perf_counter()
        async with http.stream(
            "POST", f"{url}/v1/messages", json=body,
            headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
        ) as r:  # fmt: skip
            async for _ in r.aiter_raw():
                pass
        return time.perf_counter() - started


async def _sse(response: httpx.Response) -> AsyncIterator[dict]:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield json.loads(line[6:])


async def through_server(url: str, key: str, engine: str, runs: int) -> list[float]:
    """One session; a warm-up turn, then ``runs`` measured turns (send → session.idle)."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, timeout=300) as http:
        async with http.stream(
            "POST",
            "/v1/sessions",
            headers={**headers, "Accept": "text/event-stream"},
            json={"engine": engine},
        ) as r:
            async for event in _sse(r):
                if event["type"] == "session.error":
                    raise RuntimeError(event["data"])
                if event["type"] == "session.ready":
                    sid = event["sessionId"]
                    break
        times = []
        for _ in range(runs + 1):
            started = time.perf_counter()
            async with http.stream(
                "POST", f"/v1/sessions/{sid}/messages", headers=headers, json={"content": "go"}
            ) as r:
                async for event in _sse(r):
                    if event["type"] == "error":
                        raise RuntimeError(event["data"])
                    if event["type"] == "session.idle":
                        break
            times.append(time.perf_counter() - started)
        await http.delete(f"/v1/sessions/{sid}", headers=headers)
        return times[1:]


@contextlib.contextmanager
def opencode_direct(model_url: str) -> Iterator[str]:
    """``opencode serve`` on this host, its provider the fake model itself."""
    tmp = Path(tempfile.mkdtemp(prefix="agent-tui-bench-oc-"))
    (tmp / "ws").mkdir()
    port = free_port()
    config = opencode_config(proxy_url=f"{model_url}/v1", token=KEY, model=MODEL, max_tokens=8192)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp / "home"),
        "OPENCODE_CONFIG_CONTENT": json.dumps(config),
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        "OPENCODE_DISABLE_SHARE": "1",
    }
    cmd = [find_opencode(), "serve", "--pure", "--hostname", "127.0.0.1", "--port", str(port)]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(
        cmd, cwd=tmp / "ws", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url, "/global/health")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


async def opencode_turns(url: str, runs: int) -> list[float]:
    """One OpenCode session; a warm-up turn, then ``runs`` measured turns (prompt → idle)."""
    times = []
    async with httpx.AsyncClient(base_url=url, timeout=300) as http:
        session = (await http.post("/session", json={"title": "bench"})).json()["id"]
        for _ in range(runs + 1):
            async with http.stream("GET", "/event") as events:
                stream = _sse(events)
                await anext(stream)  # server.connected
                started = time.perf_counter()
                r = await http.post(
                    f"/session/{session}/prompt_async",
                    json={"parts": [{"type": "text", "text": "go"}]},
                )
                r.raise_for_status()
                async for event in stream:
                    props = event.get("properties") or {}
                    if props.get("sessionID") != session:
                        continue
                    if event["type"] == "session.idle":
                        times.append(time.perf_counter() - started)
                        break
                    if event["type"] == "session.error":
                        raise RuntimeError(props)
    return times[1:]


async def measure(runs: int, deltas: int) -> None:
    rows: list[list[object]] = []
    with fake_model(deltas) as model:
        alone = median([await model_alone(model) for _ in range(runs + 1)][1:])
        rows.append(["fake model alone", f"{alone * 1000:,.0f}", "1.00×", ""])
        env = {"ANTHROPIC_BASE_URL": model, "ANTHROPIC_API_KEY": KEY,
               "OPENCODE_START_TIMEOUT_SECONDS": "180"}  # fmt: skip
        figures: dict[str, float] = {}
        for engine in ("builtin", "opencode"):
            with serve(env, cpu=0) as server:
                figures[engine] = median(await through_server(server.url, server.key, engine, runs))
            rows.append([f"engine={engine} via agent-tui serve", f"{figures[engine] * 1000:,.0f}",
                         f"{figures[engine] / alone:.2f}×", ""])  # fmt: skip
        with opencode_direct(model) as url:
            direct = median(await opencode_turns(url, runs))
        overhead = figures["opencode"] / direct - 1
        rows.append(
            ["opencode serve directly", f"{direct * 1000:,.0f}", f"{direct / alone:.2f}×", ""]
        )
        rows.append(["overhead of this server on OpenCode", "", "",
                     f"{overhead * 100:+.1f} % (target ≤ 10 %)"])  # fmt: skip
    print(table(
        f"One turn of {deltas:,} deltas, send → idle (median of {runs} after a warm-up turn)",
        ["path", "ms", "vs model", "figure"], rows,
    ))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run of 200 deltas: a smoke run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--deltas", type=int, default=2000)
    args = parser.parse_args()
    if args.quick:
        args.runs, args.deltas = 1, 200
    asyncio.run(measure(args.runs, args.deltas))


if __name__ == "__main__":
    main()
