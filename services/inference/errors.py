"""Errors to HTTP responses, in one place (STYLE.md, habit 12).

Every project error (:class:`emgpose.errors.EmgPoseError`) carries its status; request validation
errors become 422 with a message naming each bad field; Starlette's ``HTTPException`` keeps its status.
The body is ``{"detail": "<message>"}``, except below ``/v2/`` where the Open Inference Protocol asks
for ``{"error": "<message>"}``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from emgpose.errors import EmgPoseError, InvalidInput, Unavailable

log = logging.getLogger(__name__)

OIP_PREFIX = "/v2"


class ModelUnavailable(Unavailable):
    """No model is loaded yet (HTTP 503); the message says which model and where it is looked for."""


class UnsupportedMediaType(EmgPoseError):
    """The request body's Content-Type is not one the endpoint reads (HTTP 415)."""

    status = 415


class PayloadTooLarge(HTTPException):
    """The request body exceeds ``max_request_mb`` (HTTP 413).

    An ``HTTPException`` (not :class:`emgpose.errors.TooLarge`) because it is raised inside ``receive``,
    and FastAPI passes only ``HTTPException`` through its own body parsing unchanged (others become 400).
    """

    def __init__(self, limit: int, seen: int | None = None) -> None:
        size = f"{seen} bytes" if seen is not None else "more"
        super().__init__(
            413,
            f"request body too large: {size} sent, the limit is {limit} bytes ({limit / 2**20:g} MiB, "
            f"MAX_REQUEST_MB); send shorter recordings in several requests or stream them over /v1/stream",
        )


def error_body(path: str, message: str) -> dict[str, str]:
    return {"error": message} if path.startswith(OIP_PREFIX) else {"detail": message}


def error_response(request: Request, status: int, message: str) -> JSONResponse:
    return JSONResponse(error_body(request.url.path, message), status_code=status)


def describe_validation(errors: list[dict], prefix_drop: tuple[str, ...] = ("body",)) -> str:
    """``loc: msg`` for each error, e.g. ``emg[3][1]: Input should be a valid number``."""
    parts = []
    for error in errors[:5]:
        loc = [str(p) for p in error.get("loc", ()) if p not in prefix_drop]
        where = "".join(f"[{p}]" if p.isdigit() else (f".{p}" if i else p) for i, p in enumerate(loc))
        message = str(error.get("msg", "invalid"))
        parts.append(f"{where}: {message}" if where else message)
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def invalid_from_pydantic(exc: ValidationError, what: str) -> InvalidInput:
    return InvalidInput(f"{what}: {describe_validation(exc.errors())}")


async def _project_error(request: Request, exc: EmgPoseError) -> JSONResponse:
    if exc.status >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc.message)
    return error_response(request, exc.status, exc.message)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return error_response(request, 422, f"invalid request: {describe_validation(list(exc.errors()))}")


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    response = error_response(request, exc.status_code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this handler, so the server logs the traceback once.
    return error_response(request, 500, f"internal error ({type(exc).__name__}); see the service log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EmgPoseError, _project_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
