"""Dynamic batching: the windows of concurrent requests and stream chunks through one booster call.

One booster call costs about as much for 64 rows as for one (XGBoost's per-call overhead dominates a
single window), and a worker thread per request makes the requests of one process contend for the GIL.
So, as Triton's dynamic batcher and BentoML's adaptive batching do, each process runs ONE dispatcher:

* a request (or a stream's binary chunk) becomes a :class:`Job` in a queue and waits for its answer;
* when the dispatcher is free it takes the queue: in one worker thread it prepares each job in turn
  (parse, check, filters, windows, features: :meth:`~emgpose.train.predict.Predictor.prepare`) until
  :attr:`Batcher.max_windows` rows are gathered (the rest stay queued, in order, for the next batch),
  runs the booster once per served version over the rows of all of them, in calls of at most
  ``max_windows`` rows, then finishes and serialises each answer;
* a lone request is dispatched at once. A batch is held back only while requests that were accepted
  are still being read (:meth:`Batcher.expect`), and then at most ``max_wait_s`` after its oldest job
  was queued, and never beyond ``max_windows``.

Errors stay with their job: a job whose parsing, preprocessing, finishing or serialising raises gets
that exception, the others their answers; a booster call that fails is retried job by job, so only a
job whose own rows fail gets the error. A model swapped mid-batch changes nothing: each job carries the
:class:`~emgpose.train.predict.Predictor` of the version its request pinned, and rows are grouped by
version. Every booster call is recorded in ``metrics.batch_size`` (rows).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import numpy as np
from anyio import CapacityLimiter

from emgpose.train.bundle import Bundle
from emgpose.train.predict import Prediction, Predictor, Prepared
from emgpose.train.stacked import prepare_together

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fresh:
    """A whole recording for a fresh predictor (a ``/v1/predict`` request on the input's own clock):
    the batch preprocesses those of one version and length in one pass (:mod:`emgpose.train.stacked`)."""

    bundle: Bundle
    emg: np.ndarray  # checked: float32 (samples, channels), finite
    windows: int  # the rows it will give


Prepare = Callable[[], "tuple[Predictor, Prepared] | Fresh"]
Respond = Callable[[Prediction], Any]
Record = Callable[[str, float, Prediction], None]


@dataclass(eq=False)
class Job:
    """One request's or stream chunk's part of a batch; ``prepare`` and ``respond`` run in the batch thread."""

    endpoint: str
    prepare: Prepare  # parse and check the input, then Predictor.prepare (advances a stream's state)
    respond: Respond  # the answer's body from the finished prediction
    future: asyncio.Future[Any]
    queued: float = field(default_factory=time.perf_counter)


@dataclass(eq=False)
class _Ready:
    job: Job
    predictor: Predictor
    prepared: Prepared
    raw: np.ndarray | None = None
    error: Exception | None = None  # the booster failed on this job's own rows


class Arrival:
    """A request that was accepted and will submit a job (its body is being read); see :meth:`Batcher.expect`."""

    def __init__(self, batcher: Batcher) -> None:
        self._batcher: Batcher | None = batcher

    def here(self) -> None:
        """The request submitted its job, or will not: it no longer holds a batch back (idempotent)."""
        if self._batcher is not None:
            self._batcher._arriving -= 1
            self._batcher._kick()
            self._batcher = None


class Batcher:
    """The queue and dispatcher of one process (see the module doc); started by the first :meth:`submit`."""

    def __init__(self, record: Record, metrics: Any, limiter: CapacityLimiter, max_windows: int, max_wait_s: float):
        if max_windows < 1 or max_wait_s < 0:
            raise ValueError(f"need max_windows >= 1 and max_wait_s >= 0, got {max_windows} and {max_wait_s}")
        self.record = record
        self.metrics = metrics
        self.limiter = limiter
        self.max_windows = max_windows
        self.max_wait_s = max_wait_s
        self._queue: deque[Job] = deque()
        self._arriving = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @contextmanager
    def expect(self) -> Iterator[Arrival]:
        """Marks a request that will submit a job once its body is read: a batch may wait for it."""
        self._arriving += 1
        arrival = Arrival(self)
        try:
            yield arrival
        finally:
            arrival.here()

    async def submit(self, endpoint: str, prepare: Prepare, respond: Respond, arrival: Arrival | None = None) -> Any:
        """Queues one job and returns ``respond``'s value for it (or raises the job's own exception)."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._dispatch(), name="inference-batcher")
        job = Job(endpoint, prepare, respond, loop.create_future())
        self._queue.append(job)
        if arrival is not None:
            arrival.here()  # kicks the dispatcher
        else:
            self._kick()
        return await job.future

    async def close(self) -> None:
        """Stops the dispatcher (the app's shutdown); queued jobs are cancelled."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        while self._queue:
            self._queue.popleft().future.cancel()

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _hold(self) -> float:
        """Seconds the queued jobs should still wait for arriving requests (0: dispatch now)."""
        if not self._arriving or self.max_wait_s <= 0 or len(self._queue) >= self.max_windows:
            return 0.0
        return max(0.0, self._queue[0].queued + self.max_wait_s - time.perf_counter())

    async def _dispatch(self) -> None:
        assert self._wake is not None
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            hold = self._hold()
            if hold > 0:
                self._wake.clear()
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), hold)
                continue
            jobs = [job for job in self._queue if not job.future.done()]  # a cancelled request drops out
            self._queue.clear()
            if not jobs:
                continue
            try:
                outcomes, rest = await anyio.to_thread.run_sync(self._run, jobs, limiter=self.limiter)
            except BaseException as exc:  # the batch itself broke (or shutdown): its jobs get the error
                for job in jobs:
                    _settle(job, None, exc if isinstance(exc, Exception) else RuntimeError("the server stopped"))
                if not isinstance(exc, Exception):
                    raise
                log.exception("a prediction batch of %d jobs failed", len(jobs))
                continue
            self._queue.extendleft(reversed(rest))
            for job, value, error in outcomes:
                _settle(job, value, error)

    # --- the batch thread --------------------------------------------------------------------

    def _run(self, jobs: list[Job]) -> tuple[list[tuple[Job, Any, BaseException | None]], list[Job]]:
        """Prepares jobs up to ``max_windows`` rows, predicts them, answers them; returns the jobs left over."""
        outcomes: list[tuple[Job, Any, BaseException | None]] = []
        ready: list[_Ready] = []
        fresh: list[tuple[Job, Fresh]] = []
        rows, rest = 0, []
        for i, job in enumerate(jobs):
            if rows >= self.max_windows:
                rest = jobs[i:]
                break
            try:
                got = job.prepare()
            except Exception as exc:
                outcomes.append((job, None, exc))
                continue
            if isinstance(got, Fresh):
                fresh.append((job, got))
                rows += got.windows
            else:
                ready.append(_Ready(job, *got))
                rows += len(got[1])
        ready += self._stack(fresh, outcomes)
        return self._finish(ready, outcomes), rest

    @staticmethod
    def _stack(fresh: list[tuple[Job, Fresh]], outcomes: list[tuple[Job, Any, BaseException | None]]) -> list[_Ready]:
        """Fresh recordings of one version and length preprocessed together; should a pass fail, each
        recording of it alone (so the error stays with the recording that causes it)."""
        groups: dict[tuple[int, tuple[int, ...]], list[tuple[Job, Fresh]]] = {}
        for job, item in fresh:
            groups.setdefault((id(item.bundle), item.emg.shape), []).append((job, item))
        ready = []
        for group in groups.values():
            bundle = group[0][1].bundle
            try:
                pairs = prepare_together(bundle, [item.emg for _, item in group])
            except Exception:
                if len(group) > 1:
                    log.warning("preparing %d recordings together failed; one by one", len(group), exc_info=True)
                for job, item in group:
                    try:
                        predictor = Predictor(bundle)
                        ready.append(_Ready(job, predictor, predictor.prepare(item.emg)))
                    except Exception as exc:
                        outcomes.append((job, None, exc))
                continue
            ready += [_Ready(job, *pair) for (job, _), pair in zip(group, pairs, strict=True)]
        return ready

    def _finish(
        self, ready: list[_Ready], outcomes: list[tuple[Job, Any, BaseException | None]]
    ) -> list[tuple[Job, Any, BaseException | None]]:
        groups: dict[int, list[_Ready]] = {}
        for item in ready:
            groups.setdefault(id(item.predictor.bundle), []).append(item)
        for group in groups.values():
            self._predict(group)
        for item in ready:
            try:
                if item.error is not None:
                    raise item.error
                assert item.raw is not None  # set by _predict unless error is
                result = item.predictor.finish(item.prepared, item.raw)
                self.record(item.job.endpoint, item.job.queued, result)
                outcomes.append((item.job, item.job.respond(result), None))
            except Exception as exc:
                outcomes.append((item.job, None, exc))
        return outcomes

    def _predict(self, group: list[_Ready]) -> None:
        """Sets ``raw`` of every item of one version: one booster call per ``max_windows`` rows; where a
        call fails, each of its items alone (so only an item whose own rows fail stays without ``raw``)."""
        predictor = group[0].predictor
        for item in group:
            if not len(item.prepared):
                item.raw = predictor.raw(item.prepared.features)  # no rows: no booster call
        full = [item for item in group if len(item.prepared)]
        if not full:
            return
        features = (
            np.concatenate([item.prepared.features for item in full]) if len(full) > 1 else full[0].prepared.features
        )
        try:
            parts = []
            for start in range(0, len(features), self.max_windows):
                rows = features[start : start + self.max_windows]
                parts.append(predictor.raw(rows))
                self.metrics.batch_size.observe(len(rows))
            raw = np.concatenate(parts) if len(parts) > 1 else parts[0]
        except Exception as exc:
            if len(full) == 1:
                full[0].error = exc
                return
            log.warning("a booster call over %d jobs failed; predicting them one by one", len(full), exc_info=True)
            for item in full:
                self._predict([item])
            return
        offset = 0
        for item in full:
            item.raw = raw[offset : offset + len(item.prepared)]
            offset += len(item.prepared)


def _settle(job: Job, value: Any, error: BaseException | None) -> None:
    if job.future.done():  # the request was cancelled (client gone) meanwhile
        return
    if error is not None:
        job.future.set_exception(error)
    else:
        job.future.set_result(value)
