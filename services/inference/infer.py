"""Predictions off the event loop, timed and counted, and the ``/v1`` answer built from a prediction.

Preprocessing and the booster are CPU-bound: :meth:`Runner.call` runs them in worker threads, at most
one per CPU core at a time (more would only make each request slower), so the event loop keeps
answering health checks, metrics and other connections meanwhile.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
import numpy as np
from anyio import CapacityLimiter

from emgpose.train.coverage import flagged
from emgpose.train.predict import Prediction, Predictor, predict
from emgpose_inference.metrics import Metrics
from emgpose_inference.schemas import PredictResponse
from emgpose_inference.state import Loaded

T = TypeVar("T")


class Runner:
    """Runs prediction work in threads (bounded) and records its latency and window counts."""

    def __init__(self, metrics: Metrics, max_concurrent: int | None = None) -> None:
        self.metrics = metrics
        self.limiter = CapacityLimiter(max_concurrent or os.cpu_count() or 1)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    def predict(self, endpoint: str, loaded: Loaded, emg: np.ndarray, times: np.ndarray | None = None) -> Prediction:
        """One-shot prediction of a whole recording (call it inside :meth:`call`)."""
        started = time.perf_counter()
        result = predict(loaded.bundle, emg, times)
        self._record(endpoint, started, result)
        return result

    def push(self, endpoint: str, predictor: Predictor, emg: np.ndarray) -> Prediction:
        """The next chunk of a stream (call it inside :meth:`call`)."""
        started = time.perf_counter()
        result = predictor.push(emg)
        self._record(endpoint, started, result)
        return result

    def _record(self, endpoint: str, started: float, result: Prediction) -> None:
        self.metrics.prediction_seconds.observe(time.perf_counter() - started, endpoint=endpoint)
        self.metrics.windows.inc(len(result), endpoint=endpoint)
        if result.out_of_range is not None:
            self.metrics.windows_out_of_range.inc(flagged(result.out_of_range), endpoint=endpoint)


def prediction_fields(result: Prediction) -> dict[str, Any]:
    """The fields of :class:`PredictResponse` (also the body of a stream's prediction message)."""
    fields: dict[str, Any] = {
        "model": result.model,
        "model_version": result.version,
        "task": result.task,
        "window_end_s": result.t_end.tolist(),
        "window_end_sample": result.window_end.tolist(),
    }
    if result.task == "regression":
        fields.update(joints=result.names, radians=result.values.tolist(), degrees=result.degrees.tolist())
    else:
        fields.update(classes=result.names, probabilities=result.values.tolist(), predicted=result.classes)
    if result.out_of_range is not None:
        fields["out_of_range"] = result.out_of_range.round(4).tolist()
    return fields


def predict_response_json(result: Prediction) -> bytes:
    """The ``/v1/predict`` body, serialised without re-validating thousands of numbers."""
    return PredictResponse.model_construct(**prediction_fields(result)).model_dump_json(exclude_none=True).encode()
