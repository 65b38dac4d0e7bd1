"""Train and evaluate tasks: take a job id, run :mod:`emgpose.train.job`, record progress and links.

A job is one unit (``run``), leased by one worker at a time and finished in the same transaction that
marks the unit done. The model version is derived from the job (its creation time and id), so a task
sent again (by the reaper after a worker died, or by the broker) finds the version it already published
instead of publishing a second one; boosting checkpoints every 25 rounds under
``jobs/<id>/checkpoint.json`` and a re-run continues from there.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from emgpose.db.engine import session_scope
from emgpose.devices import resolve_device
from emgpose.jobs import repo
from emgpose.jobs.celery_app import EVALUATE, TRAIN
from emgpose.jobs.runner import JobRun, run_unit
from emgpose.jobs.schemas import EvaluateParams, TrainParams
from emgpose.jobs.units import Finish, Unit, complete
from emgpose.settings import get_settings
from emgpose.train.job import run_evaluate, run_train
from emgpose_trainer.worker import app

log = logging.getLogger(__name__)

# Where each stage of run_train / run_evaluate sits on the job's progress bar (percent).
TRAIN_STAGES = {
    "loading": (1.0, 5.0),
    "baselines": (5.0, 10.0),
    "boosting": (10.0, 90.0),
    "evaluating": (90.0, 97.0),
    "publishing": (97.0, 99.0),
}


def job_version(run: JobRun) -> str:
    """The version a train job publishes: sortable by time like :func:`emgpose.train.bundle.new_version`."""
    return f"{run.job.created_at.strftime('%Y%m%dT%H%M%SZ')}-{run.job.id[:6]}"


@app.task(name=TRAIN, bind=True, acks_late=True)
def train(self: Task, job_id: str) -> None:
    run_unit(self, Unit(job_id, "run"), lambda run: _finish(run, _train(run)))


def _finish(run: JobRun, result: dict[str, Any]) -> None:
    """Marks the unit done and the job succeeded, in one transaction."""
    complete(run.unit, {}, Finish(result))
    log.info("job %s succeeded", run.job.id)


def _train(run: JobRun) -> dict[str, Any]:
    settings = get_settings()
    params = TrainParams.model_validate(run.job.params)
    with session_scope() as session:
        dataset_uri, _ = repo.resolve_dataset(session, params.dataset, "preprocessed")
    device = resolve_device(params.config.get("device", settings.device))
    config = params.boost_config(device)
    name = params.name or settings.model_name
    log.info("job %s: training %s on %s (device %s)", run.job.id, name, dataset_uri, device)
    progress = run.staged(TRAIN_STAGES)
    result = run_train(
        dataset_uri,
        settings.store_uri,
        name,
        task=params.task,
        config=config,
        checkpoint_key=f"jobs/{run.job.id}/checkpoint.json",
        promote=params.promote,
        progress=progress,
        cancelled=run.cancelled,
        version=job_version(run),
    )
    repo.add_model_version(
        name=result["name"],
        version=result["version"],
        uri=result["uri"],
        task=result["task"],
        metrics=result["metrics"],
        job_id=run.job.id,
        dataset_uri=dataset_uri,
    )
    return {
        "model": result["name"],
        "version": result["version"],
        "model_version": f"/v1/models/{result['name']}/versions/{result['version']}",
        "uri": result["uri"],
        "report": result["report"],
        "device": device,
        "promoted": params.promote,
        "metrics": result["metrics"],
    }


@app.task(name=EVALUATE, bind=True, acks_late=True)
def evaluate(self: Task, job_id: str) -> None:
    run_unit(self, Unit(job_id, "run"), lambda run: _finish(run, _evaluate(run)))


def _evaluate(run: JobRun) -> dict[str, Any]:
    settings = get_settings()
    params = EvaluateParams.model_validate(run.job.params)
    with session_scope() as session:
        dataset_uri, _ = repo.resolve_dataset(session, params.dataset, "preprocessed")
    result = run_evaluate(
        params.model, dataset_uri, settings.store_uri, progress=run.staged(TRAIN_STAGES), eval_id=f"job-{run.job.id}"
    )
    return {
        "model": result["name"],
        "version": result["version"],
        "model_version": f"/v1/models/{result['name']}/versions/{result['version']}",
        "report": result["report"],
        "metrics": result["metrics"],
    }
