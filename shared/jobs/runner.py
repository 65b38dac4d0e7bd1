"""What every thin task does around the real work: start, progress, cancel, time limit, finish, retry.

A task calls :func:`run_job` with the job id and a function ``work(run) -> result links``. Progress is
written to the job row at most every ``REPORT_EVERY_S`` seconds; each write also reads the cancel flag
and checks the job's time limit, so cancellation and time limits work in every pool (Celery's own time
limits need the prefork pool, which GPU workers must not use). Only named transient errors (object
store, broker, database connection) are retried, with exponential backoff and a cap; anything else
fails the job with its type and message.
"""

from __future__ import annotations

import logging
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
from emgpose.jobs import repo
from emgpose.jobs.celery_app import send
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


class WorkerStopping(Exception):  # noqa: N818 - a state, not an error: the job goes back to the queue
    """The worker is shutting down: the running task hands its job back to the queue and returns."""


class TimeLimitExceeded(EmgPoseError):
    """The job ran longer than ``JOB_TIME_LIMIT_S``."""

    status = 408


def worker_name() -> str:
    return socket.gethostname()


class JobRun:
    """The running job as the work function sees it: progress reports that may raise :class:`Cancelled`."""

    def __init__(self, job: Job, time_limit_s: float | None = None) -> None:
        self.job = job
        self.time_limit_s = time_limit_s or get_settings().job_time_limit_s
        started = job.started_at or datetime.now(UTC)
        self.deadline = time.monotonic() + self.time_limit_s - (datetime.now(UTC) - started).total_seconds()
        self._last = 0.0
        self._cancel = False
        self.percent = 0.0  # what the last report said, kept so that a hook can repeat it
        self.stage = "running"

    def check(self) -> None:
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


def begin(task: Task, job_id: str) -> JobRun | None:
    """Marks the job running on this worker; None where it is not to run here (a stopping worker hands
    the message back untouched; an ended or cancelled job is skipped)."""
    if SHUTTING_DOWN.is_set():  # a stopping worker can still receive a message
        requeue(task, job_id)
        return None
    job = repo.start(job_id, worker_name())
    return None if job is None else JobRun(job)


def run_job(task: Task, job_id: str, work: Callable[[JobRun], dict[str, Any]]) -> None:
    """Starts the job, runs ``work``, records the outcome; retries transient errors (raises ``Retry``)."""
    run = begin(task, job_id)
    if run is None:
        return
    try:
        result = work(run)
    except Cancelled:
        log.info("job %s cancelled", job_id)
        repo.finish(job_id, "cancelled")
    except WorkerStopping:
        requeue(task, job_id)
    except TRANSIENT as exc:
        retry_or_fail(task, job_id, exc)
    except Exception as exc:  # the job failed: record type and message, never re-raise into the broker
        log.exception("job %s failed", job_id)
        repo.finish(job_id, "failed", error=exc)
    else:
        repo.finish(job_id, "succeeded", result=result)
        log.info("job %s succeeded", job_id)


def requeue(task: Task, job_id: str, *args: Any) -> None:
    """Sends the task again (same arguments) for another worker, so that a stopping worker's job
    resumes at once (from its last checkpoint) instead of after the broker's visibility timeout."""
    log.warning("job %s: worker shutting down; handing the job back to queue %s", job_id, task.name)
    repo.report(job_id, None, "requeued (worker stopped)")
    send(task.app, task.name, job_id, *args)


def retry_or_fail(task: Task, job_id: str, exc: BaseException) -> None:
    """Retries ``task`` after a transient error with backoff, up to ``TASK_MAX_RETRIES``; then fails the job."""
    retries, most = task.request.retries, get_settings().task_max_retries
    if retries >= most:
        log.error("job %s: %s after %d retries; giving up", job_id, exc, retries)
        repo.finish(job_id, "failed", error=exc)
        return
    delay = backoff(retries)
    log.warning("job %s: transient %s (%s); retry %d in %.0f s", job_id, type(exc).__name__, exc, retries + 1, delay)
    try:
        repo.report(job_id, None, f"retrying ({type(exc).__name__})")
    except TRANSIENT:
        pass
    raise task.retry(exc=exc, countdown=delay, max_retries=most)
