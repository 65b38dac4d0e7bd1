"""HTTP conventions the gateway and the inference service share, in one place (STYLE.md, habit 12).

* **One error body** for every 4xx and 5xx: ``{"detail": "<what was wrong and what would be right>"}``
  (:class:`ErrorResponse`). Request validation errors (422) add ``errors``, one ``{loc, msg, type}`` per
  bad field, and their ``detail`` is a sentence naming those fields. Submitted values are never echoed
  back (an API key or a server path could be among them).
* **405** answers carry ``Allow`` with the methods the OpenAPI document lists for the path: Starlette
  names only the methods of the first route whose path matched (``GET /v1/jobs`` and ``POST /v1/jobs``
  are two routes, and ``/v1/datasets/register`` also matches ``/v1/datasets/{dataset_id}``).
* **Client disconnects** (:class:`~starlette.requests.ClientDisconnect` while a body is read, or
  :class:`ClientGone` when a service notices mid-computation) are answered 499, nginx's "client closed
  request": nobody reads that answer, metrics count it apart from server errors, and the log gets one
  line instead of a traceback.
* **Slow bodies**: :class:`BodyIdleTimeout` cuts a request whose body stops arriving for
  ``BODY_IDLE_TIMEOUT_S`` (408, connection closed), so a client that sends part of a body and goes
  silent cannot hold a request, a worker thread or an upload row for ever.
* **OpenAPI**: :func:`document_errors` makes every operation list the error statuses it can answer, each
  with :class:`ErrorResponse`, and drops FastAPI's list-shaped ``HTTPValidationError``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from typing import Annotated, Any

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # nginx's "client closed request": the client left before the answer was sent
MAX_LISTED = 5  # validation errors named in ``detail``; ``errors`` holds all of them
REF = "#/components/schemas/ErrorResponse"
# A list offset past any table we keep; larger ones would overflow the database's 64-bit integers (a 500).
MAX_OFFSET = 1_000_000_000
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip (0 to 1,000,000,000)")]


class ValidationIssue(BaseModel):
    """One field that broke a rule."""

    loc: list[str | int] = Field(description="Where: body, query, path or header, then the field path")
    msg: str = Field(description="The rule it broke")
    type: str = Field(description="Pydantic's error type, for programs")


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer. ``errors`` is present on request validation errors (422) only."""

    detail: str = Field(
        description="What was wrong and what would be right, naming the field, file or rule",
        examples=["invalid request: query offset: Input should be less than or equal to 1000000000"],
    )
    errors: list[ValidationIssue] | None = Field(
        default=None, description="Request validation errors: one entry per bad field (422 only)"
    )


class ClientGone(Exception):
    """The client closed its connection while the service was still working on its answer."""


class BodyTimeout(HTTPException):
    """The request body stopped arriving for longer than ``BODY_IDLE_TIMEOUT_S`` (HTTP 408).

    An ``HTTPException`` because it is raised inside ``receive``: FastAPI lets only those through its
    own body parsing unchanged (others become 400)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            408,
            f"the request body stopped arriving: nothing for {timeout_s:g} s (BODY_IDLE_TIMEOUT_S); send the "
            f"body without long pauses",
            headers={"Connection": "close"},
        )


# --- messages ---------------------------------------------------------------------------------------


def field_name(loc: Sequence[Any]) -> str:
    """``("body", "params", "emg", 3, 1)`` -> ``params.emg[3][1]``; ``("query", "offset")`` -> ``query offset``."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("query", "path", "header", "cookie") and len(parts) > 1:
        return f"{parts[0]} {'.'.join(parts[1:])}"
    if parts and parts[0] == "body":
        parts = parts[1:]
        if not parts:
            return "body"
    out = ""
    for i, part in enumerate(parts):
        out += f"[{part}]" if part.isdigit() else (f".{part}" if i else part)
    return out


