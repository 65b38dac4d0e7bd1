"""The Celery workers as real processes: filesystem broker + SQLite here (Redis + PostgreSQL in the
compose end-to-end test), a preprocess job fanned out per session and gathered, a train job, cancel,
failure, and a redelivered task that must be harmless.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select
from worker_support import embedded, job_now, start_worker, stop, submit, wait

from emgpose.db.engine import session_scope
from emgpose.db.models import Dataset, ModelVersion
from emgpose.jobs import repo, units
from emgpose.jobs.celery_app import PREPROCESS_GATHER, TRAIN, make_celery, send
from emgpose.preprocess.config import PreprocessConfig
from emgpose.preprocess.job import run_preprocess
from emgpose.synth import SynthConfig, write_dataset
from emgpose.train.bundle import Registry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    work = tmp_path_factory.mktemp("workers")
    with embedded(work, JOB_TIME_LIMIT_S="600") as env:
        procs = [start_worker(work, "preprocessor"), start_worker(work, "trainer")]
        try:
            yield {**env, "work": str(work)}
        finally:
            stop(*procs)


@pytest.fixture(scope="module")
def raw_dataset(stack_env: dict[str, str]) -> tuple[str, str]:
    uri = f"{stack_env['STORE_URI']}/raw/synth"
    write_dataset(SynthConfig(users=3, stages=2, sessions=2, duration_s=4.0, seed=5), uri)
    dataset_id = repo.add_dataset(name="synth", kind="raw", source="registered", uri=uri, state="ready")
    return dataset_id, uri


def test_preprocess_job_fans_out_and_equals_the_single_process_job(stack_env, raw_dataset, tmp_path: Path):
    dataset_id, uri = raw_dataset
    job_id = submit("preprocess", {"dataset": dataset_id})
    job = wait(job_id)
    assert job.state == "succeeded", (job.error_type, job.error_message)
    assert job.progress == 100.0
    out = job.result["uri"]
    with session_scope() as session:
        parts = units.results(job_id, "windows")
        assert len(parts) == 12  # one task per session
        produced = session.get(Dataset, job.result["dataset_id"])
        assert produced.kind == "preprocessed" and produced.parent_id == dataset_id and produced.uri == out
    reference = tmp_path / "reference"
    run_preprocess(uri, reference.as_uri(), PreprocessConfig(), workers=1)
    local = Path(out.removeprefix("file://"))
    assert pq.read_table(local / "master.parquet").equals(pq.read_table(reference / "master.parquet"))
    assert json.loads((local / "stats.json").read_text()) == json.loads((reference / "stats.json").read_text())
    mine, theirs = (json.loads((p / "summary.json").read_text()) for p in (local, reference))
    for key in ("counts", "sessions", "feature_names", "stats", "window", "input"):
        assert mine[key] == theirs[key], key
    assert not [k for k in local.rglob("*") if ".staging" in str(k) and k.is_file()]

    # A redelivered gather (the broker re-sends after a lost ack) changes nothing.
    before = (local / "summary.json").read_bytes()
    send(make_celery("test-client"), PREPROCESS_GATHER, job_id)
    time.sleep(2)
    assert (local / "summary.json").read_bytes() == before
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Dataset).where(Dataset.job_id == job_id)) == 1


def test_preprocess_job_with_a_band_the_data_cannot_carry_fails_with_the_rule(stack_env, raw_dataset):
    dataset_id, _ = raw_dataset
    config = PreprocessConfig().model_dump(mode="json")
    config["bandpass"]["high_hz"] = 1500.0
    job = wait(submit("preprocess", {"dataset": dataset_id, "config": config}))
    assert job.state == "failed"
    assert job.error_type == "InvalidInput" and "1500" in job.error_message
    out = Path(f"{stack_env['STORE_URI'].removeprefix('file://')}/preprocessed/{job.id}")
    assert not out.exists() or not list(out.rglob("*.parquet"))


def test_train_job_publishes_a_version_named_after_the_job(stack_env, raw_dataset):
    dataset_id, _ = raw_dataset
    pre = wait(submit("preprocess", {"dataset": dataset_id}))
    job = wait(submit("train", {"dataset": pre.result["dataset_id"], "name": "w", "config": {"num_rounds": 20}}))
    assert job.state == "succeeded", (job.error_type, job.error_message)
    version = job.result["version"]
    assert version.endswith(job.id[:6]) and job.result["device"] == "cpu"
    registry = Registry(stack_env["STORE_URI"])
    assert registry.latest("w") == version
    with session_scope() as session:
        assert session.get(ModelVersion, ("w", version)).job_id == job.id
    # The same job delivered again finds its version and does not publish a second one.
    send(make_celery("test-client"), TRAIN, job.id)
    time.sleep(2)
    assert registry.versions("w") == [version]


def test_cancel_stops_a_running_train_job(stack_env, raw_dataset):
    dataset_id, _ = raw_dataset
    pre = wait(submit("preprocess", {"dataset": dataset_id}))
    config = {"num_rounds": 100000, "early_stopping_rounds": 100000, "learning_rate": 0.001}
    job_id = submit("train", {"dataset": pre.result["dataset_id"], "name": "c", "config": config})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = wait(job_id, ("running", "succeeded", "failed", "cancelled"))
        if job.stage == "boosting":
            break
        time.sleep(0.2)
    with session_scope() as session:
        assert repo.request_cancel(session, job_id).state == "running"
    job = wait(job_id, timeout=60)
    assert job.state == "cancelled" and job.finished_at is not None
    assert Registry(stack_env["STORE_URI"]).versions("c") == []


def test_progress_and_stage_never_move_back_during_a_preprocess_job(stack_env, raw_dataset):
    dataset_id, _ = raw_dataset
    job_id = submit("preprocess", {"dataset": dataset_id})
    seen: list[tuple[float, str]] = []
    deadline = time.monotonic() + 120
    while (job := job_now(job_id)).state in ("queued", "running"):
        seen.append((job.progress, job.stage))
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert job.state == "succeeded", (job.error_type, job.error_message)
    progress = [p for p, _ in seen]
    assert progress == sorted(progress), progress
    order = ["queued", "planning", "statistics", "merging", "windows", "gathering"]
    ranks = [order.index(stage) for _, stage in seen]
    assert ranks == sorted(ranks), [s for _, s in seen]
    assert {"statistics", "windows"} <= {s for _, s in seen}


def test_benchmark_job_writes_its_report_and_plots_and_reports_gpu_configs_skipped(stack_env):
    from emgpose.store import open_store

    params = {
        "synthetic": {"users": 2, "stages": 2, "sessions": 1, "duration_s": 6.0, "channels": 4},
        "configs": ["cpu", "gpu-kernels"],
        "rounds": 5,
    }
    job = wait(submit("benchmark", params))
    assert job.state == "succeeded", (job.error_type, job.error_message)
    store = open_store(stack_env["STORE_URI"])
    prefix = f"benchmarks/{job.id}"
    assert sorted(store.list(prefix)) == [
        f"{prefix}/{n}" for n in ("accuracy.png", "memory.png", "report.json", "stages.png")
    ]
    report = json.loads(store.get_bytes(f"{prefix}/report.json"))
    assert report["job"] == job.id and report["device"] is None
    cpu = report["configs"]["cpu"]
    assert set(cpu["seconds"]) == {"read", "transfer", "filter", "envelope", "features", "train", "predict"}
    assert cpu["windows"]["train"] > 0 and cpu["accuracy"]["mae_deg"] > 0
    assert "no CUDA device" in report["configs"]["gpu-kernels"]["skipped"]
    assert job.result["report"].endswith(f"{prefix}/report.json") and len(job.result["plots"]) == 3


@pytest.fixture(scope="module")
def outside_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real raw dataset in a folder beside the workers' one: outside their ALLOWED_DATA_ROOTS."""
    folder = tmp_path_factory.mktemp("outside") / "data"
    write_dataset(SynthConfig(users=2, stages=2, sessions=1, duration_s=2.0, seed=7), folder.as_uri())
    return folder


