"""API keys against the real services: the gateway and the inference service served by uvicorn, on
PostgreSQL and SQLite, the ``emgpose keys`` console script as a subprocess.

* every route of each app is listed from its own OpenAPI and classified below (a new route that nobody
  classified fails here); each refuses a request without a key, with a malformed key and with an unknown
  one (401, ``WWW-Authenticate: Bearer``), before reading its body; only the probes are open;
* each scope reaches what it should and gets 403 naming the scope needed elsewhere;
* revoked keys: at once in the gateway that revoked, within ``AUTH_CACHE_S`` elsewhere;
* ``emgpose keys create | list | revoke`` round trip; the database holds a keyed hash, never the key;
* the per-key jobs-in-flight limit: 429 with ``Retry-After``, strict under concurrent submissions;
* the inference service accepts the same keys, directly, through the gateway's predict proxy and on
  the WebSocket stream;
* no secret in any response or log line; ``emgpose up`` keeps its pepper and admin key in 0600 files.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from gateway_support import Gateway, publish_tiny, serve_gateway
from inference_support import NAME, binary_request, recording, serve
from servers import UvicornThread
from sqlalchemy import select, text
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from emgpose import auth
from emgpose.client import ApiError, Client
from emgpose.db.engine import get_engine, reset_engines, session_scope
from emgpose.db.migrate import alembic_config, upgrade
from emgpose.db.models import ApiKey, Base, Job
from emgpose.errors import Unauthorized, Unavailable
from emgpose.settings import Settings
from emgpose.up import Stack, admin_key, local_pepper
from emgpose_gateway.main import create_app as create_gateway

pytest_plugins = ["gateway_fixtures"]  # fixtures: pg_url, synth_folder

EMGPOSE = Path(sys.executable).parent / "emgpose"
PEPPER = "a-pepper-for-the-auth-tests-0123456789"
KEY_ID = "0123456789abcdef"  # a well-formed id no key has
OPEN = None  # no key needed

# What each route needs. Both tables must list exactly the routes the apps' OpenAPI shows.
GATEWAY_SCOPES = {
    ("POST", "/v1/datasets"): "submit",
    ("GET", "/v1/datasets"): "read",
    ("POST", "/v1/datasets/register"): "admin",
    ("GET", "/v1/datasets/{dataset_id}"): "read",
    ("GET", "/v1/datasets/{dataset_id}/sessions"): "read",
    ("GET", "/v1/datasets/{dataset_id}/sessions/{name}/samples"): "read",
    ("POST", "/v1/jobs"): "submit",
    ("GET", "/v1/jobs"): "read",
    ("GET", "/v1/jobs/{job_id}"): "read",
    ("POST", "/v1/jobs/{job_id}/cancel"): "submit",
    ("GET", "/v1/jobs/{job_id}/outputs"): "read",
    ("GET", "/v1/jobs/{job_id}/outputs/{file}"): "read",
    ("GET", "/v1/models"): "read",
    ("GET", "/v1/models/{name}"): "read",
    ("GET", "/v1/models/{name}/versions/{version}"): "read",
    ("GET", "/v1/models/{name}/versions/{version}/files/{file}"): "read",
    ("GET", "/v1/whoami"): "read",
    ("POST", "/v1/models/{name}/promote"): "admin",
    ("POST", "/v1/predict"): "submit",
    ("GET", "/v1/keys"): "admin",
    ("POST", "/v1/keys"): "admin",
    ("POST", "/v1/keys/{key_id}/revoke"): "admin",
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
    ("GET", "/metrics"): "read",
}
INFERENCE_SCOPES = {
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
    ("GET", "/v2/health/live"): OPEN,
    ("GET", "/v2/health/ready"): OPEN,
    ("GET", "/metrics"): "read",
    ("GET", "/v2"): "read",
    ("GET", "/v2/models/{name}"): "read",
    ("GET", "/v2/models/{name}/versions/{version}"): "read",
    ("GET", "/v2/models/{name}/ready"): "read",
    ("GET", "/v2/models/{name}/versions/{version}/ready"): "read",
    ("POST", "/v2/models/{name}/infer"): "submit",
    ("POST", "/v2/models/{name}/versions/{version}/infer"): "submit",
    ("POST", "/v1/predict"): "submit",
}


# --- helpers --------------------------------------------------------------------------------------------


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_key(url: str, scope: str, name: str = "", pepper: str = PEPPER) -> str:
    with session_scope(url) as session:
        return auth.create_key(session, pepper.encode(), scope, name)[1]


def forged(key: str) -> str:
    """The same key id with another secret of the right form."""
    key_id = auth.key_id_of(key)
    return f"emgp_{key_id}_{'A' * 43}"


def operations(spec: dict) -> dict[tuple[str, str], dict]:
    return {(method.upper(), path): op for path, ops in spec["paths"].items() for method, op in ops.items()}


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", KEY_ID, path)


def call(client: httpx.Client, method: str, path: str, key: str | None = None, **kwargs) -> httpx.Response:
    headers = {**kwargs.pop("headers", {}), **(bearer(key) if key else {})}
    if method == "POST" and "content" not in kwargs:
        kwargs["json"] = {}
    return client.request(method, concrete(path), headers=headers, **kwargs)


def assert_refused(response: httpx.Response, status: int = 401) -> str:
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.text}"
    assert response.headers["www-authenticate"].startswith('Bearer realm="emgpose"')
    body = response.json()
    return body.get("detail") or body.get("error")


def emgpose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "AUTH_PEPPER", "AUTH_ENABLED")}
    return subprocess.run([str(EMGPOSE), *args], env={**clean, **env}, capture_output=True, text=True, timeout=120)


# --- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('auth-sqlite') / 'emgpose.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")


@contextmanager
def auth_gateway(
    monkeypatch, tmp_path: Path, url: str, roots: Path, empty: bool = True, **env: str
) -> Iterator[Gateway]:
    """The gateway with keys on (``empty=False`` keeps the keys already in the database)."""
    values = {"AUTH_ENABLED": "true", "AUTH_PEPPER": PEPPER, "ALLOWED_DATA_ROOTS": roots.as_uri(), **env}
    with serve_gateway(monkeypatch, tmp_path, url, empty=empty, **values) as server:
        yield server


@pytest.fixture
def gw(monkeypatch, tmp_path: Path, db_url: str, synth_folder: Path, free_tcp_port: int) -> Iterator[Gateway]:
    """The gateway with keys on; /v1/predict forwards to a port where nothing listens."""
    env = {"INFERENCE_URL": f"http://127.0.0.1:{free_tcp_port}", "MAX_JOBS_IN_FLIGHT_PER_KEY": "2"}
    with auth_gateway(monkeypatch, tmp_path, db_url, synth_folder, **env) as server:
        yield server


@pytest.fixture
def keys(gw: Gateway) -> dict[str, str]:
    """One key of each scope in the gateway's database."""
    return {scope: make_key(gw.settings.database_url, scope, f"{scope}-key") for scope in auth.SCOPES}


