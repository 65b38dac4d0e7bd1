"""The inference app: ``uvicorn emgpose_inference.main:app --host 0.0.0.0 --port 8001``.

:func:`create_app` reads the settings once and builds the app without I/O; the lifespan opens the
object store, starts the model watcher (whose first check loads the ``latest`` version) and waits up
to :data:`STARTUP_WAIT_S` for that first check, so a published model is served from the first request.
If none is published, or the store is slow, the service starts anyway and says so in ``/readyz``.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from emgpose.api import BodyIdleTimeout, document_errors
from emgpose.api_docs import install_offline_docs
from emgpose.auth_http import AuthGate, make_verifier, require
from emgpose.logs import RequestIdMiddleware, server_log_format, setup_logging
from emgpose.settings import Settings, get_settings
from emgpose.store import open_store
from emgpose.train.bundle import Registry, check_name
from emgpose_inference import __version__, routes_ops, routes_v1, routes_v2, stream
from emgpose_inference.admission import MIB, MemoryBudget
from emgpose_inference.errors import OIP_PREFIX, auth_responses, install_error_handlers
from emgpose_inference.infer import Runner
from emgpose_inference.limits import BodyLimitMiddleware
from emgpose_inference.metrics import Metrics, MetricsMiddleware
from emgpose_inference.schemas import ErrorResponse, InferRequest, OipError, PredictRequest
from emgpose_inference.state import ModelHolder

log = logging.getLogger(__name__)

STARTUP_WAIT_S = 30.0
OPEN_PATHS = ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready")  # probes; all else needs a key
DESCRIPTION = (
    "Joint angles (or gesture probabilities) from raw surface EMG, with the preprocessing the model was "
    "trained with. Serves the `latest` version of one model and swaps in new versions without downtime. "
    "`/v1/predict` (JSON or float32 body), `/v1/stream` (WebSocket, see the service README), and the "
    "Open Inference Protocol under `/v2`. Where `AUTH_ENABLED` is on, every route but the health probes "
    "needs `Authorization: Bearer <API key>` (the gateway's keys): scope `submit` to predict, infer and "
    "stream, `read` for metadata and `/metrics`."
)


def configure_logging(level: str, fmt: str = "text") -> None:
    """Our loggers at ``LOG_LEVEL``; a root handler in ``LOG_FORMAT`` only where the server set up none
    (uvicorn sets up its own, which JSON reformats: :func:`emgpose.logs.setup_logging`)."""
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        value = logging.INFO
    root_level = logging.getLogger().level
    setup_logging(logging.getLevelName(root_level), fmt)  # the root's level stays what it was
    for name in ("emgpose", "emgpose_inference"):
        logging.getLogger(name).setLevel(value)


def _lifespan(settings: Settings, metrics: Metrics) -> Callable[[FastAPI], AbstractAsyncContextManager[Any]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        configure_logging(settings.log_level, settings.log_format)
        registry = Registry(open_store(settings.store_uri, settings))
        holder = ModelHolder(registry, settings.model_name, settings.reload_interval_s, metrics)
        holder.start()
        if not await anyio.to_thread.run_sync(holder.wait_first_check, STARTUP_WAIT_S):
            log.warning(
                "the first check of %s took over %.0f s; starting without a model", registry.store, STARTUP_WAIT_S
            )
        log.info(
            "inference for model %s from %s: %s",
            settings.model_name,
            registry.store.uri,
            f"serving {holder.current.version}" if holder.current else holder.unavailable_reason(),
        )
        # What startup made (libraries, the model) lives as long as the process: out of the collector's
        # scans, the full collections that load brings stop pausing every request for ~100 ms.
        gc.collect()
        gc.freeze()
        runner = Runner(
            metrics, batch_max_windows=settings.batch_max_windows, batch_max_wait_s=settings.batch_max_wait_ms / 1000
        )
        try:
            yield {"holder": holder, "runner": runner}
        finally:
            await runner.batcher.close()
            await anyio.to_thread.run_sync(holder.stop)

    return lifespan


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The generated schema plus the request bodies the routes read themselves (JSON or binary)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _, defs = models_json_schema(
                [(PredictRequest, "validation"), (InferRequest, "validation")],
                ref_template="#/components/schemas/{model}",
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in defs.get("$defs", {}).items():
                components.setdefault(name, definition)
            app.openapi_schema = document_errors(schema, always=(500, 503), model=_error_model)
        return app.openapi_schema

    return build


def _error_model(path: str) -> str:
    return f"#/components/schemas/{OipError.__name__ if path.startswith(OIP_PREFIX) else ErrorResponse.__name__}"


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for ``settings`` (default: the environment, read now); loading happens in the lifespan."""
    settings = settings or get_settings()
    check_name(settings.model_name)
    server_log_format(settings.log_format)
    metrics = Metrics()
    app = FastAPI(
        title="emgpose inference",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan(settings, metrics),
        docs_url=None,  # served offline below (emgpose.api_docs)
        redoc_url=None,
    )
    install_offline_docs(app)
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app)
    # API keys (AUTH_ENABLED), the same as the gateway's: AuthGate refuses a request without a valid key
    # before its body is read; routes ask for their scope (submit to predict, read for metadata and
    # metrics). Verified keys are remembered for AUTH_CACHE_S, so most requests read no database.
    app.state.verifier = make_verifier(settings)
    for module in (routes_ops, stream, routes_v2):
        app.include_router(module.router)
    app.include_router(routes_v1.router, dependencies=[require("submit")], responses=auth_responses(ErrorResponse))
    app.add_middleware(BodyLimitMiddleware, max_bytes=int(settings.max_request_mb * 2**20))
    app.add_middleware(BodyIdleTimeout, timeout_s=settings.body_idle_timeout_s)  # a silent body is cut (408)
    app.state.budget = MemoryBudget(int(settings.predict_memory_mb * MIB))  # what predictions may hold at once
    app.add_middleware(AuthGate, verifier=app.state.verifier, open_paths=OPEN_PATHS)
    app.add_middleware(RequestIdMiddleware)  # X-Request-ID (the gateway's, or a new one) on log lines and answers
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: counts refusals too
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    return app


app = create_app()
