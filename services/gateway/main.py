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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import httpx
from celery import Celery
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import sessionmaker

import emgpose
from emgpose.db.engine import get_engine
from emgpose.errors import EmgPoseError
from emgpose.jobs.celery_app import make_celery
from emgpose.jobs.reaper import Reaper
from emgpose.logs import setup_logging
from emgpose.settings import Settings, get_settings
from emgpose.store import open_store
from emgpose.train.bundle import Registry
from emgpose_gateway.deadline import DatabaseDeadline
from emgpose_gateway.deps import redact
from emgpose_gateway.routes import datasets, health, jobs, models, predict

log = logging.getLogger(__name__)

BROKER_TIMEOUT_S = 3.0  # connecting to or writing to Redis; a send retries twice more, then the job fails
DEADLINE_MARGIN_S = 1.0  # a database request is answered 503 after DB_TIMEOUT_S + this (deadline.py)

DESCRIPTION = """\
REST entry point of emgpose: upload or register datasets, submit, poll and cancel preprocess, train and
evaluate jobs, browse and promote model versions, and get joint angles from EMG (forwarded to the
inference service). Errors are `{"detail": "<what was wrong and what would be right>"}`; request
validation errors are FastAPI's `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`.
"""

TAGS = [
    {"name": "datasets", "description": "Raw recordings (uploaded or registered) and preprocessed datasets"},
    {"name": "jobs", "description": "Preprocess, train and evaluate jobs: submit, poll, cancel"},
    {"name": "models", "description": "Model versions in the registry and the `latest` pointer"},
    {"name": "predict", "description": "Joint angles from EMG, forwarded to the inference service"},
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
    setup_logging(settings.log_level)
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
    return JSONResponse({"detail": exc.message}, status_code=exc.status)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette logs the traceback after this handler answers; the client gets JSON, not a text page.
    return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the gateway log"}, status_code=500)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The gateway application; ``settings`` default to the environment's (read here, nothing opened)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="emgpose gateway",
        version=emgpose.__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_exception_handler(EmgPoseError, project_error)
    app.add_exception_handler(Exception, unexpected_error)
    deadline_s = settings.db_timeout_s + DEADLINE_MARGIN_S
    app.add_middleware(DatabaseDeadline, deadline_s=deadline_s, database=redact(settings.database_url))
    for module in (datasets, jobs, models, predict, health):
        app.include_router(module.router)
    return app


app = create_app()
