"""Our CUDA kernels against their NumPy/SciPy twins, on the host emulation (always) and on a GPU (``gpu``).

The same test bodies run with ``xp`` = NumPy, where the kernels are the ``.cu`` sources compiled for
the host through ``kernels/emu/cuda_host.h``, and with ``xp`` = CuPy on a device.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
from kernel_support import BACKENDS, array_module, host
from scipy import signal

from emgpose.preprocess.config import PreprocessConfig
from emgpose.preprocess.normalize import NormStats
from emgpose.preprocess.signal import CausalChain, design_sos
from emgpose_kernels.colstats import colstats
from emgpose_kernels.envelope import envelope
from emgpose_kernels.sosfilt import sosfilt


@pytest.fixture(params=BACKENDS)
def xp(request: pytest.FixtureRequest) -> ModuleType:
    return array_module(request.param)


RATE = 2000.0
TOLERANCE = {np.float64: {"rtol": 1e-9, "atol": 1e-9}, np.float32: {"rtol": 2e-3, "atol": 2e-3}}


def emg(n: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, channels)) * 50 + 3.0  # a DC offset, as real amplifiers have


SOS = design_sos(PreprocessConfig.model_validate({"notch": {"enabled": True}}), RATE)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n, channels", [(1001, 3), (1, 1), (257, 16)])
def test_sosfilt_equals_scipy(xp: ModuleType, dtype: type, n: int, channels: int):
    x = emg(n, channels).astype(dtype)
    zi = signal.sosfilt_zi(SOS)[:, :, None] * x[0][None, None, :]
    want, want_zf = signal.sosfilt(SOS, x.astype(np.float64), axis=0, zi=zi)
    got, zf = sosfilt(xp.asarray(SOS), xp.asarray(x), xp.asarray(zi))
    assert got.dtype == dtype
    np.testing.assert_allclose(host(got), want, **TOLERANCE[dtype])
    np.testing.assert_allclose(host(zf), want_zf, **TOLERANCE[dtype])


def test_sosfilt_in_chunks_equals_one_call_and_sessions_side_by_side_equal_each_alone(xp: ModuleType):
    sessions = [emg(700, 4, seed=s) for s in range(3)]
    stacked = np.hstack(sessions)  # columns: session 0 channels, session 1 channels, ...
    zi = np.zeros((len(SOS), 2, stacked.shape[1]))
    whole, _ = sosfilt(xp.asarray(SOS), xp.asarray(stacked), xp.asarray(zi))
    state, parts = xp.asarray(zi), []
    for lo, hi in ((0, 1), (1, 18), (18, 333), (333, 700)):
        part, state = sosfilt(xp.asarray(SOS), xp.asarray(stacked[lo:hi]), state)
        parts.append(host(part))
    np.testing.assert_array_equal(np.vstack(parts), host(whole))
    for s, session in enumerate(sessions):
        alone = signal.sosfilt(SOS, session, axis=0, zi=np.zeros((len(SOS), 2, 4)))[0]
        np.testing.assert_allclose(host(whole)[:, 4 * s : 4 * s + 4], alone, rtol=1e-9, atol=1e-9)


def test_sosfilt_refuses_shapes_that_do_not_fit(xp: ModuleType):
    with pytest.raises(ValueError, match=rf"zi must be \({len(SOS)}, 2, 3\)"):
        sosfilt(xp.asarray(SOS), xp.zeros((10, 3)), xp.zeros((len(SOS), 2, 2)))
    with pytest.raises(ValueError, match=r"sos must be \(sections, 6\)"):
        sosfilt(xp.zeros((4, 5)), xp.zeros((10, 3)), xp.zeros((4, 2, 3)))


def _stats(channels: int) -> NormStats:
    rng = np.random.default_rng(7)
    mean, std = rng.uniform(1, 5, channels).tolist(), rng.uniform(0.5, 3, channels).tolist()
    return NormStats([0.0] * channels, [1.0] * channels, mean, std, [], [], 1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "chunks, channels, ma",
    [
        ((1000,), 16, 100),  # one call
        ((1, 2, 97, 400, 3), 3, 40),  # a stream in odd chunks, some shorter than the window
        ((7,), 1, 50),  # a window longer than the whole session, one channel
        ((1,), 2, 1),  # one sample, no smoothing
    ],
)
def test_envelope_stream_equals_the_cpu_chain_then_zscore(xp: ModuleType, dtype: type, chunks, channels, ma):
    stats = _stats(channels)
    chain = CausalChain(PreprocessConfig(moving_average=ma), RATE, channels)
    y = emg(sum(chunks), channels, seed=3)
    history = xp.zeros((ma - 1, channels), dtype=dtype)
    start = 0
    for size in chunks:
        part = y[start : start + size]
        start += size
        want = stats.scale_envelope(chain._smooth(part))
        got, history = envelope(xp.asarray(part.astype(dtype)), history, stats.envelope_mean, stats.envelope_std, ma)
        assert got.dtype == dtype and got.shape == part.shape
        np.testing.assert_allclose(host(got), want, **TOLERANCE[dtype])


def test_envelope_without_rectification_and_with_bad_arguments(xp: ModuleType):
    y = emg(50, 2)
    out, _ = envelope(xp.asarray(y), xp.zeros((4, 2)), [0.0, 0.0], [1.0, 1.0], 5, rectify=False)
    want = np.array([y[max(0, i - 4) : i + 1].sum(axis=0) / 5 for i in range(50)])
    np.testing.assert_allclose(host(out), want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"history must be \(4, 2\) for ma=5"):
        envelope(xp.asarray(y), xp.zeros((3, 2)), [0.0, 0.0], [1.0, 1.0], 5)
    with pytest.raises(ValueError, match="at least 1 sample"):
        envelope(xp.asarray(y), xp.zeros((0, 2)), [0.0, 0.0], [1.0, 1.0], 0)


@pytest.mark.parametrize("block", [32, 64, 96, 256])
@pytest.mark.parametrize("rows, columns", [(1000, 3), (1, 1), (33, 16)])
def test_colstats_block_reduction_equals_numpy(xp: ModuleType, block: int, rows: int, columns: int):
    """Warp shuffles, shared memory between warps, __syncthreads and atomics, all in one reduction."""
    x = emg(rows, columns, seed=11)
    sums, squares = colstats(xp.asarray(x), block=block)
    np.testing.assert_allclose(host(sums), x.sum(axis=0), rtol=1e-10)
    np.testing.assert_allclose(host(squares), (x * x).sum(axis=0), rtol=1e-10)
    with pytest.raises(ValueError, match="multiple of 32"):
        colstats(xp.asarray(x), block=48)