@contextmanager
def auth_inference(tmp_path: Path, url: str, cache_s: float = 30.0) -> Iterator[UvicornThread]:
    """The inference service with keys on, serving a small published model of ``hand``."""
    store = (tmp_path / "models").as_uri()
    publish_tiny(store, NAME, "v1", "2026-01-01T00:00:00Z", mae=10.0)
    with serve(store, auth_enabled=True, auth_pepper=PEPPER, database_url=url, auth_cache_s=cache_s) as server:
        yield server


# --- every route refused without a key ------------------------------------------------------------------


def test_every_gateway_route_but_the_probes_refuses_a_request_without_a_valid_key(gw: Gateway) -> None:
    with gw.client() as client:
        spec = client.get("/openapi.json").json()  # the docs stay readable without a key
        ops = operations(spec)
        assert set(ops) == set(GATEWAY_SCOPES), "classify every route in GATEWAY_SCOPES (and nothing else)"
        assert spec["components"]["securitySchemes"]["apiKey"] == {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": auth.KEY_FORMAT,
            "description": spec["components"]["securitySchemes"]["apiKey"]["description"],
        }
        unknown = forged(make_key(gw.settings.database_url, "admin"))
        for (method, path), needed in GATEWAY_SCOPES.items():
            if needed is OPEN:
                assert "security" not in ops[method, path]
                assert call(client, method, path).status_code in (200, 503)
                continue
            assert ops[method, path]["security"] == [{"apiKey": []}], (method, path)
            assert {"401", "403"} <= set(ops[method, path]["responses"]), (method, path)
            assert "API key" in assert_refused(call(client, method, path))
            assert "Bearer emgp_" in assert_refused(call(client, method, path, headers={"Authorization": "Basic x"}))
            assert "not recognised" in assert_refused(call(client, method, path, unknown))
        # refused before the body is read or parsed: not JSON, and far larger than any route takes
        response = client.post(
            "/v1/jobs", content=b"{" * (8 * 1024 * 1024), headers={"content-type": "application/json"}
        )
        assert_refused(response)
        assert_refused(client.get("/v1/no-such-route"))  # nothing to learn about what exists


