"""Preprocess tasks: a job fans out one task per session and gathers them.

``start`` plans the job (validating the whole dataset) and sends one ``stats`` task per training session;
the last to finish merges the statistics and sends one ``windows`` task per session; the last of those
sends ``gather``, which writes the master table and summary and registers the preprocessed dataset.
"Last" is decided in the database (:func:`emgpose.jobs.repo.claim`), so no result backend or chord is
needed and more workers on more machines share the sessions. Every step writes deterministic keys
under ``.staging/<job id>/``: a redelivered task redoes its part harmlessly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Task

from emgpose.db.engine import session_scope
from emgpose.db.models import Job
from emgpose.jobs import repo
from emgpose.jobs.celery_app import (
    PREPROCESS_GATHER,
    PREPROCESS_START,
    PREPROCESS_STATS,
    PREPROCESS_WINDOWS,
    send,
)
from emgpose.jobs.runner import (
    SHUTTING_DOWN,
    TRANSIENT,
    JobRun,
    WorkerStopping,
    begin,
    requeue,
    retry_or_fail,
)
from emgpose.jobs.schemas import TERMINAL, PreprocessParams
from emgpose.preprocess import parts
from emgpose.preprocess.normalize import NormStats
from emgpose.settings import get_settings
from emgpose.train.boost import Cancelled
from emgpose_preprocessor.worker import app

log = logging.getLogger(__name__)

# Shares of the progress bar: statistics pass, windows pass, gather.
STATS_SHARE, WINDOWS_SHARE = 30.0, 65.0


def output_uri(job_id: str) -> str:
    """Where a preprocess job writes: deterministic per job, so a re-run rewrites the same keys."""
    return f"{get_settings().store_uri.rstrip('/')}/preprocessed/{job_id}"


@app.task(name=PREPROCESS_START, bind=True, acks_late=True)
def start(self: Task, job_id: str) -> None:
    run = begin(self, job_id)
    if run is None:
        return
    params = PreprocessParams.model_validate(run.job.params)
    _guard(self, run, lambda: _plan(run, params))


def _plan(run: JobRun, params: PreprocessParams) -> None:
    job_id = run.job.id
    run.progress(0.0, "planning", force=True)
    with session_scope() as session:
        data_uri, _ = repo.resolve_dataset(session, params.dataset, "raw")
    plan = parts.plan(data_uri, output_uri(job_id), f".staging/{job_id}", params.config)
    repo.set_parts(job_id, "plan", [1])
    repo.part_done(job_id, "plan", 0, plan.to_dict())
    train = plan.train_parts()
    if not train:
        _begin_windows(run, plan, parts.merge_stats(plan, []))
        return
    repo.set_parts(job_id, "stats", [plan.sessions[i]["samples"] for i in train])
    run.progress(1.0, "statistics", force=True)
    for part in range(len(train)):
        send(app, PREPROCESS_STATS, job_id, part)


@app.task(name=PREPROCESS_STATS, bind=True, acks_late=True)
def stats(self: Task, job_id: str, part: int) -> None:
    _step(self, job_id, lambda run: _stats(run, part), part)


def _stats(run: JobRun, part: int) -> None:
    job_id = run.job.id
    plan = _load_plan(job_id)
    result = parts.stats_part(plan, plan.train_parts()[part], _ticker(run, "statistics"))
    done, total, share = repo.part_done(job_id, "stats", part, result)
    run.progress(STATS_SHARE * share, "statistics")
    if done == total and repo.claim(job_id, "windows"):
        _begin_windows(run, plan, parts.merge_stats(plan, repo.part_results(job_id, "stats")))


def _begin_windows(run: JobRun, plan: parts.Plan, norm: NormStats) -> None:
    job_id = run.job.id
    repo.set_parts(job_id, "merged", [1])
    repo.part_done(job_id, "merged", 0, norm.to_dict())
    repo.set_parts(job_id, "windows", [s["samples"] for s in plan.sessions])
    repo.report(job_id, STATS_SHARE, "windows")  # no cancel/shutdown check here: the claim is spent
    run.percent = STATS_SHARE
    for part in range(len(plan.sessions)):
        send(app, PREPROCESS_WINDOWS, job_id, part)


@app.task(name=PREPROCESS_WINDOWS, bind=True, acks_late=True)
def windows(self: Task, job_id: str, part: int) -> None:
    _step(self, job_id, lambda run: _windows(run, part), part)


def _windows(run: JobRun, part: int) -> None:
    job_id = run.job.id
    record = parts.windows_part(_load_plan(job_id), part, _load_stats(job_id), _ticker(run, "windows"))
    done, total, share = repo.part_done(job_id, "windows", part, record)
    run.progress(STATS_SHARE + WINDOWS_SHARE * share, "windows")
    if done == total and repo.claim(job_id, "gather"):
        send(app, PREPROCESS_GATHER, job_id)


@app.task(name=PREPROCESS_GATHER, bind=True, acks_late=True)
def gather(self: Task, job_id: str) -> None:
    _step(self, job_id, _gather)


def _gather(run: JobRun) -> None:
    job_id = run.job.id
    run.progress(STATS_SHARE + WINDOWS_SHARE, "gathering", force=True)
    plan = _load_plan(job_id)
    summary = parts.gather(plan, _load_stats(job_id), repo.part_results(job_id, "windows"))
    repo.finish(job_id, "succeeded", result=_register(run, plan, summary))


def _register(run: JobRun, plan: parts.Plan, summary: dict[str, Any]) -> dict[str, Any]:
    """Records the preprocessed dataset (once per job) and returns the job's result links."""
    job = run.job
    params = PreprocessParams.model_validate(job.params)
    with session_scope() as session:
        existing = repo.find_dataset_by_job(session, job.id)
        dataset_id = existing.id if existing is not None else None
        parent = job.dataset_id or repo.resolve_dataset(session, params.dataset, "raw")[1]
    if dataset_id is None:
        counts = summary["counts"]
        dataset_id = repo.add_dataset(
            name=params.name or f"preprocessed-{job.id[:8]}",
            kind="preprocessed",
            source="job",
            uri=plan.out_uri,
            state="ready",
            files=len(summary["sessions"]) + 3,
            bytes=0,
            info={
                "sessions": len(summary["sessions"]),
                "windows": {split: c["windows_kept"] for split, c in counts.items()},
                "num_channels": summary["num_channels"],
                "sample_rate": summary["sample_rate"],
                "joint_names": summary["joint_names"],
                "label_names": summary["label_names"],
                "features": len(summary["feature_names"]),
            },
            parent_id=parent,
            job_id=job.id,
        )
    return {
        "dataset_id": dataset_id,
        "dataset": f"/v1/datasets/{dataset_id}",
        "uri": plan.out_uri,
        "summary": f"{plan.out_uri}/summary.json",
        "windows": {split: c["windows_kept"] for split, c in summary["counts"].items()},
    }


