"""A deadline on requests that use the database: 503 when the answer has not started in time.

A PostgreSQL server that is frozen (stopped process, hung host) accepts TCP and then never answers, so
no libpq timeout covers a query on a connection that is already open, and the route's worker thread
blocks until the server comes back. :class:`DatabaseDeadline` runs each request in its own task; once
the route has opened its database session (:func:`mark_database_use`, called by ``SessionDep``), the
task must start its response within the deadline, or the middleware answers
``503 {"detail": "the database at ... did not answer within N s; retry later"}`` itself and drops
whatever the task sends later. The task is left to finish on its own (a thread cannot be cancelled), so
a 503 from the deadline does not prove that nothing happened: a submission may still be committed once
the database answers, which is what ``Idempotency-Key`` retries are for.

Requests that never open a session are never cut: streamed uploads (short transactions of their own),
``/v1/predict`` (the inference proxy has its own timeouts), ``/healthz``, ``/readyz``. A route that
holds its session while it waits on something else (the broker, the object store) is cut all the same.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

SCOPE_KEY = "emgpose.database_use"


class DatabaseUse:
    """When the request opened its database session (set from the route's worker thread)."""

    since: float | None = None


def mark_database_use(scope: Scope) -> None:
    """Starts the request's deadline (a no-op outside :class:`DatabaseDeadline`, or when already started)."""
    use = scope.get(SCOPE_KEY)
    if use is not None and use.since is None:
        use.since = time.monotonic()


def end_database_use(scope: Scope) -> None:
    """Stops the deadline a short database use started (the API-key lookup) before the route runs.

    The route starts it again when it opens its own session; a route that never does (``/v1/predict``,
    streamed uploads) is then not cut, however long it computes or transfers.
    """
    use = scope.get(SCOPE_KEY)
    if use is not None:
        use.since = None


class DatabaseDeadline:
    """Pure ASGI middleware: ``app.add_middleware(DatabaseDeadline, deadline_s=4.0, database=redacted_url)``."""

    def __init__(self, app: ASGIApp, deadline_s: float, database: str) -> None:
        self.app = app
        self.deadline_s = deadline_s
        self.detail = f"the database at {database} did not answer within {deadline_s:g} s; retry later"
        self._late: set[asyncio.Task[None]] = set()  # answered by the deadline, still running

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        use = scope[SCOPE_KEY] = DatabaseUse()
        started = asyncio.Event()
        expired = False

        async def forward(message: Message) -> None:
            if expired:
                return  # the deadline answered; this late response goes nowhere
            if message["type"] == "http.response.start":
                started.set()
            await send(message)

        task = asyncio.create_task(self.app(scope, receive, forward))
        waiter = asyncio.create_task(started.wait())
        try:
            while not (task.done() or started.is_set()):
                left = self.deadline_s if use.since is None else use.since + self.deadline_s - time.monotonic()
                if left <= 0:
                    break
                await asyncio.wait({task, waiter}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            waiter.cancel()
        if task.done() or started.is_set():
            await task  # the rest of the response (streamed bodies), or the route's error
            return
        expired = True
        log.warning("%s %s: no answer within %g s; answered 503", scope["method"], scope["path"], self.deadline_s)
        self._late.add(task)
        task.add_done_callback(self._finished_late)
        await JSONResponse({"detail": self.detail}, status_code=503)(scope, receive, send)

    def _finished_late(self, task: asyncio.Task[Any]) -> None:
        self._late.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is None:
            log.info("a request answered 503 by the deadline has finished (its response was dropped)")
        else:
            log.warning("a request answered 503 by the deadline ended later with %s: %s", type(error).__name__, error)
