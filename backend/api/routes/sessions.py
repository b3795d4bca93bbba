"""``/v1/sessions``: create, list, read, rename, delete, messages, events, control, files, logs.

Every route resolves the session through the registry (which answers 404 for
other users' sessions) and calls its actor; nothing here touches SQL, the model
or the sandbox directly.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
from collections.abc import AsyncIterator
from datetime import datetime

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from backend import events as ev
from backend.api.deps import Principal, parse_uuid, rate_limited, services
from backend.api.routes.responses import errors, sse
from backend.errors import ValidationError
from backend.records import SESSION_STATUSES
from backend.schemas import (
    CompactionOut,
    FileEntryOut,
    FileList,
    LogList,
    MessageList,
    MessageOut,
    MessageSend,
    PermissionAnswer,
    PermissionOut,
    SessionCreate,
    SessionList,
    SessionOut,
    SessionPatch,
    SessionStatus,
)
from backend.sessions.actor import SessionActor
from backend.store.base import SessionCursor
from sandbox.base import normalize_relative_path

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])
_default = rate_limited("default")
# Reads a client refreshes on its own: X-Background-Refresh: 1 counts them apart.
_refreshable = rate_limited("default", background=True)
_BACKGROUND_DOC = (
    "1 for a client's automatic refresh (not a user's action): the request counts in the "
    "`background` rate-limit class instead of the default one"
)
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _stream(frames: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(frames, media_type="text/event-stream", headers=_SSE_HEADERS)


async def _actor(request: Request, session_id: str, principal: Principal) -> SessionActor:
    session_id = parse_uuid(session_id, "sessionId")
    return await services(request).registry.get(session_id, principal.user_id)


def _encode_cursor(created_at: datetime, session_id: str) -> str:
    raw = json.dumps({"c": created_at.isoformat(), "i": session_id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> SessionCursor:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        return SessionCursor(created_at=datetime.fromisoformat(data["c"]), id=str(data["i"]))
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ValidationError("Malformed cursor", details={"cursor": cursor}) from None


@router.post(
    "",
    status_code=201,
    response_model=SessionOut,
    responses={
        **errors(400, 413, 502),
        **sse(
            "With `Accept: text/event-stream`: `session.created`, `session.progress`*, then "
            "`session.ready` or `session.error`, and the stream ends."
        ),
    },
)
async def create_session(
    request: Request,
    body: SessionCreate | None = Body(None),
    accept: str | None = Header(None),
    principal: Principal = Depends(rate_limited("createSession")),
) -> Response:
    """Create a session. Answers at once with status ``starting``; the sandbox is prepared
    in the background (``session.ready`` on the events stream, status ``idle``).
    All body fields are optional; an empty body is allowed."""
    actor = await services(request).registry.create(
        user_id=principal.user_id, api_key_id=principal.key.id, body=body or SessionCreate()
    )
    if accept and "text/event-stream" in accept:
        frames = actor.events.frames(
            0,
            keepalive=services(request).settings.keepalive_seconds,
            until=(ev.SESSION_READY, ev.SESSION_ERROR),
        )
        response = _stream(frames)
        response.status_code = 201
        response.headers["Location"] = f"/v1/sessions/{actor.id}"
        return response
    out = SessionOut.of(actor.view())
    return Response(
        content=out.model_dump_json(by_alias=True),
        status_code=201,
        media_type="application/json",
        headers={"Location": f"/v1/sessions/{actor.id}"},
    )


@router.get("", response_model=SessionList, responses=errors(400))
async def list_sessions(
    request: Request,
    status: str | None = Query(None, description="Only sessions in this status"),
    limit: int = Query(50, ge=1, le=100),
    cursor: str | None = Query(None, description="`nextCursor` of the previous page"),
    x_background_refresh: str | None = Header(
        None, description=_BACKGROUND_DOC
    ),  # read by the dependency
    principal: Principal = Depends(_refreshable),
) -> SessionList:
    """The user's sessions, newest first, ``limit`` per page; ``nextCursor`` is null on the
    last page. ``X-Background-Refresh: 1`` counts the request in the ``background``
    rate-limit class (``RATE_LIMIT_BACKGROUND``), for a client's automatic refresh."""
    if status is not None and status not in SESSION_STATUSES:
        raise ValidationError(
            f"status must be one of {', '.join(SESSION_STATUSES)}", details={"status": status}
        )
    svc = services(request)
    after = _decode_cursor(cursor) if cursor else None
    records = await svc.store.list_sessions(
        principal.user_id, status=status, limit=limit + 1, after=after
    )
    page = records[:limit]
    # Sessions with a live actor report its fresher in-memory state.
    fresh = [(svc.registry.loaded_actor(r.id) or None) for r in page]
    page = [a.view() if a is not None else r for a, r in zip(fresh, page, strict=True)]
    next_cursor = _encode_cursor(page[-1].created_at, page[-1].id) if len(records) > limit else None
    waiting = await svc.store.pending_permission_counts(principal.user_id)
    return SessionList(
        sessions=[SessionOut.of(r, pending_count=waiting.get(r.id, 0)) for r in page],
        next_cursor=next_cursor,
    )


