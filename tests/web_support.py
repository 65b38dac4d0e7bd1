"""The stack the web page's tests run against: the gateway (PostgreSQL, a local store, the filesystem
broker) in front of the real inference service serving the session's trained model ``hand`` from the
same store, with the raw synthetic dataset the model was trained on registered."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gateway_support import Gateway, serve_gateway
from inference_support import copy_model, serve

from emgpose.db.engine import session_scope
from emgpose.jobs import repo, units

PEPPER = "a-pepper-for-the-web-page-tests-0123456789"


@dataclass
class WebStack:
    gateway: Gateway
    inference_url: str
    dataset_id: str
    version: str  # the version of ``hand`` being served
    tmp: Path


@contextmanager
def web_stack(
    tmp: Path, pg_url: str, train_model: tuple[dict, str], train_synth: Path, **env: Any
) -> Iterator[WebStack]:
    """The stack above; ``env`` adds gateway settings (and ``auth_enabled`` etc. go to inference too)."""
    store_uri = (tmp / "store").as_uri()
    version = copy_model(train_model, store_uri)
    inference_settings = {k.lower(): v for k, v in env.items() if k.startswith("AUTH_")}
    if inference_settings:
        inference_settings["database_url"] = pg_url
    with serve(store_uri, **inference_settings) as inference, pytest.MonkeyPatch.context() as mp:
        roots = train_synth.as_uri()
        with serve_gateway(mp, tmp, pg_url, ALLOWED_DATA_ROOTS=roots, INFERENCE_URL=inference.url, **env) as gw:
            dataset_id = register(gw, train_synth / "data")
            yield WebStack(gw, inference.url, dataset_id, version, tmp)


def register(gw: Gateway, folder: Path) -> str:
    """Registers a raw dataset the way an admin does (with auth off), straight in the database otherwise."""
    if gw.settings.auth_enabled:
        from emgpose import auth

        with session_scope(gw.settings.database_url) as session:
            admin = auth.create_key(session, PEPPER.encode(), "admin", "web-test-admin")[1]
        headers = {"Authorization": f"Bearer {admin}"}
    else:
        headers = {}
    with gw.client(headers=headers) as client:
        response = client.post("/v1/datasets/register", json={"uri": folder.as_uri(), "name": "synth-web"})
        assert response.status_code == 201, response.text
        return response.json()["id"]


def running_job(gw: Gateway, dataset_id: str, percent: float, stage: str, headers: dict | None = None) -> str:
    """A preprocess job submitted through the API, then leased and reported on as a worker does it
    (``units.lease`` marks it running, ``repo.report`` writes its progress), without running the work."""
    with gw.client(headers=headers or {}) as client:
        response = client.post("/v1/jobs", json={"type": "preprocess", "params": {"dataset": dataset_id}})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
    with session_scope(gw.settings.database_url) as session:
        unit = units.entry(repo.get_job(session, job_id))
    assert units.lease(unit, "web-test-worker", 60.0) is not None
    repo.report(job_id, percent, stage)
    return job_id
