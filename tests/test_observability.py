"""Metrics and logs of every service, scraped over real HTTP from real processes: inference (one process,
and two uvicorn workers adding up through PROMETHEUS_MULTIPROC_DIR), the gateway, a Celery worker after a
real job; the reaper's count; JSON log lines that parse and carry the request or job id."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from http_raw import send_head
from inference_support import NAME, binary_request, copy_model, parse_metrics, recording, wait_for
from pydantic import ValidationError
from servers import UvicornProcess
from worker_support import embedded, start_worker, stop, submit, wait

from emgpose.db.engine import session_scope
from emgpose.jobs import metrics as job_metrics
from emgpose.jobs import repo, units
from emgpose.jobs.celery_app import make_celery
from emgpose.jobs.reaper import reap_once
from emgpose.logs import JsonFormatter, job_context
from emgpose.metrics import MULTIPROC_ENV, Counter, Gauge, new_registry, use_multiprocess_dir
from emgpose.settings import Settings, get_settings
from emgpose.synth import SynthConfig, write_dataset

PORTS = range(18100, 18200)  # this file's range for servers whose port the test picks
REQUEST_ID = "obs-test-0001"


def _port() -> int:
    for port in PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS}")


def _scrape(url: str) -> dict[str, float]:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse_metrics(response.text)


def _json_lines(log: str) -> list[dict]:
    """Every non-empty line, parsed (fails on the first that is not one JSON object)."""
    return [json.loads(line) for line in log.splitlines() if line.strip()]


def _inference_env(tmp: Path, train_model: tuple[dict, str], **env: str) -> dict[str, str]:
    store_uri = (tmp / "store").as_uri()
    copy_model(train_model, store_uri)
    return {"STORE_URI": store_uri, "MODEL_NAME": NAME, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO", **env}


# --- inference --------------------------------------------------------------------------------------------


def test_inference_counts_requests_and_logs_json_with_the_request_id(tmp_path: Path, train_model) -> None:
    env = _inference_env(tmp_path, train_model)
    with UvicornProcess("emgpose_inference.main:app", env, tmp_path / "inference.log") as server:
        before = _scrape(server.url)
        request = binary_request(recording(0.5))
        request["headers"]["X-Request-ID"] = REQUEST_ID
        answers = [httpx.post(f"{server.url}/v1/predict", **request) for _ in range(3)]
        bad = httpx.post(f"{server.url}/v1/predict", content=b"\x00" * 6, headers={"Content-Type": "text/csv"})
        after = _scrape(server.url)
        log = server.log()
    assert [a.status_code for a in answers] == [200] * 3 and bad.status_code in (415, 422)
    assert all(a.headers["x-request-id"] == REQUEST_ID for a in answers)
    assert re.fullmatch(r"[0-9a-f]{32}", bad.headers["x-request-id"])  # none sent: a new one
    ok = 'emgpose_inference_requests_total{endpoint="/v1/predict",method="POST",status="200"}'
    assert after[ok] - before.get(ok, 0) == 3
    timed = 'emgpose_inference_request_duration_seconds_count{endpoint="/v1/predict",status="200"}'
    assert after[timed] - before.get(timed, 0) == 3
    windows = len(answers[0].json()["degrees"])
    assert after['emgpose_inference_windows_predicted_total{endpoint="v1"}'] == 3 * windows
    assert after["emgpose_inference_batch_windows_sum"] == 3 * windows  # every window went through the batcher
    assert after["emgpose_inference_model_loaded"] == 1
    assert after['emgpose_inference_reloads_total{result="success"}'] == 1
    assert after['emgpose_inference_reloads_total{result="failure"}'] == 0
    assert after["process_resident_memory_bytes"] > 0  # one process: its own figures too
    lines = _json_lines(log)  # every line the process printed, uvicorn's included
    assert {"ts", "level", "logger", "pid", "message"} <= set(lines[0])
    access = [line for line in lines if line["logger"] == "uvicorn.access" and line.get("request_id") == REQUEST_ID]
    assert len(access) == 3, lines


def test_two_workers_add_up_in_multiprocess_mode_and_a_client_that_leaves_is_499(tmp_path: Path, train_model) -> None:
    folder = tmp_path / "prom"
    folder.mkdir()
    env = _inference_env(tmp_path, train_model, PROMETHEUS_MULTIPROC_DIR=str(folder))
    server = UvicornProcess("emgpose_inference.main:app", env, tmp_path / "inference.log", startup_timeout=120)
    server.command += ["--workers", "2"]
    with server:
        wait_for(lambda: _pids(_scrape(server.url)) == 2, timeout=60, what="both workers serving a model")
        requests = 12
        with httpx.Client() as client:  # a new connection per request: the kernel spreads them over both
            request = binary_request(recording(0.25))
            request["headers"]["Connection"] = "close"
            for _ in range(requests):
                answer = client.post(f"{server.url}/v1/predict", **request)
                assert answer.status_code == 200, answer.text
        body = json.dumps({"emg": recording(0.25).tolist(), "sample_rate": 2000}).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        send_head(server.url, "POST", "/v1/predict", headers, body[: len(body) // 2]).close()  # gone mid-body
        series = 'emgpose_inference_requests_total{endpoint="/v1/predict",method="POST",status="%s"}'
        wait_for(lambda: _scrape(server.url).get(series % 499, 0) == 1, what="the 499")
        scrapes = [_scrape(server.url) for _ in range(6)]  # whichever worker answers, the same totals
    files = {path.name.split("_")[0] for path in folder.iterdir()}
    assert {"counter", "histogram"} <= files
    for values in scrapes:
        assert values[series % 200] == requests
        assert values.get(series % 500, 0) == 0
        assert values[series % 499] == 1
        assert _pids(values) == 2  # each worker's loaded version, one series per process
        assert values["emgpose_inference_model_loaded"] == 1


def _pids(values: dict[str, float]) -> int:
    return len({m.group(1) for s in values if (m := re.search(r'model_info\{.*pid="(\d+)"', s)) and values[s] == 1})


# --- gateway ----------------------------------------------------------------------------------------------


@pytest.fixture
def gateway_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with embedded(tmp_path) as env:
        yield {**env, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "REAPER_INTERVAL_S": "0"}


def test_gateway_serves_its_metrics_and_json_logs(tmp_path: Path, gateway_env: dict[str, str]) -> None:
    with UvicornProcess("emgpose_gateway.main:app", gateway_env, tmp_path / "gateway.log") as gateway:
        listed = [httpx.get(f"{gateway.url}/v1/jobs", headers={"X-Request-ID": REQUEST_ID}) for _ in range(2)]
        missing = httpx.get(f"{gateway.url}/v1/no-such-route")
        strange = httpx.get(f"{gateway.url}/v1/jobs", headers={"X-Request-ID": "two words\tand a tab"})
        response = httpx.get(f"{gateway.url}/metrics")
        log = gateway.log()
    assert [r.status_code for r in listed] == [200, 200] and missing.status_code == 404
    assert listed[0].headers["x-request-id"] == REQUEST_ID
    assert strange.headers["x-request-id"] != "two words\tand a tab"  # not plain: replaced, never echoed
    assert re.fullmatch("[0-9a-f]{32}", strange.headers["x-request-id"])  # a new id, as long as a UUID
    values = parse_metrics(response.text)
    assert values['emgpose_gateway_requests_total{endpoint="/v1/jobs",method="GET",status="200"}'] == 3
    assert values['emgpose_gateway_requests_total{endpoint="unmatched",method="GET",status="404"}'] == 1
    assert values['emgpose_gateway_request_duration_seconds_count{endpoint="/v1/jobs",status="200"}'] == 3
    for family in ("emgpose_jobs_total", "emgpose_job_duration_seconds", "emgpose_jobs_reaped_total"):
        assert f"# TYPE {family} " in response.text  # the process's job metrics ride along
    lines = _json_lines(log)
    assert sum(1 for line in lines if line.get("request_id") == REQUEST_ID) >= 2


# --- workers ----------------------------------------------------------------------------------------------


def test_a_worker_serves_job_metrics_and_queue_depth_and_logs_the_job_id(tmp_path: Path) -> None:
    port = _port()
    with embedded(tmp_path) as env:
        uri = f"{env['STORE_URI']}/raw/synth"
        write_dataset(SynthConfig(users=2, stages=2, sessions=1, duration_s=3.0, seed=3), uri)
        dataset_id = repo.add_dataset(name="synth", kind="raw", source="registered", uri=uri, state="ready")
        worker = start_worker(tmp_path, "preprocessor", METRICS_PORT=str(port), LOG_FORMAT="json")
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: _reachable(url), timeout=60, what="the worker's metrics server")
            job = wait(submit("preprocess", {"dataset": dataset_id}), timeout=180)
            waiting = submit("train", {"dataset": dataset_id, "name": "w"})  # no trainer: it waits in its queue
            values = _scrape(url)
        finally:
            stop(worker)
    assert job.state == "succeeded", job.error_message
    assert values['emgpose_jobs_total{state="succeeded",type="preprocess"}'] == 1
    assert values['emgpose_job_duration_seconds_count{state="succeeded",type="preprocess"}'] == 1
    assert values['emgpose_queue_depth{queue="train"}'] == 1 and values["emgpose_queue_depth_up"] == 1
    assert values['emgpose_queue_depth{queue="preprocess"}'] == 0
    log = (tmp_path / "preprocessor.log").read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]  # not Celery's banner
    assert any(line["logger"].startswith("celery.") for line in lines)  # Celery's own records too
    assert any(line.get("job_id") == job.id and "succeeded" in line["message"] for line in lines)
    assert not any(line.get("job_id") == waiting for line in lines)


def _reachable(url: str) -> bool:
    try:
        return httpx.get(f"{url}/metrics", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_the_reaper_counts_a_lost_message_it_sends_again(tmp_path: Path) -> None:
    with embedded(tmp_path, HEARTBEAT_TIMEOUT_S="0.2"):
        with session_scope() as session:
            job, _ = repo.create_job(session, "train", {"dataset": "d", "name": "m"})
            units.add_entry(session, job)  # committed, and its message never sent: lost
        before = job_metrics.REAPED.value(type="train", outcome="resent")
        app = make_celery("test-reaper")
        reaped = wait_for(lambda: reap_once(app, get_settings()).resent, what="the reaper to resend")
        assert [r.job_type for r in reaped] == ["train"]
        assert job_metrics.REAPED.value(type="train", outcome="resent") == before + 1


# --- the pieces, in one process ---------------------------------------------------------------------------


def test_json_lines_carry_the_job_id_and_the_traceback() -> None:
    record = logging.LogRecord("emgpose.x", logging.ERROR, __file__, 1, "failed %s", ("here",), None)
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    with job_context("job-42"):
        line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "failed here" and line["job_id"] == "job-42" and line["level"] == "ERROR"
    assert "ValueError: boom" in line["exc"] and "request_id" not in line
    assert "job_id" not in json.loads(JsonFormatter().format(record))  # the context ended


def test_an_info_gauge_forgets_the_version_it_replaces_and_registries_stay_apart() -> None:
    one, two = new_registry(), new_registry()
    info = Gauge("emgpose_test_info", "test", ("version",), registry=one)
    Counter("emgpose_test_total", "test", registry=two)  # the same names on another app's registry: no clash
    Gauge("emgpose_test_info", "test", ("version",), registry=two)
    info.replace(1, version="a")
    info.replace(1, version="b")
    assert info.value(version="b") == 1
    assert [s.labels for f in info.metric.collect() for s in f.samples] == [{"version": "b"}]


@pytest.mark.parametrize("value", [None, ""])  # unset, or empty as compose passes an unset variable
def test_worker_metrics_server_is_off_without_a_port(monkeypatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("METRICS_PORT", raising=False)
    else:
        monkeypatch.setenv("METRICS_PORT", value)
    settings = Settings()
    assert settings.metrics_port is None
    assert job_metrics.start_server(make_celery("test-off", settings), settings) is False
    monkeypatch.setenv("METRICS_PORT", "70000")
    with pytest.raises(ValidationError, match="metrics_port"):
        Settings()


def test_a_server_of_several_processes_starts_with_an_empty_metrics_folder(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "prom"
    (folder / "old").mkdir(parents=True)
    (folder / "counter_123.db").write_bytes(b"left by a previous run")
    monkeypatch.setenv(MULTIPROC_ENV, str(folder))
    assert use_multiprocess_dir() == str(folder) and list(folder.iterdir()) == []
    monkeypatch.delenv(MULTIPROC_ENV)
    made = use_multiprocess_dir()  # none set: a new folder the workers inherit through the environment
    assert os.environ[MULTIPROC_ENV] == made and Path(made).is_dir() and made != str(folder)
