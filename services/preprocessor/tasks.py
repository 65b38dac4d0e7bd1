"""Preprocess tasks: a job fans out one task per session and gathers them.

Each task runs one unit of the job (:mod:`emgpose.jobs.units`): ``start`` plans it (validating the whole
dataset), then one ``stats`` unit per training session, one ``merge`` that combines their statistics,
one ``windows`` unit per session and ``gather``, which writes the master table and summary and registers
the preprocessed dataset. The last unit of a phase is decided by one atomic ``UPDATE ... RETURNING`` in
:func:`~emgpose.jobs.units.complete`, which creates the next phase's units in the same transaction, so
more workers on more machines share the sessions and no fan-in is ever missed or made twice. Every step
writes deterministic keys under ``.staging/<job id>/``: a unit that runs again (sent again by the
reaper after its worker died) redoes its part harmlessly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Task

from emgpose.db.engine import session_scope
from emgpose.devices import resolve_device
from emgpose.jobs import repo
from emgpose.jobs.celery_app import (
    PREPROCESS_GATHER,
    PREPROCESS_MERGE,
    PREPROCESS_START,
    PREPROCESS_STATS,
    PREPROCESS_WINDOWS,
    send,
)
from emgpose.jobs.runner import JobRun, run_unit
from emgpose.jobs.schemas import PreprocessParams
from emgpose.jobs.units import Completion, Finish, Phase, Unit, complete, results
from emgpose.preprocess import parts
from emgpose.preprocess.kernel_path import Device
from emgpose.preprocess.normalize import NormStats
from emgpose.settings import get_settings
from emgpose_preprocessor.worker import app

log = logging.getLogger(__name__)

# Where each phase sits on the progress bar (percent): plan, statistics, merge, windows, gather.
PLAN_END, STATS_END, WINDOWS_END = 1.0, 30.0, 95.0


def output_uri(job_id: str) -> str:
    """Where a preprocess job writes: deterministic per job, so a re-run rewrites the same keys."""
    return f"{get_settings().store_uri.rstrip('/')}/preprocessed/{job_id}"


def _run(task: Task, unit: Unit, work: Callable[[JobRun], None]) -> None:
    run_unit(task, unit, work, on_end=_discard)


def _send(done: Completion) -> None:
    """Sends the units a completion created (after its commit; a lost send is resent by the reaper)."""
    for unit in done.created:
        name, args = unit.task(done.job_type)
        send(app, name, *args)


@app.task(name=PREPROCESS_START, bind=True, acks_late=True)
def start(self: Task, job_id: str) -> None:
    _run(self, Unit(job_id, "plan"), _plan)


def _plan(run: JobRun) -> None:
    job_id = run.job.id
    params = PreprocessParams.model_validate(run.job.params)
    run.progress(0.0, "planning", force=True)
    with session_scope() as session:
        data_uri, _ = repo.resolve_dataset(session, params.dataset, "raw", get_settings())
    plan = parts.plan(data_uri, output_uri(job_id), f".staging/{job_id}", params.config)
    train = plan.train_parts()
    after = Phase("stats", [plan.sessions[i]["samples"] for i in train]) if train else Phase("merge")
    done = complete(run.unit, plan.to_dict(), after)
    repo.report(job_id, PLAN_END, "statistics" if train else "merging")
    _send(done)


@app.task(name=PREPROCESS_STATS, bind=True, acks_late=True)
def stats(self: Task, job_id: str, part: int) -> None:
    _run(self, Unit(job_id, "stats", part), _stats)


def _stats(run: JobRun) -> None:
    plan = _load_plan(run.job.id)
    result = parts.stats_part(plan, plan.train_parts()[run.unit.part], _ticker(run, "statistics"), _device(run))
    done = complete(run.unit, result, Phase("merge"))
    if not done.created:  # the last part leaves progress and stage to the step it starts
        repo.report(run.job.id, PLAN_END + (STATS_END - PLAN_END) * done.share, "statistics")
    _send(done)


@app.task(name=PREPROCESS_MERGE, bind=True, acks_late=True)
def merge(self: Task, job_id: str) -> None:
    _run(self, Unit(job_id, "merge"), _merge)


def _merge(run: JobRun) -> None:
    plan = _load_plan(run.job.id)
    statistics = results(run.job.id, "stats") if plan.train_parts() else []
    norm = parts.merge_stats(plan, statistics)
    done = complete(run.unit, norm.to_dict(), Phase("windows", [s["samples"] for s in plan.sessions]))
    repo.report(run.job.id, STATS_END, "windows")
    _send(done)


@app.task(name=PREPROCESS_WINDOWS, bind=True, acks_late=True)
def windows(self: Task, job_id: str, part: int) -> None:
    _run(self, Unit(job_id, "windows", part), _windows)


def _windows(run: JobRun) -> None:
    job_id = run.job.id
    plan, stats = _load_plan(job_id), _load_stats(job_id)
    record = parts.windows_part(plan, run.unit.part, stats, _ticker(run, "windows"), _device(run))
    done = complete(run.unit, record, Phase("gather"))
    if not done.created:
        repo.report(job_id, STATS_END + (WINDOWS_END - STATS_END) * done.share, "windows")
    _send(done)


@app.task(name=PREPROCESS_GATHER, bind=True, acks_late=True)
def gather(self: Task, job_id: str) -> None:
    _run(self, Unit(job_id, "gather"), _gather)


def _gather(run: JobRun) -> None:
    job_id = run.job.id
    run.progress(WINDOWS_END, "gathering", force=True)
    plan = _load_plan(job_id)
    summary = parts.gather(plan, _load_stats(job_id), results(job_id, "windows"))
    complete(run.unit, {}, Finish(_register(run, plan, summary)))
    log.info("preprocess job %s succeeded", job_id)


def _register(run: JobRun, plan: parts.Plan, summary: dict[str, Any]) -> dict[str, Any]:
    """Records the preprocessed dataset (once per job) and returns the job's result links."""
    job = run.job
    params = PreprocessParams.model_validate(job.params)
    with session_scope() as session:
        existing = repo.find_dataset_by_job(session, job.id)
        dataset_id = existing.id if existing is not None else None
        parent = job.dataset_id or repo.resolve_dataset(session, params.dataset, "raw", get_settings())[1]
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


def _device(run: JobRun) -> Device:
    """``cpu`` or ``cuda`` for this worker: the job's ``device``, else the worker's ``DEVICE`` setting."""
    requested = PreprocessParams.model_validate(run.job.params).device or get_settings().device
    return resolve_device(requested)


def _load_plan(job_id: str) -> parts.Plan:
    return parts.Plan.from_dict(results(job_id, "plan")[0])


def _load_stats(job_id: str) -> NormStats:
    """The merged z-score statistics every ``windows`` part and ``gather`` apply."""
    return NormStats.from_dict(results(job_id, "merge")[0])


def _ticker(run: JobRun, stage: str) -> Callable[[int], None]:
    """A per-sample tick that only checks for cancellation and the time limit (progress is per part)."""

    def tick(_n: int) -> None:
        run.progress(run.percent, stage)

    return tick


def _discard(job_id: str) -> None:
    """Removes a failed or cancelled job's staged objects (the promoted outputs are untouched)."""
    try:
        plan = _load_plan(job_id)
    except Exception:
        return  # not planned yet: nothing staged
    parts.discard(plan)
