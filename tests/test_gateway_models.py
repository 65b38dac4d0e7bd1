"""Gateway models API over real HTTP, against a store holding two published versions of ``hand`` (small
bundles published without the training pipeline), the older one with its train job's row."""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway_support import publish_tiny, serve_gateway

from emgpose.db.engine import session_scope
from emgpose.db.models import Job, ModelVersion
from emgpose.train.bundle import Registry

NAME = "hand"
FIRST, SECOND = "20261121T120000Z-aaaaaa", "20261122T120000Z-bbbbbb"

pytest_plugins = ["gateway_fixtures"]  # fixtures: pg_url, gateway, synth_folder


@pytest.fixture
def two_versions(tmp_path: Path) -> tuple[Path, str, str]:
    """A store with two versions of ``hand``; ``latest`` points at the second."""
    root = tmp_path / "models-store"
    publish_tiny(root.as_uri(), NAME, FIRST, "2026-11-21T12:00:00+00:00", mae=14.0)
    publish_tiny(root.as_uri(), NAME, SECOND, "2026-11-22T12:00:00+00:00", mae=12.5)
    return root, FIRST, SECOND


@pytest.fixture
def gw(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str, two_versions):
    root, first, _ = two_versions
    with serve_gateway(monkeypatch, tmp_path, pg_url, STORE_URI=root.as_uri()) as server:
        with session_scope(pg_url) as session:
            job = Job(type="train", state="succeeded", params={}, result={})
            session.add(job)
            session.flush()
            session.add(ModelVersion(name=NAME, version=first, uri="file:///x", task="regression", job_id=job.id))
        server.train_job = job.id
        yield server


def test_list_models(gw, two_versions) -> None:
    with gw.client() as client:
        body = client.get("/v1/models").json()
    assert body["total"] == 1
    (model,) = body["items"]
    assert model["name"] == NAME and model["latest"] == SECOND and model["versions"] == 2
    assert model["task"] == "regression" and model["created"] == "2026-11-22T12:00:00+00:00"
    assert model["metrics"] == {"split": "test", "xgboost": {"mae_deg": 12.5}, "verdict": {}}


def test_show_model_and_version(gw, two_versions) -> None:
    _, first, second = two_versions
    with gw.client() as client:
        body = client.get(f"/v1/models/{NAME}").json()
        assert body["name"] == NAME and body["latest"] == second and body["total"] == 2
        assert [(v["version"], v["latest"], v["job_id"]) for v in body["items"]] == [
            (second, True, None),
            (first, False, gw.train_job),
        ]
        assert body["items"][1]["url"] == f"/v1/models/{NAME}/versions/{first}"
        assert client.get(f"/v1/models/{NAME}", params={"limit": 1, "offset": 1}).json()["items"][0]["version"] == first
        version = client.get(f"/v1/models/{NAME}/versions/{first}").json()
        assert version["version"] == first and version["latest"] is False and version["job_id"] == gw.train_job
        assert version["task"] == "regression" and len(version["joint_names"]) == 20
        assert version["metrics"]["xgboost"] == {"mae_deg": 14.0}
        assert {"preprocess", "stats", "feature_names", "files", "format", "window"} <= set(version)
        assert client.get(f"/v1/models/{NAME}/versions/latest").json()["version"] == second


def test_promote_and_roll_back(gw, two_versions) -> None:
    root, first, second = two_versions
    with gw.client() as client:
        back = client.post(f"/v1/models/{NAME}/promote", json={"version": first})
        assert back.status_code == 200, back.text
        assert back.json() == {"name": NAME, "latest": first, "previous": second}
        assert Registry(root.as_uri()).latest(NAME) == first
        assert client.get("/v1/models").json()["items"][0]["latest"] == first
        forward = client.post(f"/v1/models/{NAME}/promote", json={"version": second})
        assert forward.json() == {"name": NAME, "latest": second, "previous": first}
        same = client.post(f"/v1/models/{NAME}/promote", json={"version": "latest"})
        assert same.json() == {"name": NAME, "latest": second, "previous": second}
    assert Registry(root.as_uri()).latest(NAME) == second


def test_unknown_models_and_versions(gw) -> None:
    with gw.client() as client:
        assert client.get("/v1/models/ghost").status_code == 404
        assert client.get("/v1/models/ghost").json() == {"detail": "no model 'ghost' (models: ['hand'])"}
        missing = client.get(f"/v1/models/{NAME}/versions/20000101T000000Z-000000")
        assert missing.status_code == 404 and "has no version '20000101T000000Z-000000'" in missing.json()["detail"]
        assert client.post(f"/v1/models/{NAME}/promote", json={"version": "nope"}).status_code == 404
        assert client.post("/v1/models/ghost/promote", json={"version": "nope"}).status_code == 404
        assert client.post(f"/v1/models/{NAME}/promote", json={}).status_code == 422
        bad = client.get("/v1/models/-bad")
        assert bad.status_code == 422 and "model name '-bad' is not valid" in bad.json()["detail"]


def test_empty_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str) -> None:
    with serve_gateway(monkeypatch, tmp_path, pg_url) as server, server.client() as client:
        assert client.get("/v1/models").json() == {"items": [], "total": 0}
