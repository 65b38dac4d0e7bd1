"""The gateway (a real uvicorn process) against its own PostgreSQL that is stopped or frozen: database
requests answer 503 naming the database within 5 s, and the gateway recovers by itself once the server
is back (no restart)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from backends import OwnPostgres
from servers import UvicornProcess

pytestmark = pytest.mark.slow
pytest_plugins = ["gateway_fixtures"]  # fixtures: synth_folder

log = logging.getLogger(__name__)
BOUND_S = 5.0  # the longest a client may wait for a 503 while the database is down or frozen


@dataclass
class Setup:
    pg: OwnPostgres
    gateway: UvicornProcess
    job: dict  # a valid preprocess submission


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, synth_folder: Path) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("db-faults")
    with OwnPostgres(tmp / "pg") as pg:
        env = {
            "DATABASE_URL": pg.url,
            "STORE_URI": (tmp / "store").as_uri(),
            "BROKER_DIR": str(tmp / "broker"),
            "REDIS_URL": "",  # unset: the filesystem transport
            "LOG_LEVEL": "INFO",
            "ALLOWED_DATA_ROOTS": synth_folder.as_uri(),  # the dataset registered below
        }
        cli = [sys.executable, "-c", "from emgpose.cli import main; raise SystemExit(main())", "db", "upgrade"]
        subprocess.run(cli, env={**os.environ, **env}, check=True, capture_output=True, timeout=120)
        with UvicornProcess("emgpose_gateway.main:app", env, tmp / "gateway.log") as gateway:
            registered = httpx.post(
                gateway.url + "/v1/datasets/register", json={"name": "lab", "uri": synth_folder.as_uri()}, timeout=10
            )
            assert registered.status_code == 201, registered.text
            yield Setup(pg, gateway, {"type": "preprocess", "params": {"dataset": registered.json()["id"]}})


def _timed(setup: Setup, method: str, path: str) -> tuple[httpx.Response, float]:
    body = setup.job if method == "POST" else None
    start = time.monotonic()
    response = httpx.request(method, setup.gateway.url + path, json=body, timeout=30)
    return response, time.monotonic() - start


def _assert_unavailable(setup: Setup, method: str, path: str) -> float:
    response, elapsed = _timed(setup, method, path)
    assert response.status_code == 503, response.text
    assert f"the database at {setup.pg.url}" in response.json()["detail"]
    assert elapsed < BOUND_S, f"{method} {path}: 503 after {elapsed:.1f} s"
    log.info("%s %s: 503 after %.2f s", method, path, elapsed)
    return elapsed


def _until_ok(setup: Setup, timeout: float = 10.0) -> float:
    """Seconds until GET /v1/jobs answers 200 again; then POST /v1/jobs must answer 202."""
    start = time.monotonic()
    while True:
        response, _ = _timed(setup, "GET", "/v1/jobs")
        if response.status_code == 200:
            break
        assert time.monotonic() - start < timeout, f"still {response.status_code} after {timeout} s: {response.text}"
        time.sleep(0.2)
    recovered = time.monotonic() - start
    response, _ = _timed(setup, "POST", "/v1/jobs")
    assert response.status_code == 202, response.text
    return recovered


def test_stopped_database_is_503_then_recovers(setup: Setup) -> None:
    assert _until_ok(setup) < 1  # connections in the pool before the stop
    setup.pg.stop()
    try:
        for method in ("GET", "POST", "GET"):
            _assert_unavailable(setup, method, "/v1/jobs")
    finally:
        setup.pg.start()
    log.info("stopped: recovered %.2f s after the start", _until_ok(setup))


def test_frozen_database_is_503_one_after_another_and_at_once_then_recovers(setup: Setup) -> None:
    _until_ok(setup)
    setup.pg.freeze()
    try:
        for method in ("GET", "POST", "GET"):
            _assert_unavailable(setup, method, "/v1/jobs")
        calls = [("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/datasets")] * 3
        with ThreadPoolExecutor(len(calls)) as pool:
            elapsed = list(pool.map(lambda call: _assert_unavailable(setup, *call), calls))
        log.info("frozen: %d concurrent requests, slowest 503 after %.2f s", len(calls), max(elapsed))
        assert httpx.get(setup.gateway.url + "/healthz", timeout=2).status_code == 200  # no deadline there
    finally:
        setup.pg.thaw()
    log.info("frozen: recovered %.2f s after the thaw", _until_ok(setup))
    time.sleep(1)  # the requests answered by the deadline finish now that the server answers
    gateway_log = setup.gateway.log()
    assert "answered 503" in gateway_log and "has finished" in gateway_log
    for noise in ("Traceback", "ended later with", "already started", "already completed"):
        assert noise not in gateway_log, gateway_log
