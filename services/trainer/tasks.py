"""Train, evaluate and benchmark tasks: take a job id, run :mod:`emgpose.train.job` (or the comparative
study, :mod:`emgpose.study`), record progress and links.

A job is one unit (``run``), leased by one worker at a time and finished in the same transaction that
marks the unit done. The model version is derived from the job (its creation time and id), so a task
sent again (by the reaper after a worker died, or by the broker) finds the version it already published
instead of publishing a second one; boosting checkpoints every 25 rounds under
``jobs/<id>/checkpoint.json`` and a re-run continues from there.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

from celery import Task

from emgpose import access
from emgpose.db.engine import session_scope
from emgpose.devices import resolve_device
from emgpose.jobs import repo
from emgpose.jobs.celery_app import BENCHMARK, EVALUATE, TRAIN
from emgpose.jobs.runner import JobRun, run_unit
from emgpose.jobs.schemas import BenchmarkParams, EvaluateParams, TrainParams
from emgpose.jobs.units import Finish, Unit, complete
from emgpose.settings import get_settings
from emgpose.store import open_store
from emgpose.study import StudyOptions, run_study, save
from emgpose.synth import SynthConfig, write_dataset
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
        dataset_uri, _ = repo.resolve_dataset(session, params.dataset, "preprocessed", settings)
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
    access.confine_model_ref(params.model, settings, "params.model")  # a row written some other way, too
    with session_scope() as session:
        dataset_uri, _ = repo.resolve_dataset(session, params.dataset, "preprocessed", settings)
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


@app.task(name=BENCHMARK, bind=True, acks_late=True)
def benchmark(self: Task, job_id: str) -> None:
    run_unit(self, Unit(job_id, "run"), lambda run: _finish(run, _benchmark(run)))


def _benchmark(run: JobRun) -> dict[str, Any]:
    """The comparative study on this worker; ``report.json`` and plots under ``benchmarks/<job id>/``."""
    settings = get_settings()
    params = BenchmarkParams.model_validate(run.job.params)
    steps = len(params.configs) + (1 if params.xgb_windows else 0)
    done = 0

    def progress(message: str) -> None:
        nonlocal done
        run.progress(5.0 + 90.0 * done / steps, message, force=True)
        done += 1

    with tempfile.TemporaryDirectory(prefix="emgpose-benchmark-") as tmp:
        if params.dataset is not None:
            with session_scope() as session:
                data_uri, _ = repo.resolve_dataset(session, params.dataset, "raw", settings)
        else:
            run.progress(1.0, "generating data", force=True)
            data_uri = os.path.join(tmp, "data")
            write_dataset(SynthConfig(**params.synthetic.model_dump()), data_uri)
        options = StudyOptions(rounds=params.rounds)
        report = run_study(
            data_uri, list(params.configs), options, xgb_windows=params.xgb_windows,
            xgb_rounds=params.xgb_rounds, progress=progress,
        )  # fmt: skip
        report["job"] = run.job.id
        run.progress(96.0, "writing the report", force=True)
        store = open_store(settings.store_uri)
        prefix = f"benchmarks/{run.job.id}"
        files = save(report, os.path.join(tmp, "report"))
        for path in sorted(files, key=lambda p: p.endswith("report.json")):  # report.json last: it marks done
            store.put_file(f"{prefix}/{os.path.basename(path)}", path)
    base = f"{settings.store_uri.rstrip('/')}/{prefix}"
    return {
        "report": f"{base}/report.json",
        "plots": [f"{base}/{os.path.basename(p)}" for p in files if p.endswith(".png")],
        "device": report["device"],
        "configs": {
            k: v.get("total_seconds", v.get("skipped") or v.get("error")) for k, v in report["configs"].items()
        },
        "comparison": report["comparison"],
    }
