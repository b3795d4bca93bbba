"""API keys: generation, hashing, and verification with a short-lived cache.

A key looks like ``aa_<live|test>_<32 chars [A-Za-z0-9]>``. Only its SHA-256 hex
digest is stored, with a display prefix and the last 4 characters. Verified keys
are cached for ``ttl`` seconds so an authenticated request costs no database
round trip; a revocation in this process evicts the entry at once, and the TTL
bounds how long another process may still accept a revoked key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from backend.errors import InvalidApiKey
from backend.records import ApiKey, new_id, utcnow
from backend.store.base import Store

KEY_PATTERN = re.compile(r"^aa_(live|test)_[A-Za-z0-9]{32}$")
_ALPHABET = string.ascii_letters + string.digits
PREFIX_LENGTH = 12  # "aa_live_" + 4 characters
TOUCH_INTERVAL = timedelta(minutes=1)


def generate_key(environment: str) -> str:
    """A new key from the OS CSPRNG."""
    if environment not in ("live", "test"):
        raise ValueError("environment must be live or test")
    body = "".join(secrets.choice(_ALPHABET) for _ in range(32))
    return f"aa_{environment}_{body}"


def hash_key(key: str) -> str:
    """The SHA-256 hex digest stored for a key (keys are high-entropy: no slow hash needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


async def create_api_key(
    store: Store,
    *,
    user_id: str,
    name: str,
    scopes: list[str],
    environment: str = "live",
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create and store a key; return the record and the full key (shown once)."""
    key = generate_key(environment)
    record = ApiKey(
        id=new_id(),
        user_id=user_id,
        name=name,
        key_hash=hash_key(key),
        prefix=key[:PREFIX_LENGTH],
        last4=key[-4:],
        environment=environment,
        scopes=sorted(set(scopes)),
        created_at=utcnow(),
        expires_at=expires_at,
    )
    await store.create_key(record)
    return record, key


@dataclass
class _CacheEntry:
    key: ApiKey
    fetched_at: float


class KeyVerifier:
    """Turns an ``Authorization`` header into an ``ApiKey``, caching verified keys."""

    def __init__(self, store: Store, *, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self._store = store
        self._ttl = ttl
        self._max_entries = max_entries
        self._cache: dict[str, _CacheEntry] = {}
        self._touched: dict[str, datetime] = {}

    async def verify(self, authorization: str | None) -> ApiKey:
        """The usable key named by a ``Bearer`` header, or raise ``InvalidApiKey``."""
        if not authorization:
            raise InvalidApiKey("Missing Authorization header (expected: Bearer aa_live_...)")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not KEY_PATTERN.match(token):
            raise InvalidApiKey(
                "Malformed API key (expected: Bearer aa_<live|test>_<32 characters>)"
            )
        digest = hash_key(token)
        now = utcnow()
        entry = self._cache.get(digest)
        if entry is None or time.monotonic() - entry.fetched_at > self._ttl:
            found = await self._store.get_key_by_hash(digest)
            # The lookup is by digest already; compare again in constant time so a
            # store that matched loosely (collation, truncation) can never admit a key.
            if found is None or not hmac.compare_digest(found.key_hash, digest):
                self._cache.pop(digest, None)
                raise InvalidApiKey("Unknown API key")
            entry = _CacheEntry(found, time.monotonic())
            if len(self._cache) >= self._max_entries:
                self._cache.clear()
            self._cache[digest] = entry
        key = entry.key
        if key.revoked_at is not None:
            raise InvalidApiKey("API key revoked")
        if key.expires_at is not None and key.expires_at <= now:
            raise InvalidApiKey("API key expired")
        await self._touch(key, now)
        return key

    async def _touch(self, key: ApiKey, now: datetime) -> None:
        """Write ``last_used_at`` at most once a minute per key (per process)."""
        last = self._touched.get(key.id) or key.last_used_at
        if last is not None and now - last < TOUCH_INTERVAL:
            return
        self._touched[key.id] = now
        if len(self._touched) > self._max_entries:
            self._touched.clear()
        await self._store.touch_key(key.id, now)

    def forget(self, key_id: str) -> None:
        """Evict a key (after revocation) so the next request sees the store's state."""
        for digest, entry in list(self._cache.items()):
            if entry.key.id == key_id:
                del self._cache[digest]
