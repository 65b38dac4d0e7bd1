"""The reaper: the one place that sends again what a dead worker or a lost message left behind.

Every ``REAPER_INTERVAL_S`` it looks at the units of unfinished jobs (:mod:`emgpose.jobs.units`):

* a **running** unit whose heartbeat is older than ``HEARTBEAT_TIMEOUT_S``: its worker died (SIGKILL,
  out of memory, a lost machine) or hangs. The unit is queued again and its task sent; the next worker
  continues from the last checkpoint (a train job's boosting checkpoint, a preprocess job's finished
  parts). A unit sent again ``REAPER_MAX_REQUEUES`` times fails its job instead, naming the lost worker.
* a **queued** unit whose message was due more than ``HEARTBEAT_TIMEOUT_S`` ago while its queue is
  empty: the message was lost (a worker killed between taking a message and leasing its unit, the
  filesystem broker, a Redis without its append-only file, a send that failed after a commit). It is
  sent again. A queue that still holds messages may hold this one too, so nothing is sent then.

Each change is one conditional ``UPDATE`` (:func:`emgpose.jobs.units.requeue`), so several reapers (one
per gateway replica) never send a unit twice; a unit sent twice anyway is harmless, because the lease
lets one worker run it and drops the other message. The gateway runs the loop in its lifespan
(:class:`Reaper`); tests and tools may call :func:`reap_once`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from celery import Celery

from emgpose.db.engine import session_scope
from emgpose.db.models import utcnow
from emgpose.jobs import metrics as job_metrics
from emgpose.jobs import units
from emgpose.jobs.celery_app import ROUTES, queue_size, send
from emgpose.settings import Settings, get_settings

log = logging.getLogger(__name__)


@dataclass
class Reaped:
    """What one pass did."""

    resent: list[units.Resend] = field(default_factory=list)
    failed: list[units.Resend] = field(default_factory=list)


def reap_once(app: Celery, settings: Settings | None = None) -> Reaped:
    settings = settings or get_settings()
    now = utcnow()
    before = now - timedelta(seconds=settings.heartbeat_timeout_s)
    with session_scope() as session:
        stale = units.stale_units(session, before)
        waiting = units.waiting_units(session, before)
    reaped = Reaped()
    for unit, _type in stale:
        reason = (
            f"the worker running {unit.phase} part {unit.part} sent no heartbeat for "
            f"{settings.heartbeat_timeout_s:g} s (HEARTBEAT_TIMEOUT_S)"
        )
        _apply(app, units.requeue(unit, "running", before, settings.reaper_max_requeues, reason), reaped)
    empty: dict[str, bool] = {}
    for unit, job_type in waiting:
        queue = ROUTES[unit.task(job_type)[0]]
        if queue not in empty:
            empty[queue] = queue_size(app, queue) == 0
        if not empty[queue]:
            continue
        reason = f"the message for {unit.phase} part {unit.part} was lost (queue {queue} is empty)"
        _apply(app, units.requeue(unit, "queued", before, settings.reaper_max_requeues, reason), reaped)
    return reaped


def _apply(app: Celery, resend: units.Resend | None, reaped: Reaped) -> None:
    if resend is None:
        return
    if resend.failed:
        log.error("job %s failed: %s", resend.unit.job_id, resend.reason)
        job_metrics.reaped(resend.job_type, "failed")
        reaped.failed.append(resend)
        return
    name, args = resend.unit.task(resend.job_type)
    send(app, name, *args)
    log.warning("unit %s sent again: %s", resend.unit, resend.reason)
    job_metrics.reaped(resend.job_type, "resent")
    reaped.resent.append(resend)


class Reaper:
    """:func:`reap_once` every ``REAPER_INTERVAL_S`` in a daemon thread, until :meth:`stop`."""

    def __init__(self, app: Celery, settings: Settings | None = None) -> None:
        self.app = app
        self.settings = settings or get_settings()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="emgpose-reaper", daemon=True)

    def start(self) -> Reaper:
        if self.settings.reaper_interval_s > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.reaper_interval_s):
            try:
                reap_once(self.app, self.settings)
            except Exception as exc:  # the database or the broker is down: the next pass tries again
                log.warning("reaper pass failed: %s: %s", type(exc).__name__, exc)
