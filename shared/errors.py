"""One error tree for the whole project.

Every exception a user can cause derives from :class:`EmgPoseError` and carries the HTTP status a
service should answer with, so that the gateway and inference services map them to responses in one
place (STYLE.md, habit 12). Messages say what was wrong and what would be right.
"""

from __future__ import annotations


class EmgPoseError(Exception):
    """Base of every project error; ``status`` is the HTTP status a service answers with."""

    status: int = 500

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})  # sent with the answer: WWW-Authenticate, Retry-After


class InvalidInput(EmgPoseError, ValueError):
    """The caller's data or parameters break a stated rule (HTTP 422)."""

    status = 422


class DataFormatError(InvalidInput):
    """A file does not follow the layout it claims (HTTP 422)."""


class Unauthorized(EmgPoseError):
    """No valid credential (HTTP 401): an API key missing, malformed, unknown or revoked. The message never
    repeats what the caller sent; ``headers`` carry ``WWW-Authenticate``."""

    status = 401


class NotFound(EmgPoseError, LookupError):
    """A named file, key, dataset or model does not exist (HTTP 404)."""

    status = 404


class Forbidden(EmgPoseError):
    """The caller may not do this or reach this (HTTP 403): data outside ALLOWED_DATA_ROOTS, a missing scope."""

    status = 403


class StoreError(EmgPoseError):
    """The object store failed in a way that is not the caller's fault (HTTP 503)."""

    status = 503


class Conflict(EmgPoseError):
    """The request clashes with the current state (HTTP 409): a finished job cancelled, a reused key."""

    status = 409


class TooLarge(InvalidInput):
    """A body or upload is over its size limit (HTTP 413)."""

    status = 413


class TooManyRequests(EmgPoseError):
    """Over a per-caller limit, e.g. MAX_JOBS_IN_FLIGHT_PER_KEY (HTTP 429); ``headers`` carry ``Retry-After``."""

    status = 429


class Unavailable(EmgPoseError):
    """A dependency (database, broker, inference service, model) is not reachable now (HTTP 503)."""

    status = 503
