"""``/v1/jobs``: submit (202 + ``Location``), poll, list and cancel preprocess, train, evaluate, benchmark and
predict jobs.

A submission is checked before anything is queued: the body against :data:`JobCreate` (unknown fields
refused), the training settings against ``BoostConfig``, and the references it names (the dataset
exists and is of the kind the job needs; an evaluated model exists). The job row is committed, then its
task is sent; a broker that cannot take it fails the job and answers 503. ``Idempotency-Key`` makes a
retried submission return the first job instead of queuing a second.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from celery import Celery
from fastapi import APIRouter, Body, Header, Path, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.orm import Session

from emgpose import access
from emgpose.api import Offset
from emgpose.auth import ApiKeyInfo
from emgpose.auth_http import require
from emgpose.db.models import Job, utcnow
from emgpose.errors import Conflict, NotFound, Unavailable
from emgpose.formats.metadata import METADATA_FILE
from emgpose.jobs import predict as predict_job
from emgpose.jobs import repo, units
from emgpose.jobs.celery_app import send
from emgpose.jobs.schemas import (
    BenchmarkJob,
    EvaluateJob,
    JobPublic,
    JobsPublic,
    JobState,
    JobType,
    PredictJob,
    PreprocessJob,
    TrainJob,
    public,
)
from emgpose.settings import Settings
from emgpose.store import open_store
from emgpose.train.bundle import parse_model_ref
from emgpose_gateway.deps import CeleryDep, SessionDep, SettingsDep, redact
from emgpose_gateway.schemas import ErrorResponse
from emgpose_gateway.validate import SUMMARY_FILE

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(description="A job id from POST or GET /v1/jobs", max_length=32)]
NEEDS = {"preprocess": "raw", "train": "preprocessed", "evaluate": "preprocessed", "benchmark": "raw"}
MARKER = {"raw": METADATA_FILE, "preprocessed": SUMMARY_FILE}  # the file that marks each kind at a URI

EXAMPLES = {
    "preprocess": {
        "summary": "Preprocess an uploaded dataset",
        "value": {"type": "preprocess", "params": {"dataset": "3f2a9c0e5b7d4e1f8a6b2c3d4e5f6a7b"}},
    },
    "preprocess-config": {
        "summary": "Preprocess with other windows (a dataset id, or a location inside ALLOWED_DATA_ROOTS)",
        "value": {
            "type": "preprocess",
            "params": {
                "dataset": "3f2a9c0e5b7d4e1f8a6b2c3d4e5f6a7b",
                "config": {"window": {"length": "150ms", "stride": "30ms"}},
            },
        },
    },
    "train": {
        "summary": "Train on a preprocessed dataset",
        "value": {
            "type": "train",
            "params": {"dataset": "7c1e2d3f4a5b6c7d8e9f0a1b2c3d4e5f", "name": "hand", "config": {"num_rounds": 300}},
        },
    },
    "evaluate": {
        "summary": "Evaluate a model version on another preprocessed dataset",
        "value": {
            "type": "evaluate",
            "params": {"model": "hand@latest", "dataset": "7c1e2d3f4a5b6c7d8e9f0a1b2c3d4e5f"},
        },
    },
    "benchmark": {
        "summary": "Compare the CPU chain, CuPy's and our kernels on a synthetic dataset (report.json and plots)",
        "value": {"type": "benchmark", "params": {"synthetic": {"users": 4, "sessions": 2, "duration_s": 60}}},
    },
    "predict": {
        "summary": "Predict every session of a raw dataset with a model's promoted version (CSV + Parquet each)",
        "value": {"type": "predict", "params": {"model": "hand", "dataset": "3f2a9c0e5b7d4e1f8a6b2c3d4e5f6a7b"}},
    },
}
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "no such job, dataset or model"},
    409: {"model": ErrorResponse, "description": "wrong dataset kind or state, a reused key, or a finished job"},
    503: {"model": ErrorResponse, "description": "the database or the job broker is not reachable"},
}
AnyJob = PreprocessJob | TrainJob | EvaluateJob | BenchmarkJob | PredictJob
JobBody = Annotated[AnyJob, Body(discriminator="type", openapi_examples=EXAMPLES)]


def check_references(session: Session, body: AnyJob, settings: Settings) -> str | None:
    """Refuses a job whose inputs do not exist or do not fit (nothing queued); returns the dataset's id."""
    if isinstance(body, TrainJob):
        try:
            body.params.boost_config("cpu")
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", "params", "config", *e["loc"])} for e in exc.errors(include_url=False)]
            ) from None
    if isinstance(body, EvaluateJob):
        access.confine_model_ref(body.params.model, settings, "params.model")  # 403 outside, before any I/O
        ref = parse_model_ref(body.params.model, settings.store_uri)
        ref.registry.resolve(ref.name, ref.version)
    if isinstance(body, PredictJob):
        return predict_job.check(session, body.params, settings)  # the model, then every session file
    if isinstance(body, BenchmarkJob) and body.params.dataset is None:
        return None  # the worker generates the synthetic dataset the study runs on
    kind = NEEDS[body.type]
    uri, dataset_id = repo.resolve_dataset(session, body.params.dataset, kind, settings)  # confined: 403 outside
    if dataset_id is None:  # a URI nobody registered, inside the roots: look at what is there
        store = open_store(uri, settings)
        if not store.exists(MARKER[kind]):
            other = "preprocessed" if kind == "raw" else "raw"
            if store.exists(MARKER[other]):
                raise Conflict(f"{uri} holds a {other} dataset; a {body.type} job needs a {kind} dataset")
            raise NotFound(f"no {kind} dataset at {uri}: {MARKER[kind]} not found")
    return dataset_id


