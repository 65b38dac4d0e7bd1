"""A GPU job end to end (``gpu``): preprocess parts on our kernels, train on CUDA, the bundle serves on a CPU.

Runs where CuPy sees a device (``scripts/gpu-check`` runs it on a lent GPU); skips, saying why, elsewhere.
It imports no fixtures from ``conftest.py``, so the device runs it with ``--noconftest`` and without the
services' dependencies (boto3, Celery, SQLAlchemy).
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from emgpose.devices import gpu_available
from emgpose.formats.session import SessionReader
from emgpose.preprocess import parts
from emgpose.preprocess.config import PreprocessConfig
from emgpose.synth import SynthConfig, write_dataset

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> str:
    if not gpu_available():
        pytest.skip("CuPy finds no CUDA device: this job runs on a GPU machine (scripts/gpu-check)")
    path = tmp_path_factory.mktemp("gpu-raw")
    write_dataset(SynthConfig(users=3, stages=2, sessions=2, duration_s=20.0, seed=3), str(path))
    return str(path)


def _preprocess(raw: str, out: str, device: str) -> dict:
    config = PreprocessConfig()
    plan = parts.plan(raw, out, f".staging/{device}", config)
    stats = [parts.stats_part(plan, i, device=device) for i in plan.train_parts()]
    norm = parts.merge_stats(plan, stats)
    records = [parts.windows_part(plan, i, norm, device=device) for i in range(len(plan.sessions))]
    return parts.gather(plan, norm, records)


def test_preprocess_on_the_kernels_train_on_cuda_and_serve_on_a_cpu(raw: str, tmp_path):
    from emgpose.train.boost import BoostConfig
    from emgpose.train.bundle import Registry
    from emgpose.train.job import run_train
    from emgpose.train.predict import predict

    cpu_summary = _preprocess(raw, str(tmp_path / "cpu"), "cpu")
    gpu_summary = _preprocess(raw, str(tmp_path / "gpu"), "cuda")
    assert {s["device"] for s in gpu_summary["sessions"]} == {"cuda"}
    for field in ("filtered_std", "envelope_mean", "envelope_std"):
        np.testing.assert_allclose(gpu_summary["stats"][field], cpu_summary["stats"][field], rtol=1e-9)
    cpu_table, gpu_table = (pq.read_table(tmp_path / d / "master.parquet") for d in ("cpu", "gpu"))
    assert gpu_table.num_rows == cpu_table.num_rows > 0
    for name in gpu_summary["feature_names"]:
        np.testing.assert_allclose(gpu_table[name].to_numpy(), cpu_table[name].to_numpy(), rtol=1e-4, atol=1e-4)

    store = str(tmp_path / "store")
    config = BoostConfig(device="cuda", num_rounds=60, objective="pseudo_huber")
    result = run_train(str(tmp_path / "gpu"), store, "gpu", config=config)
    assert result["metrics"]["xgboost"]["mae_deg"] > 0

    bundle = Registry(store).load("gpu")  # the same format whatever the device: it loads and runs on a CPU
    with SessionReader(f"{raw}/{gpu_summary['sessions'][0]['filename']}.hdf5") as reader:
        emg = reader.read(0, 8000).emg
    on_cpu = predict(bundle, emg).values
    bundle.booster.set_param({"device": "cuda"})
    on_gpu = predict(bundle, emg).values
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-5, atol=1e-6)
