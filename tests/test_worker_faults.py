"""Workers under faults: an unreachable object store is retried with backoff up to the cap and then fails
the job with the store's error; a job over ``JOB_TIME_LIMIT_S`` is stopped and failed, naming the limit.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emgpose.db.engine import reset_engines, session_scope
from emgpose.db.migrate import upgrade
from emgpose.jobs import repo
from emgpose.jobs.celery_app import TASK_FOR_JOB, make_celery, send
from emgpose.preprocess.job import run_preprocess
from emgpose.settings import get_settings
from emgpose.synth import SynthConfig, write_dataset
from emgpose.up import Stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("faults")
    common = {"DATABASE_URL": f"sqlite:///{work / 'jobs.db'}", "BROKER_DIR": str(work / "broker"), "DEVICE": "cpu"}
    closed = socket_port()
    broken_store = {
        "STORE_URI": "s3://emgpose-faults",
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{closed}",  # nothing listens there
        "S3_MAX_ATTEMPTS": "1",
        "S3_CONNECT_TIMEOUT": "1",
        "TASK_MAX_RETRIES": "2",
        "TASK_RETRY_BACKOFF_S": "0.2",
    }
    short = {"STORE_URI": (work / "store").as_uri(), "JOB_TIME_LIMIT_S": "3"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in common.items():
            mp.setenv(k, v)
        mp.delenv("REDIS_URL", raising=False)
        get_settings.cache_clear()
        reset_engines()
        upgrade()
        commands = Stack(work).commands()
        procs = []
        for name, extra in (("preprocessor", broken_store), ("trainer", short)):
            with open(work / f"{name}.log", "wb") as log:
                env = {**os.environ, **extra}
                procs.append(subprocess.Popen(commands[name], env=env, stdout=log, stderr=subprocess.STDOUT))
        try:
            yield work
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
            get_settings.cache_clear()
            reset_engines()


def socket_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(type_: str, params: dict, timeout: float = 120) -> repo.Job:
    with session_scope() as session:
        job, _ = repo.create_job(session, type_, params)
        job_id = job.id
    send(make_celery("test-client"), TASK_FOR_JOB[type_], job_id)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope() as session:
            job = repo.get_job(session, job_id)
            if job.state in ("succeeded", "failed", "cancelled"):
                return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job.state} ({job.stage}) after {timeout} s")


def test_unreachable_store_is_retried_up_to_the_cap_then_fails_the_job(workers: Path):
    job = run("preprocess", {"dataset": "s3://emgpose-faults/raw/anything"})
    assert job.state == "failed" and job.error_type == "StoreError", (job.error_type, job.error_message)
    assert job.attempts == 3  # the first run and TASK_MAX_RETRIES=2 retries
    log = (workers / "preprocessor.log").read_text()
    assert log.count("retry 1 in") == 1 and log.count("retry 2 in") == 1 and "giving up" in log


def test_a_job_over_its_time_limit_is_stopped_and_failed(workers: Path):
    data, pre = workers / "data", workers / "pre"
    write_dataset(SynthConfig(users=2, stages=2, sessions=2, duration_s=6.0, seed=2), data.as_uri())
    run_preprocess(data.as_uri(), pre.as_uri(), workers=1)
    config = {"num_rounds": 100000, "early_stopping_rounds": 100000, "learning_rate": 0.001}
    job = run("train", {"dataset": pre.as_uri(), "name": "slow", "config": config})
    assert job.state == "failed" and job.error_type == "TimeLimitExceeded"
    assert "time limit of 3 s" in job.error_message and "JOB_TIME_LIMIT_S" in job.error_message
    assert (job.finished_at - job.started_at).total_seconds() < 30
