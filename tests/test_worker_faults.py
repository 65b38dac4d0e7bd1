"""Workers under faults: an unreachable object store is retried with backoff up to the cap and then fails
the job with the store's error; a job over ``JOB_TIME_LIMIT_S`` is stopped and failed, naming the limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import free_port
from worker_support import embedded, start_worker, stop, submit, wait

from emgpose.db.models import Job
from emgpose.preprocess.job import run_preprocess
from emgpose.synth import SynthConfig, write_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("faults")
    broken_store = {
        "STORE_URI": "s3://emgpose-faults",
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "S3_MAX_ATTEMPTS": "1",
        "S3_CONNECT_TIMEOUT": "1",
        "TASK_MAX_RETRIES": "2",
        "TASK_RETRY_BACKOFF_S": "0.2",
    }
    with embedded(work):
        procs = [
            start_worker(work, "preprocessor", **broken_store),
            start_worker(work, "trainer", JOB_TIME_LIMIT_S="3"),
        ]
        try:
            yield work
        finally:
            stop(*procs)


def run(type_: str, params: dict) -> Job:
    return wait(submit(type_, params), timeout=120)


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