@router.get("/{session_id}", response_model=SessionOut, responses=errors(400, 404))
async def get_session(
    request: Request,
    session_id: str,
    x_background_refresh: str | None = Header(
        None, description=_BACKGROUND_DOC
    ),  # read by the dependency
    principal: Principal = Depends(_refreshable),
) -> SessionOut:
    """One session. ``X-Background-Refresh: 1`` counts the request in the ``background``
    rate-limit class, as for the list."""
    actor = await _actor(request, session_id, principal)
    return SessionOut.of(actor.view(), pending=await actor.pending_permissions())


@router.patch("/{session_id}", response_model=SessionOut, responses=errors(400, 404, 413))
async def update_session(
    request: Request, session_id: str, body: SessionPatch, principal: Principal = Depends(_default)
) -> SessionOut:
    """Change the title (also allowed on terminated sessions: their history stays), the
    model (one of ``GET /v1/models`` when the endpoint lists them), extended thinking or
    the permission mode. The model, thinking and the mode apply between turns and emit
    ``session.updated`` ``{model, thinking, permissionMode}``."""
    changes = body.changes()
    if not changes:
        raise ValidationError(
            "Nothing to change: give title, model, thinking or permissionMode", details={}
        )
    actor = await _actor(request, session_id, principal)
    if body.model is not None:
        listing = await services(request).agent.list_models()
        if listing.source == "endpoint" and listing.get(body.model) is None:
            raise ValidationError(
                f"Unknown model {body.model!r}; GET /v1/models lists the models offered",
                details={"model": body.model, "models": [m.id for m in listing.models]},
            )
    await actor.update(**changes)
    return SessionOut.of(actor.view())


@router.delete("/{session_id}", response_model=SessionStatus, responses=errors(400, 404))
async def delete_session(
    request: Request, session_id: str, principal: Principal = Depends(_default)
) -> SessionStatus:
    """Terminate the sandbox (a running turn is interrupted first); history stays readable.
    Idempotent: deleting a terminated session answers 200 again."""
    actor = await _actor(request, session_id, principal)
    await actor.terminate()
    return SessionStatus(id=actor.id, status=actor.record.status)


@router.post(
    "/{session_id}/messages",
    responses={
        **errors(400, 404, 409, 413, 502),
        **sse(
            "This turn's events, from `session.running` to `session.idle` (a failed turn sends "
            "`error` then `session.idle`). Ids are the session's event seqs, the same as on "
            "`GET .../events`. Leaving the stream does not stop the turn; `interrupt` does."
        ),
    },
)
async def send_message(
    request: Request,
    session_id: str,
    body: MessageSend,
    principal: Principal = Depends(rate_limited("sendMessage")),
) -> StreamingResponse:
    """Send a user message and stream the turn. A paused session resumes first.
    409 ``SESSION_BUSY`` while a turn runs or the sandbox is starting."""
    actor = await _actor(request, session_id, principal)
    follower = actor.events.subscribe()
    try:
        _, running = await actor.send_message(body.content)
    except BaseException:
        follower.close()
        raise
    frames = actor.events.frames(
        running.seq - 1,
        keepalive=services(request).settings.keepalive_seconds,
        until=ev.TURN_END_TYPES,
        follower=follower,
    )
    return _stream(frames)


