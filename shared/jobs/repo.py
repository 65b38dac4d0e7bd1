"""Job and dataset records: every read and write the gateway and the workers make, in one place.

Functions take an open :class:`~sqlalchemy.orm.Session` (the caller owns the transaction) except the
worker helpers at the bottom, which run their own short transactions so that progress is visible to
the gateway while a task runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from emgpose import access, auth
from emgpose.db.engine import session_scope
from emgpose.db.models import Dataset, Job, ModelVersion, utcnow
from emgpose.errors import Conflict, NotFound, Unavailable
from emgpose.jobs.schemas import TERMINAL
from emgpose.jobs.units import end_job
from emgpose.names import dataset_id_problem, is_location
from emgpose.settings import Settings

log = logging.getLogger(__name__)


def digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# --- jobs: the gateway's side ---------------------------------------------------------------------


def create_job(
    session: Session,
    type_: str,
    params: dict[str, Any],
    dataset_id: str | None = None,
    idempotency_key: str | None = None,
    api_key_id: str | None = None,
    max_in_flight: int | None = None,
) -> tuple[Job, bool]:
    """A new queued job, or the job an earlier request with the same ``idempotency_key`` created.

    Returns ``(job, created)``. Reusing a key with a different request is a :class:`Conflict`. The insert
    and the decision are one statement (``INSERT ... ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING``), so concurrent submissions with one key create one job on PostgreSQL and SQLite alike:
    the others insert nothing and read the winner (PostgreSQL makes them wait for its commit).

    ``api_key_id`` is the API key submitting it; with ``max_in_flight``, a new job beyond that many queued
    or running jobs of the key is a 429 (:func:`emgpose.auth.check_in_flight`), while a retry of one
    already created still gets its job back.
    """
    request = digest({"type": type_, "params": params})
    if api_key_id is not None and max_in_flight is not None:
        existing = _by_key(session, idempotency_key, request) if idempotency_key else None
        if existing is not None:
            return existing, False
        auth.check_in_flight(session, api_key_id, max_in_flight)
    row = {
        "type": type_,
        "state": "queued",
        "params": params,
        "dataset_id": dataset_id,
        "idempotency_key": idempotency_key,
        "api_key_id": api_key_id,
        "request_digest": request,
        "stage": "queued",
        "result": {},
    }
    for _ in range(3):  # a winner that frees its key (broker down) between the two statements: insert again
        job = _insert_job(session, row)
        if job is not None:
            return job, True
        existing = _by_key(session, idempotency_key or "", request)
        if existing is not None:
            return existing, False
    raise Unavailable(f"Idempotency-Key {idempotency_key!r} is held by requests that keep failing; retry later")


def _insert_job(session: Session, row: dict[str, Any]) -> Job | None:
    """The new job, or None where a job with the same ``idempotency_key`` exists."""
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(Job).values(**row).on_conflict_do_nothing(index_elements=[Job.idempotency_key])
    return session.scalars(statement.returning(Job)).one_or_none()


def _by_key(session: Session, key: str, request: str) -> Job | None:
    """The job with ``key`` (its committed row, read afresh), or a :class:`Conflict` for another request."""
    job = session.scalars(
        select(Job).where(Job.idempotency_key == key).execution_options(populate_existing=True)
    ).one_or_none()
    if job is not None and job.request_digest != request:
        raise Conflict(
            f"Idempotency-Key {key!r} was already used for a different request (job {job.id}); "
            "use a new key for a new job"
        )
    return job


def get_job(session: Session, job_id: str) -> Job:
    if dataset_id_problem(job_id):  # ids are 32 hex digits: anything else (a NUL too) is never looked up
        raise NotFound(f"no job {job_id!r}")
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return job


def list_jobs(
    session: Session,
    type_: str | None = None,
    state: str | None = None,
    dataset_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Job], int]:
    if dataset_id is not None and dataset_id_problem(dataset_id):
        return [], 0  # not an id (a NUL would not even reach PostgreSQL): no job reads such a dataset
    query = select(Job)
    for column, value in ((Job.type, type_), (Job.state, state), (Job.dataset_id, dataset_id)):
        if value is not None:
            query = query.where(column == value)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)).all()
    return list(rows), total


def request_cancel(session: Session, job_id: str) -> Job:
    """Cancels a queued job at once; asks a running one to stop (its worker checks between steps)."""
    job = get_job(session, job_id)
    if job.state in TERMINAL:
        raise Conflict(f"job {job_id} already {job.state}; only queued or running jobs can be cancelled")
    job.cancel_requested = True
    if job.state == "queued":
        job.state, job.stage, job.finished_at = "cancelled", "cancelled", utcnow()
    return job


# --- datasets ---------------------------------------------------------------------------------------


def get_dataset(session: Session, dataset_id: str) -> Dataset:
    if dataset_id_problem(dataset_id):  # ids are 32 hex digits: anything else (a NUL too) is never looked up
        raise NotFound(f"no dataset {dataset_id!r}")
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFound(f"no dataset {dataset_id!r}")
    return dataset


def list_datasets(
    session: Session, kind: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[Dataset], int]:
    query = select(Dataset)
    if kind is not None:
        query = query.where(Dataset.kind == kind)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Dataset.created_at.desc(), Dataset.id).limit(limit).offset(offset)).all()
    return list(rows), total


def latest_job_for(session: Session, dataset_id: str, type_: str) -> Job | None:
    query = select(Job).where(Job.dataset_id == dataset_id, Job.type == type_).order_by(Job.created_at.desc())
    return session.scalars(query.limit(1)).first()


# --- workers: short transactions of their own -------------------------------------------------------


def report(job_id: str, progress: float | None, stage: str) -> bool:
    """Writes progress and stage; returns whether a cancel was requested.

    Progress never moves back: the row changes only where ``progress`` (None: the current value) is at
    least what is stored, so a late or stale report (a part that ran again) cannot undo a later one.
    """
    values: dict[str, Any] = {"stage": stage[:40], "updated_at": utcnow()}
    condition = Job.state == "running"
    if progress is not None:
        progress = min(max(progress, 0.0), 100.0)
        values["progress"] = progress
        condition = condition & (Job.progress <= progress)
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id, condition).values(**values))
        return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def finish(job_id: str, state: str, result: dict[str, Any] | None = None, error: BaseException | None = None) -> None:
    """Ends a running job (succeeded, failed or cancelled); a job already ended is left as it is."""
    with session_scope() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.state in TERMINAL:
            return
        end_job(job, state, result, error)


def add_dataset(**fields: Any) -> str:
    with session_scope() as session:
        dataset = Dataset(**fields)
        session.add(dataset)
        session.flush()
        return dataset.id


def add_model_version(**fields: Any) -> None:
    with session_scope() as session:
        session.merge(ModelVersion(**fields))


def resolve_dataset(session: Session, ref: str, kind: str, settings: Settings) -> tuple[str, str | None]:
    """``(uri, dataset id or None)`` for a dataset id or a location; ``kind`` is raw or preprocessed.

    Both the gateway (at submission) and the workers (when they run a job) resolve through here, so a
    location outside the store and ALLOWED_DATA_ROOTS is refused in both places with the same 403
    (:func:`emgpose.access.confine`), a row that points outside included. The URI returned is normalised.
    """
    access.check_dataset_ref(ref, "params.dataset")
    if not is_location(ref):
        dataset = get_dataset(session, ref)
        if dataset.kind != kind:
            raise Conflict(f"dataset {ref} is {dataset.kind}; this job needs a {kind} dataset")
        if dataset.state != "ready":
            raise Conflict(f"dataset {ref} is {dataset.state}, not ready")
        return access.confine(dataset.uri, settings, f"the location of dataset {ref}"), dataset.id
    uri = access.confine(ref, settings, "params.dataset")
    existing = session.scalars(select(Dataset).where(Dataset.uri == uri, Dataset.kind == kind).limit(1)).first()
    return uri, existing.id if existing is not None else None


def find_dataset_by_job(session: Session, job_id: str) -> Dataset | None:
    return session.scalars(select(Dataset).where(Dataset.job_id == job_id).limit(1)).first()
