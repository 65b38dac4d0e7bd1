"""Liveness, readiness and metrics. The probes are open; ``/metrics`` needs a ``read`` key where AUTH_ENABLED is on."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from emgpose.auth_http import require
from emgpose_inference.deps import HolderDep, MetricsDep
from emgpose_inference.errors import auth_responses
from emgpose_inference.metrics import CONTENT_TYPE
from emgpose_inference.schemas import ErrorResponse, Health, Readiness, ReloadError, StoreState
from emgpose_inference.state import ModelHolder

router = APIRouter(tags=["operations"])


def readiness(holder: ModelHolder) -> Readiness:
    loaded, failure, store = holder.current, holder.last_error, holder.store_status
    return Readiness(
        ready=holder.ready,
        model=holder.name,
        version=loaded.version if loaded else None,
        task=loaded.bundle.task if loaded else None,
        loaded_at=loaded.loaded_at if loaded else None,
        reload_interval_s=holder.interval,
        store=StoreState(
            uri=holder.registry.store.uri, reachable=store.reachable, checked_at=store.checked_at, error=store.error
        ),
        last_reload_error=ReloadError(**failure.as_dict()) if failure else None,
        detail=None if holder.ready else holder.unavailable_reason(),
    )


@router.get("/healthz", response_model=Health, summary="Liveness: 200 while the process runs")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: 200 when a model is loaded and the store is reachable, else 503 (same body)",
    responses={503: {"model": Readiness, "description": "not ready; `detail` says why"}},
)
async def readyz(holder: HolderDep) -> JSONResponse:
    state = readiness(holder)
    return JSONResponse(state.model_dump(mode="json"), status_code=200 if state.ready else 503)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics (text exposition format 0.0.4)",
    responses={200: {"content": {CONTENT_TYPE: {}}}} | auth_responses(ErrorResponse),
    dependencies=[require("read")],
)
async def metrics(registry: MetricsDep) -> PlainTextResponse:
    return PlainTextResponse(registry.render(), media_type=CONTENT_TYPE)
