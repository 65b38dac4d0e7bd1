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
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from emgpose.db.engine import session_scope
from emgpose.db.models import Claim, Dataset, Job, JobPart, ModelVersion, utcnow
from emgpose.errors import Conflict, NotFound
from emgpose.jobs.schemas import TERMINAL
from emgpose.store import as_uri

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
) -> tuple[Job, bool]:
    """A new queued job, or the job an earlier request with the same ``idempotency_key`` created.

    Returns ``(job, created)``. Reusing a key with a different request is a :class:`Conflict`.
    """
    request = digest({"type": type_, "params": params})
    if idempotency_key is not None:
        existing = _by_key(session, idempotency_key, request)
        if existing is not None:
            return existing, False
    job = Job(
        type=type_,
        state="queued",
        params=params,
        dataset_id=dataset_id,
        idempotency_key=idempotency_key,
        request_digest=request,
        stage="queued",
        result={},
    )
    session.add(job)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:  # a concurrent request with the same key won the insert
        existing = _by_key(session, idempotency_key or "", request)
        if existing is None:
            raise
        return existing, False
    return job, True


def _by_key(session: Session, key: str, request: str) -> Job | None:
    job = session.scalars(select(Job).where(Job.idempotency_key == key)).one_or_none()
    if job is not None and job.request_digest != request:
        raise Conflict(
            f"Idempotency-Key {key!r} was already used for a different request (job {job.id}); "
            "use a new key for a new job"
        )
    return job


def get_job(session: Session, job_id: str) -> Job:
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


def start(job_id: str, worker: str) -> Job | None:
    """Marks the job running and returns it, or None where it must not run (cancelled, finished, unknown)."""
    with session_scope() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            log.error("job %s: no such job row; the task is dropped", job_id)
            return None
        if job.state in TERMINAL:
            log.info("job %s is already %s; nothing to do", job_id, job.state)
            return None
        if job.cancel_requested:
            _finish(job, "cancelled")
            return None
        if job.state == "queued":
            job.state, job.started_at = "running", utcnow()
        job.attempts += 1
        job.worker = worker
        session.flush()
        session.expunge(job)
        return job


def report(job_id: str, progress: float | None, stage: str) -> bool:
    """Writes progress (None keeps it) and stage; returns whether a cancel was requested."""
    values: dict[str, Any] = {"stage": stage, "updated_at": utcnow()}
    if progress is not None:
        values["progress"] = min(max(progress, 0.0), 100.0)
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id, Job.state == "running").values(**values))
        return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def _finish(job: Job, state: str, result: dict[str, Any] | None = None, error: BaseException | None = None) -> None:
    job.state, job.finished_at = state, utcnow()
    job.stage = state
    if state == "succeeded":
        job.progress = 100.0
    if result is not None:
        job.result = result
    if error is not None:
        job.error_type = type(error).__name__
        job.error_message = str(getattr(error, "message", None) or error)[:4000]


def finish(job_id: str, state: str, result: dict[str, Any] | None = None, error: BaseException | None = None) -> None:
    """Ends a running job (succeeded, failed or cancelled); a job already ended is left as it is."""
    with session_scope() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.state in TERMINAL:
            return
        _finish(job, state, result, error)


def add_dataset(**fields: Any) -> str:
    with session_scope() as session:
        dataset = Dataset(**fields)
        session.add(dataset)
        session.flush()
        return dataset.id


def add_model_version(**fields: Any) -> None:
    with session_scope() as session:
        session.merge(ModelVersion(**fields))


# --- fan-out: parts and one-time claims -----------------------------------------------------------


def set_parts(job_id: str, phase: str, weights: list[int]) -> None:
    """Declares the parts of a phase (idempotent: existing parts keep their state)."""
    with session_scope() as session:
        have = set(session.scalars(select(JobPart.part).where(JobPart.job_id == job_id, JobPart.phase == phase)))
        for part, weight in enumerate(weights):
            if part not in have:
                session.add(JobPart(job_id=job_id, phase=phase, part=part, weight=weight, done=False, result={}))
        job = get_job(session, job_id)
        job.phase, job.parts_total = phase, len(weights)


def part_done(job_id: str, phase: str, part: int, result: dict[str, Any]) -> tuple[int, int, float]:
    """Records a finished part; returns (parts done, parts total, share of the phase's weight done)."""
    with session_scope() as session:
        row = session.get(JobPart, (job_id, phase, part))
        if row is None:
            raise NotFound(f"job {job_id} has no part {phase}/{part}")
        row.done, row.result = True, result
        session.flush()
        rows = session.execute(
            select(JobPart.done, JobPart.weight).where(JobPart.job_id == job_id, JobPart.phase == phase)
        ).all()
    done = sum(1 for d, _ in rows if d)
    weight = sum(w for _, w in rows) or 1
    return done, len(rows), sum(w for d, w in rows if d) / weight


def part_results(job_id: str, phase: str) -> list[dict[str, Any]]:
    with session_scope() as session:
        rows = session.scalars(
            select(JobPart).where(JobPart.job_id == job_id, JobPart.phase == phase).order_by(JobPart.part)
        ).all()
        missing = [r.part for r in rows if not r.done]
        if missing:
            raise Conflict(f"job {job_id}: parts {missing} of phase {phase!r} are not done")
        return [r.result for r in rows]


def claim(job_id: str, step: str) -> bool:
    """True for exactly one caller per (job, step): the last part to finish starts the next step once."""
    try:
        with session_scope() as session:
            session.add(Claim(job_id=job_id, step=step))
        return True
    except IntegrityError:
        return False


def resolve_dataset(session: Session, ref: str, kind: str) -> tuple[str, str | None]:
    """``(uri, dataset id or None)`` for a dataset id or a store URI; ``kind`` is raw or preprocessed."""
    if "://" not in ref and not ref.startswith("/"):
        dataset = get_dataset(session, ref)
        if dataset.kind != kind:
            raise Conflict(f"dataset {ref} is {dataset.kind}; this job needs a {kind} dataset")
        if dataset.state != "ready":
            raise Conflict(f"dataset {ref} is {dataset.state}, not ready")
        return dataset.uri, dataset.id
    uri = as_uri(ref)
    existing = session.scalars(select(Dataset).where(Dataset.uri == uri, Dataset.kind == kind).limit(1)).first()
    return uri, existing.id if existing is not None else None


def find_dataset_by_job(session: Session, job_id: str) -> Dataset | None:
    return session.scalars(select(Dataset).where(Dataset.job_id == job_id).limit(1)).first()
