"""``/health`` and ``/health/ready``: public, no rate limit."""

from __future__ import annotations

from fastapi import APIRouter, Request

from backend import __version__
from backend.api.deps import services
from backend.records import utcnow
from backend.schemas import Health, iso

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, summary="Liveness")
async def health() -> Health:
    """Answers while the process serves requests; does not touch the database."""
    return Health(status="ok", version=__version__, timestamp=iso(utcnow()) or "")


@router.get(
    "/health/ready",
    response_model=Health,
    summary="Readiness",
    responses={
        503: {
            "description": "The database is unreachable (`SERVICE_UNAVAILABLE`, with `Retry-After`)"
        }
    },
)
async def ready(request: Request) -> Health:
    """Also checks the store: 503 ``SERVICE_UNAVAILABLE`` while the database is down."""
    await services(request).store.ping()
    return Health(status="ok", version=__version__, timestamp=iso(utcnow()) or "")