def test_every_inference_route_but_the_probes_refuses_a_request_without_a_valid_key(
    tmp_path: Path, db_url: str
) -> None:
    with auth_inference(tmp_path, db_url) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        ops = operations(client.get("/openapi.json").json())
        assert set(ops) == set(INFERENCE_SCOPES), "classify every route in INFERENCE_SCOPES (and nothing else)"
        unknown = forged(make_key(db_url, "admin"))
        for (method, path), needed in INFERENCE_SCOPES.items():
            if needed is OPEN:
                assert "security" not in ops[method, path]
                assert call(client, method, path).status_code == 200
                continue
            assert ops[method, path]["security"] == [{"apiKey": []}], (method, path)
            assert_refused(call(client, method, path))
            assert "not recognised" in assert_refused(call(client, method, path, unknown))
        v2 = client.post(f"/v2/models/{NAME}/infer", json={})
        assert "API key" in v2.json()["error"], "below /v2 a refusal has the protocol's `error` field"


# --- scopes ---------------------------------------------------------------------------------------------


def test_each_scope_reaches_its_routes_and_gets_403_naming_the_scope_elsewhere(gw: Gateway, keys) -> None:
    with gw.client() as client:
        for (method, path), needed in GATEWAY_SCOPES.items():
            if needed is OPEN:
                continue
            for scope, key in keys.items():
                response = call(client, method, path, key)
                if auth.allows(scope, needed):
                    assert response.status_code not in (401, 403), (scope, method, path, response.text)
                else:
                    detail = assert_refused(response, 403)
                    assert f"this needs scope {needed!r}" in detail and f"has scope {scope!r}" in detail
                    assert f'error="insufficient_scope", scope="{needed}"' in response.headers["www-authenticate"]


def test_a_read_key_lists_and_an_admin_key_registers_and_manages_keys(gw: Gateway, keys, synth_folder) -> None:
    with gw.client() as client:
        registered = client.post(
            "/v1/datasets/register", json={"name": "lab", "uri": synth_folder.as_uri()}, headers=bearer(keys["admin"])
        )
        assert registered.status_code == 201, registered.text
        listed = client.get("/v1/datasets", headers=bearer(keys["read"]))
        assert listed.status_code == 200 and listed.json()["items"][0]["id"] == registered.json()["id"]
        made = client.post("/v1/keys", json={"scope": "read", "name": "dashboard"}, headers=bearer(keys["admin"]))
        assert made.status_code == 201, made.text
        new = made.json()
        assert auth.key_id_of(new["key"]) == new["id"] and new["scope"] == "read" and not new["revoked"]
        assert client.get("/v1/models", headers=bearer(new["key"])).status_code == 200
        listing = client.get("/v1/keys", headers=bearer(keys["admin"]))
        assert new["key"] not in listing.text and new["key"].split("_", 2)[2] not in listing.text
        rows = {row["id"]: row for row in listing.json()["items"]}
        assert set(rows) == {new["id"], *(auth.key_id_of(k) for k in keys.values())}
        assert set(rows[new["id"]]) == {"id", "name", "scope", "created_at", "last_used_at", "revoked_at", "revoked"}
        assert rows[new["id"]]["last_used_at"] is not None, "it was just used"
        bad = client.post("/v1/keys", json={"scope": "root"}, headers=bearer(keys["admin"]))
        assert bad.status_code == 422


