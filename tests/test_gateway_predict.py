"""The gateway's ``/v1/predict`` proxy over real HTTP: a small upstream app that reports what reached it
(status, body and headers must pass through unchanged), the real inference service with a published
bundle, and an upstream that is down or too slow."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi import FastAPI, Request, Response
from gateway_support import publish_tiny, serve_gateway
from servers import UvicornThread

from emgpose.settings import Settings

pytest_plugins = ["gateway_fixtures"]  # fixtures: pg_url, gateway, synth_folder


def echo_app() -> FastAPI:
    """Answers with what it received; ``X-EMG-Status`` picks the status, ``X-EMG-Sleep`` delays it."""
    app = FastAPI()

    @app.post("/v1/predict")
    async def predict(request: Request) -> Response:
        body = await request.body()
        await asyncio.sleep(float(request.headers.get("x-emg-sleep", "0")))
        seen = {
            "bytes": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "headers": {k: v for k, v in request.headers.items() if k.startswith("x-") or k == "content-type"},
            "query": str(request.url.query),
        }
        status = int(request.headers.get("x-emg-status", "200"))
        answer = json.dumps(seen, sort_keys=True)
        headers = {"X-Model-Version": "v-test"}
        return Response(answer, status_code=status, headers=headers, media_type="application/x-echo")

    return app


@pytest.fixture(scope="module")
def upstream():
    with UvicornThread(echo_app()) as server:
        yield server


@pytest.fixture
def gw(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str, upstream):
    env = {"INFERENCE_URL": upstream.url, "INFERENCE_TIMEOUT_S": "1", "MAX_REQUEST_MB": "4"}
    with serve_gateway(monkeypatch, tmp_path, pg_url, **env) as server:
        yield server


def test_body_headers_and_status_pass_through(gw) -> None:
    body = np.random.default_rng(0).standard_normal((20_000, 16)).astype("<f4").tobytes()  # 1.28 MB
    headers = {
        "Content-Type": "application/octet-stream",
        "X-EMG-Samples": "20000",
        "X-EMG-Channels": "16",
        "X-Sample-Rate": "2000",
        "X-Request-ID": "r-1",
        "Authorization": "Bearer not-forwarded",
    }
    with gw.client() as client:
        response = client.post("/v1/predict?mode=x", content=body, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-echo" and response.headers["x-model-version"] == "v-test"
    seen = response.json()
    assert seen["bytes"] == len(body) and seen["sha256"] == hashlib.sha256(body).hexdigest()
    assert seen["query"] == "mode=x"
    assert seen["headers"] == {
        "content-type": "application/octet-stream",
        "x-emg-samples": "20000",
        "x-emg-channels": "16",
        "x-sample-rate": "2000",
        "x-request-id": "r-1",
        "x-request-timeout": "0.500",  # INFERENCE_TIMEOUT_S (1 s) less the margin: inference stops by then
    }


def test_upstream_errors_come_back_unchanged(gw) -> None:
    with gw.client() as client:
        response = client.post("/v1/predict", json={"emg": []}, headers={"X-EMG-Status": "422"})
    assert response.status_code == 422
    assert response.json()["headers"]["content-type"] == "application/json"


def test_a_streamed_body_is_capped(gw) -> None:
    def chunks():
        for _ in range(5):
            yield b"\0" * (1024 * 1024)

    with gw.client() as client:
        declared = client.post("/v1/predict", content=b"\0" * (5 * 1024 * 1024))
        assert declared.status_code == 413 and "MAX_REQUEST_MB" in declared.json()["detail"]
        streamed = client.post("/v1/predict", content=chunks())  # chunked: no Content-Length to check first
        assert streamed.status_code == 413 and "MAX_REQUEST_MB" in streamed.json()["detail"]


def test_slow_upstream_is_504(gw) -> None:
    with gw.client() as client:
        response = client.post("/v1/predict", json={}, headers={"X-EMG-Sleep": "3"})
    assert response.status_code == 504
    assert "did not answer within 1 s (INFERENCE_TIMEOUT_S)" in response.json()["detail"]


def test_upstream_down_is_503(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str, free_tcp_port) -> None:
    down = f"http://127.0.0.1:{free_tcp_port}"
    with serve_gateway(monkeypatch, tmp_path, pg_url, INFERENCE_URL=down) as gw, gw.client() as client:
        response = client.post("/v1/predict", json={"emg": [[0.0] * 16]})
    assert response.status_code == 503
    assert response.json()["detail"].startswith(f"inference service at {down} is not reachable: ConnectError")


def test_through_the_real_inference_service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str) -> None:
    inference = pytest.importorskip("emgpose_inference.main", reason="the inference service is not importable")
    store = (tmp_path / "models").as_uri()
    publish_tiny(store, "hand", "20261121T120000Z-aaaaaa", "2026-11-21T12:00:00+00:00", mae=12.0)
    app = inference.create_app(Settings(store_uri=store, model_name="hand", reload_interval_s=60.0))
    emg = np.random.default_rng(1).standard_normal((2000, 16)).astype("<f4") * 0.05
    headers = {
        "Content-Type": "application/octet-stream",
        "X-EMG-Samples": "2000",
        "X-EMG-Channels": "16",
        "X-Sample-Rate": "2000",
    }
    with UvicornThread(app) as upstream:
        with serve_gateway(monkeypatch, tmp_path, pg_url, INFERENCE_URL=upstream.url) as gw, gw.client() as client:
            proxied = client.post("/v1/predict", content=emg.tobytes(), headers=headers)
            bad = client.post("/v1/predict", content=emg.tobytes()[:-4], headers=headers)
        direct = httpx.post(upstream.url + "/v1/predict", content=emg.tobytes(), headers=headers, timeout=30)
    assert proxied.status_code == direct.status_code == 200, proxied.text
    assert proxied.content == direct.content
    assert proxied.headers["content-type"] == direct.headers["content-type"]
    assert bad.status_code == 422 and "detail" in bad.json()
