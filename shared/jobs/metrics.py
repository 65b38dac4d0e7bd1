"""Job metrics: jobs ended by type and final state, their durations, retries, reaped units, queue depth.

Recorded in whichever process ends a job or retries a task: a Celery worker, or the gateway whose reaper
fails a job it gave up on. They live on one process-wide registry (:data:`REGISTRY`): the gateway adds it
to its own ``/metrics``, and a worker serves it on ``METRICS_PORT`` (:func:`start_server`, started by the
``worker_init`` signal) together with the depth of the Celery queues, read from the broker at scrape time
(:class:`QueueDepth`). With ``PROMETHEUS_MULTIPROC_DIR`` set (a prefork pool), the children write files
there and the server adds them up. docs/observability.md lists every metric.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

from celery import Celery
from celery.signals import worker_init, worker_process_shutdown
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from emgpose.jobs.celery_app import QUEUES, queue_size
from emgpose.metrics import Counter, Histogram, exposition_registry, mark_process_dead
from emgpose.settings import Settings, get_settings

log = logging.getLogger(__name__)

# Jobs run from seconds (a small preprocess part) to hours (a GPU training).
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0)

REGISTRY = CollectorRegistry()
JOBS = Counter(
    "emgpose_jobs_total",
    "Jobs ended, by type and final state (succeeded, failed, cancelled), counted by the process that ended them.",
    ("type", "state"),
    registry=REGISTRY,
)
DURATION = Histogram(
    "emgpose_job_duration_seconds",
    "Seconds from a job's start (its first lease; its submission if it never ran) to its end.",
    ("type", "state"),
    registry=REGISTRY,
    buckets=DURATION_BUCKETS,
)
RETRIES = Counter(
    "emgpose_job_retries_total",
    "Task retries after a transient error (store, broker, database), by task and error type.",
    ("task", "error"),
    registry=REGISTRY,
)
REAPED = Counter(
    "emgpose_jobs_reaped_total",
    "Units the reaper sent again (outcome resent) or whose job it failed after too many requeues (failed).",
    ("type", "outcome"),
    registry=REGISTRY,
)


def job_ended(job_type: str, state: str, started: datetime | None) -> None:
    """Counts a job that just ended and how long it took since ``started`` (naive datetimes are UTC)."""
    JOBS.inc(type=job_type, state=state)
    if started is not None:
        began = started if started.tzinfo else started.replace(tzinfo=UTC)
        DURATION.observe(max(0.0, (datetime.now(UTC) - began).total_seconds()), type=job_type, state=state)


def retried(task: str, error: BaseException) -> None:
    RETRIES.inc(task=task, error=type(error).__name__)


def reaped(job_type: str, outcome: str) -> None:
    REAPED.inc(type=job_type, outcome=outcome)


class QueueDepth(Collector):
    """``emgpose_queue_depth{queue}``: messages waiting in each Celery queue, read from the broker when
    scraped (a Redis ``LLEN``; the filesystem transport counts files). A broker that does not answer
    gives no sample and ``emgpose_queue_depth_up 0``, so an alert can tell "empty" from "unknown"."""

    def __init__(self, app: Celery, queues: tuple[str, ...] = QUEUES) -> None:
        self.app = app
        self.queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("emgpose_queue_depth", "Messages waiting in a Celery queue.", labels=["queue"])
        up = 1.0
        try:
            for queue in self.queues:
                depth.add_metric([queue], queue_size(self.app, queue))
        except Exception as exc:  # the broker is down: say so in a sample, never fail the scrape
            log.warning("queue depth: the broker did not answer: %s: %s", type(exc).__name__, exc)
            up = 0.0
        yield depth
        yield GaugeMetricFamily("emgpose_queue_depth_up", "1 when the broker answered the queue-depth read.", value=up)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # read at scrape time only: registering must not touch the broker


def start_server(app: Celery, settings: Settings | None = None) -> bool:
    """Serves :data:`REGISTRY` and the queue depths on ``METRICS_HOST:METRICS_PORT``; False where
    ``METRICS_PORT`` is unset (the default: ``emgpose up`` on a laptop runs no metrics server)."""
    settings = settings or get_settings()
    if settings.metrics_port is None:
        return False
    start_http_server(
        settings.metrics_port, addr=settings.metrics_host, registry=exposition_registry(REGISTRY, QueueDepth(app))
    )
    log.info("worker metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    return True


@worker_init.connect
def _serve_metrics(sender: object = None, **_kwargs: object) -> None:
    """The worker's main process, before its pool starts: one server whatever the pool."""
    app = getattr(sender, "app", None)
    if isinstance(app, Celery):
        start_server(app)


@worker_process_shutdown.connect
def _forget_child(pid: int | None = None, **_kwargs: object) -> None:
    """A prefork child exits: its live gauges go (multiprocess mode)."""
    mark_process_dead(pid)
