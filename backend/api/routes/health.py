"""``/health`` and ``/health/ready``: public, no rate limit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from fastapi import APIRouter, Request

from backend import __version__
from backend.api.deps import services
from backend.errors import ServiceUnavailable
from backend.records import utcnow
from backend.schemas import Health, Readiness, iso

router = APIRouter(tags=["health"])

# How long one dependency may take to answer a readiness probe.
READY_CHECK_SECONDS = 2.0
_NAMES = {"database": "the database", "redis": "Redis"}


@router.get("/health", response_model=Health, summary="Liveness")
async def health() -> Health:
    """Answers while the process serves requests; does not touch the database."""
    return Health(status="ok", version=__version__, timestamp=iso(utcnow()) or "")


@router.get(
    "/health/ready",
    response_model=Readiness,
    summary="Readiness",
    responses={
        503: {
            "description": "The database, or Redis when `REDIS_URL` is set, is unreachable "
            "(`SERVICE_UNAVAILABLE`, with `Retry-After`; `details.checks` says which)"
        }
    },
)
async def ready(request: Request) -> Readiness:
    """Checks each dependency of this replica at once: the store (``database``) and, with
    ``REDIS_URL``, Redis (``redis``). 503 ``SERVICE_UNAVAILABLE`` naming the ones down."""
    svc = services(request)
    probes: dict[str, Awaitable[object]] = {"database": svc.store.ping()}
    failures: tuple[type[BaseException], ...] = (ServiceUnavailable, OSError)
    if svc.redis is not None:
        from redis.exceptions import RedisError

        probes["redis"] = svc.redis.ping()
        failures = (*failures, RedisError)
    outcomes = await asyncio.gather(*(_check(probe, failures) for probe in probes.values()))
    checks = dict(zip(probes, outcomes, strict=True))
    down = [name for name, outcome in checks.items() if outcome != "ok"]
    if down:
        names = " and ".join(_NAMES[name] for name in down)
        raise ServiceUnavailable(
            f"Not ready: {names} {'is' if len(down) == 1 else 'are'} unreachable",
            details={"checks": checks},
        )
    return Readiness(status="ok", version=__version__, timestamp=iso(utcnow()) or "", checks=checks)


async def _check(probe: Awaitable[object], failures: tuple[type[BaseException], ...]) -> str:
    """``"ok"``, ``"timeout"`` or ``"unreachable"`` for one dependency's probe."""
    try:
        async with asyncio.timeout(READY_CHECK_SECONDS):
            await probe
    except TimeoutError:
        return "timeout"
    except failures:
        return "unreachable"
    return "ok"
