"""The inference service's Prometheus metrics, on ``prometheus-client`` (:mod:`emgpose.metrics`).

One :class:`Metrics` per app, on its own registry, so tests can run several apps in one process. With
``PROMETHEUS_MULTIPROC_DIR`` set (uvicorn ``--workers N``; :mod:`emgpose_inference.serve` sets one up),
``/metrics`` adds up every worker's counters and histograms; the model gauges carry a ``pid`` label, one
series per worker, because each worker hot-reloads on its own. docs/observability.md lists every metric.
"""

from __future__ import annotations

from emgpose.metrics import CONTENT_TYPE, Counter, Gauge, Histogram, MetricsMiddleware, http_families, new_registry
from emgpose.metrics import render as render_registries

__all__ = ["CONTENT_TYPE", "Metrics", "MetricsMiddleware"]

PREFIX = "emgpose_inference"
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """Every metric the inference service exposes."""

    def __init__(self) -> None:
        self.registry = registry = new_registry()
        self.requests, self.request_seconds = http_families(PREFIX, registry)
        self.prediction_seconds = Histogram(
            f"{PREFIX}_prediction_seconds",
            "Time spent in preprocessing and the booster per prediction call.",
            ("endpoint",),
            registry=registry,
        )
        self.windows = Counter(
            f"{PREFIX}_windows_predicted_total", "Windows predicted.", ("endpoint",), registry=registry
        )
        self.windows_out_of_range = Counter(
            f"{PREFIX}_windows_out_of_range_total",
            "Windows with over 10% of their features outside the model's training range (extrapolated answers).",
            ("endpoint",),
            registry=registry,
        )
        self.stream_sessions = Counter(
            f"{PREFIX}_stream_sessions_total",
            "WebSocket stream sessions by how they ended.",
            ("outcome",),
            registry=registry,
        )
        self.model_info = Gauge(
            f"{PREFIX}_model_info",
            "The model version being served (value 1; per worker process in multiprocess mode).",
            ("model", "version"),
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.model_loaded = Gauge(
            f"{PREFIX}_model_loaded",
            "1 when a model is loaded and serving, else 0 (the lowest over live worker processes).",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.reloads = Counter(
            f"{PREFIX}_reloads_total", "Model loads by result (success or failure).", ("result",), registry=registry
        )
        self.store_errors = Counter(
            f"{PREFIX}_store_check_errors_total", "Failed reads of the latest pointer.", registry=registry
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_windows",
            "Windows per booster call of the dynamic batcher (requests and stream chunks gathered together).",
            registry=registry,
            buckets=BATCH_BUCKETS,
        )
        self.model_loaded.set(0)
        for result in ("success", "failure"):
            self.reloads.inc(0, result=result)

    def render(self) -> bytes:
        """The text exposition (every worker's, in multiprocess mode)."""
        return render_registries(self.registry)