@router.get("/{session_id}/messages", response_model=MessageList, responses=errors(400, 404))
async def list_messages(
    request: Request,
    session_id: str,
    limit: int | None = Query(None, ge=1, le=1000, description="The newest `limit` messages"),
    before: str | None = Query(None, description="Only messages before this message id"),
    principal: Principal = Depends(_default),
) -> MessageList:
    """The conversation, oldest first. ``hasMore`` says whether older messages exist
    (page back with ``before`` = the first message's id). An assistant message is a
    whole turn; its ``blocks`` (an extension of the contract) give its text and tool
    calls interleaved in the order they streamed, while ``content`` and ``toolCalls``
    hold them apart."""
    actor = await _actor(request, session_id, principal)
    if before is not None:
        before = parse_uuid(before, "before")
    store = services(request).store
    fetched = await store.list_messages(actor.id, limit=limit + 1 if limit else None, before=before)
    has_more = bool(limit) and len(fetched) > (limit or 0)
    if has_more:
        fetched = fetched[1:]
    return MessageList(messages=[MessageOut.of(m) for m in fetched], has_more=has_more)


@router.get(
    "/{session_id}/events",
    responses={
        **errors(400, 404),
        **sse("Stored events after `Last-Event-ID` (or `?after=`), then the live tail."),
    },
)
async def follow_events(
    request: Request,
    session_id: str,
    after: int | None = Query(None, ge=0, description="Replay events with seq greater than this"),
    last_event_id: str | None = Header(None),
    principal: Principal = Depends(_default),
) -> StreamingResponse:
    """Replays events after ``Last-Event-ID`` (header, wins) or ``?after=N``, then follows live
    until the client leaves; ``: keepalive`` comments every 15 s. Without either, only
    the live tail. A follower too slow to keep up gets an ``event: stream.resync`` frame
    (data ``{"lastSeq": N}``) and the stream ends: reconnect with ``Last-Event-ID: N``.
    Partial text is replayed from a bounded memory buffer; after a restart, replay
    comes from the stored (completed) events. After a crash during a turn, seq numbering
    continues 100000 past the last stored event, so ids stay unique."""
    actor = await _actor(request, session_id, principal)
    start: int | None = None  # the live tail only
    if last_event_id is not None:
        if not last_event_id.strip().isdigit():
            raise ValidationError(
                "Last-Event-ID must be a non-negative integer",
                details={"lastEventId": last_event_id},
            )
        start = int(last_event_id)
    elif after is not None:
        start = after
    return _stream(await actor.follow(start))


@router.post("/{session_id}/interrupt", response_model=SessionStatus, responses=errors(400, 404))
async def interrupt(
    request: Request, session_id: str, principal: Principal = Depends(_default)
) -> SessionStatus:
    """Stop the running turn (model stream cancelled, tool processes killed); it ends with
    ``message.complete`` (stopReason ``interrupted``) and ``session.idle``. 200 also when idle."""
    actor = await _actor(request, session_id, principal)
    await actor.interrupt()
    return SessionStatus(id=actor.id, status=actor.record.status)


@router.post(
    "/{session_id}/permissions/{request_id}",
    response_model=PermissionOut,
    responses=errors(400, 404, 409),
)
async def answer_permission(
    request: Request,
    session_id: str,
    request_id: str,
    body: PermissionAnswer,
    principal: Principal = Depends(_default),
) -> PermissionOut:
    """Answer a ``permission.requested`` event (permission mode ``ask``): ``allow`` runs
    the call, ``deny`` gives the model a tool error, ``always`` allows the tool for the
    rest of the session. Any client may answer, also after a disconnect or a server
    restart (a turn cut by a restart is resumed); emits ``permission.answered``.
    Answering again with the same decision is a no-op; a different one is
    409 ``PERMISSION_ALREADY_ANSWERED``; an unknown request 404
    ``PERMISSION_REQUEST_NOT_FOUND``. An interrupt denies a pending request."""
    actor = await _actor(request, session_id, principal)
    request_id = parse_uuid(request_id, "requestId")
    return PermissionOut.model_validate(await actor.answer_permission(request_id, body.decision))