# --- revocation -----------------------------------------------------------------------------------------


def test_a_key_revoked_through_the_gateway_is_refused_at_once(gw: Gateway, keys) -> None:
    victim = make_key(gw.settings.database_url, "submit", "leaked")
    victim_id = auth.key_id_of(victim)
    with gw.client() as client:
        assert client.get("/v1/jobs", headers=bearer(victim)).status_code == 200  # now cached for 30 s
        revoked = client.post(f"/v1/keys/{victim_id}/revoke", headers=bearer(keys["admin"]))
        assert revoked.status_code == 200 and revoked.json()["revoked"] and revoked.json()["revoked_at"]
        detail = assert_refused(client.get("/v1/jobs", headers=bearer(victim)))
        assert detail == f"API key {victim_id} was revoked; ask an admin for a new one"
        again = client.post(f"/v1/keys/{victim_id}/revoke", headers=bearer(keys["admin"]))
        assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]
        assert client.post(f"/v1/keys/{KEY_ID}/revoke", headers=bearer(keys["admin"])).status_code == 404
        assert client.post("/v1/keys/not-a-key-id/revoke", headers=bearer(keys["admin"])).status_code == 422


def test_a_key_revoked_elsewhere_is_refused_once_the_cache_time_has_passed(
    monkeypatch, tmp_path: Path, db_url: str, synth_folder: Path
) -> None:
    with auth_gateway(monkeypatch, tmp_path, db_url, synth_folder, AUTH_CACHE_S="2") as gw, gw.client() as client:
        key = make_key(db_url, "read")
        assert client.get("/v1/jobs", headers=bearer(key)).status_code == 200
        with session_scope(db_url) as session:  # another process revokes it (the CLI, another gateway)
            auth.revoke_key(session, auth.key_id_of(key))
        assert client.get("/v1/jobs", headers=bearer(key)).status_code == 200, "trusted from memory for 2 s"
        time.sleep(2.1)
        assert "was revoked" in assert_refused(client.get("/v1/jobs", headers=bearer(key)))


# --- the CLI and what is stored -------------------------------------------------------------------------