# --- helpers ------------------------------------------------------------------------------------------


def _running(job_id: str) -> JobRun | None:
    """The job of a part task, or None where it has ended or been cancelled (the part is then skipped)."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None or job.state in TERMINAL:
            return None
        if job.cancel_requested:
            session.expunge(job)
            _end(job_id, "cancelled")
            return None
        session.expunge(job)
    return JobRun(job)


def _load_plan(job_id: str) -> parts.Plan:
    return parts.Plan.from_dict(repo.part_results(job_id, "plan")[0])


def _load_stats(job_id: str) -> NormStats:
    """The merged z-score statistics every ``windows`` part and ``gather`` apply."""
    return NormStats.from_dict(repo.part_results(job_id, "merged")[0])


def _step(task: Task, job_id: str, work: Callable[[JobRun], None], *args: Any) -> None:
    """One fanned-out step (``args`` follow the job id in the task's arguments): handed on untouched by
    a stopping worker, skipped where the job has ended or was cancelled, otherwise run under
    :func:`_guard`."""
    if SHUTTING_DOWN.is_set():  # a stopping worker can still receive a message
        requeue(task, job_id, *args)
        return
    run = _running(job_id)
    if run is not None:
        _guard(task, run, lambda: work(run), *args)


def _ticker(run: JobRun, stage: str) -> Callable[[int], None]:
    """A per-sample tick that only checks for cancellation and the time limit (progress is per part)."""

    def tick(_n: int) -> None:
        run.progress(run.percent, stage)

    return tick


def _guard(task: Task, run: JobRun, work: Callable[[], None], *args: Any) -> None:
    """Runs one step; cancellation, transient errors (retried) and failures end the job the same way.

    A worker that starts shutting down hands the step (``args`` after the job id) back to the queue.
    """
    job_id = run.job.id
    try:
        work()
    except WorkerStopping:
        requeue(task, job_id, *args)
    except Cancelled:
        _end(job_id, "cancelled")
    except TRANSIENT as exc:
        retry_or_fail(task, job_id, exc)
    except Exception as exc:
        log.exception("preprocess job %s failed", job_id)
        _end(job_id, "failed", exc)


def _end(job_id: str, state: str, error: BaseException | None = None) -> None:
    repo.finish(job_id, state, error=error)
    try:
        _discard(job_id)
    except Exception:  # cleaning staged objects is best effort; the promoted outputs are untouched
        log.warning("job %s: could not remove its staged objects", job_id, exc_info=True)


def _discard(job_id: str) -> None:
    try:
        plan = _load_plan(job_id)
    except Exception:
        return  # not planned yet: nothing staged
    parts.discard(plan)
