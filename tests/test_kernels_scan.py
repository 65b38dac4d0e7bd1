"""The time-blocked parallel scan of the SOS band-pass (``sosfilt_blocked``) against SciPy and the sequential kernel.

The same test bodies run with ``xp`` = NumPy, where the kernels are the ``.cu`` sources compiled for the
host through ``kernels/emu/cuda_host.h``, and with ``xp`` = CuPy on a device (``gpu`` marker). Emulated
sizes stay small: every emulated CUDA thread is a host thread.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
from kernel_support import BACKENDS, array_module, host
from scipy import signal

from emgpose.preprocess.config import PreprocessConfig
from emgpose.preprocess.signal import design_sos
from emgpose_kernels.sosfilt import (
    DEVICE_BLOCK_LEN,
    EMULATED_BLOCK_LEN,
    MAX_SECTIONS,
    choose_block_len,
    sosfilt,
    sosfilt_blocked,
    transition_powers,
)


@pytest.fixture(params=BACKENDS)
def xp(request: pytest.FixtureRequest) -> ModuleType:
    return array_module(request.param)


RATE = 2000.0
SOS = design_sos(PreprocessConfig.model_validate({"notch": {"enabled": True}}), RATE)  # band-pass + notch
BANDPASS = design_sos(PreprocessConfig(), RATE)  # band-pass alone
# float32: the scan and the filter round in float32, against a float64 SciPy reference, on outputs that
# peak at ~400: the largest error seen is ~2.6e-3 absolute, as large as the sequential kernel's, and at
# most 30% of atol + rtol * |reference|.
TOLERANCE = {np.float64: {"rtol": 1e-9, "atol": 1e-9}, np.float32: {"rtol": 2e-3, "atol": 2e-3}}


def emg(n: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, channels)) * 50 + 3.0  # a DC offset, as real amplifiers have


def start_state(sos: np.ndarray, x: np.ndarray, seed: int = 1) -> np.ndarray:
    """A non-zero zi: the steady state for the first sample, disturbed so that it is not one."""
    steady = signal.sosfilt_zi(sos)[:, :, None] * x[0][None, None, :].astype(np.float64)
    return steady + np.random.default_rng(seed).standard_normal(steady.shape) * 10


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "n, columns, block_len, sos",
    [
        pytest.param(1024, 3, 64, SOS, id="block-divides-n"),
        pytest.param(1001, 3, 64, SOS, id="odd-n-short-last-block"),
        pytest.param(999, 2, 100, BANDPASS, id="bandpass-only"),
        pytest.param(300, 2, 1000, SOS, id="block-longer-than-n"),
        pytest.param(1, 1, 16, SOS, id="one-sample"),
        pytest.param(777, 1, 13, SOS, id="one-column"),
        pytest.param(600, 24, 50, SOS, id="sessions-side-by-side"),
        pytest.param(130, 2, 1, SOS, id="one-sample-blocks"),
    ],
)
def test_blocked_equals_scipy(xp: ModuleType, dtype: type, n: int, columns: int, block_len: int, sos: np.ndarray):
    x = emg(n, columns).astype(dtype)
    zi = start_state(sos, x)
    want, want_zf = signal.sosfilt(sos, x.astype(np.float64), axis=0, zi=zi)
    got, zf = sosfilt_blocked(xp.asarray(sos), xp.asarray(x), xp.asarray(zi), block_len)
    assert got.dtype == dtype and zf.dtype == dtype and zf.shape == zi.shape
    np.testing.assert_allclose(host(got), want, **TOLERANCE[dtype])
    np.testing.assert_allclose(host(zf), want_zf, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_blocked_equals_the_sequential_kernel(xp: ModuleType, dtype: type):
    x = emg(1500, 4, seed=5).astype(dtype)
    zi = start_state(SOS, x).astype(dtype)
    sequential, sequential_zf = sosfilt(xp.asarray(SOS), xp.asarray(x), xp.asarray(zi), block_len=0)
    for block_len in (37, 256, 1500, 4000):
        blocked, blocked_zf = sosfilt(xp.asarray(SOS), xp.asarray(x), xp.asarray(zi), block_len=block_len)
        np.testing.assert_allclose(host(blocked), host(sequential), **TOLERANCE[dtype])
        np.testing.assert_allclose(host(blocked_zf), host(sequential_zf), **TOLERANCE[dtype])


def test_a_stream_in_uneven_chunks_through_the_blocked_form_equals_one_call(xp: ModuleType):
    sessions = [emg(1200, 3, seed=s) for s in range(2)]
    x = np.hstack(sessions)  # columns: session 0 channels, then session 1 channels
    zi = start_state(SOS, x)
    whole, whole_zf = sosfilt_blocked(xp.asarray(SOS), xp.asarray(x), xp.asarray(zi), 64)
    state, parts = xp.asarray(zi), []
    for lo, hi in ((0, 1), (1, 18), (18, 333), (333, 700), (700, 1200)):
        part, state = sosfilt_blocked(xp.asarray(SOS), xp.asarray(x[lo:hi]), state, 64)
        parts.append(host(part))
    np.testing.assert_allclose(np.vstack(parts), host(whole), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(host(state), host(whole_zf), rtol=1e-9, atol=1e-9)
    for s, session in enumerate(sessions):
        alone = signal.sosfilt(SOS, session, axis=0, zi=zi[:, :, 3 * s : 3 * s + 3])[0]
        np.testing.assert_allclose(host(whole)[:, 3 * s : 3 * s + 3], alone, rtol=1e-9, atol=1e-9)


def test_sosfilt_chooses_the_blocked_form_for_few_long_columns(xp: ModuleType):
    length = EMULATED_BLOCK_LEN if xp is np else DEVICE_BLOCK_LEN
    x = emg(4 * length, 2, seed=9)
    zi = start_state(SOS, x)
    chosen, chosen_zf = sosfilt(xp.asarray(SOS), xp.asarray(x), xp.asarray(zi))
    blocked, blocked_zf = sosfilt_blocked(xp.asarray(SOS), xp.asarray(x), xp.asarray(zi), length)
    np.testing.assert_array_equal(host(chosen), host(blocked))
    np.testing.assert_array_equal(host(chosen_zf), host(blocked_zf))
    want, want_zf = signal.sosfilt(SOS, x, axis=0, zi=zi)
    np.testing.assert_allclose(host(chosen), want, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(host(chosen_zf), want_zf, rtol=1e-9, atol=1e-9)


def test_choose_block_len():
    sections = len(SOS)
    assert choose_block_len(4 * DEVICE_BLOCK_LEN, 16, sections, "cuda") == DEVICE_BLOCK_LEN
    assert choose_block_len(4 * DEVICE_BLOCK_LEN - 1, 16, sections, "cuda") == 0  # too few samples
    assert choose_block_len(10**7, 4096, sections, "cuda") == 0  # columns alone fill the device
    assert choose_block_len(10**7, 16, MAX_SECTIONS + 1, "cuda") == 0  # more sections than the kernels hold
    assert choose_block_len(4 * EMULATED_BLOCK_LEN, 1, sections, "emulate") == EMULATED_BLOCK_LEN
    assert choose_block_len(4 * EMULATED_BLOCK_LEN - 1, 1, sections, "emulate") == 0


@pytest.mark.parametrize("block_len", [1, 7, 64])
def test_transition_powers_are_the_zero_input_response_of_unit_states(block_len: int):
    states = 2 * len(SOS)
    unit_states = np.eye(states).reshape(len(SOS), 2, states)
    _, after = signal.sosfilt(SOS, np.zeros((block_len, states)), axis=0, zi=unit_states)
    step = after.reshape(states, states)  # column j: the state block_len samples after e_j
    powers = transition_powers(SOS, block_len, 4)
    np.testing.assert_allclose(powers[0], step, rtol=1e-12, atol=1e-12)
    for level in range(1, 4):
        np.testing.assert_allclose(powers[level], np.linalg.matrix_power(step, 2**level), rtol=1e-9, atol=1e-12)


def test_blocked_with_no_samples_or_no_columns_returns_the_state_unchanged(xp: ModuleType):
    zi = start_state(SOS, emg(1, 2))
    y, zf = sosfilt_blocked(xp.asarray(SOS), xp.zeros((0, 2)), xp.asarray(zi), 64)
    assert y.shape == (0, 2)
    np.testing.assert_array_equal(host(zf), zi)
    y, zf = sosfilt_blocked(xp.asarray(SOS), xp.zeros((10, 0)), xp.zeros((len(SOS), 2, 0)), 4)
    assert y.shape == (10, 0) and zf.shape == (len(SOS), 2, 0)


def test_blocked_refuses_arguments_that_do_not_fit(xp: ModuleType):
    x, zi = xp.zeros((10, 3)), xp.zeros((len(SOS), 2, 3))
    with pytest.raises(ValueError, match="block_len must be at least 1"):
        sosfilt_blocked(xp.asarray(SOS), x, zi, 0)
    with pytest.raises(ValueError, match=r"block_len must be 0 \(sequential\) or more"):
        sosfilt(xp.asarray(SOS), x, zi, block_len=-1)
    with pytest.raises(ValueError, match=rf"zi must be \({len(SOS)}, 2, 3\)"):
        sosfilt_blocked(xp.asarray(SOS), x, xp.zeros((len(SOS), 2, 2)), 4)
    many = np.tile(SOS, (2, 1))[: MAX_SECTIONS + 1]
    with pytest.raises(ValueError, match=rf"at most {MAX_SECTIONS}"):
        sosfilt_blocked(xp.asarray(many), x, xp.zeros((len(many), 2, 3)), 4)
    y, _ = sosfilt(xp.asarray(many), x, xp.zeros((len(many), 2, 3)))  # auto: the sequential kernel takes any
    assert y.shape == (10, 3)