@router.post(
    "/{session_id}/compact", response_model=CompactionOut, responses=errors(400, 404, 409, 502)
)
async def compact(
    request: Request, session_id: str, principal: Principal = Depends(_default)
) -> CompactionOut:
    """Compact the model's context now: older messages are summarised by the model and
    the summary replaces them in what the model gets from the next turn on; clients
    still see the whole transcript. Emits ``context.compacted`` ``{method, automatic,
    tokensBefore, tokensAfter, tokensSaved}`` (the same event as automatic compaction,
    which happens when a call's input passes ``COMPACTION_THRESHOLD`` of the model's
    window). ``compacted: false`` when there is too little to compact. 409 while a turn runs."""
    actor = await _actor(request, session_id, principal)
    data = await actor.compact()
    if data is None:
        return CompactionOut(compacted=False)
    return CompactionOut(
        compacted=True,
        method=data["method"],
        tokens_before=data["tokensBefore"],
        tokens_after=data["tokensAfter"],
        tokens_saved=data["tokensSaved"],
    )


@router.post("/{session_id}/pause", response_model=SessionOut, responses=errors(400, 404, 409, 502))
async def pause(
    request: Request, session_id: str, principal: Principal = Depends(_default)
) -> SessionOut:
    """Snapshot the sandbox and stop it; status ``paused``. 200 when already paused."""
    actor = await _actor(request, session_id, principal)
    await actor.pause()
    return SessionOut.of(actor.view())


@router.post(
    "/{session_id}/resume", response_model=SessionOut, responses=errors(400, 404, 409, 502)
)
async def resume(
    request: Request, session_id: str, principal: Principal = Depends(_default)
) -> SessionOut:
    """Start the sandbox from its snapshot; status ``idle``. 200 when not paused."""
    actor = await _actor(request, session_id, principal)
    await actor.resume()
    return SessionOut.of(actor.view())


@router.get(
    "/{session_id}/files/{path:path}",
    responses={
        **errors(400, 404, 409, 502),
        200: {
            "description": "A directory listing (`FileList`) for a path ending in `/` or empty; else the file's bytes",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["files"],
                        "properties": {
                            "files": {
                                "type": "array",
                                "items": FileEntryOut.model_json_schema(by_alias=True),
                            }
                        },
                    }
                },
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
    },
)
async def files(
    request: Request,
    session_id: str,
    path: str,
    principal: Principal = Depends(rate_limited("files")),
) -> Response:
    """Workspace files. Paths are relative to the workspace root; ``..``, absolute paths and
    symlinks leading out answer 400. A paused session's sandbox is resumed to read it.
    ``.agent-tui/`` (agent-tui's own files: OpenCode's data, service sockets) is never
    listed, and a path in it answers 400 ``VALIDATION_ERROR``."""
    actor = await _actor(request, session_id, principal)
    is_listing = path == "" or path.endswith("/")
    relative = normalize_relative_path(path)
    if is_listing:
        entries = await actor.list_files(relative)
        listing = FileList(
            files=[
                FileEntryOut(name=e.name, path=e.path, is_directory=e.is_directory, size=e.size)
                for e in entries
            ]
        )
        return Response(listing.model_dump_json(by_alias=True), media_type="application/json")
    data = await actor.read_file(relative)
    media_type = mimetypes.guess_type(relative)[0] or _sniff(data)
    return Response(data, media_type=media_type)


@router.get("/{session_id}/files", include_in_schema=False)
async def files_root(
    request: Request, session_id: str, principal: Principal = Depends(rate_limited("files"))
) -> Response:
    return await files(request, session_id, "", principal)


@router.get("/{session_id}/logs", response_model=LogList, responses=errors(400, 404))
async def logs(
    request: Request,
    session_id: str,
    tail: int = Query(100, ge=1, le=1000),
    principal: Principal = Depends(_default),
) -> LogList:
    """Recent agent, sandbox and engine (OpenCode) log lines of the session, for debugging."""
    actor = await _actor(request, session_id, principal)
    return LogList(logs=await actor.logs(tail))


def _sniff(data: bytes) -> str:
    """Text or binary, for files whose name says nothing."""
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain; charset=utf-8"
