"""``/docs`` and ``/redoc`` work without internet on both services: their pages reference only assets the
service serves itself (no CDN), each answered 200 with its type, and without an API key where keys are on."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_support import serve_gateway
from inference_support import serve

from emgpose.api_docs import DOCS_ASSET_PATHS

pytest_plugins = ["gateway_fixtures"]
PEPPER = "a-pepper-for-the-api-docs-tests-0123456789"
REFERENCE = re.compile(r"""(?:src|href|spec-url)=["']([^"']+)["']|url\s*:\s*["']([^"']+)["']""")


@pytest.fixture(params=["gateway", "inference"])
def service(request, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """Each service with keys on (the docs must still open), its base URL."""
    if request.param == "gateway":
        pg_url = request.getfixturevalue("pg_url")
        with serve_gateway(monkeypatch, tmp_path, pg_url, AUTH_ENABLED="true", AUTH_PEPPER=PEPPER) as gw:
            yield gw.url
    else:
        pg_url = request.getfixturevalue("pg_url")
        settings = {"auth_enabled": True, "auth_pepper": PEPPER, "database_url": pg_url}
        with serve((tmp_path / "store").as_uri(), **settings) as server:
            yield server.url


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_reference_only_local_assets_and_each_is_served(service: str, page: str) -> None:
    with httpx.Client(base_url=service, timeout=10) as client:
        html = client.get(page)
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        references = {a or b for a, b in REFERENCE.findall(html.text)}
        assert "/openapi.json" in references
        remote = sorted(r for r in references if "//" in r)
        assert remote == [], f"{page} loads from another host: {remote}"
        assets = references - {"/openapi.json", "/docs/oauth2-redirect"}
        assert assets and assets <= DOCS_ASSET_PATHS, assets
        kinds = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
        for path in sorted(assets):
            asset = client.get(path)
            assert asset.status_code == 200, (path, asset.text[:200])
            assert asset.headers["content-type"].startswith(kinds[path[path.rfind(".") :]])
            assert len(asset.content) > 1000
        assert client.get("/openapi.json").status_code == 200
        missing = client.get("/docs/assets/secrets.txt")
        assert missing.status_code in (401, 404) and "secrets" not in missing.headers.get("content-type", "")