def test_the_cli_creates_a_key_once_lists_without_secrets_and_revokes(
    monkeypatch, tmp_path: Path, db_url: str, synth_folder: Path
) -> None:
    env = {"DATABASE_URL": db_url, "AUTH_PEPPER": PEPPER}
    created = emgpose("keys", "create", "--scope", "submit", "--name", "ci runner", env=env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n", "stdout is the key alone, for $(...)"
    assert auth.KEY_PATTERN.match(key)
    key_id, secret = auth.key_id_of(key), key.split("_", 2)[2]
    assert "shown only now: it is stored nowhere" in created.stderr and key not in created.stderr
    second = emgpose("keys", "create", "--scope", "read", env=env).stdout.strip()
    assert second != key and auth.key_id_of(second) != key_id

    with session_scope(db_url) as session:  # the hash stored is not the key
        row = session.get(ApiKey, key_id)
        stored = [str(getattr(row, column.key)) for column in ApiKey.__table__.columns]
        assert row.scope == "submit" and row.name == "ci runner" and row.revoked_at is None
        assert row.digest == hmac.new(PEPPER.encode(), key.encode(), "sha256").hexdigest() and len(row.digest) == 64
        assert not any(secret in value or key in value for value in stored)

    listed = emgpose("keys", "list", env=env)
    assert listed.returncode == 0 and key_id in listed.stdout and "ci runner" in listed.stdout
    assert secret not in listed.stdout and row.digest not in listed.stdout

    gateway = auth_gateway(monkeypatch, tmp_path, db_url, synth_folder, empty=False, AUTH_CACHE_S="0")
    with gateway as gw, gw.client() as client:
        assert client.get("/v1/jobs", headers=bearer(key)).status_code == 200
        revoked = emgpose("keys", "revoke", key_id, env=env)
        assert (
            revoked.returncode == 0 and f"revoked API key {key_id} (scope submit, name 'ci runner')" in revoked.stdout
        )
        assert "was revoked" in assert_refused(client.get("/v1/jobs", headers=bearer(key)))
        assert client.get("/v1/jobs", headers=bearer(second)).status_code == 200
    relisted = emgpose("keys", "list", env=env).stdout
    line = next(line for line in relisted.splitlines() if line.startswith(key_id))
    assert line.count(" UTC") == 3, f"created, last used and revoked are dated: {line}"

    unknown = emgpose("keys", "revoke", KEY_ID, env=env)
    assert unknown.returncode == 2 and f"emgpose keys: error: no API key {KEY_ID}" in unknown.stderr
    typo = emgpose("keys", "revoke", "--", secret, env=env)
    assert typo.returncode == 2 and secret not in typo.stderr
    no_pepper = emgpose("keys", "create", "--scope", "admin", env={"DATABASE_URL": db_url})
    assert no_pepper.returncode == 2 and "AUTH_PEPPER" in no_pepper.stderr and "Traceback" not in no_pepper.stderr


def test_a_key_hashed_with_another_pepper_verifies_nothing(monkeypatch, tmp_path, db_url, synth_folder) -> None:
    key = make_key(db_url, "admin", pepper="another-pepper-of-the-right-length-000")
    with auth_gateway(monkeypatch, tmp_path, db_url, synth_folder, empty=False) as gw, gw.client() as client:
        assert "not recognised" in assert_refused(client.get("/v1/jobs", headers=bearer(key)))


def test_the_migration_creates_what_the_models_declare_and_keeps_existing_jobs(tmp_path: Path, pg_url: str) -> None:
    """0003 on a database with jobs and their parts (SQLite must not copy `jobs`: that would delete the parts)."""
    sqlite = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(sqlite, "0002")
    with get_engine(sqlite).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO jobs (id, type, state, params, progress, stage, result, cancel_requested, parts_total,"
                " phase, attempts, created_at, updated_at, parts_done, requeues) VALUES ('j1', 'train', 'running',"
                " '{}', 0, 'run', '{}', 0, 1, 'run', 1, '2026-01-01', '2026-01-01', 0, 0)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO job_parts (job_id, phase, part, weight, result, state, attempts, requeues)"
                " VALUES ('j1', 'run', 0, 1, '{}', 'running', 1, 0)"
            )
        )
    upgrade(sqlite)
    with get_engine(sqlite).connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM job_parts")).scalar() == 1
        assert connection.execute(text("SELECT api_key_id FROM jobs")).scalar() is None
    for url in (sqlite, pg_url):
        with get_engine(url).connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == [], url
    command.downgrade(alembic_config(sqlite), "0002")
    with get_engine(sqlite).connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM job_parts")).scalar() == 1


# --- jobs in flight per key ------------------------------------------------------------------------------


