"""A worker that is stopped (SIGTERM, as ``docker compose stop`` sends) in the middle of a training hands the
job back to the queue at once; the next worker continues it from its last checkpoint.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_support import embedded, job_now, start_worker, stop, submit

from emgpose.preprocess.job import run_preprocess
from emgpose.synth import SynthConfig, write_dataset
from emgpose.train.bundle import Registry

pytestmark = pytest.mark.slow


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Path]:
    with embedded(tmp_path):
        yield tmp_path


def test_a_stopped_worker_requeues_its_job_and_the_next_one_resumes_it(work: Path):
    write_dataset(SynthConfig(users=2, stages=2, sessions=2, duration_s=6.0, seed=2), (work / "data").as_uri())
    run_preprocess((work / "data").as_uri(), (work / "pre").as_uri(), workers=1)
    first = start_worker(work, "trainer", log="first")
    try:
        config = {"num_rounds": 300, "early_stopping_rounds": 300, "learning_rate": 0.001, "nthread": 1}
        params = {"dataset": (work / "pre").as_uri(), "name": "r", "config": config}
        job_id = submit("train", params)
        deadline = time.monotonic() + 120
        while not (job_now(job_id).stage == "boosting" and job_now(job_id).progress > 20):  # > 30 rounds: a checkpoint
            assert time.monotonic() < deadline, job_now(job_id).stage
            time.sleep(0.1)
        stopped_at = time.monotonic()
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
        assert time.monotonic() - stopped_at < 15  # the task returned; the worker did not wait for 300 rounds
    finally:
        if first.poll() is None:
            first.kill()
    job = job_now(job_id)
    assert job.state == "running" and job.stage == "requeued (worker stopped)", (job.state, job.stage)

    second = start_worker(work, "trainer", log="second")
    try:
        deadline = time.monotonic() + 180
        while job_now(job_id).state == "running":
            assert time.monotonic() < deadline, job_now(job_id).stage
            time.sleep(0.2)
    finally:
        stop(second)
    job = job_now(job_id)
    assert job.state == "succeeded" and job.attempts == 2, (job.state, job.error_message)
    assert "continuing from checkpoint" in (work / "second.log").read_text()
    assert Registry((work / "store").as_uri()).versions("r") == [job.result["version"]]
