"""Logging for the services: one line per record, level from ``LOG_LEVEL``, format from ``LOG_FORMAT``.

``LOG_FORMAT=json`` (compose's default) writes one JSON object a line - ``ts``, ``level``, ``logger``,
``pid``, ``message``, ``exc`` where a traceback came with it - plus ``request_id`` while an HTTP request
is handled (:class:`RequestIdMiddleware`) and ``job_id`` while a worker runs a job (:func:`job_context`),
so a log store can gather every line of one request or job across the gateway, inference and the
workers. ``text`` keeps the classic line for a terminal. The standard library's formatter is all this
needs: no logging dependency.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emgpose.settings import get_settings

FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"
REQUEST_ID: ContextVar[str | None] = ContextVar("emgpose_request_id", default=None)
JOB_ID: ContextVar[str | None] = ContextVar("emgpose_job_id", default=None)
HEADER = "x-request-id"
# A client's id is kept when it is short and plain (it ends up in logs and in a header sent on).
CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")  # uvicorn's handlers, not the root's


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the request or job id in effect where the record was made."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, var in (("request_id", REQUEST_ID), ("job_id", JOB_ID)):
            value = var.get()
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["exc"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter(fmt: str) -> logging.Formatter:
    """The formatter for ``LOG_FORMAT`` (``json`` or ``text``)."""
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return logging.Formatter(FORMAT)
    raise ValueError(f"LOG_FORMAT must be json or text, got {fmt!r}")


def setup_logging(level: str | None = None, fmt: str | None = None) -> None:
    """Configures the root logger once (a second call only changes the level); in JSON, uvicorn's own
    lines (startup, access log) are JSON too, so every line a container prints parses."""
    settings = get_settings()
    level = (level or settings.log_level).upper()
    fmt = fmt or settings.log_format
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(formatter(fmt))
        root.addHandler(handler)
    root.setLevel(level)
    server_log_format(fmt)


def server_log_format(fmt: str) -> None:
    """In JSON, uvicorn's own handlers write JSON too. Called when the app is built, which uvicorn does
    before its first line in a server process ("Started server process"); ``--workers`` adds the
    supervisor's few lines, which stay uvicorn's text."""
    if fmt == "json":
        for name in SERVER_LOGGERS:
            for handler in logging.getLogger(name).handlers:
                handler.setFormatter(JsonFormatter())


@contextlib.contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """``job_id`` on every record made inside (a worker thread running one unit of a job)."""
    token = JOB_ID.set(job_id)
    try:
        yield
    finally:
        JOB_ID.reset(token)


# New request ids: a random per-process prefix and a counter (unique across processes and restarts in
# practice, 32 hex digits like a UUID), without a system call per request as uuid4() makes.
_ID_PREFIX = os.urandom(10).hex()
_ID_COUNTER = itertools.count()


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFF:012x}"


class RequestIdMiddleware:
    """Gives every HTTP request and WebSocket an id: the client's ``X-Request-ID`` where it sent a plain
    one, else a new one. The id is on every log record made while the request is handled, in the
    request's headers (so the gateway forwards it to inference), and in the response's ``X-Request-ID``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                text = value.decode("latin-1")
                request_id = text if CLIENT_ID.fullmatch(text) else None
                break
        if request_id is None:
            request_id = new_request_id()
            # In place: the middleware outside reads what the router writes into this same scope.
            scope["headers"] = [*scope["headers"], (b"x-request-id", request_id.encode())]
        token = REQUEST_ID.set(request_id)
        raw = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(n, v) for n, v in message.get("headers", []) if n.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", raw)]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
