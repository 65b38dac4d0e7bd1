"""Liveness (``/healthz``: the process answers) and readiness (``/readyz``: its dependencies answer).

Readiness runs three checks at once, each in a worker thread with its own deadline: the database
(``SELECT 1``), the job broker (Redis: a kombu connection with one retry; the filesystem transport:
a probe file in its queue folder) and the object store (an existence check at its root, which on S3
proves the bucket and the credentials). 200 when all pass, 503 otherwise; the body always reports
each check.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from celery import Celery
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text

from emgpose.jobs.celery_app import filesystem_options
from emgpose.settings import Settings
from emgpose.store import LocalStore, ObjectStore
from emgpose_gateway.deps import SettingsDep, redact
from emgpose_gateway.schemas import Check, Health

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_S = 3.0
PROBE_KEY = "readyz.probe"  # looked up, never written
READY_EXAMPLE = {
    "database": {"ok": True, "ms": 1.2, "target": "postgresql+psycopg://emgpose:***@postgres:5432/emgpose"},
    "broker": {"ok": True, "ms": 0.8, "target": "redis://redis:6379/0"},
    "store": {"ok": True, "ms": 4.1, "target": "s3://emgpose"},
}


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health()


def check_database(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def check_broker(celery: Celery, settings: Settings) -> None:
    if settings.redis_url is None:  # filesystem transport: the queue folder must take a file
        folder = str(filesystem_options(settings.broker_dir)["data_folder_in"])
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".readyz-", suffix=".probe"):
            pass
        return
    with celery.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, timeout=CHECK_TIMEOUT_S)


def check_store(store: ObjectStore) -> None:
    store.exists(PROBE_KEY)  # S3: HEAD on the key, then on the bucket; raises if either is refused
    if isinstance(store, LocalStore):  # created on first write: the nearest existing folder must be writable
        folder = store.root
        while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
            folder = os.path.dirname(folder)
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"{folder} is not writable")


async def _run(check: Callable[[], None], target: str) -> Check:
    start = time.perf_counter()
    error = None
    try:
        with anyio.fail_after(CHECK_TIMEOUT_S):
            await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
    except TimeoutError:
        error = f"no answer within {CHECK_TIMEOUT_S:g} s"
    except Exception as exc:  # any failure is the check's answer
        error = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:500]
    ms = round((time.perf_counter() - start) * 1000, 1)
    return Check(ok=error is None, ms=ms, target=target, error=error)


@router.get(
    "/readyz",
    response_model=dict[str, Check],
    summary="Readiness: database, broker and object store, each with its time and error",
    responses={
        200: {"content": {"application/json": {"example": READY_EXAMPLE}}},
        503: {"model": dict[str, Check], "description": "at least one check failed; `error` says why"},
    },
)
async def readyz(request: Request, settings: SettingsDep) -> JSONResponse:
    state = request.state
    broker = (
        redact(settings.redis_url) if settings.redis_url else f"filesystem://{os.path.abspath(settings.broker_dir)}"
    )
    checks: dict[str, tuple[Callable[[], None], str]] = {
        "database": (lambda: check_database(state.engine), redact(settings.database_url)),
        "broker": (lambda: check_broker(state.celery, settings), broker),
        "store": (lambda: check_store(state.store), state.store.uri),
    }
    results = await asyncio.gather(*(_run(check, target) for check, target in checks.values()))
    body: dict[str, Any] = {name: result.model_dump() for name, result in zip(checks, results, strict=True)}
    return JSONResponse(body, status_code=200 if all(r.ok for r in results) else 503)
