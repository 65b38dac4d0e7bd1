"""Prometheus metrics for every service, on the maintained client (``prometheus-client``).

Each app builds its metrics on its own :class:`~prometheus_client.CollectorRegistry`
(:func:`new_registry`), so tests can run several apps in one process. Where ``PROMETHEUS_MULTIPROC_DIR``
is set (uvicorn ``--workers N``, a prefork Celery pool), every process writes its values to files in that
folder and :func:`render` aggregates all of them with :class:`~prometheus_client.multiprocess.MultiProcessCollector`,
so one scrape sees the whole service whichever process answers it. The folder must be empty when the
service starts (compose mounts a fresh tmpfs; :func:`prepare_multiprocess_dir` empties one).

The small wrappers below keep the call sites short (``metrics.requests.inc(endpoint=..., status=...)``)
and read values back without private attributes (tests, ``/readyz``-style summaries).
:class:`MetricsMiddleware` counts every HTTP request by route template and status; a request whose client
closed the connection before the answer is counted with status ``499`` (nginx's "client closed request",
:mod:`emgpose.api`), never as a 500, and logs no traceback.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from typing import Any, Protocol

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emgpose.api import CLIENT_CLOSED, ClientGone

log = logging.getLogger(__name__)

CONTENT_TYPE = prometheus_client.exposition.CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest writes
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# A `_created` timestamp beside every counter and histogram doubles the series and says nothing a
# dashboard uses; process start time is in process_start_time_seconds.
prometheus_client.disable_created_metrics()


def multiprocess_dir() -> str | None:
    """The folder of multiprocess mode, or None (one process serves)."""
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir(path: str) -> str:
    """Empties (or creates) ``path`` for a service about to start its processes: values a previous run
    left there would otherwise be added to the new ones."""
    if os.path.isdir(path):
        for entry in os.scandir(path):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
    os.makedirs(path, exist_ok=True)
    return path


def use_multiprocess_dir() -> str:
    """Before a server starts several processes: ``PROMETHEUS_MULTIPROC_DIR`` emptied, or, unset, set to a
    new temporary folder the processes inherit (the environment is read when prometheus-client is imported)."""
    path = multiprocess_dir()
    if path is None:
        path = tempfile.mkdtemp(prefix="emgpose-metrics-")
        atexit.register(shutil.rmtree, path, ignore_errors=True)  # ours: gone when the server stops
    os.environ[MULTIPROC_ENV] = prepare_multiprocess_dir(path)
    return path


def new_registry() -> CollectorRegistry:
    """A registry for one app; with process and GC metrics where one process serves (in multiprocess mode
    those describe only the answering process, so they are left out)."""
    registry = CollectorRegistry()
    folder = multiprocess_dir()
    if folder is not None:  # compose mounts a tmpfs there; run by hand, the folder may not exist yet
        os.makedirs(folder, exist_ok=True)
    if folder is None:
        prometheus_client.ProcessCollector(registry=registry)
        prometheus_client.GCCollector(registry=registry)
    return registry


def render(*registries: CollectorRegistry) -> bytes:
    """The text exposition of ``registries``, or of every process's files in multiprocess mode."""
    if multiprocess_dir() is not None:
        collecting = CollectorRegistry()
        multiprocess.MultiProcessCollector(collecting)
        return generate_latest(collecting)
    return b"".join(generate_latest(registry) for registry in registries)


def exposition_registry(registry: CollectorRegistry, *extra: Collector) -> CollectorRegistry:
    """What a standalone metrics server (a Celery worker's) serves: ``registry``, or every process's files
    in multiprocess mode; plus ``extra`` collectors that read their values at scrape time."""
    if multiprocess_dir() is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    for collector in extra:
        registry.register(collector)
    return registry


def mark_process_dead(pid: int | None = None) -> None:
    """Drops the live gauges of an exiting process (multiprocess mode; nothing otherwise)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid or os.getpid())


class _Family:
    """One metric family with keyword labels at the call site."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric

    def _child(self, labels: dict[str, str]) -> Any:
        return self.metric.labels(**labels) if labels else self.metric

    def sample(self, suffix: str = "", **labels: str) -> float:
        """The value of series ``<name><suffix>{labels}`` in this process (0 where none was recorded)."""
        for family in self.metric.collect():
            for sample in family.samples:
                if sample.name == family.name + suffix and sample.labels == labels:
                    return float(sample.value)
        return 0.0


