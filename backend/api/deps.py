"""Dependencies every route uses: the services, the caller's key, its scope, its rate limit.

Validation of the caller and its limits happens here once, never in a route.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import Request

from backend.auth import KeyVerifier
from backend.errors import (
    Forbidden,
    RateLimiterUnavailable,
    RateLimitExceeded,
    ServiceUnavailable,
    ValidationError,
)
from backend.ratelimit.base import RateLimiter
from backend.records import ApiKey
from backend.sessions.registry import SessionRegistry
from backend.settings import RateLimit, Settings
from backend.store.base import Store
from sandbox.base import SandboxProvider

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("agent_tui.api")


@dataclass
class Services:
    """Everything the routes reach, built once at start-up (``app.state.services``)."""

    settings: Settings
    store: Store
    verifier: KeyVerifier
    limiter: RateLimiter
    provider: SandboxProvider
    registry: SessionRegistry
    redis: Redis | None = None  # replicas mode (REDIS_URL) only
    agent: Any = None  # the agent loop (backend.agent.loop.AgentLoop or its lazy wrapper)


def services(request: Request) -> Services:
    return request.app.state.services


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    key: ApiKey

    @property
    def user_id(self) -> str:
        return self.key.user_id

    def has_scope(self, scope: str) -> bool:
        return scope in self.key.scopes


async def authenticate(request: Request) -> Principal:
    """The caller's key (401 ``INVALID_API_KEY`` otherwise)."""
    key = await services(request).verifier.verify(request.headers.get("authorization"))
    return Principal(key)


def require_admin(principal: Principal) -> Principal:
    """The principal, if its key has the admin scope (403 ``FORBIDDEN`` otherwise)."""
    if not principal.has_scope("admin"):
        raise Forbidden(
            "This call needs a key with the admin scope", details={"requiredScope": "admin"}
        )
    return principal


class _FailOpenLog:
    """Logs the limiter outage at most once a minute."""

    def __init__(self) -> None:
        self._last = 0.0

    def warn(self, fail_closed: bool) -> None:
        now = time.monotonic()
        if now - self._last >= 60:
            self._last = now
            log.warning(
                "rate limiter unavailable; requests are %s",
                "refused (fail-closed)" if fail_closed else "let through (fail-open)",
            )


_outage_log = _FailOpenLog()

ROUTE_CLASSES = ("createSession", "sendMessage", "files", "default", "background")

# A client's automatic refresh (not a user's action) sets this header to 1 on the
# routes that allow it; it is then counted in the "background" class, so polling
# does not spend the budget the user's own requests draw on.
BACKGROUND_HEADER = "x-background-refresh"


def _limit_for(settings: Settings, route_class: str) -> RateLimit:
    return {
        "createSession": settings.rate_limit_create_session,
        "sendMessage": settings.rate_limit_send_message,
        "files": settings.rate_limit_files,
        "background": settings.rate_limit_background,
    }.get(route_class, settings.rate_limit_default)


def rate_limited(
    route_class: str, *, background: bool = False
) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates, then counts the request for its route class
    (with ``background``, in the ``background`` class when ``BACKGROUND_HEADER`` is 1)."""
    if route_class not in ROUTE_CLASSES:
        raise ValueError(route_class)
    own_class = route_class

    # One flat dependency (no nested Depends): FastAPI's dependency solving is a
    # large part of a request's cost, and this runs on every /v1 request.
    async def dependency(request: Request) -> Principal:
        principal = await authenticate(request)
        svc = services(request)
        route_class = own_class
        if background and request.headers.get(BACKGROUND_HEADER) == "1":
            route_class = "background"
        rule = _limit_for(svc.settings, route_class)
        identifier = f"{route_class}:{principal.user_id}"
        try:
            verdict = await svc.limiter.hit(identifier, rule.limit, rule.window_seconds)
        except RateLimiterUnavailable:
            _outage_log.warn(svc.settings.rate_limit_fail_closed)
            if svc.settings.rate_limit_fail_closed:
                raise ServiceUnavailable("The rate limiter is unavailable", retry_after=5) from None
            return principal
        request.state.rate_limit = verdict
        if not verdict.allowed:
            retry_after = max(1, int(verdict.reset - time.time() + 0.999))
            raise RateLimitExceeded(
                f"Rate limit exceeded for {route_class}: {rule.limit} requests per {rule.window_seconds} s",
                details={
                    "limit": rule.limit,
                    "windowSeconds": rule.window_seconds,
                    "resetAt": datetime.fromtimestamp(verdict.reset, UTC)
                    .isoformat()
                    .replace("+00:00", "Z"),
                    "routeClass": route_class,
                },
                headers={"Retry-After": str(retry_after)},
            )
        return principal

    dependency.__name__ = f"rate_limited_{route_class}"
    return dependency


def parse_uuid(value: str, what: str = "id") -> str:
    """A canonical UUID string, or 400 ``VALIDATION_ERROR``."""
    import uuid

    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValidationError(f"Malformed {what}: expected a UUID", details={what: value}) from None
