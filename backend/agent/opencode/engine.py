"""``OpenCodeEngine``: a turn runs in ``opencode serve`` inside the session's sandbox.

The session actor calls ``prepare`` once the sandbox runs (created, resumed or
reattached), ``run_turn`` like the built-in loop's, and ``release`` before the
sandbox is paused or deleted. ``prepare`` mints the session's model-proxy
token, starts OpenCode as a sandbox service, polls its health (bounded), and
creates or continues the OpenCode session whose id is kept in the workspace
(``.agent-tui/opencode-session``), so a resumed sandbox continues the same
conversation. Interrupts use OpenCode's abort.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backend.agent.opencode.binary import find_opencode
from backend.agent.opencode.config import (
    ADAPTIVE_THINKING_VARIANT,
    THINKING_VARIANT,
    service_spec,
)
from backend.agent.opencode.errors import OpenCodeUnavailable
from backend.agent.opencode.events import TurnMapper
from backend.agent.opencode.permissions import PermissionAnswers
from backend.agent.types import ModelError, TurnObserver, TurnResult
from backend.errors import FileNotFound, SandboxError
from backend.model_proxy import ProxyTokens
from backend.settings import Settings
from sandbox.base import Sandbox, ServiceHandle

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from backend.agent.models import ModelInfo
    from backend.agent.opencode.client import OpenCodeClient

__all__ = ["SESSION_FILE", "OpenCodeEngine"]

log = logging.getLogger(__name__)

SESSION_FILE = ".agent-tui/opencode-session"
# What ``opencode serve`` prints (both providers write a service's output there).
LOG_FILE = ".agent-tui/opencode.log"
# After an abort, how long the turn waits for OpenCode to settle (its last parts, idle).
_ABORT_SETTLE_SECONDS = 5.0


@dataclass
class _Runtime:
    session_id: str
    sandbox_id: str
    service: ServiceHandle
    client: OpenCodeClient
    opencode_session: str
    token: str


class OpenCodeEngine:
    """Runs turns in OpenCode, one ``opencode serve`` per running sandbox."""

    name = "opencode"

    def __init__(
        self,
        settings: Settings,
        tokens: ProxyTokens,
        *,
        host_app: Any = None,
        proxy_base: str = "{host_url}",
        in_sandbox_binary: str | None = None,
        model_info: Callable[[str], Awaitable[ModelInfo]] | None = None,
    ) -> None:
        """``host_app`` is the model proxy's ASGI app, relayed into local sandboxes;
        ``proxy_base`` the URL the sandbox reaches it at (``{host_url}`` for the
        relay, the server's public URL for Modal). ``in_sandbox_binary`` names the
        program inside the sandbox when it is not the host's (Modal's image).
        ``model_info`` (the built-in loop's, from its model catalog) says whether
        and how a model thinks; without it, thinking is asked for with a budget."""
        self._settings = settings
        self._model_info = model_info
        self._tokens = tokens
        self._host_app = host_app
        self._proxy_base = proxy_base
        self._binary = in_sandbox_binary
        self._runtimes: dict[str, _Runtime] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def prepare(self, *, session_id: str, user_id: str, sandbox: Sandbox, model: str) -> None:
        """Make sure OpenCode runs in ``sandbox`` and its session exists. Idempotent."""
        lock = self._locks.setdefault(session_id, asyncio.Lock())
        async with lock:
            runtime = self._runtimes.get(session_id)
            if runtime is not None:
                if runtime.sandbox_id == sandbox.id and await runtime.service.is_running():
                    return
                await self._stop(runtime)
            if not self._proxy_base:
                raise SandboxError(
                    "engine=opencode on Modal needs AGENT_TUI_PUBLIC_URL: the URL at which "
                    "the sandbox reaches this server's model proxy"
                )
            binary = self._binary or find_opencode(self._settings.opencode_bin)
            token = await self._tokens.mint(session_id, user_id)
            spec = service_spec(
                binary=binary,
                workspace_home=await _workspace_home(sandbox),
                session_id=session_id,
                token=token,
                model=model,
                max_tokens=self._settings.anthropic_max_tokens,
                thinking_budget=self._settings.thinking_budget_tokens,
                host_app=self._host_app,
                proxy_base=self._proxy_base,
            )
            try:
                service = await sandbox.start_service(spec)
            except BaseException:
                await self._tokens.revoke_quietly(token)
                raise
            from backend.agent.opencode.client import OpenCodeClient  # httpx: on first use

            client = OpenCodeClient(service.base_url, service.transport, service.headers)
            try:
                await client.wait_healthy(
                    timeout=self._settings.opencode_start_timeout_seconds,
                    is_running=service.is_running,
                )
                opencode_session = await self._session_for(sandbox, client, session_id)
            except BaseException:
                await client.aclose()
                await service.stop()
                await self._tokens.revoke_quietly(token)
                raise
            self._runtimes[session_id] = _Runtime(
                session_id, sandbox.id, service, client, opencode_session, token
            )

    async def _session_for(self, sandbox: Sandbox, client: OpenCodeClient, session_id: str) -> str:
        """The OpenCode session kept in the workspace, or a new one."""
        with contextlib.suppress(FileNotFound):
            known = (await sandbox.read_file(SESSION_FILE)).decode().strip()
            if known and await client.session_exists(known):
                return known
        created = await client.create_session(title=f"agent-tui {session_id}")
        await sandbox.write_file(SESSION_FILE, created.encode())
        return created

    def runtime_for(self, sandbox: Sandbox) -> _Runtime | None:
        for runtime in self._runtimes.values():
            if runtime.sandbox_id == sandbox.id:
                return runtime
        return None

    async def run_turn(
        self,
        *,
        history: list[dict[str, Any]],
        user_content: str,
        system_prompt: str | None,
        model: str,
        sandbox: Sandbox,
        observer: TurnObserver,
        thinking: bool = False,
    ) -> TurnResult:
        """One user turn in OpenCode; same contract as ``AgentLoop.run_turn``.

        ``history`` is not sent: OpenCode keeps the conversation itself (and
        the stored messages keep it for clients). ``thinking`` names the model
        variant with extended thinking in the prompt (when the model has it).
        OpenCode's permission requests go to ``observer.check_permission``
        (the session's permission gate) and are answered by its decision.
        """
        runtime = self.runtime_for(sandbox)
        if runtime is None:
            raise ModelError("MODEL_UNAVAILABLE", "OpenCode is not running in this sandbox")
        variant = await self._thinking_variant(model) if thinking else None
        mapper = TurnMapper(runtime.opencode_session, observer)
        answers = PermissionAnswers(runtime.client, mapper, observer)
        events = runtime.client.turn_events()
        try:
            try:
                await anext(events)  # server.connected: the stream is live before the prompt
                await runtime.client.prompt(
                    runtime.opencode_session, user_content, system=system_prompt, variant=variant
                )
                async for event in events:
                    if await mapper.handle(event):
                        return mapper.result("end_turn")
                    await answers.answer_pending()
            except (OpenCodeUnavailable, StopAsyncIteration, OSError) as exc:
                exited = await _exited(runtime.service)
                raise ModelError(
                    "MODEL_UNAVAILABLE",
                    f"OpenCode exited during the turn (its log: {LOG_FILE}); "
                    "the next message starts it again"
                    if exited
                    else "OpenCode stopped answering during the turn",
                    details={"engine": "opencode", "error": type(exc).__name__},
                    partial=mapper.result("error"),
                ) from exc
            raise ModelError(
                "MODEL_UNAVAILABLE",
                "OpenCode's event stream ended during the turn",
                details={"engine": "opencode"},
                partial=mapper.result("error"),
            )
        except asyncio.CancelledError:
            mapper.aborted = True
            await asyncio.shield(self._abort(runtime, mapper, events))
            return mapper.result("interrupted")
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()

    async def _thinking_variant(self, model: str) -> str | None:
        """The model variant that turns extended thinking on, as the built-in loop
        would ask for it: none for a model without thinking."""
        if self._model_info is None:
            return THINKING_VARIANT
        try:
            info = await self._model_info(model)
        except Exception as exc:  # the catalog's own failures are not the turn's
            log.warning("model info for %s failed: %s", model, type(exc).__name__)
            return THINKING_VARIANT
        if info.thinking == "adaptive":
            return ADAPTIVE_THINKING_VARIANT
        return THINKING_VARIANT if info.thinking is not None else None

    async def _abort(self, runtime: _Runtime, mapper: TurnMapper, events: Any) -> None:
        """Abort OpenCode's turn and take in its last events until it is idle (bounded)."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_ABORT_SETTLE_SECONDS):
                await runtime.client.abort(runtime.opencode_session)
                async for event in events:
                    if await mapper.handle(event):
                        break

    async def logs(self, sandbox: Sandbox, tail: int) -> list[str]:
        """The last ``tail`` lines OpenCode printed in ``sandbox`` (start-up, crashes)."""
        try:
            data = await sandbox.read_file(LOG_FILE)
        except FileNotFound:
            return []
        return data.decode(errors="replace").splitlines()[-tail:] if tail else []

    async def release(self, session_id: str) -> None:
        """Stop the session's OpenCode (before a pause or a delete) and revoke its token."""
        runtime = self._runtimes.pop(session_id, None)
        if runtime is not None:
            await self._stop(runtime)

    async def forget(self, session_id: str) -> None:
        """The session is deleted: stop OpenCode and revoke every token it had."""
        await self.release(session_id)
        await self._tokens.revoke_session(session_id)
        self._locks.pop(session_id, None)

    async def _stop(self, runtime: _Runtime) -> None:
        self._runtimes.pop(runtime.session_id, None)
        await self._tokens.revoke_quietly(runtime.token)
        with contextlib.suppress(Exception):
            await runtime.client.aclose()
        try:
            await runtime.service.stop()
        except Exception as exc:
            log.warning(
                "stopping OpenCode of %s failed: %s", runtime.session_id, type(exc).__name__
            )

    async def aclose(self) -> None:
        """Stop every OpenCode this process started (server shutdown)."""
        await asyncio.gather(
            *(self._stop(r) for r in list(self._runtimes.values())), return_exceptions=True
        )


async def _exited(service: ServiceHandle, within: float = 3.0) -> bool:
    """Whether the service's process exits within ``within`` seconds (its stream
    breaks a moment before the relay around it notices). False when unknown."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    try:
        while await service.is_running():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)
    except Exception:
        return False
    return True


async def _workspace_home(sandbox: Sandbox) -> str:
    """The workspace's absolute path inside the sandbox."""
    workspace = getattr(sandbox, "workspace", None)
    if workspace is not None:
        return str(workspace)
    return str(getattr(sandbox, "workspace_root", "/workspace"))
