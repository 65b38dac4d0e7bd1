"""Idempotent submission under a race: 20 clients send one preprocess body with one Idempotency-Key at
the same moment to the real gateway, on SQLite and on PostgreSQL; exactly one job is created and queued,
and every client gets it (one 202, the others 200)."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from gateway_support import Gateway, serve_gateway
from sqlalchemy import func, select

from emgpose.db.engine import session_scope
from emgpose.db.migrate import upgrade
from emgpose.db.models import Job

pytest_plugins = ["gateway_fixtures"]  # fixtures: pg_url, synth_folder

CLIENTS = 20


def _race(gw: Gateway, folder: Path, key: str) -> list[httpx.Response]:
    with gw.client() as client:
        registered = client.post("/v1/datasets/register", json={"name": "lab", "uri": folder.as_uri()})
    assert registered.status_code == 201, registered.text
    body = {"type": "preprocess", "params": {"dataset": registered.json()["id"]}}
    barrier = threading.Barrier(CLIENTS)

    def submit(_: int) -> httpx.Response:
        with gw.client() as client:
            barrier.wait()
            return client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(submit, range(CLIENTS)))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_submissions_with_one_key_create_one_job(
    backend: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, synth_folder: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'gateway.db'}"
        upgrade(url)
    else:
        url = request.getfixturevalue("pg_url")
    with serve_gateway(monkeypatch, tmp_path, url, ALLOWED_DATA_ROOTS=synth_folder.as_uri()) as gw:
        responses = _race(gw, synth_folder, "race-1")
        assert all(r.status_code in (200, 202) for r in responses), [(r.status_code, r.text) for r in responses]
        assert Counter(r.status_code for r in responses) == {202: 1, 200: CLIENTS - 1}
        ids = {r.json()["id"] for r in responses}
        assert len(ids) == 1
        assert {r.headers["location"] for r in responses} == {f"/v1/jobs/{ids.pop()}"}
        with session_scope(url) as session:
            assert session.scalar(select(func.count()).select_from(Job)) == 1
        assert gw.queued("preprocess") == 1
        body = {"type": "preprocess", "params": {"dataset": responses[0].json()["params"]["dataset"], "name": "b"}}
        with gw.client() as client:  # another body with the key is still refused
            other = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "race-1"})
        assert other.status_code == 409, other.text
        assert "Idempotency-Key 'race-1' was already used for a different request" in other.json()["detail"]