def describe_validation(errors: Sequence[dict[str, Any]]) -> str:
    """``field: rule`` for the first :data:`MAX_LISTED` errors, then how many more there are."""
    parts = []
    for error in errors[:MAX_LISTED]:
        where = field_name(error.get("loc", ()))
        message = str(error.get("msg", "invalid"))
        parts.append(f"{where}: {message}" if where else message)
    more = f" (and {len(errors) - MAX_LISTED} more)" if len(errors) > MAX_LISTED else ""
    return "; ".join(parts) + more


def validation_issues(errors: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``loc``, ``msg`` and ``type`` of each error; the submitted ``input`` is left out on purpose."""
    return [
        {
            "loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]


# --- handlers ---------------------------------------------------------------------------------------


METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """The methods of this request's path, sorted: those the OpenAPI document lists for the path template
    that matches it most literally (``/v1/datasets/register`` before ``/v1/datasets/{dataset_id}``), as a
    client reads them; for undocumented paths, each method tried against the routes."""
    documented = _documented_methods(request)
    if documented:
        return documented
    routes = request.app.router.routes
    allowed = []
    for method in METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in routes):
            allowed.append(method)
    return allowed


def _documented_methods(request: Request) -> list[str]:
    segments = request.url.path.rstrip("/").split("/")
    best, best_literal = None, -1
    for template, item in request.app.openapi().get("paths", {}).items():
        parts = template.rstrip("/").split("/")
        if len(parts) != len(segments):
            continue
        literal = [p for p in parts if not (p.startswith("{") and p.endswith("}"))]
        if all(p == s for p, s in zip(parts, segments, strict=True) if not p.startswith("{")):
            if len(literal) > best_literal:
                best, best_literal = item, len(literal)
    return sorted(method.upper() for method in best or {} if method.upper() in METHODS)


def http_message(request: Request, exc: HTTPException) -> tuple[str, dict[str, str]]:
    """The sentence and headers for a Starlette ``HTTPException``; the bare phrases get a real sentence."""
    headers = dict(exc.headers or {})
    detail = str(exc.detail)
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 405:
        allowed = allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        if detail == HTTPStatus.METHOD_NOT_ALLOWED.phrase:
            detail = f"method {request.method} is not allowed on {request.url.path}; it takes {', '.join(allowed)}"
    elif exc.status_code == 404 and detail == HTTPStatus.NOT_FOUND.phrase:
        detail = f"no route {where}; the API is described at /docs and /openapi.json"
    return detail, headers


async def client_closed(request: Request, exc: Exception) -> Response:
    """499 for a client that left: one log line, no traceback; nobody receives the body."""
    log.info("%s %s: the client closed the connection before the answer (499)", request.method, request.url.path)
    return JSONResponse({"detail": "the client closed the connection before the answer"}, status_code=CLIENT_CLOSED)


BodyFn = Callable[[Request, str], dict[str, Any]]


def plain_body(request: Request, message: str) -> dict[str, Any]:
    return {"detail": message}


def install_http_errors(app: FastAPI, body: BodyFn = plain_body) -> None:
    """Request validation errors, Starlette's ``HTTPException`` (404, 405, 408, 413) and client disconnects
    in the one shape; ``body`` builds the JSON object from the message (the inference service adds the Open
    Inference Protocol's ``error`` below ``/v2``). Project errors and 500s keep their own handlers."""

    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        content = body(request, f"invalid request: {describe_validation(errors)}")
        content["errors"] = validation_issues(errors)
        return JSONResponse(content, status_code=422)

    async def on_http(request: Request, exc: HTTPException) -> Response:
        cause = exc.__cause__
        if exc.status_code == 400 and isinstance(cause, ClientDisconnect):
            return await client_closed(request, cause)  # FastAPI's JSON body reader turns it into a 400
        if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError):
            issue = {"loc": ["body"], "msg": f"not UTF-8 JSON text ({cause.reason} at byte {cause.start})"}
            content = body(request, f"invalid request: body: {issue['msg']}")
            content["errors"] = [{**issue, "type": "json_invalid"}]
            return JSONResponse(content, status_code=422)
        detail, headers = http_message(request, exc)
        return JSONResponse(body(request, detail), status_code=exc.status_code, headers=headers)

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(ClientDisconnect, client_closed)
    app.add_exception_handler(ClientGone, client_closed)


# --- slow bodies ------------------------------------------------------------------------------------


class BodyIdleTimeout:
    """Pure ASGI middleware: each ``receive`` of a request body must deliver within ``timeout_s``.

    Only while the body is incomplete: once it has ended, ``receive`` waits for a disconnect, which may
    legitimately take as long as the answer does. The timeout surfaces as :class:`BodyTimeout` inside
    the reader (an upload cleans up as for any other failed read) and becomes 408."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        more = True

        async def timed_receive() -> Message:
            nonlocal more
            if not more:
                return await receive()
            message: Message | None = None
            with anyio.move_on_after(self.timeout_s):
                message = await receive()
            if message is None:
                more = False
                raise BodyTimeout(self.timeout_s)
            more = message["type"] == "http.request" and bool(message.get("more_body", False))
            return message

        await self.app(scope, timed_receive, send)


# --- OpenAPI ----------------------------------------------------------------------------------------

REASONS = {
    400: "the body could not be read",
    401: "no valid API key",
    403: "the key may not do this",
    404: "no such resource",
    405: "the method is not served at this path (Allow lists the methods)",
    408: "the request body stopped arriving for BODY_IDLE_TIMEOUT_S",
    409: "the request clashes with the current state",
    413: "the body or what it carries is over a size limit",
    415: "the Content-Type is not one this operation reads",
    422: "the request breaks a rule; `detail` names the field and the rule",
    429: "over a per-key limit; Retry-After says when to try again",
    500: "a fault of the service; `detail` names the exception type, the log has the rest",
    503: "a dependency is not reachable now, or the service is busy; retry later",
    504: "the work did not finish within its deadline",
}


def _operations(schema: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method in ("get", "put", "post", "delete", "patch", "head", "options", "trace"):
                yield path, operation


def document_errors(
    schema: dict[str, Any],
    always: Iterable[int] = (500,),
    with_body: Iterable[int] = (400, 408),
    model: str | Callable[[str], str] = REF,
) -> dict[str, Any]:
    """Every error response of every operation points at ``model``; ``always`` are added to every
    operation, ``with_body`` to those that take a request body, 422 to those that read parameters or a
    body and 404 to those with path parameters (descriptions from :data:`REASONS` unless the route gave
    one). FastAPI's ``HTTPValidationError`` is replaced. ``model`` is a ``$ref``, or a function of the
    path that gives one (the inference service documents ``OipError`` below ``/v2``)."""
    for path, operation in _operations(schema):
        ref = model(path) if callable(model) else model
        responses = operation.setdefault("responses", {})
        extra = list(always) + (list(with_body) if "requestBody" in operation else [])
        if operation.get("parameters") or "requestBody" in operation:
            extra.append(422)
        if any(parameter.get("in") == "path" for parameter in operation.get("parameters", [])):
            extra.append(404)  # whatever the path names may not exist
        for status in extra:
            responses.setdefault(str(status), {"description": REASONS.get(status, HTTPStatus(status).phrase)})
        for code, response in responses.items():
            if not code.isdigit() or int(code) < 400:
                continue
            content = response.setdefault("content", {}).setdefault("application/json", {})
            if "schema" not in content or content["schema"].get("$ref", "").endswith("/HTTPValidationError"):
                content["schema"] = {"$ref": ref}  # a route that documents a body of its own keeps it
            if response.get("description") in ("Validation Error", "", None):
                response["description"] = REASONS.get(int(code), HTTPStatus(int(code)).phrase)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for name, definition in _model_schemas().items():
        components.setdefault(name, definition)
    return schema


def _model_schemas() -> dict[str, Any]:
    _, defs = models_json_schema([(ErrorResponse, "serialization")], ref_template="#/components/schemas/{model}")
    return defs.get("$defs", {})
