"""``/v1/jobs/{id}/outputs``: the files a finished predict job wrote (per-session CSV/Parquet, summary.json).

Only the files the job's result lists are served, read from the object store under ``predictions/<id>/``,
so a request can name nothing else in the store. The outputs of a job that has not succeeded are not
served: until ``summary.json`` is written and the job finished they may be incomplete (409).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from emgpose.errors import Conflict, NotFound
from emgpose.jobs import repo
from emgpose.jobs.predict import output_prefix
from emgpose.store import ObjectStore
from emgpose_gateway.deps import SessionDep, StoreDep
from emgpose_gateway.schemas import ErrorResponse

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(description="A job id from POST or GET /v1/jobs", max_length=32)]
MEDIA_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet", "json": "application/json"}
CHUNK = 1 << 20
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "no such job, or no such file among its outputs"},
    409: {"model": ErrorResponse, "description": "the job is not a predict job or has not succeeded"},
    503: {"model": ErrorResponse, "description": "the database or the object store is not reachable"},
}


class OutputFile(BaseModel):
    name: str
    url: str


class JobOutputs(BaseModel):
    job: str
    prefix: str
    files: list[OutputFile]


def _files(session: Session, job_id: str) -> list[str]:
    job = repo.get_job(session, job_id)
    if job.type != "predict":
        raise Conflict(f"job {job_id} is a {job.type} job; only predict jobs have downloadable outputs")
    if job.state != "succeeded":
        raise Conflict(f"job {job_id} is {job.state}: its outputs are served once it has succeeded")
    return list(job.result.get("files") or [])


@router.get("/{job_id}/outputs", response_model=JobOutputs, summary="A predict job's output files", responses=ERRORS)
def list_outputs(job_id: JobId, session: SessionDep, store: StoreDep) -> JobOutputs:
    names = _files(session, job_id)
    files = [OutputFile(name=n, url=f"/v1/jobs/{job_id}/outputs/{n}") for n in names]
    return JobOutputs(job=job_id, prefix=store.url(output_prefix(job_id)), files=files)


def _stream(store: ObjectStore, key: str) -> Iterator[bytes]:
    with store.open_read(key) as fh:
        while block := fh.read(CHUNK):
            yield block


@router.get(
    "/{job_id}/outputs/{file:path}",
    summary="One output file of a predict job: summary.json, <session>.csv or <session>.parquet",
    response_class=StreamingResponse,
    responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}} | ERRORS,
)
def get_output(
    job_id: JobId,
    file: Annotated[str, Path(description="A name from GET /v1/jobs/{id}/outputs", max_length=1024)],
    session: SessionDep,
    store: StoreDep,
) -> StreamingResponse:
    names = _files(session, job_id)
    if file not in names:
        raise NotFound(f"job {job_id} wrote no file {file!r}; GET /v1/jobs/{job_id}/outputs lists its {len(names)}")
    key = f"{output_prefix(job_id)}/{file}"
    if not store.exists(key):
        raise NotFound(f"{store.url(key)} is gone from the object store (removed after job {job_id} finished)")
    media = MEDIA_TYPES[file.rpartition(".")[2]]
    return StreamingResponse(_stream(store, key), media_type=media, headers={"Cache-Control": "private, max-age=3600"})
