"""Per-session model-proxy tokens: minted for one session, useless for any other.

Tokens live in the store (``proxy_tokens``), so every replica verifies what any
replica minted: a sandbox reaches the proxy through the public URL, that is
through the load balancer, and a restarted replica still knows them. Only the
SHA-256 digest of a token is stored, with its session and user.

A token is refused once revoked (its engine stopped, its session deleted) or
once its session is terminated, whichever replica did either.

No cache: ``verify`` reads the store on every proxied call. That is one
primary-key lookup (tens of microseconds on SQLite, a fraction of a
millisecond on PostgreSQL) in front of a model call that takes seconds, and it
keeps revocation immediate on every replica; a cache would save nothing
measurable and would let a revoked token work elsewhere until it expired.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

from backend.records import ProxyToken, utcnow
from backend.store.base import Store

__all__ = ["TOKEN_PREFIX", "ProxyGrant", "ProxyTokens", "token_digest"]

TOKEN_PREFIX = "atp_"

log = logging.getLogger("agent_tui.model_proxy")


@dataclass(frozen=True)
class ProxyGrant:
    """What a valid token stands for."""

    session_id: str
    user_id: str


def token_digest(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


class ProxyTokens:
    """Mints, verifies and revokes the tokens kept in ``store``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def mint(self, session_id: str, user_id: str) -> str:
        """A new token for ``session_id`` (which must exist); earlier tokens of the
        session stay valid until revoked."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        await self._store.add_proxy_token(
            ProxyToken(token_digest(token), session_id, user_id, utcnow())
        )
        return token

    async def verify(self, token: str | None, session_id: str) -> ProxyGrant | None:
        """The grant when ``token`` is live and belongs to ``session_id``, else None.

        Raises ``StoreUnavailable`` when the store cannot answer.
        """
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        found = await self._store.live_proxy_token(token_digest(token))
        if found is None or not hmac.compare_digest(found.session_id, session_id.lower()):
            return None
        return ProxyGrant(found.session_id, found.user_id)

    async def revoke(self, token: str) -> None:
        """Revoke one token (its engine stopped)."""
        await self._store.revoke_proxy_token(token_digest(token), utcnow())

    async def revoke_quietly(self, token: str) -> None:
        """``revoke``, on a path that is already failing or stopping: a store outage is
        logged, not raised, so it cannot hide the first error (and a token of a
        deleted session is refused anyway)."""
        try:
            await self.revoke(token)
        except Exception as exc:
            log.warning("could not revoke a model-proxy token: %s", type(exc).__name__)

    async def revoke_session(self, session_id: str) -> None:
        """Revoke every token of ``session_id`` (the session is deleted)."""
        await self._store.revoke_session_proxy_tokens(session_id, utcnow())
