"""What every thin task does around the real work: lease, heartbeat, progress, cancel, time limit, retry.

A task calls :func:`run_unit` with its unit (:mod:`emgpose.jobs.units`) and a function ``work(run)``.
The unit is leased to this worker first (a duplicate message for a unit another live worker holds is
dropped) and, while the work runs, a heartbeat thread refreshes it every ``HEARTBEAT_S``: a worker that
dies stops beating and the reaper sends its unit again. Progress is written to the job row at most every
``REPORT_EVERY_S`` seconds; each write also reads the cancel flag and checks the job's time limit, so
cancellation and time limits work in every pool (Celery's own time limits need the prefork pool, which
GPU workers must not use). Only named transient errors (object store, broker, database - the lease in
the prologue included) are retried, with exponential backoff and a cap; anything else fails the job
with its type and message.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis.exceptions
import sqlalchemy.exc
from celery import Task
from celery.signals import worker_shutting_down
from kombu.exceptions import OperationalError as KombuOperationalError

from emgpose.db.models import Job
from emgpose.errors import EmgPoseError, StoreError
from emgpose.jobs import metrics as job_metrics
from emgpose.jobs import repo, units
from emgpose.jobs.celery_app import send
from emgpose.jobs.units import Unit
from emgpose.logs import job_context
from emgpose.settings import get_settings
from emgpose.train.boost import Cancelled

log = logging.getLogger(__name__)

TRANSIENT: tuple[type[BaseException], ...] = (
    StoreError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    KombuOperationalError,
    ConnectionError,
    TimeoutError,
)
BACKOFF_MAX_S = 120.0
REPORT_EVERY_S = 0.5


SHUTTING_DOWN = threading.Event()  # set when this worker process begins a warm shutdown


@worker_shutting_down.connect
def _on_shutdown(**_kwargs: Any) -> None:
    SHUTTING_DOWN.set()


class LeaseLost(Exception):  # noqa: N818 - a state: another worker runs the unit now
    """This worker's unit was given to another worker (its heartbeats stopped for too long)."""


class WorkerStopping(Exception):  # noqa: N818 - a state, not an error: the job goes back to the queue
    """The worker is shutting down: the running task hands its job back to the queue and returns."""


class TimeLimitExceeded(EmgPoseError):
    """The job ran longer than ``JOB_TIME_LIMIT_S``."""

    status = 408


def worker_name() -> str:
    """This process as a lease holder: host and process id (several worker processes share a host)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Heartbeats:
    """The one thread per worker process that refreshes the heartbeat of every unit the process runs."""

    def __init__(self) -> None:
        self._held: set[Unit] = set()  # a unit is leased once, so one process holds it at most once
        self._lost: set[Unit] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def hold(self, unit: Unit) -> None:
        with self._lock:
            self._held.add(unit)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="emgpose-heartbeat", daemon=True)
                self._thread.start()

    def drop(self, unit: Unit) -> None:
        with self._lock:
            self._held.discard(unit)
            self._lost.discard(unit)

    def lost(self, unit: Unit) -> bool:
        """Whether another worker has taken ``unit`` over (this one was silent past the timeout)."""
        return unit in self._lost

    def held(self) -> list[Unit]:
        with self._lock:
            return list(self._held)

    def _run(self) -> None:
        worker = worker_name()
        while True:
            time.sleep(get_settings().heartbeat_s)
            held = self.held()
            if not held:
                continue
            try:
                lost = units.beat(held, worker)
            except Exception as exc:  # the database is down: the next beat tries again
                log.warning("heartbeat of %d unit(s) failed: %s: %s", len(held), type(exc).__name__, exc)
                continue
            with self._lock:
                self._lost.update(u for u in lost if u in self._held)


HEARTBEATS = Heartbeats()


class JobRun:
    """The running unit as the work function sees it: progress reports that may raise :class:`Cancelled`."""

    def __init__(self, job: Job, unit: Unit | None = None, time_limit_s: float | None = None) -> None:
        self.job = job
        self.unit = unit or Unit(job.id, "run")
        self.time_limit_s = time_limit_s or get_settings().job_time_limit_s
        started = job.started_at or datetime.now(UTC)
        self.deadline = time.monotonic() + self.time_limit_s - (datetime.now(UTC) - started).total_seconds()
        self._last = 0.0
        self._cancel = False
        self.percent = job.progress or 0.0  # what the last report said (never less than the job's)
        self.stage = job.stage or "running"

    def check(self) -> None:
        if HEARTBEATS.lost(self.unit):
            raise LeaseLost(f"unit {self.unit}: another worker has taken it over; this run stops")
        if SHUTTING_DOWN.is_set():
            raise WorkerStopping(f"job {self.job.id}: the worker is shutting down")
        if self._cancel:
            raise Cancelled(f"job {self.job.id} was cancelled")
        if time.monotonic() > self.deadline:
            raise TimeLimitExceeded(
                f"job {self.job.id} exceeded its time limit of {self.time_limit_s:g} s (JOB_TIME_LIMIT_S)"
            )

    def progress(self, percent: float, stage: str, force: bool = False) -> None:
        """Records ``percent`` (0-100) and ``stage``; raises :class:`Cancelled` once a cancel was asked."""
        now = time.monotonic()
        if force or now - self._last >= REPORT_EVERY_S:
            self._last = now
            self._cancel = repo.report(self.job.id, percent, stage) or self._cancel
        self.check()

    def cancelled(self) -> bool:
        """The hook for :func:`emgpose.train.boost.fit` (checked between rounds; may raise
        :class:`WorkerStopping` or :class:`TimeLimitExceeded`, which end the fit)."""
        try:
            self.progress(self.percent, self.stage)
        except Cancelled:
            return True
        return False

    def staged(self, ranges: dict[str, tuple[float, float]]) -> Callable[[int, int, str], None]:
        """A ``progress(done, total, stage)`` callback where each stage owns a range of the bar.

        Progress never moves back: a stage not in ``ranges`` keeps the current percent.
        """

        def report(done: int, total: int, stage: str) -> None:
            lo, hi = ranges.get(stage, (self.percent, self.percent))
            self.percent = max(self.percent, lo + (hi - lo) * (done / total if total else 0.0))
            self.stage = stage
            self.progress(self.percent, stage)

        return report


def backoff(retries: int) -> float:
    """Seconds before retry ``retries + 1``: ``TASK_RETRY_BACKOFF_S`` doubled per retry, capped."""
    return min(BACKOFF_MAX_S, get_settings().task_retry_backoff_s * 2**retries)


def run_unit(
    task: Task,
    unit: Unit,
    work: Callable[[JobRun], None],
    on_end: Callable[[str], None] | None = None,
) -> None:
    """:func:`_run_unit` with the job's id on every log record it makes (``LOG_FORMAT=json``: ``job_id``)."""
    with job_context(unit.job_id):
        _run_unit(task, unit, work, on_end)


