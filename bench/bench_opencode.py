"""engine=opencode: one turn of N text deltas (2,000 by default), send → idle.

Rows, each the median of ``--runs`` turns against the fake model streaming as
fast as it can (all paths run side by side, one turn of each per round):

1. the fake model alone (httpx reads the whole stream);
2. ``engine=builtin`` through ``agent-tui serve``;
3. ``engine=opencode`` through ``agent-tui serve`` (OpenCode in a local sandbox,
   its model calls through the model proxy);
4. ``opencode serve`` reached directly, its provider pointed at the fake model.

The figure the issue names: row 3 over row 4, the overhead this server adds on
top of OpenCode (target ≤ 10 %), also as the median of each round's own ratio.
Needs ``make opencode``.
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
from backend.agent.opencode.config import DATA_DIR, OFFLINE_ENV, opencode_config
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


async def model_alone(http: httpx.AsyncClient, url: str) -> float:
    body = {"model": MODEL, "max_tokens": 8192, "stream": True,
            "messages": [{"role": "user", "content": "go"}]}  # fmt: skip
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


async def server_session(http: httpx.AsyncClient, headers: dict[str, str], engine: str) -> str:
    """A session of ``engine`` on ``agent-tui serve``, once it is ready."""
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
                return str(event["sessionId"])
    raise RuntimeError("the session never became ready")


async def server_turn(http: httpx.AsyncClient, headers: dict[str, str], sid: str) -> float:
    """One turn through ``agent-tui serve``: send → ``session.idle``."""
    started = time.perf_counter()
    async with http.stream(
        "POST", f"/v1/sessions/{sid}/messages", headers=headers, json={"content": "go"}
    ) as r:
        async for event in _sse(r):
            if event["type"] == "error":
                raise RuntimeError(event["data"])
            if event["type"] == "session.idle":
                return time.perf_counter() - started
    raise RuntimeError("the turn never ended")


@contextlib.contextmanager
def opencode_direct(model_url: str) -> Iterator[str]:
    """``opencode serve`` on this host, its provider the fake model itself: the
    config, switches and data directories of the sandboxed one (``service_spec``)."""
    tmp = Path(tempfile.mkdtemp(prefix="agent-tui-bench-oc-"))
    (tmp / "ws").mkdir()
    port = free_port()
    config = opencode_config(proxy_url=f"{model_url}/v1", token=KEY, model=MODEL, max_tokens=8192)
    data = tmp / "ws" / DATA_DIR
    env = {
        **OFFLINE_ENV,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": f"{data}/home",
        "XDG_CONFIG_HOME": f"{data}/config",
        "XDG_DATA_HOME": f"{data}/data",
        "XDG_STATE_HOME": f"{data}/state",
        "XDG_CACHE_HOME": f"{data}/cache",
        "OPENCODE_CONFIG_CONTENT": json.dumps(config),
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


async def opencode_turn(http: httpx.AsyncClient, session: str) -> float:
    """One turn of ``opencode serve`` reached directly: prompt → its ``session.idle``
    (the event stream is opened first, as the engine opens it before prompting,
    but outside the time: a direct client keeps it open)."""
    async with http.stream("GET", "/event") as events:
        stream = _sse(events)
        await anext(stream)  # server.connected
        started = time.perf_counter()
        r = await http.post(
            f"/session/{session}/prompt_async", json={"parts": [{"type": "text", "text": "go"}]}
        )
        r.raise_for_status()
        async for event in stream:
            props = event.get("properties") or {}
            if props.get("sessionID") != session:
                continue
            if event["type"] == "session.idle":
                return time.perf_counter() - started
            if event["type"] == "session.error":
                raise RuntimeError(props)
    raise RuntimeError("the turn never ended")


def _row(name: str, times: list[float], alone: float) -> list[object]:
    spread = f"{min(times) * 1000:,.0f}–{max(times) * 1000:,.0f}"
    return [name, f"{median(times) * 1000:,.0f}", spread, f"{median(times) / alone:.2f}×", ""]


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in task.read_text().split())
    return found


def _pin_opencode(server_pid: int, cpu: int) -> int:
    """Pin every thread of the OpenCode processes the server started to ``cpu``;
    return how many processes were pinned."""
    pinned = 0
    for pid in _descendants(server_pid):
        try:
            if not Path(f"/proc/{pid}/comm").read_text().startswith("opencode"):
                continue
            for task in Path(f"/proc/{pid}/task").iterdir():
                os.sched_setaffinity(int(task.name), {cpu})
        except OSError:
            continue
        pinned += 1
    return pinned


# Where each process runs (2 cores): OpenCode on CPU 0 in both OpenCode paths, the
# fake model on CPU 1; this server shares OpenCode's core ("shared") or the model's
# ("split", as when the server has a core of its own).
LAYOUTS = {"shared": 0, "split": 1}


async def measure(runs: int, deltas: int, layout: str = "shared") -> None:
    """Every path is started first; then each round runs one turn of each, in turn,
    so all of them meet the same load (the machine's other work moves every figure;
    paths measured minutes apart would not be comparable)."""
    times: dict[str, list[float]] = {"alone": [], "builtin": [], "opencode": [], "direct": []}
    env = {"ANTHROPIC_API_KEY": KEY, "OPENCODE_START_TIMEOUT_SECONDS": "180"}
    with fake_model(deltas) as model, opencode_direct(model) as direct_url:
        with serve({**env, "ANTHROPIC_BASE_URL": model}, cpu=LAYOUTS[layout]) as server:
            headers = {"Authorization": f"Bearer {server.key}"}
            async with (
                httpx.AsyncClient(timeout=120) as plain,
                httpx.AsyncClient(base_url=server.url, timeout=300) as http,
                httpx.AsyncClient(base_url=direct_url, timeout=300) as direct,
            ):
                sids = {e: await server_session(http, headers, e) for e in ("builtin", "opencode")}
                session = (await direct.post("/session", json={"title": "bench"})).json()["id"]
                if shutil.which("taskset") and not _pin_opencode(server.pid, 0):
                    raise RuntimeError("the server's OpenCode was not found to pin")
                for round_ in range(runs + 1):  # round 0 warms every path up
                    figures = {
                        "alone": await model_alone(plain, model),
                        "builtin": await server_turn(http, headers, sids["builtin"]),
                        "opencode": await server_turn(http, headers, sids["opencode"]),
                        "direct": await opencode_turn(direct, session),
                    }
                    if round_:
                        for name, value in figures.items():
                            times[name].append(value)
                for sid in sids.values():
                    await http.delete(f"/v1/sessions/{sid}", headers=headers)
    alone = median(times["alone"])
    overhead = median(times["opencode"]) / median(times["direct"]) - 1
    paired = median([o / d - 1 for o, d in zip(times["opencode"], times["direct"], strict=True)])
    rows = [
        _row("fake model alone", times["alone"], alone),
        _row("engine=builtin via agent-tui serve", times["builtin"], alone),
        _row("engine=opencode via agent-tui serve", times["opencode"], alone),
        _row("opencode serve directly", times["direct"], alone),
        ["overhead of this server on OpenCode", "", "", "",
         f"{overhead * 100:+.1f} % (target ≤ 10 %); per round {paired * 100:+.1f} %"],
    ]  # fmt: skip
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(table(
        f"One turn of {deltas:,} deltas, send → idle (median of {runs} rounds after a warm-up; "
        f"layout {layout}; load {load})",
        ["path", "ms", "min–max", "vs model", "figure"], rows,
    ))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run of 200 deltas: a smoke run")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--deltas", type=int, default=2000)
    parser.add_argument(
        "--layout",
        choices=sorted(LAYOUTS),
        default="shared",
        help="shared: this server on OpenCode's core; split: on the fake model's core",
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.deltas = 1, 200
    asyncio.run(measure(args.runs, args.deltas, args.layout))


if __name__ == "__main__":
    main()
