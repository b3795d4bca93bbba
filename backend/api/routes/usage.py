"""``/v1/usage``: the user's usage by event type and by day."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request

from backend.api.deps import Principal, parse_uuid, rate_limited, services
from backend.api.routes.responses import errors
from backend.errors import SessionNotFound, ValidationError
from backend.schemas import UsageDay, UsageOut

router = APIRouter(prefix="/v1", tags=["usage"])


@router.get("/usage", response_model=UsageOut, responses=errors(400, 404))
async def usage(
    request: Request,
    start: datetime | None = Query(None, alias="from", description="Inclusive, ISO 8601"),
    end: datetime | None = Query(None, alias="to", description="Exclusive, ISO 8601"),
    session_id: str | None = Query(None, alias="sessionId"),
    principal: Principal = Depends(rate_limited("default")),
) -> UsageOut:
    """Usage summed by event type (``session.created``, ``message.sent``, ``tokens.input``,
    ``tokens.output``, ``tokens.cache_read``, ``sandbox.seconds``) and by UTC day."""
    svc = services(request)
    if start and end and start >= end:
        raise ValidationError("`from` must be before `to`")
    if session_id is not None:
        session_id = parse_uuid(session_id, "sessionId")
        record = await svc.store.get_session(session_id)
        if record is None or record.user_id != principal.user_id:
            raise SessionNotFound(details={"sessionId": session_id})
    summary = await svc.store.usage_summary(
        principal.user_id, start=start, end=end, session_id=session_id
    )
    return UsageOut(
        by_type=summary.by_type,
        by_day=[
            UsageDay(date=d["date"], event_type=d["eventType"], quantity=d["quantity"])
            for d in summary.by_day
        ],
    )
