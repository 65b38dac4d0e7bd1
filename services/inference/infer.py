"""Predictions off the event loop, timed and counted, and the ``/v1`` answer built from a prediction.

Preprocessing and the booster are CPU-bound: :meth:`Runner.call` runs them in worker threads, at most
one per CPU core at a time (more would only make each request slower), so the event loop keeps
answering health checks, metrics and other connections meanwhile.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import anyio.to_thread
import numpy as np
from anyio import CapacityLimiter

from emgpose.train.coverage import flagged
from emgpose.train.predict import Prediction, Predictor, Prepared, predict
from emgpose_inference.admission import CHUNK_SAMPLES, Work
from emgpose_inference.batching import Batcher, Fresh
from emgpose_inference.metrics import Metrics
from emgpose_inference.schemas import PredictResponse
from emgpose_inference.state import Loaded

T = TypeVar("T")


class Runner:
    """Runs prediction work in threads (bounded) and records its latency and window counts; small
    requests and stream chunks go through the process's :class:`~emgpose_inference.batching.Batcher`."""

    def __init__(
        self,
        metrics: Metrics,
        max_concurrent: int | None = None,
        batch_max_windows: int = 64,
        batch_max_wait_s: float = 0.001,
    ) -> None:
        self.metrics = metrics
        self.limiter = CapacityLimiter(max_concurrent or os.cpu_count() or 1)
        self.batcher = Batcher(self._record, metrics, self.limiter, batch_max_windows, batch_max_wait_s)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    def predict(
        self,
        endpoint: str,
        loaded: Loaded,
        emg: np.ndarray,
        times: np.ndarray | None = None,
        work: Work | None = None,
    ) -> Prediction:
        """A whole recording (call it inside :meth:`call`), preprocessed in steps of
        :data:`~emgpose_inference.admission.CHUNK_SAMPLES` through one :class:`Predictor`: the same
        windows and answers as one call (the chain is causal and carries its state), a bounded working
        set, and a check of ``work`` before each step, so a request whose client left or whose deadline
        passed stops computing."""
        started = time.perf_counter()
        if work is None:
            result = predict(loaded.bundle, emg, times)
        else:
            predictor = Predictor(loaded.bundle)
            emg = predictor.check(emg)  # the whole input once, so a NaN is located in request coordinates
            parts = []
            for start in range(0, len(emg), CHUNK_SAMPLES):
                work.check()
                stop = start + CHUNK_SAMPLES
                parts.append(predictor.push(emg[start:stop], None if times is None else times[start:stop]))
            result = concatenate(parts)
        self._record(endpoint, started, result)
        return result

    def push(self, endpoint: str, predictor: Predictor, emg: np.ndarray) -> Prediction:
        """The next chunk of a stream (call it inside :meth:`call`)."""
        started = time.perf_counter()
        result = predictor.push(emg)
        self._record(endpoint, started, result)
        return result

    def prepare_request(
        self, loaded: Loaded, emg: np.ndarray, times: np.ndarray | None, work: Work
    ) -> tuple[Predictor, Prepared] | Fresh:
        """A batch job's ``prepare`` for a whole (small) recording of the request's pinned version (call
        it in the batch thread): checked, and left to the batch to preprocess with others of its length,
        or, with explicit times, prepared here by a fresh :class:`Predictor`."""
        work.check()  # the client may have left, or the deadline passed, while the job was queued
        predictor = Predictor(loaded.bundle)
        if times is not None:
            return predictor, predictor.prepare(emg, times)
        emg = predictor.check(emg)
        span, stride = loaded.window_length, loaded.window_stride
        return Fresh(loaded.bundle, emg, 0 if len(emg) < span else (len(emg) - span) // stride + 1)

    def _record(self, endpoint: str, started: float, result: Prediction) -> None:
        self.metrics.prediction_seconds.observe(time.perf_counter() - started, endpoint=endpoint)
        self.metrics.windows.inc(len(result), endpoint=endpoint)
        if result.out_of_range is not None:
            self.metrics.windows_out_of_range.inc(flagged(result.out_of_range), endpoint=endpoint)


def concatenate(parts: list[Prediction]) -> Prediction:
    """The predictions of consecutive chunks of one stream as one (chunks that completed no window add nothing)."""
    full = [p for p in parts if len(p)] or parts[:1]
    first = full[0]
    ranges = [p.out_of_range for p in full]
    return replace(
        first,
        window_end=np.concatenate([p.window_end for p in full]),
        t_end=np.concatenate([p.t_end for p in full]),
        values=np.concatenate([p.values for p in full]),
        out_of_range=None if any(r is None for r in ranges) else np.concatenate(ranges),
    )


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