def test_a_key_over_its_jobs_in_flight_gets_429_with_retry_after(gw: Gateway, keys, synth_folder: Path) -> None:
    with gw.client() as client:
        dataset = client.post(
            "/v1/datasets/register", json={"name": "lab", "uri": synth_folder.as_uri()}, headers=bearer(keys["admin"])
        ).json()["id"]
        body = {"type": "preprocess", "params": {"dataset": dataset}}
        first = client.post("/v1/jobs", json=body, headers={**bearer(keys["submit"]), "Idempotency-Key": "one"})
        second = client.post("/v1/jobs", json=body, headers=bearer(keys["submit"]))
        assert (first.status_code, second.status_code) == (202, 202)
        assert first.json()["api_key_id"] == auth.key_id_of(keys["submit"])
        third = client.post("/v1/jobs", json=body, headers=bearer(keys["submit"]))
        assert third.status_code == 429 and third.headers["retry-after"] == str(auth.IN_FLIGHT_RETRY_AFTER_S)
        assert "MAX_JOBS_IN_FLIGHT_PER_KEY=2" in third.json()["detail"]
        # a retry of a job already made still gets it back; another key has its own count
        retry = client.post("/v1/jobs", json=body, headers={**bearer(keys["submit"]), "Idempotency-Key": "one"})
        assert retry.status_code == 200 and retry.json()["id"] == first.json()["id"]
        assert client.post("/v1/jobs", json=body, headers=bearer(keys["admin"])).status_code == 202
        # a finished job frees its place
        assert client.post(f"/v1/jobs/{first.json()['id']}/cancel", headers=bearer(keys["submit"])).status_code == 202
        assert client.post("/v1/jobs", json=body, headers=bearer(keys["submit"])).status_code == 202
    assert gw.queued("preprocess") == 4
    with session_scope(gw.settings.database_url) as session:
        owners = session.scalars(select(Job.api_key_id).where(Job.state == "queued")).all()
        assert sorted(owners) == sorted([auth.key_id_of(keys["submit"])] * 2 + [auth.key_id_of(keys["admin"])])


def test_concurrent_submissions_with_one_key_never_pass_the_limit(gw: Gateway, synth_folder: Path) -> None:
    admin, key = make_key(gw.settings.database_url, "admin"), make_key(gw.settings.database_url, "submit")
    with gw.client() as client:
        dataset = client.post(
            "/v1/datasets/register", json={"name": "lab", "uri": synth_folder.as_uri()}, headers=bearer(admin)
        ).json()["id"]

    def submit(_: int) -> int:
        with gw.client() as client:
            body = {"type": "preprocess", "params": {"dataset": dataset}}
            return client.post("/v1/jobs", json=body, headers=bearer(key)).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(submit, range(8)))
    assert statuses == [202, 202] + [429] * 6


# --- the inference service accepts the same keys ---------------------------------------------------------


def test_inference_accepts_the_same_keys_directly_through_the_gateway_and_on_the_stream(
    monkeypatch, tmp_path: Path, db_url: str, synth_folder: Path
) -> None:
    emg = recording(1.0)
    with auth_inference(tmp_path, db_url, cache_s=1.0) as inference:
        env = {"INFERENCE_URL": inference.url}
        with auth_gateway(monkeypatch, tmp_path, db_url, synth_folder, **env) as gw, gw.client() as client:
            made = client.post("/v1/keys", json={"scope": "submit"}, headers=bearer(make_key(db_url, "admin")))
            key = made.json()["key"]  # made through the gateway, checked by inference in the same database
            read = make_key(db_url, "read")
            request = binary_request(emg)
            proxied = client.post(
                "/v1/predict", content=request["content"], headers={**request["headers"], **bearer(key)}
            )
            assert proxied.status_code == 200, proxied.text
            assert proxied.json()["model_version"] == "v1"
            low = client.post("/v1/predict", content=request["content"], headers={**request["headers"], **bearer(read)})
            assert low.status_code == 403 and "this needs scope 'submit'" in low.json()["detail"]

        with httpx.Client(base_url=inference.url, timeout=30) as direct:
            assert direct.post("/v1/predict", content=request["content"], headers=request["headers"]).status_code == 401
            answer = direct.post(
                "/v1/predict", content=request["content"], headers={**request["headers"], **bearer(key)}
            )
            assert answer.status_code == 200 and answer.json()["degrees"] == proxied.json()["degrees"]
            assert direct.get(f"/v2/models/{NAME}", headers=bearer(read)).status_code == 200
            metrics = direct.get("/metrics", headers=bearer(read))
            assert metrics.status_code == 200 and 'status="401"' in metrics.text
            forbidden = direct.post(f"/v2/models/{NAME}/infer", json={}, headers=bearer(read))
            assert forbidden.status_code == 403 and "this needs scope 'submit'" in forbidden.json()["error"]

            with connect(f"{inference.ws_url}/v1/stream?sample_rate=2000") as ws:
                message = json.loads(ws.recv(timeout=10))
                assert message["type"] == "error" and message["status"] == 401 and "API key" in message["detail"]
                with pytest.raises(ConnectionClosed) as closed:
                    ws.recv(timeout=10)
                assert closed.value.rcvd.code == 1008
            with connect(f"{inference.ws_url}/v1/stream?sample_rate=2000", additional_headers=bearer(key)) as ws:
                assert json.loads(ws.recv(timeout=10))["type"] == "ready"

            with session_scope(db_url) as session:
                auth.revoke_key(session, auth.key_id_of(key))
            time.sleep(1.1)  # inference trusts a checked key for AUTH_CACHE_S (1 s here)
            gone = direct.post("/v1/predict", content=request["content"], headers={**request["headers"], **bearer(key)})
            assert gone.status_code == 401 and "was revoked" in gone.json()["detail"]


