"""``/v1/datasets``: upload (streamed multipart) or register raw datasets; list and show datasets.

An upload gets its id first and a row in state ``uploading``; its files go to ``raw/<id>/``; only when
all are stored and the dataset validates does the row become ``ready``. Otherwise the stored files are
deleted and the row is ``failed`` with the reason (shown by ``GET``, never used by a job).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import anyio
from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from emgpose import access
from emgpose.api import Offset
from emgpose.auth_http import require
from emgpose.db.models import Dataset, new_id, utcnow
from emgpose.errors import Conflict, EmgPoseError
from emgpose.jobs import repo
from emgpose.names import DATASET_NAME_MAX, DATASET_NAME_PATTERN, bad_character
from emgpose.settings import Settings
from emgpose.store import open_store
from emgpose_gateway import uploads, validate
from emgpose_gateway.deps import SessionDep, SessionsDep, SettingsDep, StoreDep, database_unavailable
from emgpose_gateway.schemas import (
    DatasetDetail,
    DatasetProcessing,
    DatasetPublic,
    DatasetRegister,
    DatasetsPublic,
    ErrorResponse,
    dataset_detail,
    dataset_public,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

RAW = "raw"
DatasetId = Annotated[str, Path(description="A dataset id from POST or GET /v1/datasets", max_length=32)]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    what = {
        403: "the URI is outside the object store and ALLOWED_DATA_ROOTS",
        404: "no such dataset, or no dataset at a URI inside the allowed roots",
        409: "the URI is already registered",
        413: "a file is over MAX_UPLOAD_MB",
        415: "the body is not multipart/form-data",
        422: "the request or the dataset breaks a rule; the message names the field, file and rule",
        503: "the database or the object store is not reachable",
    }
    return {code: {"model": ErrorResponse, "description": what[code]} for code in codes}


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [uploads.NAME_FIELD, uploads.FILES_FIELD],
                    "properties": {
                        uploads.NAME_FIELD: {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": DATASET_NAME_MAX,
                            "pattern": DATASET_NAME_PATTERN,
                            "example": "lab-2026-11",
                        },
                        uploads.FILES_FIELD: {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "Session files (*.hdf5) and exactly one metadata.csv listing them",
                        },
                    },
                },
                "encoding": {uploads.FILES_FIELD: {"contentType": "application/octet-stream, text/csv"}},
            }
        },
    }
}


# --- upload -------------------------------------------------------------------------------------------


async def _database(settings: Settings, call: Callable[[], T]) -> T:
    """Runs a short transaction in a worker thread; a lost database is a 503 naming it."""
    try:
        return await run_in_threadpool(call)
    except (OperationalError, InterfaceError) as exc:
        raise database_unavailable(settings, exc) from exc


def _start_upload(sessions: sessionmaker[Session], dataset_id: str, uri: str) -> None:
    with sessions.begin() as session:
        session.add(
            Dataset(id=dataset_id, name="", kind=RAW, source="upload", uri=uri, state="uploading", info={}, files=0)
        )


def _end_upload(sessions: sessionmaker[Session], dataset_id: str, **values: Any) -> Dataset:
    with sessions.begin() as session:
        row = repo.get_dataset(session, dataset_id)
        for key, value in values.items():
            setattr(row, key, value)
        row.updated_at = utcnow()
    return row


@router.post(
    "",
    status_code=201,
    response_model=DatasetPublic,
    summary="Upload a raw dataset (multipart: name + files)",
    description="Form field `name` and one `files` part per file: the session files (`*.hdf5`) and exactly "
    "one `metadata.csv` listing them. Files are streamed to the object store (`raw/<id>/`); the dataset is "
    "`ready` once all are stored and validated. `Location` gives its URL.",
    openapi_extra=UPLOAD_BODY,
    responses=_errors(413, 415, 422, 503),
    dependencies=[require("submit")],
)
async def upload_dataset(
    request: Request, response: Response, settings: SettingsDep, store: StoreDep, sessions: SessionsDep
) -> DatasetPublic:
    dataset_id = new_id()
    prefix = store.child(f"{RAW}/{dataset_id}")
    await _database(settings, lambda: _start_upload(sessions, dataset_id, prefix.uri))
    received = uploads.Received()  # filled while the body streams in, so a failure still knows the name
    try:
        await uploads.receive(request, prefix, settings.max_upload_mb, received)
        name = validate.dataset_name(received.name)
        info = await run_in_threadpool(validate.check_upload, prefix, received)
        ready = {"name": name, "state": "ready", "files": len(received.files), "bytes": received.bytes, "info": info}
        row = await _database(settings, lambda: _end_upload(sessions, dataset_id, **ready))
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            await uploads.discard(prefix, list(received.files))
            await _fail_upload(sessions, dataset_id, received, exc)
        raise
    log.info("dataset %s (%s): %d files, %d bytes, ready", dataset_id, name, len(received.files), received.bytes)
    response.headers["Location"] = f"/v1/datasets/{dataset_id}"
    return dataset_public(row)


async def _fail_upload(
    sessions: sessionmaker[Session], dataset_id: str, received: uploads.Received, exc: BaseException
) -> None:
    if isinstance(exc, EmgPoseError):
        message = exc.message
    elif isinstance(exc, HTTPException):  # 408 from BODY_IDLE_TIMEOUT_S, 413 from a body limit
        message = str(exc.detail)
    else:
        message = f"upload interrupted ({type(exc).__name__})"
    name = (received.name or "").strip()[:200]
    name = "" if bad_character(name) else name  # a NUL would not even reach PostgreSQL's text column
    failed = {"name": name, "state": "failed", "files": 0, "bytes": 0, "error": message}
    try:
        await run_in_threadpool(lambda: _end_upload(sessions, dataset_id, **failed))
    except Exception:
        log.warning("dataset %s: could not record the failed upload", dataset_id, exc_info=True)


# --- register, list, show -----------------------------------------------------------------------------


@router.post(
    "/register",
    status_code=201,
    response_model=DatasetPublic,
    summary="Register a raw dataset already in an object store",
    description="Validates the folder the same way as an upload (metadata.csv and every session it lists) "
    "and records it; nothing is copied. The folder must lie below the object store or a root in "
    "ALLOWED_DATA_ROOTS: anywhere else is 403, decided from the URI alone (nothing is looked up there).",
    responses=_errors(403, 404, 409, 422, 503),
    dependencies=[require("admin")],
)
def register_dataset(
    body: DatasetRegister, response: Response, session: SessionDep, settings: SettingsDep
) -> DatasetPublic:
    store = open_store(access.confine(body.uri.strip(), settings, "uri"), settings)  # 403 outside, before any I/O
    existing = session.scalars(select(Dataset).where(Dataset.uri == store.uri, Dataset.kind == RAW)).first()
    if existing is not None and existing.state == "ready":
        raise Conflict(f"{store.uri} is already registered as dataset {existing.id} ({existing.name!r})")
    info = validate.check_registered(store)
    row = Dataset(
        name=body.name.strip(),
        kind=RAW,
        source="registered",
        uri=store.uri,
        state="ready",
        files=info["sessions"] + 1,
        bytes=0,
        info=info,
    )
    session.add(row)
    session.commit()
    response.headers["Location"] = f"/v1/datasets/{row.id}"
    return dataset_public(row)


@router.get("", response_model=DatasetsPublic, summary="List datasets, newest first", responses=_errors(503))
def list_datasets(
    session: SessionDep,
    kind: Annotated[Literal["raw", "preprocessed"] | None, Query(description="raw or preprocessed")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> DatasetsPublic:
    rows, total = repo.list_datasets(session, kind=kind, limit=limit, offset=offset)
    return DatasetsPublic(items=[dataset_public(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get(
    "/{dataset_id}",
    response_model=DatasetDetail,
    summary="One dataset, with its latest preprocess job and that job's output",
    responses=_errors(404, 503),
)
def get_dataset(dataset_id: DatasetId, session: SessionDep) -> DatasetDetail:
    row = repo.get_dataset(session, dataset_id)
    processing = None
    job = repo.latest_job_for(session, row.id, "preprocess") if row.kind == RAW else None
    if job is not None:
        output = repo.find_dataset_by_job(session, job.id)
        processing = DatasetProcessing(
            job_id=job.id,
            job=f"/v1/jobs/{job.id}",
            state=job.state,
            stage=job.stage,
            progress=round(job.progress, 1),
            dataset_id=output.id if output else None,
            dataset=f"/v1/datasets/{output.id}" if output else None,
        )
    return dataset_detail(row, processing)