def _run_unit(
    task: Task,
    unit: Unit,
    work: Callable[[JobRun], None],
    on_end: Callable[[str], None] | None = None,
) -> None:
    """Leases ``unit``, runs ``work`` under heartbeats and records how it ended.

    ``work`` completes the unit itself (:func:`emgpose.jobs.units.complete`). Cancellation and failure
    end the job (then ``on_end(job_id)`` cleans up); a stopping worker hands the unit back; transient
    errors, in the lease as anywhere else, are retried with backoff (raises Celery's ``Retry``).
    """
    if SHUTTING_DOWN.is_set():  # a stopping worker can still receive a message
        requeue(task, unit, leased=False)
        return
    try:
        again = unit not in HEARTBEATS.held()
        job = units.lease(unit, worker_name(), get_settings().heartbeat_timeout_s, again=again)
    except TRANSIENT as exc:
        retry_or_fail(task, unit, exc, leased=False)
        return
    if job is None:
        return
    if job.state == "cancelled":
        _cleanup(on_end, unit.job_id)
        return
    HEARTBEATS.hold(unit)
    try:
        work(JobRun(job, unit))
    except Cancelled:
        log.info("job %s cancelled", unit.job_id)
        _end(unit, "cancelled", on_end)
    except WorkerStopping:
        requeue(task, unit)
    except LeaseLost as exc:
        log.warning("%s", exc)
    except TRANSIENT as exc:
        retry_or_fail(task, unit, exc)
    except Exception as exc:  # the job failed: record type and message, never re-raise into the broker
        log.exception("job %s failed in %s", unit.job_id, unit.phase)
        _end(unit, "failed", on_end, exc)
    finally:
        HEARTBEATS.drop(unit)


def _end(unit: Unit, state: str, on_end: Callable[[str], None] | None, error: BaseException | None = None) -> None:
    try:
        repo.finish(unit.job_id, state, error=error)
    except TRANSIENT:  # the unit stays leased to this worker: the reaper sends it again, which ends it then
        log.exception("job %s: could not record that it %s", unit.job_id, state)
        return
    _cleanup(on_end, unit.job_id)


def _cleanup(on_end: Callable[[str], None] | None, job_id: str) -> None:
    if on_end is None:
        return
    try:
        on_end(job_id)
    except Exception:  # clean-up is best effort; what was promoted stays untouched
        log.warning("job %s: clean-up after it ended failed", job_id, exc_info=True)


def requeue(task: Task, unit: Unit, leased: bool = True) -> None:
    """Hands ``unit`` back and sends its task again for another worker, so that a stopping worker's job
    resumes at once (from its last checkpoint) instead of after a heartbeat timeout."""
    log.warning("unit %s: worker shutting down; handing it back to queue %s", unit, task.name)
    try:
        if leased:
            units.release(unit, worker_name())
        repo.report(unit.job_id, None, "requeued (worker stopped)")
    except TRANSIENT:  # the reaper sends the unit again once its heartbeat is stale
        log.exception("unit %s: could not hand it back in the database", unit)
    send(task.app, task.name, *task.request.args)


def retry_or_fail(task: Task, unit: Unit, exc: BaseException, leased: bool = True) -> None:
    """Retries ``task`` after a transient error with backoff, up to ``TASK_MAX_RETRIES``; then fails the job.

    Where even failing the job cannot be recorded (the database is down), the unit is left to the reaper.
    """
    retries, most = task.request.retries, get_settings().task_max_retries
    if retries >= most:
        log.error("job %s: %s after %d retries; giving up", unit.job_id, exc, retries)
        _end(unit, "failed", None, exc)
        return
    delay = backoff(retries)
    job_metrics.retried(task.name, exc)
    log.warning(
        "job %s: transient %s (%s); retry %d in %.0f s", unit.job_id, type(exc).__name__, exc, retries + 1, delay
    )
    try:
        if leased:
            units.release(unit, worker_name(), due_in_s=delay)
        repo.report(unit.job_id, None, f"retrying ({type(exc).__name__})")
    except TRANSIENT:
        pass
    raise task.retry(exc=exc, countdown=delay, max_retries=most)
