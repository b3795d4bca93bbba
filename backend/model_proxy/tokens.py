"""Per-session model-proxy tokens: minted for one session, useless for any other.

Only the SHA-256 digest of a token is kept. A token is revoked when its session
is deleted (or when the engine that holds it is stopped), and it lives in this
process's memory only: a restarted server mints new tokens when it starts the
sandbox's engine again, so a token never outlives the process that made it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

__all__ = ["TOKEN_PREFIX", "ProxyGrant", "ProxyTokens"]

TOKEN_PREFIX = "atp_"


@dataclass(frozen=True)
class ProxyGrant:
    """What a valid token stands for."""

    session_id: str
    user_id: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ProxyTokens:
    """The live tokens of this process, by digest."""

    def __init__(self) -> None:
        self._grants: dict[str, ProxyGrant] = {}

    def mint(self, session_id: str, user_id: str) -> str:
        """A new token for ``session_id``; earlier tokens of the session stay valid
        until ``revoke_session``."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self._grants[_digest(token)] = ProxyGrant(session_id, user_id)
        return token

    def verify(self, token: str | None, session_id: str) -> ProxyGrant | None:
        """The grant when ``token`` is live and belongs to ``session_id``, else None."""
        if not token or not token.startswith(TOKEN_PREFIX):
            return None
        grant = self._grants.get(_digest(token))
        if grant is None or not hmac.compare_digest(grant.session_id, session_id):
            return None
        return grant

    def revoke(self, token: str) -> None:
        """Forget one token (its engine stopped)."""
        self._grants.pop(_digest(token), None)

    def revoke_session(self, session_id: str) -> int:
        """Forget every token of ``session_id``; return how many there were."""
        gone = [d for d, g in self._grants.items() if g.session_id == session_id]
        for digest in gone:
            del self._grants[digest]
        return len(gone)

    def __len__(self) -> int:
        return len(self._grants)
