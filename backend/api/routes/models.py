"""``/v1/models``: the models a session can use."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from backend.api.deps import Principal, rate_limited, services
from backend.api.routes.responses import errors
from backend.schemas import ModelList, ModelOut

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelList, responses=errors())
async def list_models(
    request: Request, principal: Principal = Depends(rate_limited("default"))
) -> ModelList:
    """The models the configured endpoint offers (its ``GET /v1/models``, cached for
    ``MODELS_CACHE_SECONDS``), with what each supports; ``source`` is ``configured``
    when the endpoint has no models route and ``ANTHROPIC_MODELS`` is offered instead.
    A session's model is changed with ``PATCH /v1/sessions/{id}`` ``{"model": ...}``."""
    svc = services(request)
    listing = await svc.agent.list_models()
    return ModelList(
        models=[ModelOut.model_validate(m.to_json()) for m in listing.models],
        default=svc.settings.anthropic_model,
        source=listing.source,
    )
