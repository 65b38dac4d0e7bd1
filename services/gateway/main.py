"""The gateway: ``uvicorn emgpose_gateway.main:app --host 0.0.0.0 --port 8000``.

Importing this module does no I/O: :func:`create_app` only reads settings. The lifespan opens what lives
as long as the process (STYLE.md, habit 11): the database engine and session factory, the Celery app
(the gateway only sends tasks), a pooled ``httpx.AsyncClient`` for the inference service, the
object store with its model registry, and the job reaper's thread (:mod:`emgpose.jobs.reaper`). The
schema comes from the migrations (``emgpose db upgrade``, the compose ``migrate`` step), never from
this process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import httpx
from celery import Celery
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import sessionmaker

import emgpose
from emgpose.api import BodyIdleTimeout, document_errors, install_http_errors
from emgpose.api_docs import install_offline_docs
from emgpose.auth_http import AuthGate, make_verifier, require
from emgpose.db.engine import get_engine
from emgpose.errors import EmgPoseError
from emgpose.jobs.celery_app import make_celery
from emgpose.jobs.reaper import Reaper
from emgpose.logs import RequestIdMiddleware, server_log_format, setup_logging
from emgpose.metrics import MetricsMiddleware
from emgpose.settings import Settings, get_settings
from emgpose.store import open_store
from emgpose.train.bundle import Registry
from emgpose_gateway import metrics as gateway_metrics
from emgpose_gateway.deadline import DatabaseDeadline, end_database_use, mark_database_use
from emgpose_gateway.deps import redact
from emgpose_gateway.routes import (
    datasets,
    health,
    job_outputs,
    jobs,
    keys,
    model_files,
    models,
    predict,
    sessions,
    stream_proxy,
    web,
)
from emgpose_gateway.schemas import ErrorResponse

log = logging.getLogger(__name__)

OPEN_PATHS = ("/healthz", "/readyz", *web.PAGE_PATHS)  # all else needs an API key when AUTH_ENABLED is on
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorResponse,
        "description": "no API key, or one that is malformed, unknown or revoked (`WWW-Authenticate: Bearer`)",
    },
    403: {
        "model": ErrorResponse,
        "description": "the key's scope is too low: `read` for GETs, `submit` for jobs, uploads and predictions, "
        "`admin` to promote models, register datasets and manage keys; the message names the scope needed",
    },
}
BROKER_TIMEOUT_S = 3.0  # connecting to or writing to Redis; a send retries twice more, then the job fails
DEADLINE_MARGIN_S = 1.0  # a database request is answered 503 after DB_TIMEOUT_S + this (deadline.py)
UNAVAILABLE = "the database, the job broker, the object store or the inference service is not reachable now"

DESCRIPTION = """\
REST entry point of emgpose: upload or register datasets, submit, poll and cancel preprocess, train and
evaluate jobs, browse and promote model versions, and get joint angles from EMG (forwarded to the
inference service). Every error (4xx, 5xx) is `{"detail": "<what was wrong and what would be right>"}`;
request validation errors (422) add `errors`: `[{"loc": [...], "msg": ..., "type": ...}]`, one per bad
field, and their `detail` names those fields. A request body that stops arriving for `BODY_IDLE_TIMEOUT_S`
is answered 408.

