"""Units of work: the rows of ``job_parts`` that tasks lease, heartbeat and complete.

Every task a job runs is one unit: a preprocess job's ``plan``, one ``stats`` part per training
session, ``merge``, one ``windows`` part per session and ``gather``; a train or evaluate job's ``run``.
The life of a unit is one row:

* **queued** - created in the same transaction that decided it must run (the job's submission, or the
  completion of the previous phase), then its task is sent;
* **running** - :func:`lease` gives it to one worker (``UPDATE ... WHERE state = 'queued' OR the holder's
  heartbeat is older than the timeout``: a duplicate message for a unit another live worker holds is
  dropped), which refreshes ``heartbeat_at`` (:func:`beat`) while it works;
* **done** - :func:`complete` marks it done and adds one to the job's ``parts_done`` with one
  ``UPDATE ... RETURNING``. The part whose update returns ``parts_total`` creates the next phase's units
  (or finishes the job) in the same transaction: fan-in is decided by one atomic statement, never by a
  count read and then acted on.

Every transaction here locks the job row before any unit row, so that two of them never wait on each
other on PostgreSQL. The reaper (:mod:`emgpose.jobs.reaper`) sends again what a dead worker held.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from emgpose.db.engine import session_scope
from emgpose.db.models import Job, JobPart, utcnow
from emgpose.errors import NotFound
from emgpose.jobs import celery_app as tasks
from emgpose.jobs import metrics as job_metrics
from emgpose.jobs.schemas import TERMINAL

log = logging.getLogger(__name__)

ENTRY = {"preprocess": "plan", "train": "run", "evaluate": "run", "benchmark": "run", "predict": "run"}
TASKS = {
    ("preprocess", "plan"): tasks.PREPROCESS_START,
    ("preprocess", "stats"): tasks.PREPROCESS_STATS,
    ("preprocess", "merge"): tasks.PREPROCESS_MERGE,
    ("preprocess", "windows"): tasks.PREPROCESS_WINDOWS,
    ("preprocess", "gather"): tasks.PREPROCESS_GATHER,
    ("train", "run"): tasks.TRAIN,
    ("evaluate", "run"): tasks.EVALUATE,
    ("benchmark", "run"): tasks.BENCHMARK,
    ("predict", "run"): tasks.PREDICT,
}
PER_PART = ("stats", "windows")  # their tasks take the part number after the job id


@dataclass(frozen=True)
class Unit:
    job_id: str
    phase: str
    part: int = 0

    def task(self, job_type: str) -> tuple[str, list[Any]]:
        """The task name and arguments that run this unit."""
        args: list[Any] = [self.job_id, self.part] if self.phase in PER_PART else [self.job_id]
        return TASKS[(job_type, self.phase)], args

    def __str__(self) -> str:
        return f"{self.job_id}/{self.phase}/{self.part}"


@dataclass(frozen=True)
class Phase:
    """The units to create once the current phase is complete: one per weight (samples, for progress)."""

    name: str
    weights: Sequence[int] = (1,)


@dataclass(frozen=True)
class Finish:
    """Completing the current phase ends the job successfully with ``result``."""

    result: dict[str, Any]


@dataclass(frozen=True)
class Completion:
    """What :func:`complete` did: whether this call finished the unit, the phase's count and weight share,
    and the units it created (to be sent by the caller after the commit)."""

    counted: bool
    done: int
    total: int
    share: float
    created: list[Unit]
    job_type: str


def entry(job: Job) -> Unit:
    """The first unit of a job: what its submission sends (``unit.task(job.type)``)."""
    return Unit(job.id, ENTRY[job.type])


def add_entry(session: Session, job: Job) -> Unit:
    """The first unit of a new job, in the caller's transaction (the one that inserts the job)."""
    unit = entry(job)
    session.add(JobPart(job_id=job.id, phase=unit.phase, part=0, state="queued", weight=1, result={}, due_at=utcnow()))
    job.phase, job.parts_total, job.parts_done = unit.phase, 1, 0
    return unit


def _lock_job(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id, with_for_update=True, populate_existing=True)


def _key(unit: Unit) -> Any:
    return and_(JobPart.job_id == unit.job_id, JobPart.phase == unit.phase, JobPart.part == unit.part)


