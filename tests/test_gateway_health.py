"""Gateway liveness and readiness (real database, brokers and stores, and a broker that is down), the
OpenAPI document, error shapes, and the production command in a child process."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from gateway_support import serve_gateway, stored
from servers import UvicornProcess

CHECKS = {"database", "broker", "store"}

pytest_plugins = ["gateway_fixtures"]  # fixtures: pg_url, gateway, synth_folder


def test_healthz_and_readyz(gateway) -> None:
    with gateway.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        response = client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == CHECKS and all(check["ok"] and check["error"] is None for check in body.values())
    assert all(check["ms"] >= 0 for check in body.values())
    assert body["broker"]["target"] == f"filesystem://{gateway.broker_dir}"
    assert body["store"]["target"] == gateway.settings.store_uri
    assert body["database"]["target"] == gateway.settings.database_url


def test_readyz_with_redis_and_s3(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str, s3_store_uri: str
) -> None:
    env = {"REDIS_URL": "redis://127.0.0.1:6379/13", "STORE_URI": s3_store_uri}
    with serve_gateway(monkeypatch, tmp_path, pg_url, **env) as gw, gw.client() as client:
        response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["broker"]["target"] == "redis://127.0.0.1:6379/13"


def test_readyz_reports_what_is_down(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str, free_tcp_port: int, s3_server: str
) -> None:
    env = {"REDIS_URL": f"redis://:secret@127.0.0.1:{free_tcp_port}/0", "STORE_URI": "s3://no-such-bucket-here/x"}
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_server)
    with serve_gateway(monkeypatch, tmp_path, pg_url, **env) as gw, gw.client() as client:
        response = client.get("/readyz")
        assert client.get("/healthz").status_code == 200
    assert response.status_code == 503
    body = response.json()
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is False and body["broker"]["target"] == f"redis://:***@127.0.0.1:{free_tcp_port}/0"
    assert "Connection refused" in body["broker"]["error"] or "connect" in body["broker"]["error"].lower()
    assert body["store"]["ok"] is False and "no bucket 'no-such-bucket-here'" in body["store"]["error"]
    assert body["broker"]["ms"] < 3500


def test_database_down_is_503(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, free_tcp_port: int) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_tcp_port}/emgpose"
    with serve_gateway(monkeypatch, tmp_path, url, empty=False) as gw, gw.client() as client:
        jobs = client.get("/v1/jobs")
        upload = client.post("/v1/datasets", data={"name": "x"}, files=[("files", ("metadata.csv", b"f\n"))])
        ready = client.get("/readyz").json()
    expected = f"the database at {url} is not reachable: connection failed"
    assert jobs.status_code == upload.status_code == 503
    assert jobs.json()["detail"].startswith(expected) and upload.json()["detail"].startswith(expected)
    assert stored(gw.store_root) == []
    assert ready["database"]["ok"] is False and ready["broker"]["ok"] is ready["store"]["ok"] is True


def test_openapi_and_error_shapes(gateway) -> None:
    with gateway.client() as client:
        spec = client.get("/openapi.json").json()
        missing = client.get("/v1/nothing-here")
    assert {t["name"] for t in spec["tags"]} == {"datasets", "jobs", "models", "predict", "keys", "health"}
    assert set(spec["paths"]) == {
        "/v1/datasets",
        "/v1/datasets/register",
        "/v1/datasets/{dataset_id}",
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/cancel",
        "/v1/models",
        "/v1/models/{name}",
        "/v1/models/{name}/versions/{version}",
        "/v1/models/{name}/promote",
        "/v1/models/{name}/versions/{version}/files/{file}",
        "/v1/jobs/{job_id}/outputs",
        "/v1/jobs/{job_id}/outputs/{file}",
        "/v1/datasets/{dataset_id}/sessions",
        "/v1/datasets/{dataset_id}/sessions/{name}/samples",
        "/v1/whoami",
        "/v1/predict",
        "/v1/keys",
        "/v1/keys/{key_id}/revoke",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    upload = spec["paths"]["/v1/datasets"]["post"]
    assert set(upload["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]) == {"name", "files"}
    submit = spec["paths"]["/v1/jobs"]["post"]
    assert set(submit["requestBody"]["content"]["application/json"]["examples"]) >= {"preprocess", "train"}
    assert {"202", "200", "404", "409", "422", "503"} <= set(submit["responses"])
    assert missing.status_code == 404 and missing.json() == {
        "detail": "no route GET /v1/nothing-here; the API is described at /docs and /openapi.json"
    }


def test_the_production_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    env = {"DATABASE_URL": pg_url, "STORE_URI": (tmp_path / "store").as_uri(), "BROKER_DIR": str(tmp_path / "broker")}
    with UvicornProcess("emgpose_gateway.main:app", env, tmp_path / "gateway.log") as server:
        assert httpx.get(server.url + "/readyz", timeout=10).status_code == 200, server.log()
        assert httpx.get(server.url + "/v1/jobs", timeout=10).json()["total"] == 0
