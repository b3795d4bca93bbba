"""``/v1/keys``: list, create (admin), revoke (admin)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from backend.api.deps import Principal, parse_uuid, rate_limited, require_admin, services
from backend.api.routes.responses import errors
from backend.auth import create_api_key
from backend.errors import KeyNotFound
from backend.records import utcnow
from backend.schemas import KeyCreate, KeyCreated, KeyList, KeyOut

router = APIRouter(prefix="/v1/keys", tags=["keys"])
_limited = rate_limited("default")


@router.get("", response_model=KeyList, responses=errors())
async def list_keys(request: Request, principal: Principal = Depends(_limited)) -> KeyList:
    """Keys of the caller's user, revoked ones included; never the key itself."""
    keys = await services(request).store.list_keys(principal.user_id)
    return KeyList(keys=[KeyOut.of(k) for k in keys])


@router.post("", status_code=201, response_model=KeyCreated, responses=errors(400, 403, 413))
async def create_key(
    request: Request, body: KeyCreate, principal: Principal = Depends(_limited)
) -> KeyCreated:
    """Admin scope. Creates a key for the caller's user; ``key`` is shown this once."""
    require_admin(principal)
    record, key = await create_api_key(
        services(request).store,
        user_id=principal.user_id,
        name=body.name,
        scopes=list(body.scopes),
        environment=body.environment,
        expires_at=body.expires_at,
    )
    return KeyCreated(**KeyOut.of(record).model_dump(), key=key)


@router.delete("/{key_id}", response_model=KeyOut, responses=errors(400, 403, 404))
async def revoke_key(
    request: Request, key_id: str, principal: Principal = Depends(_limited)
) -> KeyOut:
    """Admin scope. Revokes a key of the caller's user; idempotent (revoking twice is 200)."""
    require_admin(principal)
    key_id = parse_uuid(key_id, "keyId")
    svc = services(request)
    key = await svc.store.get_key(key_id)
    if key is None or key.user_id != principal.user_id:
        raise KeyNotFound(details={"keyId": key_id})
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await svc.store.revoke_key(key_id, key.revoked_at)
    svc.verifier.forget(key_id)
    return KeyOut.of(key)
