"""Bounded prediction work: a memory budget reserved before a body is read, a deadline per request, and a
watch that stops a computation whose client has gone or whose deadline has passed.

* :class:`MemoryBudget` (``PREDICT_MEMORY_MB``): a request reserves what it may need at its peak
  (:func:`json_cost`, :func:`binary_cost`: body, decoded arrays, one chunk of preprocessing) *before*
  its body is read, first come first served. A request that does not fit waits with its body unread:
  the server stops reading that connection (TCP flow control), so 20 maximum-size requests at once hold
  one budget, not 20 bodies. One that cannot start before its deadline is answered 503 with
  ``Retry-After``.
* :class:`Deadline`: ``PREDICT_TIMEOUT_S``, shortened by the request's ``X-Request-Timeout`` header
  (seconds; the gateway sends its own ``INFERENCE_TIMEOUT_S`` less a margin, so inference gives up
  before the gateway's 504 and no work runs on for nobody).
* :class:`Work`: what the prediction thread checks between chunks (:mod:`emgpose_inference.infer`):
  :func:`watched` sets ``gone`` as soon as the server reports the client's disconnect, and the deadline
  is read from the clock. A stopped prediction raises :class:`~emgpose.api.ClientGone` (answered 499,
  never counted as a server error) or :class:`DeadlineExceeded` (504).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from starlette.requests import Request
from starlette.types import Receive

from emgpose.api import ClientGone
from emgpose.errors import EmgPoseError, InvalidInput, Unavailable
from emgpose.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
MIB = 1024 * 1024
TIMEOUT_HEADER = "X-Request-Timeout"
CHUNK_SAMPLES = 8192  # samples preprocessed per step; the work is checked between steps
CHUNK_COST = 16 * MIB  # one step of filters, windows, features and booster input, with room (bench/predict_memory.py)
JSON_BODY_FACTOR = 3  # the body, its bracket-free copy and the byte masks that find the rows (fastjson)
JSON_VALUE_BYTES = 24  # per number: float64 result, float32 copy, comma index
BINARY_BODY_FACTOR = 2  # the body (float32, viewed in place) and its finiteness mask, with room


class Busy(Unavailable):
    """The memory budget had no room for this request before its deadline (HTTP 503, ``Retry-After``)."""


class DeadlineExceeded(EmgPoseError):
    """The prediction did not finish within its deadline and was abandoned (HTTP 504)."""

    status = 504


@dataclass(frozen=True)
class Deadline:
    """When a request's work must be done (``time.monotonic`` clock) and the budget it was given."""

    at: float
    seconds: float
    source: str

    @classmethod
    def for_request(cls, headers: Mapping[str, str], settings: Settings) -> Deadline:
        seconds, source = settings.predict_timeout_s, "PREDICT_TIMEOUT_S"
        value = headers.get(TIMEOUT_HEADER)
        if value is not None:
            try:
                asked = float(value)
            except ValueError:
                asked = math.nan
            if not math.isfinite(asked) or asked <= 0:
                raise InvalidInput(f"header {TIMEOUT_HEADER} must be a positive number of seconds, got {value!r}")
            if asked < seconds:
                seconds, source = asked, TIMEOUT_HEADER
        return cls(time.monotonic() + seconds, seconds, source)

    def left(self) -> float:
        return self.at - time.monotonic()

    def exceeded(self, what: str) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"{what} did not finish within its deadline of {self.seconds:g} s ({self.source}) and was stopped; "
            f"send shorter recordings, or retry when the service is less busy"
        )


