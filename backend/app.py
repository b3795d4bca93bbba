"""``create_app``: the one factory of the ASGI app, from a ``Settings`` object.

The lifespan opens every service the settings name (store, rate limiter,
sandbox provider, agent loop, session registry) and closes them in reverse
order on shutdown. Tests may pass ready-made services instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from backend import __version__
from backend.api.deps import Services
from backend.api.errors import install_error_handlers
from backend.api.middleware import RequestContextMiddleware
from backend.api.routes import health, keys, model_proxy, models, sessions, usage
from backend.auth import KeyVerifier
from backend.errors import StoreUnavailable
from backend.ratelimit import RateLimiter, open_rate_limiter
from backend.replica import configure_replica_id
from backend.sessions.actor import ActorDeps
from backend.sessions.registry import SessionRegistry
from backend.settings import Settings, SettingsError
from backend.store import Store, open_store
from sandbox.base import SandboxProvider

log = logging.getLogger("agent_tui.app")

DESCRIPTION = """
The Agent API: API keys, per-user rate limits, per-session actors with a sandbox
each, an agent loop streaming the model's reply, and every event over SSE with
ids so a client can reconnect and miss nothing.

Errors always have the shape `{"error": {"code", "message", "details"}}`.
Every `/v1` response that passed authentication carries `X-RateLimit-Limit`,
`X-RateLimit-Remaining` and `X-RateLimit-Reset` (unix seconds); a request
refused before that (401) has none. Every response carries `X-Request-ID`, and
`X-Replica-ID`: the id of the server process (replica) that answered.

Where the contract is silent, this server:
- answers 201 with `Location` on session creation; an empty body is allowed;
- lists sessions with `nextCursor` (opaque) and messages with `hasMore`;
- ends a turn's stream after `session.idle` (a failed turn sends `error`, then `session.idle`);
- sends `message.assistant` with `isPartial: false` once per text block of a turn,
  carrying that block's whole text; `message.complete` carries the whole message;
- resumes a paused session's sandbox to serve its files;
- answers `409 SESSION_TERMINATED` for messages, pause, resume and files of a deleted session,
  and 200 for interrupt and delete (idempotent);
- answers `409 SESSION_FAILED` for the same calls on a session in status `error` (its sandbox
  could not be created, or was lost with no snapshot): its history stays readable;
  `502 SANDBOX_ERROR` is for a provider failure during the request itself;
- in replicas mode (`REDIS_URL`), ends a turn whose server died with `message.complete`
  (stopReason `lost`, the text streamed so far) and `session.idle`, from another replica;
  answers `503 SERVICE_UNAVAILABLE` with `Retry-After` for a message sent to a replica that
  is shutting down, and for routes that need Redis while it is unreachable.
