"""The preprocessing chain on our kernels against the CPU chain: same signals, windows, statistics, tables.

``emulate`` runs the kernels' ``.cu`` sources on the host emulation, so CI checks the whole kernel path
without a GPU; the ``gpu`` cases run the same bodies on CuPy arrays where a device exists.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from emgpose.preprocess.config import PreprocessConfig
from emgpose.preprocess.features import num_columns
from emgpose.preprocess.kernel_path import KernelChain, KernelWindowStream, add_rows, array_module, to_host
from emgpose.preprocess.normalize import NormStats, RunningStats
from emgpose.preprocess.signal import CausalChain
from emgpose.preprocess.windows import WindowStream
from emgpose.synth import SynthConfig, write_dataset

RATE = 2000.0
CONFIG = PreprocessConfig.model_validate(
    {"notch": {"enabled": True}, "window": {"length": 60, "stride": 25}, "moving_average": 20, "zc_threshold": 0.05}
)
CUTS = (0, 1, 130, 131, 700, 1500)  # chunks of 1, 129, 1, 569 and 800 samples


def _device(request: pytest.FixtureRequest) -> str:
    if request.param == "cuda":
        from emgpose.devices import gpu_available

        if not gpu_available():
            pytest.skip("CuPy finds no CUDA device: the cuda cases run on a GPU machine (scripts/gpu-check)")
    return request.param


@pytest.fixture(params=["emulate", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request: pytest.FixtureRequest) -> str:
    return _device(request)


def _emg(n: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, channels)) * 40 + np.linspace(0, 20, channels)  # DC offsets per channel
    x[333, 1 % channels] = np.nan  # one invalid sample: flagged, zeroed, its windows dropped
    return x


def _stats(channels: int, targets: int) -> NormStats:
    rng = np.random.default_rng(7)
    return NormStats(
        filtered_mean=rng.normal(0, 1, channels).tolist(),
        filtered_std=rng.uniform(10, 40, channels).tolist(),
        envelope_mean=rng.uniform(10, 30, channels).tolist(),
        envelope_std=rng.uniform(5, 20, channels).tolist(),
        target_mean=[0.0] * targets,
        target_std=[1.0] * targets,
        samples=1000,
    )


@pytest.mark.parametrize("channels", [1, 5])
def test_kernel_chain_in_chunks_equals_the_cpu_chain(device: str, channels: int):
    x = _emg(CUTS[-1], channels)
    cpu = CausalChain(CONFIG, RATE, channels)
    kernels = KernelChain(CONFIG, RATE, channels, array_module(device))
    for lo, hi in zip(CUTS, CUTS[1:], strict=False):
        want, got = cpu.process(x[lo:hi]), kernels.process(x[lo:hi])
        np.testing.assert_array_equal(got.invalid, want.invalid)
        np.testing.assert_allclose(to_host(got.filtered), want.filtered, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(to_host(got.envelope), want.envelope, rtol=1e-9, atol=1e-9)


# Kernel features and CPU-only ones interleaved (AR has four columns per channel): the kernel path computes
# the first kind on the device, the second on the host, and must assemble them in this order.
MIXED_FEATURES = ("ar", "mav", "wamp", "env_last", "m2", "zc", "mav_share", "mdf", "ls", "rms")


@pytest.mark.parametrize(
    "config", [CONFIG, PreprocessConfig.model_validate({**CONFIG.model_dump(), "features": MIXED_FEATURES})],
    ids=["kernel features", "with CPU-only features"],
)  # fmt: skip
def test_kernel_window_stream_gives_the_cpu_batches(device: str, config: PreprocessConfig):
    channels, targets = 4, 3
    n = CUTS[-1]
    x = _emg(n, channels)
    rng = np.random.default_rng(1)
    y = rng.normal(size=(n, targets))
    y[900] = 0.0  # an IK failure
    stats = _stats(channels, targets)
    options = {"num_targets": targets, "source": "s.hdf5"}
    cpu = WindowStream(config, RATE, channels, stats, **options)
    kernels = KernelWindowStream(config, RATE, channels, stats, xp=array_module(device), **options)
    t = np.arange(n) / RATE
    cpu.warm_up(x[:40] * 0.5)
    kernels.warm_up(x[:40] * 0.5)
    reasons = set()
    for lo, hi in zip(CUTS, CUTS[1:], strict=False):
        want = cpu.push(x[lo:hi], t[lo:hi], y[lo:hi])
        got = kernels.push(x[lo:hi], t[lo:hi], y[lo:hi])
        np.testing.assert_array_equal(got.end_index, want.end_index)
        np.testing.assert_array_equal(got.reason, want.reason)
        assert got.features.dtype == np.float32 and got.features.shape == want.features.shape
        assert want.features.shape[1] == num_columns(config.features, channels)
        np.testing.assert_allclose(got.features, want.features, rtol=1e-4, atol=1e-4)
        reasons.update(want.reason.tolist())
    assert reasons == {0, 1, 3}  # kept, invalid EMG and IK failure all occurred


def test_column_sums_on_the_kernels_give_the_running_statistics(device: str):
    xp = array_module(device)
    x = _emg(901, 3)[:900]
    x[:, 2] += 1e4  # far from zero: the shifted sums keep the variance exact
    rows = np.ones(900, dtype=bool)
    rows[::7] = False
    want, got = RunningStats(3), RunningStats(3)
    finite = np.nan_to_num(x)
    for part in (slice(0, 1), slice(1, 400), slice(400, 900)):
        want.update(finite[part], rows[part])
        add_rows(got, xp.asarray(finite[part]), rows[part])
    add_rows(got, xp.asarray(finite[:5]), np.zeros(5, dtype=bool))  # no rows selected: nothing changes
    np.testing.assert_array_equal(got.count, want.count)
    np.testing.assert_allclose(got.mean, want.mean, rtol=1e-12)
    np.testing.assert_allclose(got.m2, want.m2, rtol=1e-9)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth-kernels")
    write_dataset(SynthConfig(users=2, stages=2, sessions=1, duration_s=1.5, channels=4), str(path))
    return path


def test_preprocess_parts_on_the_kernels_write_the_cpu_tables(device: str, synth_dir, tmp_path):
    from emgpose.preprocess import parts

    config = CONFIG.model_copy(update={"window": CONFIG.window.model_copy(update={"length": 200, "stride": 100})})
    tables = {}
    for run in ("cpu", device):
        plan = parts.plan(str(synth_dir), str(tmp_path / run), ".staging/job", config)
        stats = [parts.stats_part(plan, i, device=run) for i in plan.train_parts()]
        norm = parts.merge_stats(plan, stats)
        records = [parts.windows_part(plan, i, norm, device=run) for i in range(len(plan.sessions))]
        assert {r["device"] for r in records} == {run}
        tables[run] = (norm, [pq.read_table(tmp_path / run / ".staging/job" / r["output"]) for r in records])
    (cpu_norm, cpu_tables), (dev_norm, dev_tables) = tables["cpu"], tables[device]
    for field in ("filtered_mean", "filtered_std", "envelope_mean", "envelope_std"):
        np.testing.assert_allclose(getattr(dev_norm, field), getattr(cpu_norm, field), rtol=1e-9, err_msg=field)
    for want, got in zip(cpu_tables, dev_tables, strict=True):
        assert got.column_names == want.column_names and got.num_rows == want.num_rows > 0
        for name in want.column_names:
            a, b = want.column(name).to_numpy(), got.column(name).to_numpy()
            if name.startswith("f_"):
                np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4, err_msg=name)
            else:
                np.testing.assert_array_equal(b, a, err_msg=name)
