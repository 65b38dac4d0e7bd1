"""The web page at ``/``: jobs, datasets, models and "try it live", in plain HTML, CSS and one script.

The files live in ``emgpose_gateway/web/`` (package data, no build step) and are public, like the API
docs: the page itself asks for an API key where ``AUTH_ENABLED`` is on, keeps it in ``sessionStorage``
and sends it with every API call (``Authorization: Bearer``; for the stream, as a WebSocket subprotocol,
see :mod:`emgpose_gateway.routes.stream_proxy`). ``GET /v1/whoami`` tells it what the key may do, so that
it offers promote and rollback only to admin keys.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field

from emgpose.auth import ApiKeyInfo
from emgpose.auth_http import require
from emgpose.errors import NotFound
from emgpose_gateway.deps import SettingsDep

page = APIRouter(include_in_schema=False)  # open: the page and its assets
router = APIRouter(tags=["keys"])

FILES = {  # the page's files -> media type; nothing else is served from the folder
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
PAGE_PATHS = ("/", *(f"/web/{name}" for name in FILES if name != "index.html"))
# The page runs only its own script and styles, talks only to this server, and loads images from blob: URLs.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _read(name: str) -> bytes:
    return resources.files("emgpose_gateway").joinpath("web", name).read_bytes()


def _file(name: str) -> Response:
    headers = {"Cache-Control": "no-cache", "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}
    return Response(_read(name), media_type=FILES[name], headers=headers)


@page.get("/")
def index() -> Response:
    return _file("index.html")


@page.get("/web/{name}")
def asset(name: str) -> Response:
    if name not in FILES or name == "index.html":
        raise NotFound(f"no web page file {name!r}; the page's files are app.js and app.css")
    return _file(name)


class WhoAmI(BaseModel):
    auth_enabled: bool = Field(description="Whether this server asks for API keys (AUTH_ENABLED)")
    key_id: str | None = Field(description="The id of the key the request came with (null with auth off)")
    name: str | None = Field(description="The key's label")
    scope: str = Field(description="What the request may do: read, submit or admin (admin with auth off)")


@router.get("/v1/whoami", response_model=WhoAmI, summary="The API key this request came with, and its scope")
def whoami(settings: SettingsDep, key: Annotated[ApiKeyInfo | None, require("read")]) -> WhoAmI:
    if key is None:
        return WhoAmI(auth_enabled=settings.auth_enabled, key_id=None, name=None, scope="admin")
    return WhoAmI(auth_enabled=True, key_id=key.id, name=key.name, scope=key.scope)
