"""``ModelCatalog``: the models the configured endpoint offers, cached.

The list comes from the SDK's ``models.list`` (``GET /v1/models``), which also
says what each model can do (extended thinking, API-side compaction) and how
large its context window is. An endpoint without a models route (a proxy, an
older compatible server) falls back to ``ANTHROPIC_MODELS`` (or the default
model alone), described with the configured window and no optional features.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import anthropic

from backend.settings import Settings

__all__ = ["ModelCatalog", "ModelInfo", "ModelListing"]

log = logging.getLogger(__name__)

# A listing that failed for another reason than "no such route" is retried sooner.
_FAILURE_TTL_SECONDS = 30.0


@dataclass(frozen=True)
class ModelInfo:
    """One model and what the agent loop needs to know about it."""

    id: str
    display_name: str
    context_window: int
    max_output_tokens: int | None = None
    # How extended thinking is asked for: "enabled" (with a budget), "adaptive"
    # (the model decides), or None when the model has no thinking.
    thinking: str | None = None
    compaction: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "displayName": self.display_name,
            "contextWindow": self.context_window,
            "maxOutputTokens": self.max_output_tokens,
            "thinking": self.thinking is not None,
            "compaction": self.compaction,
        }


@dataclass(frozen=True)
class ModelListing:
    """The models, and where the list came from: ``endpoint`` or ``configured``."""

    models: tuple[ModelInfo, ...]
    source: str

    def get(self, model_id: str) -> ModelInfo | None:
        return next((m for m in self.models if m.id == model_id), None)


def _supported(capability: Any) -> bool:
    return bool(getattr(capability, "supported", False))


def _thinking_mode(caps: Any) -> str | None:
    thinking = getattr(caps, "thinking", None)
    if not _supported(thinking):
        return None
    types = getattr(thinking, "types", None)
    if _supported(getattr(types, "enabled", None)):
        return "enabled"
    if _supported(getattr(types, "adaptive", None)):
        return "adaptive"
    return "enabled"


def _from_sdk(model: Any, default_window: int) -> ModelInfo:
    caps = getattr(model, "capabilities", None)
    context = getattr(caps, "context_management", None) if caps is not None else None
    return ModelInfo(
        id=model.id,
        display_name=getattr(model, "display_name", None) or model.id,
        context_window=getattr(model, "max_input_tokens", None) or default_window,
        max_output_tokens=getattr(model, "max_tokens", None),
        thinking=_thinking_mode(caps) if caps is not None else None,
        compaction=_supported(getattr(context, "compact_20260112", None)),
    )


class ModelCatalog:
    """Lists models through an ``AsyncAnthropic`` client; one listing is shared by
    every caller for ``models_cache_seconds``."""

    def __init__(self, settings: Settings, client: Any | None) -> None:
        self._settings = settings
        self._client = client
        self._cached: ModelListing | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    def configured(self) -> ModelListing:
        """The fallback list from the settings (the default model first)."""
        ids = [self._settings.anthropic_model]
        ids += [m for m in self._settings.anthropic_models if m not in ids]
        window = self._settings.context_window_tokens
        return ModelListing(
            tuple(ModelInfo(id=m, display_name=m, context_window=window) for m in ids),
            "configured",
        )

    async def listing(self) -> ModelListing:
        """The models now (from the cache when fresh)."""
        if self._cached is not None and time.monotonic() < self._expires:
            return self._cached
        async with self._lock:
            if self._cached is not None and time.monotonic() < self._expires:
                return self._cached
            listing, ttl = await self._fetch()
            self._cached, self._expires = listing, time.monotonic() + ttl
            return listing

    async def info(self, model_id: str) -> ModelInfo:
        """What is known of ``model_id``. A model the endpoint does not describe gets
        the configured window and is let try extended thinking (the API says no if
        it cannot)."""
        found = (await self.listing()).get(model_id)
        if found is not None and found.thinking is not None:
            return found
        if found is not None and (await self.listing()).source == "endpoint":
            return found
        window = found.context_window if found else self._settings.context_window_tokens
        return ModelInfo(
            id=model_id, display_name=model_id, context_window=window, thinking="enabled"
        )

    async def _fetch(self) -> tuple[ModelListing, float]:
        ttl = self._settings.models_cache_seconds
        if self._client is None:
            return self.configured(), ttl
        window = self._settings.context_window_tokens
        try:
            models = [_from_sdk(m, window) async for m in self._client.models.list(limit=100)]
        except anthropic.NotFoundError:
            return self.configured(), ttl  # no models route: the configured list is the answer
        except Exception as exc:
            # Any failure, an API error or an answer the SDK cannot parse (an endpoint
            # that streams whatever it is asked), must not fail the turn that asked.
            log.warning(
                "listing models failed (%s); offering the configured list", type(exc).__name__
            )
            return self.configured(), min(ttl, _FAILURE_TTL_SECONDS)
        if not models:
            return self.configured(), ttl
        return ModelListing(tuple(models), "endpoint"), ttl
