"""Swagger UI and ReDoc served by the services themselves, with no CDN.

FastAPI's default ``/docs`` and ``/redoc`` pages load their JavaScript and CSS from a CDN, so they are
blank on a machine without internet access (an EC2 box in a private subnet). Both services build their
app with ``docs_url=None, redoc_url=None`` and call :func:`install_offline_docs`, which serves the same
pages with the assets from the ``fastapi-offline`` package (installed with emgpose; nothing is copied
into this repository) under :data:`ASSETS_PREFIX`.

The pages and their assets are public, like ``/openapi.json``: :data:`DOCS_ASSET_PATHS` is part of the
paths :class:`emgpose.auth_http.AuthGate` lets through without a key.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, Response

from emgpose.errors import NotFound

ASSETS_PREFIX = "/docs/assets"
ASSET_FILES = {  # file name -> media type; the only files served from the package's folder
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
DOCS_ASSET_PATHS = frozenset(f"{ASSETS_PREFIX}/{name}" for name in ASSET_FILES)
# The one remote URL in ReDoc's bundle: the "API docs by Redocly" badge in the sidebar. It is pointed at
# an empty inline image, so that the page asks no other host for anything (offline it would only fail).
REDOC_BADGE = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
EMPTY_IMAGE = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"


def assets_folder() -> Path:
    """The folder of the vendored assets inside the installed ``fastapi-offline`` package."""
    import fastapi_offline  # a runtime dependency; imported here so that importing this module stays cheap

    return Path(fastapi_offline.__file__).parent / "static"


def install_offline_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI), ``/docs/oauth2-redirect``, ``/redoc`` and their assets on ``app``.

    ``app`` must have been made with ``docs_url=None, redoc_url=None`` (else FastAPI's CDN pages are
    already there at the same paths).
    """
    if app.docs_url is not None or app.redoc_url is not None:
        raise ValueError("create the app with docs_url=None, redoc_url=None before installing the offline docs")
    folder = assets_folder()
    missing = [name for name in ASSET_FILES if not (folder / name).is_file()]
    if missing:
        raise RuntimeError(f"fastapi-offline at {folder} lacks {missing}: reinstall emgpose's dependencies")
    patched: dict[str, bytes] = {}  # redoc.standalone.js without its remote badge, read on first use
    title, openapi_url = app.title, app.openapi_url or "/openapi.json"
    redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=redirect,
            swagger_js_url=f"{ASSETS_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PREFIX}/favicon.png",
        )

    @app.get(redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{ASSETS_PREFIX}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_PREFIX}/favicon.png",
            with_google_fonts=False,  # fonts from Google are a CDN too; ReDoc falls back to the system's
        )

    @app.get(ASSETS_PREFIX + "/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        media_type = ASSET_FILES.get(name)
        if media_type is None:
            raise NotFound(f"no docs asset {name!r}; the assets are {sorted(ASSET_FILES)}")
        headers = {"Cache-Control": "public, max-age=86400"}
        if name == "redoc.standalone.js":
            if name not in patched:
                patched[name] = (folder / name).read_bytes().replace(REDOC_BADGE, EMPTY_IMAGE)
            return Response(patched[name], media_type=media_type, headers=headers)
        return FileResponse(folder / name, media_type=media_type, headers=headers)
