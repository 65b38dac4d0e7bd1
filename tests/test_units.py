"""Units, leases and the reaper against a real SQLite database and the filesystem broker (no workers).

The worker-process tests (test_job_recovery.py) show that jobs end; these pin the rules one at a time:
who may lease a unit, that a part counts once, that the last part alone starts the next phase, and what
the reaper sends again or fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from worker_support import embedded

from emgpose.db.engine import session_scope
from emgpose.db.models import Job, JobPart, utcnow
from emgpose.jobs import repo, units
from emgpose.jobs.celery_app import TRAIN, make_celery, queue_size, send
from emgpose.jobs.reaper import reap_once
from emgpose.settings import get_settings


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    with embedded(tmp_path, HEARTBEAT_TIMEOUT_S="10", REAPER_MAX_REQUEUES="2"):
        yield tmp_path


def new_job(type_: str = "train") -> str:
    with session_scope() as session:
        job, _ = repo.create_job(session, type_, {"dataset": "x"})
        units.add_entry(session, job)
        return job.id


def age(unit: units.Unit, seconds: float, column: str = "heartbeat_at") -> None:
    """Makes the unit's heartbeat (or due time) ``seconds`` old."""
    with session_scope() as session:
        session.execute(
            update(JobPart)
            .where(JobPart.job_id == unit.job_id, JobPart.phase == unit.phase, JobPart.part == unit.part)
            .values({column: utcnow() - timedelta(seconds=seconds)})
        )


def job(job_id: str) -> Job:
    with session_scope() as session:
        return repo.get_job(session, job_id)


def test_a_unit_is_leased_once_while_its_holder_beats(db: Path):
    job_id = new_job()
    unit = units.Unit(job_id, "run")
    assert units.lease(unit, "a:1", 10).state == "running"
    assert units.lease(unit, "b:2", 10) is None  # a duplicate message while a:1 is alive
    assert units.beat([unit], "a:1") == []
    age(unit, 11)
    assert units.lease(unit, "b:2", 10) is not None  # a:1 went silent: b:2 takes over
    assert units.beat([unit], "a:1") == [unit]  # a:1 learns it lost the unit
    assert units.lease(unit, "b:2", 10, again=True) is not None  # b:2 retrying takes its own lease back
    assert job(job_id).attempts == 3


def test_a_part_counts_once_and_the_last_starts_the_next_phase(db: Path):
    job_id = new_job("preprocess")
    plan = units.Unit(job_id, "plan")
    units.lease(plan, "w:1", 10)
    first = units.complete(plan, {"plan": 1}, units.Phase("windows", [10, 30]))
    assert first.created == [units.Unit(job_id, "windows", 0), units.Unit(job_id, "windows", 1)]
    assert units.complete(plan, {}, units.Phase("windows", [1])).counted is False  # ran twice: no new phase
    a = units.complete(units.Unit(job_id, "windows", 1), {"n": 1}, units.Phase("gather"))
    assert (a.done, a.total, a.share, a.created) == (1, 2, 0.75, [])
    again = units.complete(units.Unit(job_id, "windows", 1), {"n": 1}, units.Phase("gather"))
    assert not again.counted and again.created == []
    b = units.complete(units.Unit(job_id, "windows", 0), {"n": 0}, units.Phase("gather"))
    assert b.created == [units.Unit(job_id, "gather")] and b.share == 1.0
    assert units.results(job_id, "windows") == [{"n": 0}, {"n": 1}]
    with pytest.raises(Exception, match="not complete"):
        units.results(job_id, "gather")
    done = units.complete(units.Unit(job_id, "gather"), {}, units.Finish({"ok": True}))
    assert done.counted and job(job_id).state == "succeeded" and job(job_id).result == {"ok": True}


def test_the_reaper_sends_a_silent_unit_again_then_fails_the_job_at_the_cap(db: Path):
    app = make_celery("test")
    job_id = new_job()
    unit = units.Unit(job_id, "run")
    units.lease(unit, "dead:1", 10)
    assert reap_once(app).resent == []  # heartbeat fresh
    for n in (1, 2):
        age(unit, 11)
        reaped = reap_once(app)
        assert [r.unit for r in reaped.resent] == [unit] and not reaped.failed
        assert job(job_id).requeues == n and job(job_id).stage == "requeued (run)"
        units.lease(unit, "dead:1", 10)  # the next worker takes it and dies as well
    assert queue_size(app, "train") == 2  # the two resends (this test sent no submission message)
    age(unit, 11)
    reaped = reap_once(app)
    assert [r.unit for r in reaped.failed] == [unit]
    ended = job(job_id)
    assert ended.state == "failed" and ended.error_type == "JobStalled"
    assert "sent no heartbeat for 10 s" in ended.error_message and "REAPER_MAX_REQUEUES=2" in ended.error_message


def test_the_reaper_resends_a_lost_message_only_when_the_queue_is_empty(db: Path):
    app = make_celery("test")
    lost, waiting = new_job(), new_job()
    for job_id in (lost, waiting):
        age(units.Unit(job_id, "run"), 11, "due_at")
    send(app, TRAIN, waiting)  # one message in the queue: maybe the lost one's, so nothing is sent
    assert reap_once(app).resent == []
    assert queue_size(app, "train") == 1
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge("train")
    resent = reap_once(app).resent
    assert sorted(r.unit.job_id for r in resent) == sorted([lost, waiting])
    assert queue_size(app, "train") == 2
    assert reap_once(app).resent == []  # due again just now: not sent twice
    assert get_settings().heartbeat_timeout_s == 10