# --- no secret in responses or logs ----------------------------------------------------------------------


def test_no_secret_appears_in_a_response_or_a_log_line(gw: Gateway, keys, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    good = keys["submit"]
    wrong = forged(good)
    malformed = "emgp_not-a-key_" + "S3cr3tS3cr3t" * 4
    texts = []
    with gw.client() as client:
        texts.append(client.get("/v1/jobs", headers=bearer(good)))
        for key in (wrong, malformed, "S3cr3tS3cr3t-bare-token"):
            for method, path in (("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("POST", "/v1/predict")):
                texts.append(call(client, method, path, key))
        client.post(f"/v1/keys/{auth.key_id_of(good)}/revoke", headers=bearer(keys["admin"]))
        texts.append(client.get("/v1/jobs", headers=bearer(good)))
        texts.append(client.get("/readyz"))
    seen = "\n".join(f"{r.status_code} {r.headers} {r.text}" for r in texts) + caplog.text
    for secret in (good.split("_", 2)[2], wrong.split("_", 2)[2], "S3cr3tS3cr3t", PEPPER):
        assert secret not in seen
    assert "was revoked" in texts[-2].text and auth.key_id_of(good) in caplog.text, "ids are named, secrets never"


# --- auth off, misconfiguration, the client, emgpose up ---------------------------------------------------


def test_with_auth_off_everything_is_open_as_before(monkeypatch, tmp_path: Path, pg_url: str) -> None:
    with serve_gateway(monkeypatch, tmp_path, pg_url, AUTH_PEPPER=None) as gw, gw.client() as client:
        assert client.get("/v1/jobs").status_code == 200
        assert client.get("/v1/jobs", headers=bearer("anything")).status_code == 200
        keyless = client.post("/v1/keys", json={"scope": "admin"})
        assert keyless.status_code == 503 and "AUTH_PEPPER" in keyless.json()["detail"]


def test_a_service_with_auth_on_and_no_pepper_refuses_to_start() -> None:
    from emgpose_inference.main import create_app as create_inference

    for create in (create_gateway, create_inference):
        for pepper in (None, "short"):
            with pytest.raises(auth.AuthNotConfigured, match="API keys need AUTH_PEPPER, a secret of at least 32"):
                create(Settings(auth_enabled=True, auth_pepper=pepper, model_name=NAME))


def test_the_client_sends_its_key_or_the_environment_s(gw: Gateway, keys, monkeypatch) -> None:
    monkeypatch.delenv("EMGPOSE_API_KEY", raising=False)
    with Client(gw.url) as anonymous, pytest.raises(ApiError) as refused:
        anonymous.models()
    assert refused.value.status == 401
    with Client(gw.url, api_key=keys["read"]) as api:
        assert api.models() == {"items": [], "total": 0}
    monkeypatch.setenv("EMGPOSE_API_KEY", keys["read"])
    with Client(gw.url) as api:
        assert api.models()["total"] == 0
        with pytest.raises(ApiError) as low:
            api.submit("preprocess", {"dataset": KEY_ID * 2})
    assert low.value.status == 403


def test_up_keeps_its_pepper_and_admin_key_in_private_files(tmp_path: Path, caplog, monkeypatch) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.delenv("AUTH_PEPPER", raising=False)
    monkeypatch.delenv("AUTH_ENABLED", raising=False)
    stack = Stack(tmp_path / "w")
    env = stack.environment()
    assert env["AUTH_ENABLED"] == "true" and len(env["AUTH_PEPPER"]) == 64
    pepper_file = tmp_path / "w" / "auth" / "pepper"
    assert (
        stat.S_IMODE(pepper_file.stat().st_mode) == 0o600 and stat.S_IMODE(pepper_file.parent.stat().st_mode) == 0o700
    )
    assert stack.environment()["AUTH_PEPPER"] == env["AUTH_PEPPER"] == local_pepper(pepper_file), "made once, kept"
    assert "AUTH_PEPPER" not in Stack(tmp_path / "open", env={"AUTH_ENABLED": "false"}).environment()

    url = env["DATABASE_URL"]
    upgrade(url)
    key = admin_key(url, env["AUTH_PEPPER"].encode(), stack.key_file)
    assert stack.key_file.read_text() == key + "\n" and stat.S_IMODE(stack.key_file.stat().st_mode) == 0o600
    assert admin_key(url, env["AUTH_PEPPER"].encode(), stack.key_file) == key, "reused while valid"
    with session_scope(url) as session:
        assert session.get(ApiKey, auth.key_id_of(key)).scope == "admin"
        auth.revoke_key(session, auth.key_id_of(key))
    fresh = admin_key(url, env["AUTH_PEPPER"].encode(), stack.key_file)
    assert fresh != key and stack.key_file.read_text() == fresh + "\n"
    for secret in (key, fresh, env["AUTH_PEPPER"]):
        assert secret not in caplog.text
    assert str(stack.key_file) in caplog.text


def test_a_verified_key_outlives_a_database_outage_for_a_while_and_others_get_503(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    upgrade(url)
    known, unseen = make_key(url, "submit"), make_key(url, "read")
    verifier = auth.Verifier(url, Settings(auth_pepper=PEPPER).auth_pepper, cache_s=0.0)  # every check reads
    assert verifier.verify(known) == auth.ApiKeyInfo(auth.key_id_of(known), "", "submit")
    (tmp_path / "keys.db").rename(tmp_path / "gone.db")  # the database goes away: no api_keys table any more
    reset_engines()
    assert verifier.verify(known).scope == "submit", "checked moments ago: trusted through the outage"
    with pytest.raises(Unavailable, match=r"API keys cannot be checked: the database is not reachable"):
        verifier.verify(unseen)
    with pytest.raises(Unavailable):
        verifier.verify(forged(known))  # the right id with a wrong secret never rides on the cache
    with pytest.raises(Unauthorized, match="must be `Bearer emgp_"):
        verifier.verify("not-a-key")


def test_a_key_lookup_does_not_start_the_database_deadline_for_a_long_route(sqlite_url: str) -> None:
    """A route that never opens a session (predict, uploads) runs as long as it needs after the key check."""
    import asyncio

    import httpx
    from pydantic import SecretStr
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from emgpose.auth import Verifier
    from emgpose.auth_http import AuthGate
    from emgpose_gateway.deadline import DatabaseDeadline, end_database_use, mark_database_use

    async def slow(_request) -> PlainTextResponse:
        await asyncio.sleep(0.6)  # three times the deadline below
        return PlainTextResponse("done")

    def app(after_lookup) -> DatabaseDeadline:
        verifier = Verifier(sqlite_url, SecretStr(PEPPER), cache_s=0.0)  # every request reads the database
        inner = AuthGate(Starlette(routes=[Route("/slow", slow)]), verifier, (), mark_database_use, after_lookup)
        return DatabaseDeadline(inner, deadline_s=0.2, database="test")

    key = make_key(sqlite_url, "read", "slow-route")

    async def call(asgi) -> httpx.Response:
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/slow", headers={"Authorization": f"Bearer {key}"})

    assert asyncio.run(call(app(end_database_use))).status_code == 200
    assert asyncio.run(call(app(None))).status_code == 503  # the deadline left running cuts the route
