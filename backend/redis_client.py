"""The Redis client of replicas mode: redis-py's asyncio client from ``REDIS_URL``.

redis-py parses replies with hiredis when it is installed (it is a dependency).
One client per process, opened in the app's lifespan when ``REDIS_URL`` is set;
the rate limiter and ``/health/ready`` use it.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

__all__ = ["REDIS_CONNECTIONS", "open_redis"]

# Connections per process. A rate-limit hit holds one for a single round trip
# (a fraction of a millisecond on a LAN), so a few dozen serve thousands of
# requests per second; more would only cost the server file descriptors.
REDIS_CONNECTIONS = 32


def open_redis(
    url: str,
    *,
    max_connections: int = REDIS_CONNECTIONS,
    connect_timeout_seconds: float = 2.0,
) -> Redis:
    """A client for ``url`` (``redis://`` or ``rediss://``) that connects on first use.

    Its pool holds at most ``max_connections``; a command that finds them all
    busy waits for one (callers bound every call with their own deadline, so
    the wait is bounded too). Long blocking reads (``XREAD BLOCK``) hold a
    connection for their whole wait: give them a client of their own.

    A command that fails on its connection is retried once, at once, on a
    fresh one, since servers and proxies (Upstash among them) close idle
    connections; there is no backoff and no socket read timeout, because the
    caller's deadline decides how long is too long and what a failure means.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=None,
        retry=Retry(NoBackoff(), retries=1),
        socket_connect_timeout=connect_timeout_seconds,
        socket_keepalive=True,
    )
    return Redis.from_pool(pool)
