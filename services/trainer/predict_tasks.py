"""The ``predict`` task: a model over stored sessions (:mod:`emgpose.train.batch`), on the train queue.

It runs where XGBoost and the model registry already are. One unit (``run``), leased by one worker at a
time; the outputs' keys depend only on the job id (``predictions/<id>/``), so a re-run after a worker
died rewrites the same objects, each whole, and ``summary.json`` last. A failed or cancelled job's outputs
are removed before the job is recorded as ended. A job failed by the reaper, or after its last retry of
a transient error, may leave tables without ``summary.json``, which marks a complete set.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from emgpose.db.engine import session_scope
from emgpose.jobs import predict as predict_refs
from emgpose.jobs.celery_app import PREDICT
from emgpose.jobs.runner import TRANSIENT, JobRun, LeaseLost, WorkerStopping, run_unit
from emgpose.jobs.schemas import PredictParams
from emgpose.jobs.units import Finish, Unit, complete
from emgpose.settings import get_settings
from emgpose.store import open_store
from emgpose.train.batch import SUMMARY, run_batch
from emgpose_trainer.worker import app

log = logging.getLogger(__name__)

LOADING, PREDICTING = (1.0, 5.0), (5.0, 99.0)  # where each stage sits on the job's progress bar (percent)


@app.task(name=PREDICT, bind=True, acks_late=True)
def predict(self: Task, job_id: str) -> None:
    run_unit(self, Unit(job_id, "run"), _run, on_end=_discard)


def _run(run: JobRun) -> None:
    complete(run.unit, {}, Finish(_predict(run)))
    log.info("job %s succeeded", run.job.id)


def _predict(run: JobRun) -> dict[str, Any]:
    settings = get_settings()
    params = PredictParams.model_validate(run.job.params)
    run.progress(LOADING[0], "loading model", force=True)
    ref, version = predict_refs.model(params, settings)
    bundle = ref.registry.load(ref.name, version)
    with session_scope() as session:
        sources, _ = predict_refs.sources(session, params, settings)
    run.progress(LOADING[1], f"predicting {len(sources)} sessions", force=True)
    lo, hi = PREDICTING

    def progress(share: float, stage: str) -> None:
        run.progress(lo + (hi - lo) * share, stage)

    store = open_store(settings.store_uri, settings)
    prefix = predict_refs.output_prefix(run.job.id)
    store.sweep(prefix)  # a re-run starts clean: what a killed attempt left (temporary files too) goes first
    log.info("job %s: %s %s over %d sessions -> %s", run.job.id, bundle.name, bundle.version, len(sources), prefix)
    try:
        summary = run_batch(sources, bundle, store, prefix, params.formats, progress, extra={"job": run.job.id})
    except (LeaseLost, WorkerStopping, *TRANSIENT):
        raise  # the job runs again (here or on the worker that holds it now): its outputs are rewritten
    except Exception:
        _discard(run.job.id)  # cancelled or failed: removed before the job is seen to have ended
        raise
    names = [f"{s['name']}.{fmt}" for s in summary["sessions"] for fmt in params.formats]
    return {
        "model": bundle.name,
        "version": bundle.version,
        "model_version": f"/v1/models/{bundle.name}/versions/{bundle.version}",
        "task": bundle.task,
        "summary": store.url(f"{prefix}/{SUMMARY}"),
        "outputs": store.url(prefix),
        "download": f"/v1/jobs/{run.job.id}/outputs",
        "files": [SUMMARY, *names],
        "sessions": len(summary["sessions"]),
        "windows": summary["windows"],
        "mae_deg": summary["mae_deg"],
        "flagged_windows": summary["flagged_windows"],
    }


def _discard(job_id: str) -> None:
    """Removes what a failed or cancelled job wrote: a job's outputs exist whole or not at all."""
    settings = get_settings()
    open_store(settings.store_uri, settings).sweep(predict_refs.output_prefix(job_id))
