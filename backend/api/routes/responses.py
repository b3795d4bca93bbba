"""OpenAPI descriptions of the contract's error answers, shared by the routes."""

from __future__ import annotations

from typing import Any

from backend.schemas import ErrorBody


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for the given error statuses (plus 401/429/503 always)."""
    text = {
        400: "`VALIDATION_ERROR`: bad JSON, wrong types, unknown fields, bad UUID, bad path",
        401: "`INVALID_API_KEY`: header missing or malformed, key unknown, revoked or expired",
        403: "`FORBIDDEN`: the key lacks the scope for this call",
        404: "`NOT_FOUND` / `SESSION_NOT_FOUND` / `FILE_NOT_FOUND` / `KEY_NOT_FOUND`; also for other users' things",
        409: "`SESSION_BUSY` (details.status says running or starting), `SESSION_TERMINATED` (deleted), "
        "or `SESSION_FAILED` (status `error`: its sandbox could not be created or was lost; details.error says why)",
        413: "`PAYLOAD_TOO_LARGE`: body over the configured limit",
        429: "`RATE_LIMIT_EXCEEDED` (with `Retry-After`, details limit/windowSeconds/resetAt) or `SESSION_LIMIT_EXCEEDED`",
        502: "`SANDBOX_ERROR`: the sandbox provider failed",
        503: "`SERVICE_UNAVAILABLE`: the database (or a fail-closed rate limiter) is unreachable; with `Retry-After`",
    }
    wanted = sorted({*statuses, 401, 429, 503})
    return {code: {"model": ErrorBody, "description": text[code]} for code in wanted}


def sse(description: str) -> dict[int | str, dict[str, Any]]:
    """A 200 answer that is an SSE stream of events."""
    return {
        200: {
            "description": description,
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    }
