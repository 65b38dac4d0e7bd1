"""``/v1/models``: the registry in the object store (the source of truth) joined with the
``model_versions`` rows train jobs wrote (which job made a version). Promoting moves ``latest``; the
inference service follows it. Rolling back is promoting an older version.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from emgpose.api import Offset
from emgpose.auth_http import require
from emgpose.db.models import ModelVersion
from emgpose.errors import NotFound
from emgpose.train.bundle import META_FILE, MODELS, Registry, check_name
from emgpose_gateway.deps import RegistryDep, SessionDep
from emgpose_gateway.schemas import (
    BundlePublic,
    ErrorResponse,
    ModelDetail,
    ModelsPublic,
    ModelSummary,
    ModelVersionSummary,
    PromoteRequest,
    PromoteResult,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/models", tags=["models"])

Name = Annotated[str, Path(description="Model name", max_length=64, examples=["emgpose"])]
Version = Annotated[str, Path(description="A version, or `latest`", max_length=64)]
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "no such model or version"},
    422: {"model": ErrorResponse, "description": "not a valid model name"},
    503: {"model": ErrorResponse, "description": "the object store is not reachable"},
}


def _bundle(registry: Registry, name: str, version: str) -> dict[str, Any]:
    """``bundle.json`` of a complete version (one read; no ``latest`` lookup)."""
    return json.loads(registry.store.get_bytes(f"{MODELS}/{name}/{version}/{META_FILE}"))


def _job_ids(session: Session, name: str) -> dict[str, str | None]:
    """Version -> the train job that published it. Lineage only: without the database the registry still answers."""
    try:
        rows = session.execute(select(ModelVersion.version, ModelVersion.job_id).where(ModelVersion.name == name))
        return {version: job_id for version, job_id in rows}
    except SQLAlchemyError as exc:
        log.warning("model %s: no job lineage (%s)", name, exc)
        session.rollback()
        return {}


def _known(registry: Registry, name: str) -> tuple[list[str], str | None]:
    check_name(name)
    versions, latest = registry.versions(name), registry.latest(name)
    if not versions and latest is None:
        raise NotFound(f"no model {name!r} (models: {registry.names() or 'none'})")
    return versions, latest


@router.get("", response_model=ModelsPublic, summary="Models with their latest version and its headline metrics")
def list_models(registry: RegistryDep) -> ModelsPublic:
    items = []
    for name in registry.names():
        versions, latest = registry.versions(name), registry.latest(name)
        meta = _bundle(registry, name, latest) if latest else {}
        items.append(
            ModelSummary(
                name=name,
                latest=latest,
                versions=len(versions),
                task=meta.get("task"),
                created=meta.get("created"),
                metrics=meta.get("metrics") or {},
            )
        )
    return ModelsPublic(items=items, total=len(items))


@router.get("/{name}", response_model=ModelDetail, summary="Versions of a model, newest first", responses=ERRORS)
def get_model(
    name: Name,
    session: SessionDep,
    registry: RegistryDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> ModelDetail:
    versions, latest = _known(registry, name)
    jobs = _job_ids(session, name)
    items = []
    for version in list(reversed(versions))[offset : offset + limit]:
        meta = _bundle(registry, name, version)
        items.append(
            ModelVersionSummary(
                version=version,
                latest=version == latest,
                task=meta.get("task"),
                created=meta.get("created"),
                metrics=meta.get("metrics") or {},
                job_id=jobs.get(version),
                url=f"/v1/models/{name}/versions/{version}",
            )
        )
    return ModelDetail(name=name, latest=latest, items=items, total=len(versions))


@router.get(
    "/{name}/versions/{version}",
    response_model=BundlePublic,
    summary="A version's bundle.json (preprocessing, statistics, metrics, lineage), plus latest and job_id",
    responses=ERRORS,
)
def get_version(name: Name, version: Version, session: SessionDep, registry: RegistryDep) -> BundlePublic:
    check_name(name)
    meta = registry.meta(name, version)
    return BundlePublic.model_validate({**meta, "job_id": _job_ids(session, name).get(meta["version"])})


@router.post(
    "/{name}/promote",
    response_model=PromoteResult,
    summary="Point `latest` at a version (also the rollback)",
    responses=ERRORS,
    dependencies=[require("admin")],
)
def promote(name: Name, body: PromoteRequest, registry: RegistryDep) -> PromoteResult:
    check_name(name)
    previous = registry.latest(name)
    version = registry.resolve(name, body.version)
    registry.promote(name, version)
    log.info("model %s: latest %s -> %s", name, previous, version)
    return PromoteResult(name=name, latest=version, previous=previous)
