"""Errors to HTTP responses, in one place (STYLE.md, habit 12).

Every project error (:class:`emgpose.errors.EmgPoseError`) carries its status; request validation
errors become 422 with a message naming each bad field and ``errors`` listing them; Starlette's
``HTTPException`` keeps its status; a client that left is 499 (:mod:`emgpose.api`, shared with the
gateway). The body is ``{"detail": "<message>"}`` everywhere; below ``/v2/`` it also carries the same
message as ``error``, the field the Open Inference Protocol's clients read.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from emgpose import api
from emgpose.errors import EmgPoseError, InvalidInput, Unavailable

log = logging.getLogger(__name__)

OIP_PREFIX = "/v2"


class ModelUnavailable(Unavailable):
    """No model is loaded yet (HTTP 503); the message says which model and where it is looked for."""


class UnsupportedMediaType(EmgPoseError):
    """The request body's Content-Type is not one the endpoint reads (HTTP 415)."""

    status = 415


def auth_responses(model: type) -> dict[int | str, dict[str, Any]]:
    """The 401 and 403 a route that needs an API key documents, in the error shape ``model`` of its prefix."""
    return {
        401: {"model": model, "description": "no API key, or one that is malformed, unknown or revoked"},
        403: {"model": model, "description": "the key's scope is too low; the message names the scope needed"},
    }


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


def error_body(path: str, message: str) -> dict[str, Any]:
    return {"error": message, "detail": message} if path.startswith(OIP_PREFIX) else {"detail": message}


def error_response(request: Request, status: int, message: str) -> JSONResponse:
    return JSONResponse(error_body(request.url.path, message), status_code=status)


def invalid_from_pydantic(exc: ValidationError, what: str) -> InvalidInput:
    """``what: emg[3][1]: Input should be a valid number; ...`` (fields named as :mod:`emgpose.api` does)."""
    return InvalidInput(f"{what}: {api.describe_validation(exc.errors())}")


async def _project_error(request: Request, exc: EmgPoseError) -> JSONResponse:
    if exc.status >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc.message)
    response = error_response(request, exc.status, exc.message)
    response.headers.update(exc.headers)  # WWW-Authenticate on 401/403, Retry-After on 429
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this handler, so the server logs the traceback once.
    return error_response(request, 500, f"internal error ({type(exc).__name__}); see the service log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EmgPoseError, _project_error)
    api.install_http_errors(app, body=lambda request, message: error_body(request.url.path, message))
    app.add_exception_handler(Exception, _unexpected)
