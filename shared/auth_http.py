"""API keys over HTTP, shared by the gateway and the inference service.

Two layers, both off when ``AUTH_ENABLED`` is false (``app.state.verifier`` is None):

* :class:`AuthGate`, pure ASGI middleware, refuses a request without a valid key (401) before the app
  reads a byte of its body, on every path but the ones given as open (liveness, readiness, the API
  docs). An unauthenticated client can make the server parse nothing, whatever the route.
* :func:`require` is the FastAPI dependency that routes and routers declare: it checks the key's scope
  (403 naming the scope needed) and puts the HTTP bearer scheme into the route's OpenAPI ``security``.

Errors are raised as project errors and answered by the app's own handler for them, so a refusal has
the same shape as every other error; ``WWW-Authenticate`` comes with each 401 and 403.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from emgpose.api_docs import DOCS_ASSET_PATHS
from emgpose.auth import KEY_FORMAT, ApiKeyInfo, Verifier, allows, bearer_key, insufficient_scope
from emgpose.auth import Scope as KeyScope
from emgpose.errors import EmgPoseError
from emgpose.settings import Settings

log = logging.getLogger(__name__)

SCOPE_KEY = "emgpose.api_key"  # the verified key, in the ASGI scope of a request
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}) | DOCS_ASSET_PATHS

BEARER = HTTPBearer(
    auto_error=False,  # AuthGate and require() answer, with the project's error shape
    scheme_name="apiKey",
    bearerFormat=KEY_FORMAT,
    description=(
        f"An emgpose API key, `Authorization: Bearer {KEY_FORMAT}`. Scopes: `read` (every GET), `submit` "
        "(also jobs, uploads, predictions), `admin` (also promoting models, registering datasets, keys). "
        "Made with `emgpose keys create --scope ...` or `POST /v1/keys`."
    ),
)


def make_verifier(settings: Settings) -> Verifier | None:
    """The app's key checker, or None where ``AUTH_ENABLED`` is false (no I/O: the database is read later)."""
    if not settings.auth_enabled:
        return None
    return Verifier(settings.database_url, settings.auth_pepper, settings.auth_cache_s)


async def authenticate(
    scope: Scope,
    verifier: Verifier,
    before_lookup: Callable[[Scope], None] | None = None,
    after_lookup: Callable[[Scope], None] | None = None,
) -> ApiKeyInfo:
    """The key of a request (from its ``Authorization`` header), checked; 401 otherwise.

    A key verified recently is answered from memory on the event loop; otherwise the database is read
    in a worker thread (``before_lookup`` runs first: the gateway starts its database deadline there,
    and ``after_lookup`` ends it, so the route's own work is not timed as a database wait).
    """
    known = scope.get(SCOPE_KEY)
    if known is not None:
        return known
    key = bearer_key(Headers(scope=scope).get("authorization"))
    info = verifier.cached(key)
    if info is None:
        if before_lookup is not None:
            before_lookup(scope)
        try:
            info = await anyio.to_thread.run_sync(verifier.verify, key)
        finally:
            if after_lookup is not None:
                after_lookup(scope)
    scope[SCOPE_KEY] = info
    return info


async def error_response(scope: Scope, receive: Receive, exc: EmgPoseError) -> Response:
    """The app's own answer to ``exc`` (its registered handler), with the error's headers."""
    handlers = getattr(scope.get("app"), "exception_handlers", {})
    handler = next((handlers[cls] for cls in type(exc).__mro__ if cls in handlers), None)
    if handler is None:
        response: Response = JSONResponse({"detail": exc.message}, status_code=exc.status)
    else:
        response = await handler(Request(scope, receive), exc)
    for name, value in exc.headers.items():
        response.headers.setdefault(name, value)
    return response


class AuthGate:
    """``app.add_middleware(AuthGate, verifier=..., open_paths=...)``: no valid key, no route."""

    def __init__(
        self,
        app: ASGIApp,
        verifier: Verifier | None,
        open_paths: Iterable[str],
        before_lookup: Callable[[Scope], None] | None = None,
        after_lookup: Callable[[Scope], None] | None = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.open_paths = frozenset(open_paths) | DOCS_PATHS
        self.before_lookup, self.after_lookup = before_lookup, after_lookup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # WebSockets check their key in the handler, which can then say why in the stream protocol.
        if self.verifier is None or scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        try:
            await authenticate(scope, self.verifier, self.before_lookup, self.after_lookup)
        except EmgPoseError as exc:
            log.debug("%s %s refused: %d", scope["method"], scope["path"], exc.status)
            response = await error_response(scope, receive, exc)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def authorize(conn: HTTPConnection, needed: KeyScope) -> ApiKeyInfo | None:
    """The request's key if its scope covers ``needed`` (None with auth off); 401 or 403 otherwise."""
    verifier: Verifier | None = getattr(conn.app.state, "verifier", None)
    if verifier is None:
        return None
    state = conn.app.state
    info = await authenticate(
        conn.scope, verifier, getattr(state, "before_key_lookup", None), getattr(state, "after_key_lookup", None)
    )
    if not allows(info.scope, needed):
        raise insufficient_scope(info, needed)
    return info


def require(needed: KeyScope) -> Any:
    """``Depends`` that lets a request through only with a key of scope ``needed`` or above.

    Use it in ``dependencies=[require("admin")]`` of a route or router, or as a parameter
    (``key: Annotated[ApiKeyInfo | None, require("submit")]``) where the route needs the key itself.
    """

    async def dependency(
        conn: HTTPConnection,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    ) -> ApiKeyInfo | None:
        return await authorize(conn, needed)

    dependency.__name__ = f"require_{needed}"
    return Depends(dependency)