def lease(unit: Unit, worker: str, timeout_s: float, again: bool = False) -> Job | None:
    """Gives ``unit`` to ``worker`` and returns its job (detached), or None where it must not run here: the
    job has ended, or the unit is done or held by a worker whose heartbeat is fresh (a duplicate message).
    A job whose cancel was requested is marked cancelled and returned with that state (for clean-up).
    ``again``: this worker is not running the unit now, so a lease it still holds (a retry after the
    database came back) is taken over at once instead of after the heartbeat timeout."""
    now = utcnow()
    with session_scope() as session:
        job = _lock_job(session, unit.job_id)
        if job is None:
            log.error("unit %s: no such job; the task is dropped", unit)
            return None
        if job.state in TERMINAL:
            log.info("unit %s: job already %s; nothing to do", unit, job.state)
            return None
        if job.cancel_requested:
            end_job(job, "cancelled")
            session.flush()
            session.expunge(job)
            return job
        stale = now - timedelta(seconds=timeout_s)
        takeover = [JobPart.heartbeat_at.is_(None), JobPart.heartbeat_at < stale]
        if again:
            takeover.append(JobPart.worker == worker)
        taken = session.execute(
            update(JobPart)
            .where(
                _key(unit),
                or_(JobPart.state == "queued", and_(JobPart.state == "running", or_(*takeover))),
            )
            .values(state="running", worker=worker, heartbeat_at=now, attempts=JobPart.attempts + 1)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not taken:
            state = session.scalar(select(JobPart.state).where(_key(unit)))
            log.info("unit %s is %s; this message is a duplicate and is dropped", unit, state or "unknown")
            return None
        if job.state == "queued":
            job.state, job.started_at = "running", now
        job.attempts += 1
        job.worker, job.heartbeat_at = worker, now
        session.flush()
        session.expunge(job)
        return job


def beat(units: Sequence[Unit], worker: str) -> list[Unit]:
    """Refreshes the heartbeat of the units ``worker`` holds; returns those it no longer holds (the
    reaper gave them to another worker after this one was silent too long)."""
    now = utcnow()
    lost = []
    with session_scope() as session:
        for job_id in sorted({u.job_id for u in units}):  # job rows first, in one order
            session.execute(update(Job).where(Job.id == job_id, Job.state == "running").values(heartbeat_at=now))
        for unit in sorted(units, key=lambda u: (u.job_id, u.phase, u.part)):
            held = session.execute(
                update(JobPart)
                .where(_key(unit), JobPart.state == "running", JobPart.worker == worker)
                .values(heartbeat_at=now)
                .execution_options(synchronize_session=False)
            ).rowcount
            if not held:
                lost.append(unit)
    return lost


def release(unit: Unit, worker: str, due_in_s: float = 0.0) -> None:
    """Hands a unit this worker holds back to the queue (its task is sent again, due in ``due_in_s``)."""
    with session_scope() as session:
        _lock_job(session, unit.job_id)
        session.execute(
            update(JobPart)
            .where(_key(unit), JobPart.state == "running", JobPart.worker == worker)
            .values(state="queued", worker=None, due_at=utcnow() + timedelta(seconds=due_in_s))
            .execution_options(synchronize_session=False)
        )


def complete(unit: Unit, result: dict[str, Any], then: Phase | Finish) -> Completion:
    """Marks ``unit`` done with ``result``; where it is the last of its phase, applies ``then`` in the same
    transaction (creates the next phase's units, or finishes the job).

    A unit already done (a second run of the same unit) changes nothing and creates nothing.
    """
    with session_scope() as session:
        job = _lock_job(session, unit.job_id)
        if job is None:
            raise NotFound(f"no job {unit.job_id!r}")
        if job.state in TERMINAL:
            return Completion(False, job.parts_done, job.parts_total, 1.0, [], job.type)
        marked = session.execute(
            update(JobPart)
            .where(_key(unit), JobPart.state != "done")
            .values(state="done", result=result, heartbeat_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount
        if not marked:
            return Completion(False, job.parts_done, job.parts_total, 1.0, [], job.type)
        done, total = session.execute(
            update(Job)
            .where(Job.id == unit.job_id, Job.phase == unit.phase)
            .values(parts_done=Job.parts_done + 1)
            .returning(Job.parts_done, Job.parts_total)
            .execution_options(synchronize_session=False)
        ).one()
        weights = session.execute(
            select(func.sum(JobPart.weight), func.sum(JobPart.weight).filter(JobPart.state == "done")).where(
                JobPart.job_id == unit.job_id, JobPart.phase == unit.phase
            )
        ).one()
        share = float(weights[1] or 0) / float(weights[0] or 1)
        created: list[Unit] = []
        if done == total:
            session.refresh(job)
            if isinstance(then, Finish):
                end_job(job, "succeeded", result=then.result)
            else:
                created = _add_phase(session, job, then)
        return Completion(True, done, total, share, created, job.type)


def _add_phase(session: Session, job: Job, phase: Phase) -> list[Unit]:
    now = utcnow()
    created = []
    for part, weight in enumerate(phase.weights):
        session.add(
            JobPart(job_id=job.id, phase=phase.name, part=part, state="queued", weight=weight, result={}, due_at=now)
        )
        created.append(Unit(job.id, phase.name, part))
    job.phase, job.parts_total, job.parts_done = phase.name, len(created), 0
    return created


def results(job_id: str, phase: str) -> list[dict[str, Any]]:
    """The results of a phase's units in part order; every unit must be done."""
    with session_scope() as session:
        rows = session.execute(
            select(JobPart.part, JobPart.state, JobPart.result)
            .where(JobPart.job_id == job_id, JobPart.phase == phase)
            .order_by(JobPart.part)
        ).all()
    missing = [part for part, state, _ in rows if state != "done"]
    if not rows or missing:
        raise NotFound(f"job {job_id}: phase {phase!r} is not complete (parts not done: {missing or 'all'})")
    return [result for _, _, result in rows]


def end_job(job: Job, state: str, result: dict[str, Any] | None = None, error: BaseException | None = None) -> None:
    """Ends a job row the caller holds (succeeded, failed or cancelled), and counts it in the job metrics
    (every end goes through here: a worker's, a cancel seen at lease, the reaper's give-up)."""
    job.state, job.stage, job.finished_at = state, state, utcnow()
    job_metrics.job_ended(job.type, state, job.started_at or job.created_at)
    if state == "succeeded":
        job.progress = 100.0
    if result is not None:
        job.result = result
    if error is not None:
        job.error_type = type(error).__name__
        job.error_message = str(getattr(error, "message", None) or error)[:4000]


# --- what the reaper reads and changes ------------------------------------------------------------


@dataclass(frozen=True)
class Resend:
    unit: Unit
    job_type: str
    reason: str
    failed: bool  # the job was failed instead (too many requeues)


def stale_units(session: Session, before: datetime) -> list[tuple[Unit, str]]:
    """Running units of unfinished jobs whose last heartbeat is older than ``before``."""
    rows = session.execute(
        select(JobPart.job_id, JobPart.phase, JobPart.part, Job.type)
        .join(Job, Job.id == JobPart.job_id)
        .where(
            JobPart.state == "running",
            or_(JobPart.heartbeat_at.is_(None), JobPart.heartbeat_at < before),
            Job.state.not_in(TERMINAL),
        )
    ).all()
    return [(Unit(j, p, n), t) for j, p, n, t in rows]


def waiting_units(session: Session, before: datetime) -> list[tuple[Unit, str]]:
    """Queued units of unfinished jobs whose message was due before ``before``."""
    rows = session.execute(
        select(JobPart.job_id, JobPart.phase, JobPart.part, Job.type)
        .join(Job, Job.id == JobPart.job_id)
        .where(JobPart.state == "queued", JobPart.due_at < before, Job.state.not_in(TERMINAL))
    ).all()
    return [(Unit(j, p, n), t) for j, p, n, t in rows]


def requeue(unit: Unit, state: str, before: datetime, max_requeues: int, reason: str) -> Resend | None:
    """Takes ``unit`` back from a lost worker (``state`` running, heartbeat older than ``before``) or a lost
    message (``state`` queued, due before ``before``) so that its task is sent again; where this unit has
    been sent again ``max_requeues`` times already, fails the job instead, naming ``reason``. None where
    another reaper (or the worker itself) changed the unit first."""
    with session_scope() as session:
        job = _lock_job(session, unit.job_id)
        if job is None or job.state in TERMINAL:
            return None
        column = JobPart.heartbeat_at if state == "running" else JobPart.due_at
        requeues = session.scalar(
            update(JobPart)
            .where(_key(unit), JobPart.state == state, or_(column.is_(None), column < before))
            .values(state="queued", worker=None, due_at=utcnow(), requeues=JobPart.requeues + 1)
            .returning(JobPart.requeues)
            .execution_options(synchronize_session=False)
        )
        if requeues is None:
            return None
        if requeues > max_requeues:
            error = JobStalled(
                f"{reason}; {unit.phase} part {unit.part} was already sent again {requeues - 1} time(s), the "
                f"limit (REAPER_MAX_REQUEUES={max_requeues}), so the job is failed"
            )
            end_job(job, "failed", error=error)
            return Resend(unit, job.type, reason, failed=True)
        job.requeues += 1
        job.stage = f"requeued ({unit.phase})"[:40]
        return Resend(unit, job.type, reason, failed=False)


class JobStalled(Exception):  # noqa: N818 - the name users see as the job's error type
    """A job's worker stopped sending heartbeats too many times."""