"""


def open_sandbox_provider(settings: Settings) -> SandboxProvider:
    """The provider the settings name: ``local`` (a workspace per session) or ``modal``."""
    if settings.sandbox_provider == "modal":
        from sandbox.modal_provider import ModalSandboxProvider

        return ModalSandboxProvider(settings)
    from sandbox.local import LocalSandboxProvider, ResourceLimits

    return LocalSandboxProvider(
        settings.data_dir / "sandboxes",
        # The server's own files (database, config with keys) stay out of sight
        # wherever they live.
        hidden_paths=[settings.data_dir, settings.config_dir],
        network=settings.local_sandbox_network is not False,
        limits=ResourceLimits(
            max_processes=settings.local_sandbox_max_processes,
            memory_mib=settings.local_sandbox_memory_mib,
            cpu_seconds=settings.local_sandbox_cpu_seconds,
            service_cpu_seconds=settings.local_sandbox_service_cpu_seconds,
            max_file_mib=settings.local_sandbox_max_file_mib,
            workspace_mib=settings.local_sandbox_workspace_mib,
        ),
        uid_base=settings.local_sandbox_uid_base,
    )


def open_agent(settings: Settings) -> Any:
    """The agent loop; the anthropic SDK is imported in the background (it is slow)."""
    from backend.agent.lazy import LazyAgentLoop

    agent = LazyAgentLoop(settings)
    agent.warm()
    return agent


def open_engines(
    settings: Settings, store: Store, provider: SandboxProvider, *, model_info: Any = None
) -> tuple[Any, dict[str, Any], Any]:
    """The model proxy, the engines besides the built-in loop (OpenCode), and the
    proxy's access for the built-in engine's sandbox commands.

    A local sandbox reaches the proxy through a relay into the sandbox (only the
    proxy's own small app); a Modal sandbox through ``AGENT_TUI_PUBLIC_URL``.
    ``model_info`` is the built-in loop's (what each model can do).
    """
    from backend.agent.opencode import OpenCodeEngine
    from backend.model_proxy import ModelProxy, ProxyTokens
    from backend.model_proxy.app import proxy_app
    from backend.model_proxy.sandbox_access import SandboxModelAccess

    proxy = ModelProxy(settings, store, ProxyTokens(store))
    if provider.name == "modal":
        public = settings.public_url.rstrip("/")
        engine = OpenCodeEngine(
            settings,
            proxy.tokens,
            proxy_base=public,
            in_sandbox_binary="opencode",
            model_info=model_info,
        )
        access = SandboxModelAccess(proxy.tokens, proxy_base=public)
    else:
        app = proxy_app(proxy)
        engine = OpenCodeEngine(settings, proxy.tokens, host_app=app, model_info=model_info)
        access = SandboxModelAccess(proxy.tokens, proxy_base="{host_url}", host_app=app)
    return proxy, {"opencode": engine}, access


async def _migrate_with_retry(store: Store, attempts: int = 5) -> None:
    for attempt in range(attempts):
        try:
            applied = await store.migrate()
        except StoreUnavailable:
            if attempt == attempts - 1:
                raise
            log.warning("database unreachable at start-up; retrying (%d/%d)", attempt + 1, attempts)
            await asyncio.sleep(1.0)
            continue
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        return


def _document_security(app: FastAPI) -> None:
    """Declare the bearer key on every /v1 operation of the OpenAPI document.

    Authentication is a plain dependency (cheaper per request than FastAPI's
    security classes), so the document is told about it here.
    """
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schema.setdefault("components", {})["securitySchemes"] = {
                "ApiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key: `Authorization: Bearer aa_<live|test>_<32 characters>`",
                }
            }
            for path, operations in schema["paths"].items():
                if path.startswith("/v1/"):
                    for operation in operations.values():
                        operation["security"] = [{"ApiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def check_replicas_settings(settings: Settings) -> None:
    """Replicas mode shares state through PostgreSQL and Redis: refuse half of it."""
    if settings.uses_redis and settings.sqlite_path is not None:
        raise SettingsError(
            "REDIS_URL turns on replicas mode, which needs a PostgreSQL DATABASE_URL "
            "(postgresql://...) shared by every replica; SQLite is for one process. "
            "Unset REDIS_URL, or set DATABASE_URL to PostgreSQL."
        )


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    limiter: RateLimiter | None = None,
    provider: SandboxProvider | None = None,
    agent: Any | None = None,
) -> FastAPI:
    """The ASGI app. Services not given are opened from ``settings`` at start-up.

    With ``REDIS_URL`` (replicas mode) the sessions' leases, event streams and
    commands are shared with the other replicas on the same PostgreSQL and Redis.
    """
    check_replicas_settings(settings)
    # The process's replica id, fixed once (generated unless configured): the
    # X-Replica-ID header, log lines and every component see the same one.
    settings = settings.replace(replica_id=configure_replica_id(settings.replica_id))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            the_store = store or open_store(settings)
            stack.push_async_callback(the_store.close)
            await _migrate_with_retry(the_store)
            # Replicas mode: one Redis client for the process (limiter, readiness).
            the_redis = None
            if settings.uses_redis:
                from backend.redis_client import open_redis

                the_redis = open_redis(settings.redis_url)
                stack.push_async_callback(the_redis.aclose)
            the_limiter = limiter or open_rate_limiter(settings, the_redis)
            stack.push_async_callback(the_limiter.close)
            the_provider = provider or open_sandbox_provider(settings)
            stack.push_async_callback(the_provider.close)
            the_agent = agent or open_agent(settings)
            stack.push_async_callback(the_agent.aclose)
            cluster = None
            if settings.uses_redis:
                from backend.sessions.cluster import Cluster

                cluster = Cluster(settings, the_store)  # type: ignore[arg-type]
                stack.push_async_callback(cluster.close)
            proxy, engines, model_access = open_engines(
                settings, the_store, the_provider, model_info=getattr(the_agent, "model_info", None)
            )
            stack.push_async_callback(proxy.aclose)
            for engine in engines.values():
                stack.push_async_callback(engine.aclose)
            stack.push_async_callback(model_access.aclose)
            app.state.model_proxy = proxy
            registry = SessionRegistry(
                ActorDeps(
                    settings,
                    the_store,
                    the_provider,
                    the_agent,
                    cluster=cluster,
                    engines=engines,
                    model_access=model_access,
                )
            )
            app.state.services = Services(
                settings=settings,
                store=the_store,
                verifier=KeyVerifier(the_store, ttl=settings.key_cache_ttl_seconds),
                limiter=the_limiter,
                provider=the_provider,
                registry=registry,
                redis=the_redis,
                agent=the_agent,
            )
            await registry.start()
            stack.push_async_callback(registry.close)
            log.info(
                "ready: replica=%s%s store=%s limiter=%s sandbox=%s (%s)",
                settings.replica_id,
                " (replicas mode, Redis)" if cluster is not None else "",
                type(the_store).__name__,
                type(the_limiter).__name__,
                the_provider.name,
                the_provider.isolation,
            )
            yield

    app = FastAPI(
        title="agent-tui Agent API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
        # No OpenTelemetry here; left on, FastAPI checks for providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    _document_security(app)
    install_error_handlers(app)
    for module in (health, keys, models, sessions, usage, model_proxy):
        app.include_router(module.router)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        replica=settings.replica_id,
    )
    return app
