"""The shared rate limiter: upstash-ratelimit's sliding window on Upstash Redis (REST)."""

from __future__ import annotations

import asyncio

import httpx
from upstash_ratelimit.asyncio import Ratelimit, SlidingWindow
from upstash_redis.asyncio import Redis
from upstash_redis.errors import UpstashError

from backend.errors import RateLimiterUnavailable
from backend.ratelimit.base import RateLimitResult

__all__ = ["UpstashRateLimiter"]

# What a failing or misbehaving store can raise out of one ``Ratelimit.limit``:
# Upstash's own errors, transport errors, and the ValueError, KeyError,
# AttributeError or TypeError that a non-JSON, unexpected JSON or undecodable
# base64 answer (from a proxy, say) causes inside the client. All of them mean
# "no verdict", which the caller turns into fail-open or fail-closed.
_STORE_FAILURES: tuple[type[BaseException], ...] = (
    UpstashError,
    httpx.HTTPError,
    httpx.InvalidURL,
    OSError,
    ValueError,
    KeyError,
    AttributeError,
    TypeError,
)


# Connections to Upstash per process. upstash-redis gives httpx's default pool
# (100); httpcore's pool does work per request proportional to its connections
# (it polls each idle socket), and under 32 concurrent requests that was most of
# the server's CPU: bench_auth, PostgreSQL + Upstash shim, c32: 374 -> 624 req/s
# with 4 to 8 connections. 8 keeps headroom for a remote Upstash's round trip.
UPSTASH_CONNECTIONS = 8


def _bound_the_pool(redis: Redis) -> None:
    """Give the client a bounded connection pool. upstash-redis has no setting for
    it, so this replaces the httpx client it made (``redis._http._client``); a
    test pins that attribute, so a release that renames it fails loudly."""
    # The client it replaces never opened a connection: nothing to close.
    redis._http._client = httpx.AsyncClient(
        timeout=None,
        limits=httpx.Limits(
            max_connections=UPSTASH_CONNECTIONS, max_keepalive_connections=UPSTASH_CONNECTIONS
        ),
    )


class UpstashRateLimiter:
    """A ``RateLimiter`` shared by every instance of the API, stored in Upstash Redis.

    Each hit is one ``EVAL`` of upstash-ratelimit's ``SlidingWindow`` script over
    HTTPS, so it is atomic across instances. Keys are
    ``{prefix}:{identifier}:{window index}`` and expire on their own two windows
    later. "Now" is this host's clock, as in upstash-ratelimit.

    The Upstash client has no timeout of its own, so every hit is bounded by
    ``timeout_seconds``; a slow, unreachable or failing store raises
    ``RateLimiterUnavailable``. Its message never contains the token.
    """

    def __init__(
        self,
        url: str,
        token: str,
        prefix: str = "agent-tui",
        timeout_seconds: float = 0.5,
        *,
        retries: int = 0,
    ) -> None:
        """``retries`` re-sends a request that failed in transport (not one that
        timed out: the one deadline covers every attempt)."""
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        self._url = url
        self._token = token
        self._prefix = prefix
        self._timeout_seconds = timeout_seconds
        self._redis = Redis(
            url,
            token,
            rest_retries=retries,
            # The library's default pause is 3 s, far beyond any sane deadline.
            rest_retry_interval=min(0.05, timeout_seconds / 10),
            allow_telemetry=False,
        )
        self._limiters: dict[tuple[int, int], Ratelimit] = {}
        _bound_the_pool(self._redis)

    def __repr__(self) -> str:
        return f"UpstashRateLimiter(url={self._url!r}, prefix={self._prefix!r})"

    async def hit(self, identifier: str, limit: int, window_seconds: int) -> RateLimitResult:
        """Count one request for ``identifier`` unless it is over ``limit`` per window."""
        ratelimit = self._ratelimit(limit, window_seconds)
        try:
            async with asyncio.timeout(self._timeout_seconds):
                response = await ratelimit.limit(identifier)
            return RateLimitResult(
                allowed=bool(response.allowed),
                limit=int(response.limit),
                remaining=int(response.remaining),
                reset=float(response.reset),
            )
        except TimeoutError:
            raise RateLimiterUnavailable(
                f"Upstash did not answer within {self._timeout_seconds:g} s"
            ) from None
        except _STORE_FAILURES as exc:
            # ``from None``: the chained httpx exception carries the request and
            # its Authorization header; the message below says what went wrong.
            raise RateLimiterUnavailable(f"Upstash failed: {self._describe(exc)}") from None

    def _ratelimit(self, limit: int, window_seconds: float) -> Ratelimit:
        """The cached ``Ratelimit`` for one (limit, window) pair."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        window_ms = int(window_seconds * 1000)
        if window_ms < 1:
            raise ValueError("window_seconds must be positive")
        ratelimit = self._limiters.get((limit, window_ms))
        if ratelimit is None:
            ratelimit = Ratelimit(
                redis=self._redis,
                limiter=SlidingWindow(max_requests=limit, window=window_ms, unit="ms"),
                prefix=self._prefix,
            )
            self._limiters[(limit, window_ms)] = ratelimit
        return ratelimit

    def _describe(self, exc: BaseException) -> str:
        """The exception's type and message, with the token masked should it appear."""
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self._token:
            text = text.replace(self._token, "***")
        return text

    async def close(self) -> None:
        """Close the HTTP client and its connections."""
        await self._redis.close()
