"""Fixtures for replica tests: a ``ReplicaSet`` factory on a throwaway database and prefix.

PostgreSQL and Redis come from the suite's fixtures (``pg_dsn``, ``redis_url``,
``redis_prefix``): without them a test skips, under ``CI=true`` it fails. When a
test fails, every replica's log is printed with the report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.fake_anthropic import FakeAnthropic
from tests.replicas.harness import ReplicaSet

ReplicaFactory = Callable[..., Awaitable[ReplicaSet]]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so fixtures can tell a failed test."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


@pytest.fixture
def replica_model() -> Iterator[FakeAnthropic]:
    """The fake model every replica talks to (echo replies unless a test enqueues some)."""
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def start_replicas(
    request: pytest.FixtureRequest,
    pg_dsn: str,
    redis_url: str,
    redis_prefix: str,
    replica_model: FakeAnthropic,
    tmp_path: Path,
) -> AsyncIterator[ReplicaFactory]:
    """``await start_replicas(3, env={...})``: a started ``ReplicaSet``, stopped after the test.

    Every set of one test shares the database, the Redis prefix and the model
    unless the call overrides them (any ``ReplicaSet`` argument, e.g.
    ``redis_url``); each set gets its own work directory (data dir and logs).
    """
    started: list[ReplicaSet] = []

    async def start(count: int = 3, **kwargs: Any) -> ReplicaSet:
        options: dict[str, Any] = {
            "database_url": pg_dsn,
            "redis_url": redis_url,
            "redis_prefix": redis_prefix,
            "model_url": replica_model.url,
            "workdir": tmp_path / f"replicas-{len(started)}",
        }
        options.update(kwargs)  # e.g. redis_url through a cuttable proxy
        replicas = ReplicaSet(count, **options)
        started.append(replicas)
        return await replicas.start()

    try:
        yield start
    finally:
        for replicas in started:
            await replicas.stop()
        if _failed(request):
            for replicas in started:
                print(replicas.dump_logs())


@pytest.fixture
async def replicas(start_replicas: ReplicaFactory) -> ReplicaSet:
    """Three replicas with the default settings."""
    return await start_replicas(3)
