"""Issues 2 and 8's figures: authenticated ``GET /v1/keys`` against ``GET /health`` on the
same server, 32 connections, with SQLite + memory limiter, PostgreSQL + Redis over its own
protocol (``REDIS_URL``, the replicas' path) and PostgreSQL + Upstash over REST (shim).

The server is pinned to CPU 0 and the load generator (wrk) to CPU 1, as in the
stack notes. The rate limit is raised so the benchmark measures the path, not 429s.

    python -m bench.bench_auth [--seconds 6] [--quick]

Needs wrk (Debian: ``apt-get install wrk``) and the PostgreSQL and Redis of the
test suite. The p99 target (issue 8) is for PostgreSQL + Redis; the REST row is
there to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import NamedTuple

import httpx

from bench.common import BIN, ROOT, _cpu_seconds, free_port, serve, table

TARGET_RATIO = 0.6
TARGET_P99_MS = 10.0
REDIS_URL = "redis://127.0.0.1:6379/0"  # the test suite's Redis


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if match is None:
        raise RuntimeError(f"unexpected wrk latency {text!r}")
    value, unit = match.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


class Measure(NamedTuple):
    """One wrk run: throughput, latency, and the server's CPU time per request."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server CPU (user + system) per request: the figure other load moves least
    requests: int


def wrk(
    url: str, seconds: int, headers: dict[str, str], pid: int, connections: int = 32
) -> Measure:
    """wrk on CPU 1 against ``url``; ``pid`` is the server's, for its CPU time."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "1", *cmd]
    cpu_before = _cpu_seconds(pid)
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    cpu = _cpu_seconds(pid) - cpu_before
    if "Requests/sec" not in out or "Latency Distribution" not in out:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)$", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)$", out, re.M).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(
            f"{non2xx.group(1)} non-2xx answers from {url}: the benchmark would be wrong"
        )
    return Measure(rps, p50, p99, cpu / max(1, requests) * 1e6, requests)


def warm_up(url: str, headers: dict[str, str]) -> None:
    """One second of wrk against ``url``, its output ignored."""
    cmd = ["wrk", "-t1", "-c32", "-d1s"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    subprocess.run([*cmd, url], capture_output=True, check=False)


def _remaining(url: str, auth: dict[str, str]) -> int:
    """The rate limit left to the bench's key, after this one request."""
    response = httpx.get(f"{url}/v1/keys", headers=auth, timeout=30)
    if "x-ratelimit-remaining" not in response.headers:
        return -1  # the limiter gave no verdict (it failed open)
    return int(response.headers["x-ratelimit-remaining"])


def run_config(name: str, env: dict[str, str], seconds: int) -> list[list[object]]:
    # A limit no run reaches, in a window no run straddles (a day, so that the
    # count of one run is exact), and a deadline a loaded machine meets: a hit
    # that timed out would be let through uncounted and measure the timeout.
    env = {**env, "RATE_LIMIT_DEFAULT": "100000000/86400", "RATE_LIMIT_TIMEOUT_SECONDS": "5"}
    auth = {}
    with serve(env, cpu=0) as server:
        auth = {"Authorization": f"Bearer {server.key}"}
        # Warm-up (connections, caches, the limiter's script); its figures are not
        # read: on a slow or loaded machine one second may not complete any request.
        warm_up(f"{server.url}/health", {})
        warm_up(f"{server.url}/v1/keys", auth)
        health = wrk(f"{server.url}/health", seconds, {}, server.pid)
        before = _remaining(server.url, auth)
        keys = wrk(f"{server.url}/v1/keys", seconds, auth, server.pid)
        single = wrk(f"{server.url}/v1/keys", seconds, auth, server.pid, connections=1)
        after = _remaining(server.url, auth)
    ratio = keys.rps / health.rps
    # Every request wrk saw answered must have been counted (a few more may be:
    # those still in flight when wrk stopped); fewer means the limiter failed open.
    uncounted = keys.requests + single.requests - (before - after - 1)
    limiter = "counted all" if before >= 0 and after >= 0 and uncounted <= 0 else "FAILED OPEN"

    def row(
        route: str, connections: int, m: Measure, versus: str = "", note: str = ""
    ) -> list[object]:
        return [
            name,
            route,
            str(connections),
            f"{m.rps:,.0f}",
            f"{m.p50_ms:.2f}",
            f"{m.p99_ms:.2f}",
            f"{m.cpu_us:,.0f}",
            versus,
            note,
        ]

    return [
        row("GET /health", 32, health),
        row("GET /v1/keys (auth + limit)", 32, keys, f"{ratio:.2f}×", limiter),
        row("GET /v1/keys (auth + limit)", 1, single, "", limiter),
    ]


@contextlib.contextmanager
def upstash_shim_process() -> Iterator[tuple[str, str]]:
    """The Upstash shim in its own process on CPU 1 (beside wrk), in front of the real Redis."""
    port, token = free_port(), secrets.token_urlsafe(16)
    cmd = [
        str(BIN / "uvicorn"),
        "bench.upstash_shim_server:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "1", *cmd]
    proc = subprocess.Popen(cmd, env={**os.environ, "UPSTASH_TOKEN": token}, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.post(
                    url, json=["PING"], headers={"Authorization": f"Bearer {token}"}, timeout=0.5
                )
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield url, token
    finally:
        proc.terminate()
        proc.wait(5)


def _postgres_database() -> tuple[str, str]:
    name = f"agent_tui_bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", f'CREATE DATABASE "{name}"'],
        check=True,
    )
    return name, f"postgresql://postgres@127.0.0.1:5432/{name}"


def _delete_keys(prefix: str) -> None:
    """Remove the limiter's keys of this run (they would expire two minutes later anyway)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="2 s per measurement")
    args, _unknown = parser.parse_known_args()
    if args.quick:
        args.seconds = 2
    if shutil.which("wrk") is None:
        raise SystemExit("bench_auth needs wrk as its load generator: apt-get install wrk")
    rows = run_config("SQLite + memory", {}, args.seconds)

    name, dsn = _postgres_database()
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    try:
        env = {"DATABASE_URL": dsn, "REDIS_URL": REDIS_URL, "RATE_LIMIT_PREFIX": prefix}
        rows += run_config("PostgreSQL + Redis (RESP)", env, args.seconds)
        with upstash_shim_process() as (url, token):
            env = {
                "DATABASE_URL": dsn,
                "UPSTASH_REDIS_REST_URL": url,
                "UPSTASH_REDIS_REST_TOKEN": token,
                "RATE_LIMIT_PREFIX": prefix,
            }
            rows += run_config("PostgreSQL + Upstash (shim)", env, args.seconds)
    finally:
        _delete_keys(prefix)
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-qc",
                f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
            ]
        )
    print(
        table(
            f"Auth path, 32 connections, {args.seconds} s each (server on CPU 0, wrk on CPU 1); "
            f"targets: ratio ≥ {TARGET_RATIO} (SQLite + memory), p99 ≤ {TARGET_P99_MS} ms (PostgreSQL + Redis)",
            [
                "store + limiter",
                "route",
                "connections",
                "req/s",
                "p50 ms",
                "p99 ms",
                "server CPU µs/req",
                "vs /health",
                "limiter",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
