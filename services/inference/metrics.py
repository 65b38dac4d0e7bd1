"""Prometheus metrics written by hand in the text exposition format (version 0.0.4).

Counters, gauges and histograms with labels, thread-safe (the model watcher and the prediction
threads update them). One :class:`Metrics` per app, so tests can run several apps in one process.
:class:`MetricsMiddleware` counts every HTTP request by route template and status; a request whose
client closed the connection before the answer is counted with status ``499`` (nginx's "client closed
request", :mod:`emgpose.api`), never as a 500, and logs no traceback.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Iterable

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emgpose.api import CLIENT_CLOSED, ClientGone

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: LabelValues, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Family:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if set(labels) != set(self.label_names):
            raise ValueError(f"metric {self.name} takes labels {self.label_names}, got {sorted(labels)}")
        return tuple(str(labels[n]) for n in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Family):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        if not items and not self.label_names:
            items = [((), 0.0)]
        return self.header() + [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Gauge(_Family):
    kind = "gauge"

    def __init__(self, name: str, help_text: str, labels: Iterable[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = {}

    def set(self, value: float, **labels: str) -> None:
        with self._lock:
            self._values[self._key(labels)] = value

    def replace(self, value: float, **labels: str) -> None:
        """Sets this label set and drops every other (an info gauge that names the current version)."""
        with self._lock:
            self._values = {self._key(labels): value}

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Histogram(_Family):
    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, labels: Iterable[str] = (), buckets: tuple[float, ...] = LATENCY_BUCKETS
    ) -> None:
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[LabelValues, list[float]] = {}  # per-bucket counts, then +Inf count, then sum

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            series = self._series.setdefault(key, [0.0] * (len(self.buckets) + 2))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    series[i] += 1
            series[-2] += 1
            series[-1] += value

    def count(self, **labels: str) -> int:
        series = self._series.get(self._key(labels))
        return int(series[-2]) if series else 0

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        lines = self.header()
        for key, series in items:
            for bound, count in zip((*self.buckets, math.inf), series[:-1], strict=True):
                le = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {_number(count)}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(series[-1])}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {_number(series[-2])}")
        return lines


class Metrics:
    """Every metric the inference service exposes."""

    def __init__(self) -> None:
        prefix = "emgpose_inference"
        self.requests = Counter(
            f"{prefix}_requests_total", "HTTP requests by route and status.", ("endpoint", "method", "status")
        )
        self.request_seconds = Histogram(
            f"{prefix}_request_duration_seconds", "HTTP request duration by route.", ("endpoint",)
        )
        self.prediction_seconds = Histogram(
            f"{prefix}_prediction_seconds",
            "Time spent in preprocessing and the booster per prediction call.",
            ("endpoint",),
        )
        self.windows = Counter(f"{prefix}_windows_predicted_total", "Windows predicted.", ("endpoint",))
        self.windows_out_of_range = Counter(
            f"{prefix}_windows_out_of_range_total",
            "Windows with over 10% of their features outside the model's training range (extrapolated answers).",
            ("endpoint",),
        )
        self.stream_sessions = Counter(
            f"{prefix}_stream_sessions_total", "WebSocket stream sessions by how they ended.", ("outcome",)
        )
        self.model_info = Gauge(
            f"{prefix}_model_info", "The model version being served (value 1).", ("model", "version")
        )
        self.model_loaded = Gauge(f"{prefix}_model_loaded", "1 when a model is loaded and serving, else 0.")
        self.reloads = Counter(f"{prefix}_reloads_total", "Model loads by result (success or failure).", ("result",))
        self.store_errors = Counter(f"{prefix}_store_check_errors_total", "Failed reads of the latest pointer.")
        self.model_loaded.set(0)
        for result in ("success", "failure"):
            self.reloads.inc(0, result=result)

    def families(self) -> list[_Family]:
        return [value for value in vars(self).values() if isinstance(value, _Family)]

    def render(self) -> str:
        return "\n".join(line for family in self.families() for line in family.render()) + "\n"


class MetricsMiddleware:
    """Counts HTTP requests by route template (bounded cardinality), method and status, and times them."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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
            self.metrics.requests.inc(endpoint=endpoint, method=scope["method"], status=str(status))
            self.metrics.request_seconds.observe(time.perf_counter() - started, endpoint=endpoint)
