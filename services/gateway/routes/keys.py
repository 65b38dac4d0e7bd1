"""``/v1/keys``: create, list and revoke API keys (scope ``admin``, given where ``main`` includes the router).

The same operations as ``emgpose keys`` on the server. A new key is in the 201 answer and nowhere else;
lists never show a secret or its hash. Revoking takes effect at once in this gateway and within
``AUTH_CACHE_S`` in other processes that have verified the key recently (the inference service).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from emgpose import auth
from emgpose_gateway.deps import SessionDep, SettingsDep
from emgpose_gateway.schemas import ErrorResponse, KeyCreate, KeyCreated, KeyPublic, KeysPublic

router = APIRouter(prefix="/v1/keys", tags=["keys"])

KeyId = Annotated[str, Path(description="A key id from GET /v1/keys", max_length=auth.ID_HEX)]
ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "an unknown scope, a name over 100 characters, not a key id"},
    503: {"model": ErrorResponse, "description": "the database is not reachable, or AUTH_PEPPER is not set"},
}


@router.post(
    "",
    status_code=201,
    response_model=KeyCreated,
    summary="Create an API key (the key is in this answer only)",
    responses=ERRORS,
)
def create_key(body: KeyCreate, session: SessionDep, settings: SettingsDep) -> KeyCreated:
    row, key = auth.create_key(session, auth.pepper_bytes(settings.auth_pepper), body.scope, body.name)
    session.commit()
    return KeyCreated.model_validate({**auth.describe(row), "key": key})


@router.get("", response_model=KeysPublic, summary="Every API key, without secrets", responses={503: ERRORS[503]})
def list_keys(session: SessionDep) -> KeysPublic:
    items = [KeyPublic.model_validate(auth.describe(row)) for row in auth.list_keys(session)]
    return KeysPublic(items=items, total=len(items))


@router.post(
    "/{key_id}/revoke",
    response_model=KeyPublic,
    summary="Revoke an API key (again is no error)",
    description="The key is refused from now on by this gateway and within AUTH_CACHE_S by the inference "
    "service. Keys are never deleted, so the jobs they submitted keep naming them.",
    responses={404: {"model": ErrorResponse, "description": "no such key"}} | ERRORS,
)
def revoke_key(key_id: KeyId, request: Request, session: SessionDep) -> KeyPublic:
    row = auth.revoke_key(session, key_id)
    session.commit()
    verifier: auth.Verifier | None = request.app.state.verifier
    if verifier is not None:
        verifier.forget(row.id)
    return KeyPublic.model_validate(auth.describe(row))
