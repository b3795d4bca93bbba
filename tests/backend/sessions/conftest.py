"""Two replicas in one test process: two apps on PostgreSQL and Redis (replicas mode)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from backend.settings import Settings
from tests.backend.api.conftest import Api, api_for, make_settings
from tests.fakes.fake_anthropic import FakeAnthropic


def replica_settings(
    tmp_path: Path, model_url: str, pg_dsn: str, redis_url: str, prefix: str, name: str
) -> Settings:
    """Settings of one replica; all share the database, Redis prefix and data dir."""
    return make_settings(
        tmp_path,
        model_url,
        database_url=pg_dsn,
        redis_url=redis_url,
        rate_limit_prefix=prefix,
        replica_id=name,
        drain_seconds=2.0,
    )


@pytest.fixture
def fake_model() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def two_replicas(
    tmp_path: Path, fake_model: FakeAnthropic, pg_dsn: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[Api, Api]]:
    """Replicas ``a`` and ``b`` sharing PostgreSQL, Redis and the data directory."""
    async with contextlib.AsyncExitStack() as stack:
        apis = []
        for name in ("a", "b"):
            settings = replica_settings(
                tmp_path, fake_model.url, pg_dsn, redis_url, redis_prefix, name
            )
            apis.append(await stack.enter_async_context(api_for(settings, fake_model)))
        yield apis[0], apis[1]