Where `AUTH_ENABLED` is on (compose and `emgpose up` turn it on), every route but `/healthz` and `/readyz`
needs `Authorization: Bearer <API key>`: scope `read` for GETs, `submit` for jobs, uploads and
predictions, `admin` to promote models, register datasets and manage keys (`/v1/keys`).
"""

TAGS = [
    {"name": "datasets", "description": "Raw recordings (uploaded or registered) and preprocessed datasets"},
    {"name": "jobs", "description": "Preprocess, train and evaluate jobs: submit, poll, cancel"},
    {"name": "models", "description": "Model versions in the registry and the `latest` pointer"},
    {"name": "predict", "description": "Joint angles from EMG, forwarded to the inference service"},
    {"name": "keys", "description": "API keys: create (shown once), list (never the secret), revoke; admin only"},
    {"name": "health", "description": "Liveness and readiness"},
]


def gateway_celery(settings: Settings) -> Celery:
    """The shared Celery app, with sends that give up quickly when the broker is down (503, not a hang)."""
    app = make_celery("emgpose-gateway", settings)
    app.conf.task_publish_retry_policy = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5}
    app.conf.broker_connection_timeout = BROKER_TIMEOUT_S
    if settings.redis_url is not None:
        app.conf.broker_transport_options = {
            **app.conf.broker_transport_options,
            "socket_connect_timeout": BROKER_TIMEOUT_S,
            "socket_timeout": BROKER_TIMEOUT_S,
        }
    return app


def inference_client(settings: Settings) -> httpx.AsyncClient:
    timeout = httpx.Timeout(settings.inference_timeout_s, connect=min(5.0, settings.inference_timeout_s))
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0)
    return httpx.AsyncClient(base_url=settings.inference_url, timeout=timeout, limits=limits)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    settings: Settings = app.state.settings
    setup_logging(settings.log_level, settings.log_format)
    engine = get_engine(settings.database_url)
    celery = gateway_celery(settings)
    store = open_store(settings.store_uri, settings)
    inference = inference_client(settings)
    reaper = Reaper(celery, settings).start()  # sends again what dead workers and lost messages left
    log.info("gateway up: store %s, broker %s, inference %s", store.uri, settings.broker_url, settings.inference_url)
    try:
        yield {
            "engine": engine,
            "sessions": sessionmaker(engine, expire_on_commit=False),
            "celery": celery,
            "store": store,
            "registry": Registry(store),
            "inference": inference,
        }
    finally:
        await anyio.to_thread.run_sync(reaper.stop)
        await inference.aclose()
        celery.close()


async def project_error(request: Request, exc: EmgPoseError) -> JSONResponse:
    """Every :class:`~emgpose.errors.EmgPoseError`: its status, ``{"detail": message}``."""
    if exc.status >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status, exc.message)
    return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=exc.headers or None)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette logs the traceback after this handler answers; the client gets JSON, not a text page.
    return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the gateway log"}, status_code=500)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The gateway application; ``settings`` default to the environment's (read here, nothing opened)."""
    settings = settings or get_settings()
    server_log_format(settings.log_format)
    app = FastAPI(
        title="emgpose gateway",
        version=emgpose.__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        docs_url=None,  # served offline below (emgpose.api_docs)
        redoc_url=None,
    )
    app.state.settings = settings
    install_offline_docs(app)
    app.add_exception_handler(EmgPoseError, project_error)
    app.add_exception_handler(Exception, unexpected_error)
    deadline_s = settings.db_timeout_s + DEADLINE_MARGIN_S
    # API keys (AUTH_ENABLED): AuthGate refuses a request without a valid key before its body is read;
    # each router needs at least the scope below, and routes that write ask for more (emgpose.auth).
    app.state.verifier = make_verifier(settings)
    # A key read from the database runs under the deadline, which ends with the lookup.
    app.state.before_key_lookup, app.state.after_key_lookup = mark_database_use, end_database_use
    app.add_middleware(
        AuthGate,
        verifier=app.state.verifier,
        open_paths=OPEN_PATHS,
        before_lookup=mark_database_use,
        after_lookup=end_database_use,
    )
    app.add_middleware(DatabaseDeadline, deadline_s=deadline_s, database=redact(settings.database_url))
    app.add_middleware(BodyIdleTimeout, timeout_s=settings.body_idle_timeout_s)
    install_http_errors(app)  # validation errors, 404/405/408/413 and client disconnects in the one shape
    app.state.metrics = gateway_metrics.GatewayMetrics()
    app.add_middleware(RequestIdMiddleware)  # X-Request-ID on log lines, forwarded to inference, answered
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # outermost: counts refusals too
    routers = ((datasets, "read"), (sessions, "read"), (jobs, "read"), (models, "read"), (model_files, "read"))
    routers += ((job_outputs, "read"),)
    routers += ((predict, "submit"), (keys, "admin"), (web, "read"), (gateway_metrics, "read"))
    for module, scope in routers:
        app.include_router(module.router, dependencies=[require(scope)], responses=AUTH_RESPONSES)
    app.include_router(stream_proxy.router)  # WebSocket: checks its key itself (the stream protocol's errors)
    app.include_router(web.page)  # the web page and its files: open, the page asks for a key
    app.include_router(health.router)  # open: probes call /healthz and /readyz without a key
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI's document with every error status each operation can answer (:func:`document_errors`):
    500 everywhere, 503 wherever the database, the store, the broker or inference is involved (all but
    liveness), 408 and 422 where a body or parameters are read."""
    generate = app.openapi

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for path, item in schema.get("paths", {}).items():
                for operation in item.values():
                    if path != "/healthz":
                        operation.setdefault("responses", {}).setdefault("503", {"description": UNAVAILABLE})
            app.openapi_schema = document_errors(schema)
        return app.openapi_schema

    return build


app = create_app()
