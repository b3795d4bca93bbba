"""``/v1/model-proxy/{sessionId}/v1/messages``: the model, for code in a sandbox.

Authenticated by the session's proxy token (``x-api-key`` or
``Authorization: Bearer``), not by an API key. Only the Messages call is
proxied: nothing else of the account (files, batches, admin) is reachable: the token works for its own
session only and dies with it. The server adds the real Anthropic key and
streams the answer back untouched. Errors have the Anthropic shape
(``{"type": "error", "error": {"type", "message"}}``) because the caller is an
Anthropic client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from backend.errors import StoreUnavailable

if TYPE_CHECKING:
    from backend.model_proxy import ModelProxy

router = APIRouter(tags=["model proxy"])


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"type": "error", "error": {"type": kind, "message": message}}, status_code=status
    )


def _token(request: Request) -> str | None:
    token = request.headers.get("x-api-key")
    if token:
        return token
    auth = request.headers.get("authorization", "")
    return auth[7:] if auth.lower().startswith("bearer ") else None


@router.post(
    "/v1/model-proxy/{session_id}/v1/messages",
    summary="Model proxy for a session's sandbox",
    responses={
        401: {"description": "The token is missing, revoked or another session's"},
        502: {"description": "The model API could not be reached"},
        503: {"description": "The tokens could not be read (the database is unavailable)"},
    },
)
async def model_proxy(session_id: str, request: Request) -> Response:
    """Forward an Anthropic Messages call with the server's key (streaming intact)."""
    import httpx  # off the start-up path; loaded once by the first proxied call

    proxy: ModelProxy | None = getattr(request.app.state, "model_proxy", None)
    if proxy is None:
        return _error(404, "not_found_error", "The model proxy is not enabled on this server")
    try:
        grant = await proxy.check(session_id, _token(request))
    except StoreUnavailable:
        # 5xx: Anthropic clients retry it.
        return _error(503, "api_error", "The model proxy cannot check tokens right now")
    if grant is None:
        return _error(401, "authentication_error", "Invalid or revoked model-proxy token")
    try:
        answer = await proxy.forward(
            grant, "v1/messages", dict(request.headers), await request.body()
        )
    except httpx.HTTPError as exc:
        return _error(502, "api_error", f"Could not reach the model API: {type(exc).__name__}")
    return StreamingResponse(
        answer.body,
        status_code=answer.status_code,
        headers=answer.headers,
        media_type=answer.headers.get("content-type"),
    )
