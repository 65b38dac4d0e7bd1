"""Fan-in latency: a Celery chord against the job table's atomic counter, on the embedded backends.

    .venv/bin/python bench/fan_in.py [--parts 12] [--repeats 10]

Both run ``--parts`` no-op tasks on one Celery worker (threads pool, 4 threads, each kind in a process of its own) over
the filesystem broker (the ``emgpose up`` default) with SQLite, and time from the moment the last part
finished to the moment the next step started:

* **chord**: ``chord(group(part x N), step)`` with Celery's SQLAlchemy result backend on SQLite, as
  the issue proposed for the embedded mode; Celery joins it by polling (``chord_unlock``).
* **counter**: each part calls :func:`emgpose.jobs.units.complete`; the one whose
  ``UPDATE ... RETURNING`` reaches N sends the step (what the preprocess tasks do).

Prints medians over ``--repeats`` runs; the ratio is chord / counter.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from celery import Celery, chord, group
from celery.contrib.testing.worker import start_worker

from emgpose.db.engine import reset_engines, session_scope
from emgpose.db.migrate import upgrade
from emgpose.jobs import repo, units
from emgpose.jobs.celery_app import filesystem_options
from emgpose.settings import get_settings

FINISHED: dict[str, float] = {}  # run id -> when its last part finished
STARTED: dict[str, float] = {}  # run id -> when its step started
LOCK = threading.Lock()


def make_app(work: Path, backend: str | None) -> Celery:
    app = Celery("fan-in-bench", broker="filesystem://", backend=backend, set_as_current=False)
    app.conf.update(
        broker_transport_options=filesystem_options(str(work / "broker")),
        worker_prefetch_multiplier=1,
        task_acks_late=True,
        worker_hijack_root_logger=False,
    )
    return app


def _finished(run: str) -> None:
    with LOCK:
        FINISHED[run] = max(FINISHED.get(run, 0.0), time.perf_counter())


def chord_app(work: Path) -> Celery:
    app = make_app(work, f"db+sqlite:///{work / 'results.db'}")

    @app.task(name="part")
    def part(run: str, i: int) -> int:
        _finished(run)
        return i

    @app.task(name="step")
    def step(results: list[int], run: str) -> None:
        STARTED[run] = time.perf_counter()

    return app


def counter_app(work: Path) -> Celery:
    app = make_app(work, None)

    @app.task(name="part")
    def part(job_id: str, i: int) -> None:
        done = units.complete(units.Unit(job_id, "windows", i), {}, units.Phase("gather"))
        _finished(job_id)
        if done.created:
            app.send_task("step", args=[job_id])

    @app.task(name="step")
    def step(job_id: str) -> None:
        STARTED[job_id] = time.perf_counter()

    return app


def _wait(run: str, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while run not in STARTED:
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run}: the step never started")
        time.sleep(0.005)
    return (STARTED[run] - FINISHED[run]) * 1000


def bench_chord(work: Path, parts: int, repeats: int) -> list[float]:
    (work / "broker").mkdir()
    app = chord_app(work)
    out = []
    with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False, loglevel="WARNING"):
        for r in range(repeats):
            run = f"chord-{r}"
            chord(group(app.signature("part", (run, i)) for i in range(parts)), app.signature("step", (run,))).delay()
            out.append(_wait(run))
    return out


def bench_counter(work: Path, parts: int, repeats: int) -> list[float]:
    app = counter_app(work)
    out = []
    with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False, loglevel="WARNING"):
        for _ in range(repeats):
            with session_scope() as session:
                job, _ = repo.create_job(session, "preprocess", {"dataset": "bench"})
                job.state = "running"
                units.add_entry(session, job)
                job_id = job.id
            units.complete(units.Unit(job_id, "plan"), {}, units.Phase("windows", [1] * parts))
            for i in range(parts):
                app.send_task("part", args=[job_id, i])
            out.append(_wait(job_id))
    return out


def run_one(kind: str, parts: int, repeats: int) -> list[float]:
    """One kind in this process (Celery's test worker runs once per process)."""
    with tempfile.TemporaryDirectory(prefix="emgpose-fan-in-") as tmp:
        work = Path(tmp)
        os.environ["DATABASE_URL"] = f"sqlite:///{work / 'jobs.db'}"
        get_settings.cache_clear()
        reset_engines()
        upgrade()
        return (bench_chord if kind == "chord" else bench_counter)(work, parts, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--only", choices=("chord", "counter"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        print(json.dumps(run_one(args.only, args.parts, args.repeats)))
        return
    ms = {}
    for kind in ("chord", "counter"):
        command = [sys.executable, __file__, "--only", kind, "--parts", str(args.parts), "--repeats", str(args.repeats)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        ms[kind] = statistics.median(json.loads(out.strip().splitlines()[-1]))
    print(f"fan-in of {args.parts} parts, median of {args.repeats} runs (last part finished -> next step started):")
    print(f"  chord (SQLAlchemy result backend on SQLite): {ms['chord']:8.1f} ms")
    print(f"  counter (UPDATE ... RETURNING in job_parts): {ms['counter']:8.1f} ms")
    print(f"  ratio chord / counter: {ms['chord'] / ms['counter']:.1f}")


if __name__ == "__main__":
    main()
