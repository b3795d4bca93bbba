"""``SandboxModelAccess``: the model proxy for the built-in engine's sandboxes.

Tools in a sandbox that need a model (the ``anthropic`` SDK, ``curl``) find it
through the usual variables in every command the agent runs:
``ANTHROPIC_BASE_URL`` is this session's proxy route and ``ANTHROPIC_API_KEY``
the session's proxy token, never the server's key. A local sandbox reaches the
proxy through a relay inside each command's own jail (``{host_url}``, see
``sandbox/local_command_access.py``), a Modal sandbox through
``AGENT_TUI_PUBLIC_URL``.

One token per sandbox handle: granted when the session's sandbox runs (created,
resumed, reattached), revoked when it pauses, every token of the session
revoked when the session is deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from backend.model_proxy.tokens import ProxyTokens
from sandbox.base import Sandbox

__all__ = ["SandboxModelAccess"]

log = logging.getLogger("agent_tui.model_proxy")


@dataclass
class _Grant:
    sandbox: Sandbox
    token: str


class SandboxModelAccess:
    """Mints a session's token and hands it to its sandbox's commands."""

    def __init__(self, tokens: ProxyTokens, *, proxy_base: str, host_app: Any = None) -> None:
        """``proxy_base``: how the sandbox reaches this server (``{host_url}`` with
        ``host_app`` for local sandboxes, the public URL for Modal; empty: none)."""
        self._tokens = tokens
        self._proxy_base = proxy_base.rstrip("/")
        self._host_app = host_app
        self._grants: dict[str, _Grant] = {}
        self._warned = False

    async def grant(self, *, session_id: str, user_id: str, sandbox: Sandbox) -> None:
        """Give ``sandbox``'s commands the proxy. Idempotent for the same handle; a new
        handle (resumed, reattached) gets a new token and the old one is revoked."""
        current = self._grants.get(session_id)
        if current is not None and current.sandbox is sandbox:
            return
        if not self._proxy_base:
            if not self._warned:
                self._warned = True
                log.info(
                    "AGENT_TUI_PUBLIC_URL is not set: the built-in engine's Modal sandboxes "
                    "get no model proxy (ANTHROPIC_BASE_URL) for their tools"
                )
            return
        await self.release(session_id)
        token = await self._tokens.mint(session_id, user_id)
        env = {
            "ANTHROPIC_BASE_URL": f"{self._proxy_base}/v1/model-proxy/{session_id}",
            "ANTHROPIC_API_KEY": token,
        }
        try:
            await sandbox.set_command_env(env, host_app=self._host_app)
        except BaseException:
            await self._tokens.revoke_quietly(token)
            raise
        self._grants[session_id] = _Grant(sandbox, token)

    async def release(self, session_id: str) -> None:
        """The sandbox pauses (or goes): revoke the token it was given."""
        current = self._grants.pop(session_id, None)
        if current is not None:
            await self._tokens.revoke_quietly(current.token)

    async def forget(self, session_id: str) -> None:
        """The session is deleted: revoke every token it has, whoever minted them."""
        self._grants.pop(session_id, None)
        await self._tokens.revoke_session(session_id)

    async def aclose(self) -> None:
        """Server shutdown: the next process grants new tokens to the sandboxes it
        reattaches, so this one's are revoked."""
        for session_id in list(self._grants):
            await self.release(session_id)