class Counter(_Family):
    def __init__(self, name: str, doc: str, labels: Iterable[str] = (), *, registry: CollectorRegistry) -> None:
        super().__init__(prometheus_client.Counter(name, doc, tuple(labels), registry=registry))

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self._child(labels).inc(amount)

    def value(self, **labels: str) -> float:
        return self.sample("_total", **labels)


class Gauge(_Family):
    def __init__(
        self,
        name: str,
        doc: str,
        labels: Iterable[str] = (),
        *,
        registry: CollectorRegistry,
        multiprocess_mode: str = "livemax",
    ) -> None:
        self._names = tuple(labels)
        super().__init__(
            prometheus_client.Gauge(name, doc, self._names, registry=registry, multiprocess_mode=multiprocess_mode)
        )
        self._current: dict[str, str] | None = None

    def set(self, value: float, **labels: str) -> None:
        self._child(labels).set(value)

    def replace(self, value: float, **labels: str) -> None:
        """Sets this label set and retires the one set before (an info gauge naming the current version).

        One process forgets the old series; in multiprocess mode a process's file cannot forget one, so
        the old series reads 0 instead.
        """
        previous, self._current = self._current, dict(labels)
        if previous is not None and previous != labels:
            if multiprocess_dir() is None:
                self.metric.remove(*(previous[name] for name in self._names))
            else:
                self._child(previous).set(0)
        self._child(labels).set(value)

    def value(self, **labels: str) -> float:
        return self.sample("", **labels)


class Histogram(_Family):
    def __init__(
        self,
        name: str,
        doc: str,
        labels: Iterable[str] = (),
        *,
        registry: CollectorRegistry,
        buckets: Iterable[float] = LATENCY_BUCKETS,
    ) -> None:
        super().__init__(prometheus_client.Histogram(name, doc, tuple(labels), registry=registry, buckets=buckets))

    def observe(self, value: float, **labels: str) -> None:
        self._child(labels).observe(value)

    def count(self, **labels: str) -> int:
        return int(self.sample("_count", **labels))

    def sum(self, **labels: str) -> float:
        return self.sample("_sum", **labels)

    def bucket(self, le: float, **labels: str) -> int:
        """Observations at most ``le`` (the cumulative bucket)."""
        return int(self.sample("_bucket", **labels, le=floatToGoString(le)))


class HttpMetrics(Protocol):
    """What :class:`MetricsMiddleware` records into."""

    requests: Counter  # labels endpoint, method, status
    request_seconds: Histogram  # labels endpoint, status


def http_families(prefix: str, registry: CollectorRegistry) -> tuple[Counter, Histogram]:
    """The two families every HTTP service exposes: requests and their latency by route and status."""
    requests = Counter(
        f"{prefix}_requests_total",
        "HTTP requests by route and status.",
        ("endpoint", "method", "status"),
        registry=registry,
    )
    seconds = Histogram(
        f"{prefix}_request_duration_seconds",
        "HTTP request duration by route and status, from the first byte read to the last one sent.",
        ("endpoint", "status"),
        registry=registry,
    )
    return requests, seconds


class MetricsMiddleware:
    """Counts HTTP requests by route template (bounded cardinality), method and status, and times them.

    In multiprocess mode it also drops the process's live gauges when the app shuts down (uvicorn
    sends ``lifespan.shutdown.complete`` through the middleware stack), so a stopped worker's model version
    stops showing.
    """

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except (ClientDisconnect, ClientGone):  # the app's handler answers 499 first; this is the backstop
            status = CLIENT_CLOSED
            log.info("%s %s: the client closed the connection before the answer", scope["method"], scope["path"])
        except asyncio.CancelledError:  # cancelled before an answer started: not a server error either
            if status == 500:
                status = CLIENT_CLOSED
            raise
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            code = str(status)
            self.metrics.requests.inc(endpoint=endpoint, method=scope["method"], status=code)
            self.metrics.request_seconds.observe(time.perf_counter() - started, endpoint=endpoint, status=code)

    @staticmethod
    def _lifespan_send(send: Send) -> Send:
        async def forward(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                mark_process_dead()
            await send(message)

        return forward
