"""The gateway under hostile or broken clients, over real HTTP and real sockets: the 500s schemathesis
found (huge offsets on PostgreSQL and SQLite), one error shape for every 4xx (validation errors
included) and its OpenAPI documentation, ``Allow`` on 405, slow-body uploads cut after
``BODY_IDLE_TIMEOUT_S`` with nothing left behind, and the predict forwarder's bounds (samples checked
before forwarding, the deadline passed on, a client that leaves cancelling the upstream request)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from gateway_support import serve_gateway, stored
from http_raw import read_response, send_head
from servers import UvicornThread

from emgpose.api import MAX_OFFSET
from emgpose.db.migrate import upgrade

pytest_plugins = ["gateway_fixtures"]  # fixtures: pg_url, gateway, synth_folder

HUGE = (10**20, 2**63, MAX_OFFSET + 1)


def folders_below(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir()) if root.exists() else []


def check_offsets(client: httpx.Client) -> None:
    for path in ("/v1/jobs", "/v1/datasets", "/v1/models/emgpose"):
        for offset in HUGE:
            response = client.get(path, params={"offset": offset})
            assert response.status_code == 422, (path, offset, response.text)
            body = response.json()
            assert body["detail"] == "invalid request: query offset: Input should be less than or equal to 1000000000"
            assert body["errors"] == [
                {
                    "loc": ["query", "offset"],
                    "msg": "Input should be less than or equal to 1000000000",
                    "type": "less_than_equal",
                }
            ]
    for path in ("/v1/jobs", "/v1/datasets"):
        edge = client.get(path, params={"offset": MAX_OFFSET})
        assert edge.status_code == 200 and edge.json()["items"] == [] and edge.json()["offset"] == MAX_OFFSET


def test_huge_offsets_are_422_on_postgresql(gateway) -> None:
    with gateway.client() as client:
        check_offsets(client)


def test_huge_offsets_are_422_on_sqlite(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    with serve_gateway(monkeypatch, tmp_path, url) as gw, gw.client() as client:
        check_offsets(client)


def test_405_allow_names_every_method_of_the_path(gateway) -> None:
    with gateway.client() as client:
        for method, path, allowed in (
            ("DELETE", "/v1/jobs", "GET, POST"),  # two routes share the path: Starlette named only one
            ("PUT", "/v1/datasets", "GET, POST"),
            ("PATCH", "/v1/datasets/register", "POST"),  # the documented path, not /v1/datasets/{dataset_id}
            ("DELETE", "/v1/jobs/0123456789abcdef0123456789abcdef", "GET"),
        ):
            response = client.request(method, path)
            assert response.status_code == 405 and response.headers["allow"] == allowed, (method, path)
            assert response.json() == {"detail": f"method {method} is not allowed on {path}; it takes {allowed}"}


def test_request_errors_have_one_shape(gateway) -> None:
    with gateway.client() as client:
        bad_type = client.post("/v1/jobs", json={"type": "nope", "params": {"secret": "do-not-echo"}})
        not_utf8 = client.post("/v1/jobs", content=b'{"type": "\xff"}', headers={"Content-Type": "application/json"})
        not_json = client.post("/v1/jobs", content=b"{", headers={"Content-Type": "application/json"})
    assert bad_type.status_code == 422 and bad_type.json()["detail"].startswith(
        "invalid request: body: Input tag 'nope'"
    )
    assert "do-not-echo" not in bad_type.text  # submitted values are never echoed back
    assert not_utf8.status_code == 422 and not_utf8.json() == {
        "detail": "invalid request: body: not UTF-8 JSON text (invalid start byte at byte 10)",
        "errors": [
            {"loc": ["body"], "msg": "not UTF-8 JSON text (invalid start byte at byte 10)", "type": "json_invalid"}
        ],
    }
    assert not_json.status_code == 422 and not_json.json()["errors"][0]["type"] == "json_invalid"
    assert isinstance(not_json.json()["detail"], str)


def test_openapi_documents_every_error_status_in_the_one_shape(gateway) -> None:
    with gateway.client() as client:
        schema = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            codes = {code for code in operation["responses"] if code.isdigit()}
            assert "500" in codes and ("503" in codes or path == "/healthz"), (method, path)
            if "requestBody" in operation:
                assert {"400", "408", "422"} <= codes, (method, path)
            if any(p["in"] == "path" for p in operation.get("parameters", [])):
                assert "404" in codes, (method, path)
            for code in codes:
                if int(code) >= 400 and not (path == "/readyz" and code == "503"):  # readiness has its own body
                    ref = operation["responses"][code]["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/ErrorResponse", (method, path, code)


def multipart_head(boundary: str, declared: int) -> dict[str, str]:
    return {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(declared)}


def test_a_silent_upload_is_cut_and_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str, synth_folder: Path
) -> None:
    boundary = "emgpose-test-boundary"
    content = (synth_folder / "metadata.csv").read_bytes()
    start = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nlab\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="metadata.csv"\r\n'
        f"Content-Type: text/csv\r\n\r\n"
    ).encode() + content[:100]
    with serve_gateway(monkeypatch, tmp_path, pg_url, BODY_IDLE_TIMEOUT_S="1") as gw:
        started = time.monotonic()
        with send_head(gw.url, "POST", "/v1/datasets", multipart_head(boundary, len(start) + 10_000), start) as sock:
            response = read_response(sock, timeout=15)  # the client sends nothing more
        waited = time.monotonic() - started
        with gw.client() as client:
            items = client.get("/v1/datasets").json()["items"]
    assert response.status == 408 and 1.0 <= waited < 6.0, (response, waited)
    assert "nothing for 1 s (BODY_IDLE_TIMEOUT_S)" in response.json()["detail"]
    assert response.headers["connection"] == "close"
    assert [(d["state"], d["name"], d["error"]) for d in items] == [("failed", "lab", response.json()["detail"])]
    assert stored(gw.store_root) == [] and folders_below(gw.store_root / "raw") == []  # no raw/<id>/ either


def test_a_refused_upload_leaves_no_folder(gateway, synth_folder: Path) -> None:
    sessions = sorted(p.name for p in synth_folder.glob("*.hdf5"))
    files = [("files", (name, (synth_folder / name).read_bytes(), "application/x-hdf5")) for name in sessions]
    with gateway.client() as client:
        response = client.post("/v1/datasets", data={"name": "lab"}, files=files)
    assert response.status_code == 422 and "no metadata.csv" in response.json()["detail"]
    assert stored(gateway.store_root) == [] and folders_below(gateway.store_root / "raw") == []


def test_edge_inputs_are_refused_not_500(gateway) -> None:
    with gateway.client() as client:
        nul = client.post("/v1/datasets/register", json={"name": "x", "uri": "/tmp/a\x00b"})
        long_name = client.post(
            "/v1/datasets", data={"name": "x"}, files=[("files", ("é" * 250 + ".hdf5", b"abc", "application/x-hdf5"))]
        )
    assert 400 <= nul.status_code < 500 and isinstance(nul.json()["detail"], str)
    assert 400 <= long_name.status_code < 500 and isinstance(long_name.json()["detail"], str)


# --- the predict forwarder --------------------------------------------------------------------------


def test_too_many_samples_are_refused_before_forwarding(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str, free_tcp_port: int
) -> None:
    down = f"http://127.0.0.1:{free_tcp_port}"  # were the request forwarded, the answer would be 503
    env = {"INFERENCE_URL": down, "MAX_PREDICT_SAMPLES": "1000"}
    headers = {"Content-Type": "application/octet-stream", "X-EMG-Samples": "1001", "X-EMG-Channels": "16"}
    with serve_gateway(monkeypatch, tmp_path, pg_url, **env) as gw, gw.client() as client:
        response = client.post("/v1/predict", content=b"\0" * 1001 * 64, headers=headers)
    assert response.status_code == 413
    assert "X-EMG-Samples 1001 is more than the 1000 samples" in response.json()["detail"]


def watching_app(seen: dict) -> FastAPI:
    """An upstream that reads the body, then waits (up to 20 s) for its client to go away and says so."""
    app = FastAPI()

    @app.post("/v1/predict")
    async def predict(request: Request) -> Response:
        await request.body()
        seen["timeout"] = request.headers.get("x-request-timeout")
        for _ in range(400):
            if await request.is_disconnected():
                seen["disconnected"] = time.monotonic()
                return Response(status_code=499)
            await asyncio.sleep(0.05)
        return Response(b"{}", media_type="application/json")

    return app


def test_a_client_that_leaves_cancels_the_upstream_request(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str
) -> None:
    seen: dict = {}
    with UvicornThread(watching_app(seen)) as upstream:
        env = {"INFERENCE_URL": upstream.url, "INFERENCE_TIMEOUT_S": "30"}
        with serve_gateway(monkeypatch, tmp_path, pg_url, **env) as gw:
            body = b'{"emg": [[0.0]], "sample_rate": 2000}'
            head = {"Content-Type": "application/json", "Content-Length": str(len(body)), "X-Request-Timeout": "90"}
            sock = send_head(gw.url, "POST", "/v1/predict", head, body)
            deadline = time.monotonic() + 10
            while "timeout" not in seen and time.monotonic() < deadline:
                time.sleep(0.02)
            left = time.monotonic()
            sock.close()  # the client gives up while inference works
            while "disconnected" not in seen and time.monotonic() < deadline:
                time.sleep(0.02)
    assert seen["timeout"] == "29.500"  # the gateway's own wait less the margin (the client asked for more)
    assert "disconnected" in seen and seen["disconnected"] - left < 3.0, seen