def _broker_failed(session: Session, job: Job, exc: Exception, settings: Settings) -> Unavailable:
    """Marks a job whose task could not be sent as failed (and frees its key for a retry)."""
    message = f"the job broker at {redact(settings.broker_url)} did not take the task: {type(exc).__name__}: {exc}"
    log.error("job %s: %s", job.id, message)
    job.state = job.stage = "failed"
    job.error_type, job.error_message = "BrokerUnavailable", message
    job.finished_at = utcnow()
    job.idempotency_key = None  # a retry with the same key submits afresh
    session.commit()
    return Unavailable(f"{message}; job {job.id} was marked failed and nothing was queued, retry later")


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    summary="Submit a job",
    description="Answers 202 with the queued job and `Location: /v1/jobs/{id}`. With an `Idempotency-Key` "
    "already used for the same body, answers 200 with that earlier job (nothing new is queued); for a "
    "different body, 409.",
    responses={
        200: {"model": JobPublic, "description": "the job an earlier request with this key created"},
        429: {
            "model": ErrorResponse,
            "description": "the API key has MAX_JOBS_IN_FLIGHT_PER_KEY jobs queued or running; `Retry-After` says when "
            "to try again",
            "headers": {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}},
        },
        403: {"model": ErrorResponse, "description": "a dataset or model location outside ALLOWED_DATA_ROOTS"},
    }
    | ERRORS,
)
def submit_job(
    body: JobBody,
    response: Response,
    session: SessionDep,
    celery: CeleryDep,
    settings: SettingsDep,
    key: Annotated[ApiKeyInfo | None, require("submit")],
    idempotency_key: Annotated[
        str | None,
        Header(min_length=1, max_length=200, description="Makes retries safe: same key + same body = same job"),
    ] = None,
) -> JobPublic:
    dataset_id = check_references(session, body, settings)
    params = body.params.model_dump(mode="json")
    in_flight = {"api_key_id": key.id, "max_in_flight": settings.max_jobs_in_flight_per_key} if key else {}
    job, created = repo.create_job(session, body.type, params, dataset_id, idempotency_key, **in_flight)
    if created:
        units.add_entry(session, job)  # the job's first unit, committed with the job
    session.commit()
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not created:
        response.status_code = 200
        return public(job)
    _send(celery, session, job, settings)
    log.info("job %s (%s) queued", job.id, job.type)
    return public(job)


def _send(celery: Celery, session: Session, job: Job, settings: Settings) -> None:
    try:
        name, args = units.entry(job).task(job.type)
        send(celery, name, *args)
    except Exception as exc:  # any broker failure: kombu, redis, OS errors
        raise _broker_failed(session, job, exc, settings) from exc


@router.get("", response_model=JobsPublic, summary="List jobs, newest first", responses={503: ERRORS[503]})
def list_jobs(
    session: SessionDep,
    type: Annotated[JobType | None, Query(description="preprocess, train, evaluate, benchmark or predict")] = None,
    state: Annotated[JobState | None, Query(description="queued, running, succeeded, failed or cancelled")] = None,
    dataset_id: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> JobsPublic:
    rows, total = repo.list_jobs(session, type, state, dataset_id, limit=limit, offset=offset)
    return JobsPublic(items=[public(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{job_id}", response_model=JobPublic, summary="One job: state, progress, result links, error")
def get_job(job_id: JobId, session: SessionDep) -> JobPublic:
    return public(repo.get_job(session, job_id))


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=JobPublic,
    summary="Cancel a job",
    description="A queued job is cancelled at once; a running one gets `cancel_requested` and its worker "
    "stops at the next check. 409 for a job that has already finished.",
    responses=ERRORS,
    dependencies=[require("submit")],
)
def cancel_job(job_id: JobId, session: SessionDep) -> JobPublic:
    job = repo.request_cancel(session, job_id)
    session.commit()
    log.info("job %s: cancel requested (%s)", job.id, job.state)
    return public(job)
