"""Jobs that always end: workers killed with SIGKILL, the database stopped and frozen, Redis restarted.

Each test runs the real worker processes against either the embedded backends (SQLite and the
filesystem broker, as ``emgpose up``) or its own PostgreSQL and Redis on spare ports (as compose), and
breaks them. The reaper runs in this process with short timeouts (the gateway runs the same loop).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select
from worker_support import FAST, Cluster, embedded, job_now, reaping, servers, start_worker, stop, submit, wait

from emgpose.db.engine import session_scope
from emgpose.db.models import Dataset, Job, JobPart
from emgpose.preprocess.job import run_preprocess
from emgpose.synth import SynthConfig, write_dataset
from emgpose.train.bundle import Registry

pytestmark = pytest.mark.slow

SLOW_TRAIN = {"num_rounds": 300, "early_stopping_rounds": 300, "learning_rate": 0.001, "nthread": 1}


@pytest.fixture(params=["embedded", "servers"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """Backends, migrated, with this process configured for them and the reaper running here."""
    if request.param == "embedded":
        with embedded(tmp_path, **FAST), reaping():
            yield Cluster(tmp_path, "embedded")
        return
    with servers(tmp_path) as cluster:
        yield cluster


def _until(condition, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.05)


def _preprocessed(cluster: Cluster) -> str:
    data, pre = cluster.work / "data", cluster.work / "pre"
    write_dataset(SynthConfig(users=2, stages=2, sessions=2, duration_s=6.0, seed=2), data.as_uri())
    run_preprocess(data.as_uri(), pre.as_uri(), workers=1)
    return pre.as_uri()


def _boosting_past(job_id: str, percent: float) -> bool:
    job = job_now(job_id)
    assert job.state in ("queued", "running"), (job.state, job.error_message)
    return job.stage == "boosting" and job.progress > percent


def _kill_and_replace(cluster: Cluster, first: subprocess.Popen, name: str, job_id: str) -> Job:
    """SIGKILLs ``first`` (no shutdown work: its message is neither acknowledged nor handed back), starts
    a new ``name`` worker and returns the job once it has ended, which must be within 2 minutes."""
    first.kill()
    first.wait()
    killed = time.monotonic()
    second = start_worker(cluster.work, name, log="second")
    try:
        job = wait(job_id, timeout=120)
    finally:
        stop(second)
    assert time.monotonic() - killed < 120
    return job


def _windows_running(job_id: str) -> bool:
    """Some windows parts done and at least one running: a kill now strands a leased unit."""
    with session_scope() as session:
        states = session.scalars(select(JobPart.state).where(JobPart.job_id == job_id, JobPart.phase == "windows"))
        states = list(states)
    return states.count("done") >= len(states) // 3 and "running" in states


def test_a_train_job_survives_its_worker_killed_with_sigkill(cluster: Cluster):
    dataset = _preprocessed(cluster)
    first = start_worker(cluster.work, "trainer", log="first")
    try:
        job_id = submit("train", {"dataset": dataset, "name": "k", "config": SLOW_TRAIN})
        _until(lambda: _boosting_past(job_id, 25), "boosting past 25 % (a checkpoint written)")
    except BaseException:
        stop(first)
        raise
    job = _kill_and_replace(cluster, first, "trainer", job_id)
    assert job.state == "succeeded", (job.state, job.error_type, job.error_message)
    assert job.requeues == 1 and job.attempts == 2
    assert "continuing from checkpoint" in (cluster.work / "second.log").read_text()
    assert Registry(cluster.store).versions("k") == [job.result["version"]]


def test_a_preprocess_job_survives_its_worker_killed_with_sigkill(cluster: Cluster):
    data = cluster.work / "raw"
    write_dataset(SynthConfig(users=3, stages=2, sessions=2, duration_s=8.0, seed=4), data.as_uri())
    first = start_worker(cluster.work, "preprocessor", log="first")
    try:
        job_id = submit("preprocess", {"dataset": data.as_uri()})
        _until(lambda: _windows_running(job_id), "windows parts running, a third of them done")
    except BaseException:
        stop(first)
        raise
    job = _kill_and_replace(cluster, first, "preprocessor", job_id)
    assert job.state == "succeeded", (job.state, job.error_type, job.error_message)
    assert job.requeues >= 1
    out = Path(job.result["uri"].removeprefix("file://"))
    reference = cluster.work / "reference"
    run_preprocess(data.as_uri(), reference.as_uri(), workers=1)
    assert pq.read_table(out / "master.parquet").equals(pq.read_table(reference / "master.parquet"))
    assert json.loads((out / "stats.json").read_text()) == json.loads((reference / "stats.json").read_text())
    assert not [p for p in out.rglob("*") if ".staging" in str(p) and p.is_file()]
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Dataset).where(Dataset.job_id == job_id)) == 1


@pytest.mark.parametrize("fault", ["stopped", "frozen"])
def test_a_train_job_survives_the_database_stopped_or_frozen_for_20_s(tmp_path: Path, fault: str):
    with servers(tmp_path, DB_TIMEOUT_S="2") as cluster:
        dataset = _preprocessed(cluster)
        worker = start_worker(tmp_path, "trainer")
        try:
            job_id = submit("train", {"dataset": dataset, "name": "db", "config": SLOW_TRAIN})
            _until(lambda: _boosting_past(job_id, 15), "boosting")
            if fault == "stopped":
                cluster.postgres.stop()
                time.sleep(20)
                cluster.postgres.start()
            else:
                cluster.postgres.freeze()
                time.sleep(20)
                cluster.postgres.thaw()
            job = wait(job_id, timeout=180)
        finally:
            stop(worker)
        assert job.state == "succeeded", (job.state, job.error_type, job.error_message)
        assert Registry(cluster.store).versions("db") == [job.result["version"]]


@pytest.mark.parametrize("appendonly", [True, False], ids=["aof", "no-aof"])
def test_jobs_queued_when_redis_restarts_still_run(tmp_path: Path, appendonly: bool):
    """With the append-only file (as compose runs Redis) the messages survive; without it they are lost
    and the reaper sends them again once their queue is empty."""
    with servers(tmp_path, appendonly=appendonly) as cluster:
        dataset = _preprocessed(cluster)
        config = {"num_rounds": 10, "nthread": 1}
        jobs = [submit("train", {"dataset": dataset, "name": f"q{i}", "config": config}) for i in range(3)]
        cluster.redis.restart()
        worker = start_worker(tmp_path, "trainer")
        try:
            ended = [wait(job_id, timeout=120) for job_id in jobs]
        finally:
            stop(worker)
        assert [j.state for j in ended] == ["succeeded"] * 3, [(j.error_type, j.error_message) for j in ended]
        assert [j.requeues for j in ended] == ([0, 0, 0] if appendonly else [1, 1, 1])
