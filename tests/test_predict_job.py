"""The ``predict`` job end to end: the gateway, a real trainer worker process and its own Redis.

Models are trained for real (a few rounds, one thread) on small synthetic data; every table a job writes
is read back and compared, value for value, with :func:`emgpose.train.predict.predict` run here on the same
session. The database is SQLite (as ``emgpose up``), the broker a private ``redis-server``.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from backends import OwnRedis
from gateway_support import Gateway, serve_gateway, stored
from worker_support import FAST, embedded, start_worker, stop

from emgpose.cli import main as cli_main
from emgpose.db.engine import session_scope
from emgpose.db.models import Dataset
from emgpose.formats.metadata import MetadataRow, read_metadata, write_metadata
from emgpose.formats.session import SessionReader, SessionWriter
from emgpose.preprocess.job import run_preprocess
from emgpose.synth import SynthConfig, write_dataset
from emgpose.train.boost import BoostConfig
from emgpose.train.bundle import Bundle, Registry
from emgpose.train.calibrate import read_recording
from emgpose.train.job import run_train
from emgpose.train.predict import Prediction, predict

pytestmark = pytest.mark.slow

TINY = BoostConfig(num_rounds=5, max_depth=3, nthread=1)
CLASSES = ("rest", "fist", "open")
# A loaded 2-core machine can starve a heartbeat for a few seconds: a little more room than FAST gives.
TIMING = {**FAST, "HEARTBEAT_TIMEOUT_S": "6", "REAPER_MAX_REQUEUES": "8"}
LONG_FILES, LONG_SECONDS = 60, 25.0  # 25 min of EMG: seconds of work even on a quiet machine, to stop mid-way


@dataclass
class Stack:
    work: Path
    gateway: Gateway
    worker: Popen

    @property
    def store(self) -> Path:
        return self.work / "store"

    def http(self) -> httpx.Client:
        return self.gateway.client()


def _gesture_file(path: Path, seed: int, seconds: float = 6.0) -> None:
    """Blocks of 1 s per class at 1 kHz on 4 channels; each class has its own channel pattern."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 1000)
    label = np.repeat(np.arange(n // 1000) % 3, 1000)
    gains = np.array([[0.1, 0.1, 0.1, 0.1], [1.0, 0.8, 0.1, 0.1], [0.1, 0.2, 1.0, 0.9]])
    emg = (rng.normal(size=(n, 4)) * gains[label]).astype(np.float32)
    with SessionWriter(
        path, sample_rate=1000.0, num_channels=4, joint_names=(), with_label=True, label_names=CLASSES
    ) as writer:
        writer.append(100.0 * seed + np.arange(n) / 1000.0, emg, None, label)


def _long_files(folder: Path) -> None:
    """``LONG_FILES`` copies of one session of 16-channel noise at 2 kHz, without joint angles (labelled rest)."""
    folder.mkdir()
    n = int(LONG_SECONDS * 2000)
    emg = np.random.default_rng(5).normal(size=(n, 16)).astype(np.float32)
    first = folder / "long00.hdf5"
    with SessionWriter(
        first, sample_rate=2000.0, num_channels=16, joint_names=(), with_label=True, label_names=("rest",)
    ) as writer:
        writer.append(np.arange(n) / 2000.0, emg, None, np.zeros(n, np.int64))
    for i in range(1, LONG_FILES):
        shutil.copy(first, folder / f"long{i:02d}.hdf5")


def _models(work: Path) -> None:
    write_dataset(SynthConfig(users=2, stages=2, sessions=1, duration_s=4.0, seed=3), str(work / "data"))
    run_preprocess(str(work / "data"), str(work / "pre"), workers=1)
    run_train(str(work / "pre"), str(work / "store"), "hand", config=TINY)
    gestures = work / "gestures"
    gestures.mkdir()
    rows = []
    for i, split in enumerate(["train", "train", "val", "test"]):
        _gesture_file(gestures / f"g{i}.hdf5", i)
        rows.append(MetadataRow(filename=f"g{i}", split=split, user="u1", session=f"g{i}"))
    (gestures / "metadata.csv").write_text(write_metadata(rows))
    run_preprocess(str(gestures), str(work / "gpre"), workers=1)
    run_train(str(work / "gpre"), str(work / "store"), "grip", config=TINY)
    _long_files(work / "long")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Models and data, then the gateway (reaper included) and one trainer worker on a private Redis."""
    work = tmp_path_factory.mktemp("predict-job")
    with pytest.MonkeyPatch.context() as mp, OwnRedis(work / "redis", appendonly=False) as redis_server:
        mp.setenv("OMP_NUM_THREADS", "1")
        with embedded(work, REDIS_URL=redis_server.url, **TIMING) as env:
            roots = {"ALLOWED_DATA_ROOTS": work.as_uri(), "REDIS_URL": redis_server.url, **TIMING}
            with serve_gateway(mp, work, env["DATABASE_URL"], **roots) as gateway:
                running = Stack(work, gateway, start_worker(work, "trainer"))
                try:
                    _models(work)  # while the worker starts
                    yield running
                finally:
                    stop(running.worker)


def _submit(stack: Stack, params: dict[str, Any]) -> dict[str, Any]:
    with stack.http() as http:
        response = http.post("/v1/jobs", json={"type": "predict", "params": params})
    assert response.status_code == 202, response.text
    return response.json()


def _follow(stack: Stack, job_id: str, until: Any, timeout: float = 120.0) -> tuple[dict[str, Any], list[dict]]:
    """Polls the job until ``until(job)``; returns it and every state seen on the way."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    with stack.http() as http:
        while True:
            job = http.get(f"/v1/jobs/{job_id}").json()
            seen.append(job)
            if until(job):
                return job, seen
            assert job["state"] in ("queued", "running"), job
            assert time.monotonic() < deadline, f"job {job_id}: {job['state']} {job['stage']} after {timeout} s"
            time.sleep(0.05)


def _ended(job: dict[str, Any]) -> bool:
    return job["state"] in ("succeeded", "failed", "cancelled")


def _expected(
    bundle: Bundle, path: Path, start: float | None = None, end: float | None = None
) -> tuple[Prediction, int]:
    """What :func:`predict` answers for a session's time range after the bundle's pre-roll; its first index."""
    with SessionReader(path) as reader:
        first, stop_ = reader.index_range(start, end)
    pre = max(0, first - round(bundle.config.preroll_ms * bundle.sample_rate / 1000.0))
    rec = read_recording(str(path))
    return predict(bundle, rec.emg[pre:stop_], rec.time[pre:stop_], warm_up=first - pre), first


def _same(table: Any, expected: Prediction, first: int) -> None:
    """Every column of a written table equals the prediction made here, exactly."""
    extra = ["out_of_range"] if expected.out_of_range is not None else []
    if expected.task == "regression":
        values = {f"{n}_deg": expected.degrees[:, j] for j, n in enumerate(expected.names)}
    else:
        values = {f"p_{n}": expected.values[:, j] for j, n in enumerate(expected.names)}
    assert table.column_names == [
        "t_end_s",
        "window_end_sample",
        *values,
        *(["class"] if expected.task != "regression" else []),
        *extra,
    ]
    assert len(expected) > 0 and table.num_rows == len(expected)
    assert np.array_equal(table["t_end_s"].to_numpy(), expected.t_end)
    assert np.array_equal(table["window_end_sample"].to_numpy(), first + expected.window_end)
    for name, column in values.items():
        assert np.array_equal(table[name].to_numpy(), column), name
    if expected.task != "regression":
        assert table["class"].to_pylist() == expected.classes
    if extra:
        assert np.array_equal(table["out_of_range"].to_numpy(), expected.out_of_range)


def _download(http: httpx.Client, job_id: str, name: str) -> bytes:
    response = http.get(f"/v1/jobs/{job_id}/outputs/{name}")
    assert response.status_code == 200, response.text
    return response.content


def test_the_openapi_example_predicts_a_dataset_and_its_tables_equal_the_predictor(stack: Stack):
    with stack.http() as http:
        spec = http.get("/openapi.json").json()
    example = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["examples"]["predict"]
    body = example["value"]
    with session_scope() as session:  # the dataset the example names, registered as an upload would be
        session.add(Dataset(id=body["params"]["dataset"], name="lab", kind="raw", source="registered",
                            uri=(stack.work / "data").as_uri(), state="ready"))  # fmt: skip
    with stack.http() as http:
        response = http.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        job, _ = _follow(stack, response.json()["id"], _ended)
        assert job["state"] == "succeeded", job["error"]
        result = job["result"]
        bundle = Registry(str(stack.store)).load("hand")
        assert (result["model"], result["version"], result["task"]) == ("hand", bundle.version, "regression")
        rows = read_metadata((stack.work / "data" / "metadata.csv").read_text())
        assert result["sessions"] == len(rows) == 4
        listed = http.get(f"/v1/jobs/{job['id']}/outputs").json()
        assert [f["name"] for f in listed["files"]] == result["files"]
        summary = json.loads(_download(http, job["id"], "summary.json"))
        for row in rows:
            expected, first = _expected(bundle, stack.work / "data" / row.file, row.start, row.end)
            _same(pq.read_table(io.BytesIO(_download(http, job["id"], f"{row.filename}.parquet"))), expected, first)
            _same(pacsv.read_csv(io.BytesIO(_download(http, job["id"], f"{row.filename}.csv"))), expected, first)
    assert summary["windows"] == result["windows"] == sum(s["windows"] for s in summary["sessions"])
    assert summary["mae_deg"] is not None and 0 < summary["mae_deg"] < 90  # the synthetic sessions have angles
    assert summary["flagged_windows"] is not None and summary["flag_share"] > 0  # the model records its range
    assert summary["job"] == job["id"] and summary["model"] == "hand"


def test_a_classifier_over_listed_files_and_the_cli_download(stack: Stack, tmp_path: Path):
    files = [(stack.work / "gestures" / f"g{i}.hdf5").as_uri() for i in (2, 3)]
    out = tmp_path / "pred"
    code = cli_main(
        ["predict-job", "--url", stack.gateway.url, "--model", "grip", "--files", *files, "--out", str(out)]
    )
    assert code == 0
    bundle = Registry(str(stack.store)).load("grip")
    assert bundle.task == "classification" and bundle.class_names == list(CLASSES)
    assert sorted(p.name for p in out.iterdir()) == ["g2.csv", "g2.parquet", "g3.csv", "g3.parquet", "summary.json"]
    for i in (2, 3):
        expected, first = _expected(bundle, stack.work / "gestures" / f"g{i}.hdf5")
        _same(pq.read_table(out / f"g{i}.parquet"), expected, first)
        _same(pacsv.read_csv(out / f"g{i}.csv"), expected, first)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "classification" and summary["mae_deg"] is None


@pytest.mark.parametrize(
    ("params", "status", "named"),
    [
        ({"model": "nosuch", "prefix": "DATA"}, 404, "'nosuch'"),
        ({"model": "hand", "version": "20200101T000000Z-abcdef", "prefix": "DATA"}, 404, "20200101T000000Z-abcdef"),
        ({"model": "hand", "prefix": "file:///etc"}, 403, "ALLOWED_DATA_ROOTS"),
        ({"model": "hand", "files": ["DATA/metadata.csv"]}, 422, "must end with .hdf5"),
        ({"model": "hand", "prefix": "DATA", "dataset": "DATA"}, 422, "exactly one of dataset, prefix or files"),
        ({"model": "hand", "prefix": "DATA", "formats": ["xlsx"]}, 422, "formats"),
    ],
)
def test_a_bad_submission_names_what_is_wrong_and_queues_nothing(stack: Stack, params: dict, status: int, named: str):
    data = (stack.work / "data").as_uri()
    params = {k: [v.replace("DATA", data) for v in val] if isinstance(val, list) else val.replace("DATA", data)
              for k, val in params.items()}  # fmt: skip
    with stack.http() as http:
        before = http.get("/v1/jobs", params={"type": "predict"}).json()["total"]
        response = http.post("/v1/jobs", json={"type": "predict", "params": params})
        assert response.status_code == status, response.text
        assert named in response.text
        assert http.get("/v1/jobs", params={"type": "predict"}).json()["total"] == before


def _predicting_with_output(stack: Stack, share: float) -> Any:
    def ready(job: dict[str, Any]) -> bool:
        assert not _ended(job), job
        written = list((stack.store / "predictions" / job["id"]).glob("*.parquet"))
        return job["stage"].startswith("predicting long") and job["progress"] > share and bool(written)

    return ready


def test_a_cancelled_job_stops_and_leaves_no_outputs(stack: Stack):
    job = _submit(stack, {"model": "hand", "prefix": (stack.work / "long").as_uri()})
    _follow(stack, job["id"], _predicting_with_output(stack, 5.0))
    with stack.http() as http:
        response = http.post(f"/v1/jobs/{job['id']}/cancel")
        assert response.status_code == 202, response.text
    job, _ = _follow(stack, job["id"], _ended)
    assert job["state"] == "cancelled"
    assert stored(stack.store / "predictions" / job["id"]) == []


def test_a_worker_killed_mid_job_is_replaced_and_the_retry_writes_complete_outputs(stack: Stack):
    job = _submit(stack, {"model": "hand", "prefix": (stack.work / "long").as_uri(), "formats": ["parquet", "csv"]})
    running, seen = _follow(stack, job["id"], _predicting_with_output(stack, 20.0))
    progress = [j["progress"] for j in seen if j["state"] == "running"]
    assert progress == sorted(progress) and 20 < progress[-1] < 100  # progress seen, never moving back
    assert running["state"] == "running"
    stack.worker.kill()  # SIGKILL: no shutdown work, the message is neither acknowledged nor handed back
    stack.worker.wait()
    stack.worker = start_worker(stack.work, "trainer", log="trainer-second")
    job, _ = _follow(stack, job["id"], _ended, timeout=120)
    assert job["state"] == "succeeded", job["error"]
    assert job["requeues"] >= 1 and job["attempts"] >= 2  # the reaper sent it again; a second run finished it
    names = [f"long{i:02d}.{fmt}" for i in range(LONG_FILES) for fmt in ("parquet", "csv")]
    assert job["result"]["files"] == ["summary.json", *names]
    assert stored(stack.store / "predictions" / job["id"]) == sorted(["summary.json", *names])  # no temporary files
    bundle = Registry(str(stack.store)).load("hand")
    expected, first = _expected(bundle, stack.work / "long" / "long00.hdf5")
    for name in names:
        path = stack.store / "predictions" / job["id"] / name
        _same(pq.read_table(path) if name.endswith(".parquet") else pacsv.read_csv(path), expected, first)


def test_the_cli_reports_an_unknown_model_by_name(stack: Stack, capsys: pytest.CaptureFixture[str]):
    data = (stack.work / "data").as_uri()
    code = cli_main(["predict-job", "--url", stack.gateway.url, "--model", "nosuch", "--prefix", data])
    assert code == 2
    err = capsys.readouterr().err
    assert "HTTP 404" in err and "'nosuch'" in err
