"""Shared fixtures: real PostgreSQL and Redis when reachable, isolated per test.

Tests that need a service skip with a reason when it is unreachable, except
under ``CI=true``, where they fail: a missing service must never silently turn
a green run into one that tested less.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

PG_HOST = os.environ.get("TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("TEST_PG_USER", "postgres")
REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("TEST_REDIS_PORT", "6379"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


async def avoid_window_edge(window_seconds: float, margin: float) -> None:
    """Sleep into the next fixed window when this one ends within ``margin`` seconds.

    A burst that straddles two windows sees the sliding weight drop, which can
    let one more request in; the tests below count on one window.
    """
    left = window_seconds - time.time() % window_seconds
    if left < margin:
        await asyncio.sleep(left + 0.01)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require(available: bool, reason: str) -> None:
    """Skip the test with ``reason`` when a requirement is missing; fail under CI=true."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: required here, not skipped)")
    pytest.skip(reason)


def require_postgres() -> None:
    require(_reachable(PG_HOST, PG_PORT), f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT}")


def require_redis() -> None:
    require(
        _reachable(REDIS_HOST, REDIS_PORT), f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT}"
    )


@pytest.fixture
async def pg_dsn() -> AsyncIterator[str]:
    """A DSN to a fresh, empty PostgreSQL database, dropped after the test."""
    require_postgres()
    import asyncpg

    name = f"agent_tui_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
def redis_url() -> str:
    """The test Redis; use ``redis_prefix`` for keys and clean up after yourself."""
    require_redis()
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A unique key prefix; every key under it is deleted after the test."""
    prefix = f"agent-tui-test:{uuid.uuid4().hex[:12]}"
    yield prefix
    if not _reachable(REDIS_HOST, REDIS_PORT):
        return
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def data_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the platformdirs data and config dirs at a temporary folder."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("AGENT_TUI_DATA_DIR", str(tmp_path / "data" / "agent-tui"))
    monkeypatch.setenv("AGENT_TUI_CONFIG_DIR", str(tmp_path / "config" / "agent-tui"))
    return tmp_path


# Tests that start the real ``opencode serve`` (they use ``need_opencode``). OpenCode
# keeps about one core busy from its start through its first turn (~20 s of CPU), so:
# - they get a longer deadline than the suite's 120 s, for a loaded machine;
# - under pytest-xdist (``make test``) they run one at a time on one worker
#   (``--dist loadgroup``), first, while the other workers run the rest: two at
#   once on the 2-core CI machine slowed both past their deadlines.
OPENCODE_GROUP = "opencode"
OPENCODE_TIMEOUT = 300


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    opencode = [i for i in items if "need_opencode" in getattr(i, "fixturenames", ())]
    for item in opencode:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(OPENCODE_TIMEOUT))
    if config.getoption("dist", "no") == "no":
        return
    for item in opencode:
        item.add_marker(pytest.mark.xdist_group(OPENCODE_GROUP))
    # The longest chain starts first, so the run does not wait on it at the end.
    chosen = {id(item) for item in opencode}
    items[:] = opencode + [item for item in items if id(item) not in chosen]


def pytest_configure(config: pytest.Config) -> None:
    # Under pytest-xdist, each worker's local sandboxes get host uids of their own.
    # A root server gives a session the uid ``uid_base + hash(session id)``, and
    # ``RLIMIT_NPROC`` counts processes per uid: the tests name sessions "s" or
    # "escape-session" alike, so two workers' same-named sessions would share one
    # process count (a fork-bomb test on one worker starved a command on the other).
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        from sandbox import local

        base = local.DEFAULT_UID_BASE + int(worker[2:]) * (1 << 20)
        defaults = local.LocalSandboxProvider.__init__.__kwdefaults__
        assert defaults is not None and "uid_base" in defaults
        defaults["uid_base"] = base