def json_cost(body_bytes: int, max_samples: int, channels: int) -> int:
    """Peak bytes of a JSON request of ``body_bytes``: decoding, then one chunk of computing."""
    values = min(max_samples * channels, body_bytes // 2)  # a number takes at least "0," on the wire
    return body_bytes * JSON_BODY_FACTOR + values * JSON_VALUE_BYTES + CHUNK_COST


def binary_cost(body_bytes: int) -> int:
    """Peak bytes of a float32 request of ``body_bytes``."""
    return body_bytes * BINARY_BODY_FACTOR + CHUNK_COST


@dataclass
class MemoryBudget:
    """A first-come-first-served semaphore counted in bytes (``PREDICT_MEMORY_MB``)."""

    capacity: int
    used: int = 0
    _waiters: deque[tuple[int, asyncio.Future[None]]] = field(default_factory=deque)

    @asynccontextmanager
    async def reserve(self, nbytes: int, deadline: Deadline) -> AsyncIterator[None]:
        """Holds ``nbytes`` (at most the whole budget) for the block; 503 if none is free by the deadline."""
        need = max(1, min(int(nbytes), self.capacity))
        await self._acquire(need, deadline)
        try:
            yield
        finally:
            self.used -= need
            self._wake()

    async def _acquire(self, need: int, deadline: Deadline) -> None:
        if not self._waiters and self.used + need <= self.capacity:
            self.used += need
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (need, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout=max(0.0, deadline.left()))
        except BaseException as exc:
            if future.done() and not future.cancelled():
                self.used -= need  # granted just as the wait ended: give it back
            else:
                future.cancel()
                self._waiters.remove(entry)
            self._wake()
            if isinstance(exc, TimeoutError):
                raise Busy(
                    f"the service is busy: {self.used / MIB:.0f} MiB of prediction work is in flight "
                    f"(PREDICT_MEMORY_MB = {self.capacity / MIB:g}) and {len(self._waiters)} requests wait; this "
                    f"one could not start within its deadline of {deadline.seconds:g} s ({deadline.source}); "
                    f"retry later",
                    headers={"Retry-After": "1"},
                ) from None
            raise

    def _wake(self) -> None:
        while self._waiters:
            need, future = self._waiters[0]
            if future.done():
                self._waiters.popleft()
                continue
            if self.used + need > self.capacity:
                return
            self._waiters.popleft()
            self.used += need
            future.set_result(None)


@dataclass
class Work:
    """Read by the prediction thread between chunks; written by :func:`watched` on the event loop."""

    deadline: Deadline
    what: str
    gone: bool = False

    def check(self) -> None:
        """Raises where the work should stop: the client left (499) or the deadline passed (504)."""
        if self.gone:
            raise ClientGone(f"{self.what}: the client closed the connection")
        if self.deadline.left() <= 0:
            raise self.deadline.exceeded(self.what)


async def _watch(receive: Receive, work: Work) -> None:
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                work.gone = True
                return
    except Exception:  # a server that cannot tell us any more: the deadline still bounds the work
        log.debug("stopped watching for a disconnect", exc_info=True)


async def watched(request: Request, work: Work, call: Callable[[], Awaitable[T]]) -> T:
    """Runs ``call`` (the body has been read) while a task listens for the client's disconnect (after
    the body, the server's ``receive`` answers only that). Exceptions of ``call`` pass unchanged."""
    watcher = asyncio.ensure_future(_watch(request.receive, work))
    try:
        return await call()
    finally:
        watcher.cancel()


def content_length(request: Request) -> int | None:
    value = request.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


async def read_body(request: Request, limit: int, too_large: Callable[[int], Exception], work: Work) -> bytes:
    """The body, refused with ``too_large(bytes seen)`` as soon as it passes ``limit`` bytes, and given up
    when the deadline passes while it arrives."""
    chunks: list[bytes] = []
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise too_large(seen)
        if work.deadline.left() <= 0:
            raise work.deadline.exceeded(f"{work.what} (reading the body)")
        chunks.append(chunk)
    return b"".join(chunks)


async def bounded(
    request: Request,
    budget: MemoryBudget,
    work: Work,
    cost: int,
    limit: int,
    too_large: Callable[[int], Exception],
    compute: Callable[[bytes], Awaitable[T]],
) -> T:
    """The whole life of a prediction request: reserve ``cost`` bytes of the budget, then read the body
    (at most ``limit`` bytes), then ``compute`` it while the client's disconnect is watched."""
    async with budget.reserve(cost, work.deadline):
        raw = await read_body(request, limit, too_large, work)
        return await watched(request, work, lambda: compute(raw))
