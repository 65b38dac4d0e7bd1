"""Plumbing for tests that run the Celery workers as real processes: the embedded backends (SQLite,
filesystem broker, local store) in a folder, workers started with the ``emgpose up`` commands, jobs
submitted the way the gateway does it (row committed, then the task sent) and polled until they end.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from backends import OwnPostgres, OwnRedis

from emgpose.db.engine import reset_engines, session_scope
from emgpose.db.migrate import upgrade
from emgpose.db.models import Job
from emgpose.jobs import repo, units
from emgpose.jobs.celery_app import make_celery, send
from emgpose.jobs.reaper import Reaper
from emgpose.settings import get_settings
from emgpose.up import Stack

ENDED = ("succeeded", "failed", "cancelled")
# Heartbeats, reaper and retries fast enough for fault tests (the defaults are 5 s, 30 s, 5 s, 2 s).
FAST = {
    "HEARTBEAT_S": "0.5",
    "HEARTBEAT_TIMEOUT_S": "4",
    "REAPER_INTERVAL_S": "0.5",
    "TASK_RETRY_BACKOFF_S": "0.5",
    "TASK_MAX_RETRIES": "8",
    "JOB_TIME_LIMIT_S": "600",
}


@dataclass
class Cluster:
    work: Path
    backend: str
    postgres: OwnPostgres | None = None
    redis: OwnRedis | None = None

    @property
    def store(self) -> str:
        return (self.work / "store").as_uri()


@contextlib.contextmanager
def embedded(work: Path, **env: str) -> Iterator[dict[str, str]]:
    """This process configured for a fresh SQLite database, broker folder and store under ``work``
    (``env`` overrides: ``DATABASE_URL`` and ``REDIS_URL`` for servers instead), migrated. Jobs may name
    data anywhere below ``work`` (ALLOWED_DATA_ROOTS), where the tests write their datasets."""
    settings = {
        "DATABASE_URL": f"sqlite:///{work / 'jobs.db'}",
        "BROKER_DIR": str(work / "broker"),
        "STORE_URI": (work / "store").as_uri(),
        "ALLOWED_DATA_ROOTS": work.as_uri(),
        "DEVICE": "cpu",
        **env,
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in settings.items():
            mp.setenv(key, value)
        if "REDIS_URL" not in env:
            mp.delenv("REDIS_URL", raising=False)
        get_settings.cache_clear()
        reset_engines()
        upgrade()
        try:
            yield settings
        finally:
            get_settings.cache_clear()
            reset_engines()


def start_worker(work: Path, name: str, log: str | None = None, **env: str) -> subprocess.Popen:
    """The ``preprocessor`` or ``trainer`` worker, with this process's environment plus ``env``."""
    with open(work / f"{log or name}.log", "wb") as out:
        return subprocess.Popen(
            Stack(work).commands()[name], env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )


def stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def submit(type_: str, params: Mapping) -> str:
    with session_scope() as session:
        job, _ = repo.create_job(session, type_, dict(params))
        name, args = units.add_entry(session, job).task(type_)
        job_id = job.id
    send(make_celery("test-client"), name, *args)
    return job_id


def job_now(job_id: str) -> Job:
    with session_scope() as session:
        return repo.get_job(session, job_id)


def wait(job_id: str, states: tuple[str, ...] = ENDED, timeout: float = 240) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        job = job_now(job_id)
        if job.state in states:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job.state} ({job.stage} {job.progress:.0f}%) after {timeout} s")
        time.sleep(0.2)


@contextlib.contextmanager
def servers(work: Path, appendonly: bool = True, **env: str) -> Iterator[Cluster]:
    """Its own PostgreSQL and Redis (append-only file as in compose, or not), migrated, reaper running."""
    with OwnPostgres(work / "pg") as postgres, OwnRedis(work / "redis", appendonly=appendonly) as redis_server:
        with embedded(work, DATABASE_URL=postgres.url, REDIS_URL=redis_server.url, **{**FAST, **env}), reaping():
            yield Cluster(work, "servers", postgres, redis_server)


@contextlib.contextmanager
def reaping() -> Iterator[None]:
    reaper = Reaper(make_celery("test-reaper"), get_settings()).start()
    try:
        yield
    finally:
        reaper.stop()