@pytest.mark.parametrize("case", ["dataset-uri", "dataset-row", "benchmark-dataset", "evaluate-model"])
def test_a_job_row_naming_data_outside_the_roots_fails_in_the_worker(stack_env, raw_dataset, outside_dataset, case):
    """Defence in depth: a job row written without the gateway (by hand, by an older version) is refused
    by the worker too, with the rule, before it reads or writes anything there."""
    before = sorted(p.name for p in outside_dataset.parent.rglob("*"))
    if case == "dataset-uri":
        job = wait(submit("preprocess", {"dataset": outside_dataset.as_uri()}))
    elif case == "dataset-row":
        row = repo.add_dataset(name="old", kind="raw", source="registered", uri=outside_dataset.as_uri(), state="ready")
        job = wait(submit("preprocess", {"dataset": row}))
    elif case == "benchmark-dataset":
        job = wait(submit("benchmark", {"dataset": outside_dataset.as_uri(), "configs": ["cpu"], "rounds": 2}))
    else:
        model = f"{outside_dataset.parent.as_uri()}/models/w"
        job = wait(submit("evaluate", {"model": model, "dataset": raw_dataset[0]}))
    assert job.state == "failed"
    assert job.error_type == "OutsideRoots" and "is outside ALLOWED_DATA_ROOTS" in job.error_message
    assert sorted(p.name for p in outside_dataset.parent.rglob("*")) == before
