"""The causal chain against SciPy/NumPy references, and chunked-vs-whole equality."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from emgpose.errors import InvalidInput
from emgpose.preprocess import CausalChain, PreprocessConfig, design_sos

FS = 2000.0


def _noise(n=6000, c=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, c))


def test_bandpass_matches_scipy_butter_sosfilt():
    x = _noise()
    out = CausalChain(PreprocessConfig(), FS, 3).process(x)
    sos = signal.butter(4, [20, 450], btype="bandpass", fs=FS, output="sos")
    zi = signal.sosfilt_zi(sos)[:, :, None] * x[0][None, None, :]
    expected, _ = signal.sosfilt(sos, x, axis=0, zi=zi)
    np.testing.assert_allclose(out.filtered, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("freq", "passes"), [(5.0, False), (100.0, True), (300.0, True), (800.0, False)])
def test_bandpass_passes_only_the_band(freq, passes):
    t = np.arange(int(2 * FS)) / FS
    x = np.sin(2 * np.pi * freq * t)[:, None]
    y = CausalChain(PreprocessConfig(), FS, 1).process(x).filtered[int(FS) :, 0]  # after the transient
    gain = np.sqrt(2) * y.std()
    assert (gain > 0.9) if passes else (gain < 0.1), f"{freq} Hz gain {gain:.3f}"


def test_rectified_moving_average_matches_convolution():
    x = _noise()
    config = PreprocessConfig(bandpass={"enabled": False})
    out = CausalChain(config, FS, 3).process(x)
    for c in range(3):
        expected = np.convolve(np.abs(x[:, c]), np.ones(50) / 50)[: len(x)]
        np.testing.assert_allclose(out.envelope[:, c], expected, rtol=1e-9, atol=1e-12)


def test_moving_average_by_hand():
    config = PreprocessConfig(bandpass={"enabled": False}, moving_average=3)
    out = CausalChain(config, FS, 1).process(np.array([[3.0], [-3.0], [6.0], [0.0]]))
    np.testing.assert_allclose(out.envelope[:, 0], [1.0, 2.0, 4.0, 3.0])


def test_notch_removes_mains():
    t = np.arange(int(2 * FS)) / FS
    x = (np.sin(2 * np.pi * 50 * t) + np.sin(2 * np.pi * 120 * t))[:, None]
    config = PreprocessConfig(notch={"enabled": True, "freq_hz": 50.0})
    y = CausalChain(config, FS, 1).process(x).filtered[int(FS) :, 0]
    spectrum = np.abs(np.fft.rfft(y))
    freqs = np.fft.rfftfreq(len(y), 1 / FS)
    assert spectrum[np.argmin(np.abs(freqs - 50))] < 0.05 * spectrum[np.argmin(np.abs(freqs - 120))]


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=12))
def test_chunked_equals_whole(cuts):
    x = _noise(3000, 2, seed=1)
    whole = CausalChain(PreprocessConfig(), FS, 2).process(x)
    chain = CausalChain(PreprocessConfig(), FS, 2)
    bounds = np.unique(np.clip(np.cumsum(cuts), 0, len(x)))
    parts = [chain.process(p) for p in np.split(x, bounds) if len(p)]
    np.testing.assert_allclose(np.concatenate([p.filtered for p in parts]), whole.filtered, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([p.envelope for p in parts]), whole.envelope, atol=1e-12)


def test_rate_too_low_for_band_is_refused_with_the_rule():
    with pytest.raises(InvalidInput, match=r"myo\.hdf5.*needs sample_rate > 900 Hz.*200 Hz"):
        CausalChain(PreprocessConfig(), 200.0, 8, source="myo.hdf5")


def test_band_that_fits_a_low_rate_is_accepted():
    config = PreprocessConfig(bandpass={"low_hz": 10.0, "high_hz": 90.0})
    assert design_sos(config, 200.0) is not None


def test_nan_samples_are_flagged_and_do_not_poison_the_state():
    x = _noise(2000, 2)
    x[100, 1] = np.nan
    x[200, 0] = np.inf
    out = CausalChain(PreprocessConfig(), FS, 2).process(x)
    assert np.isfinite(out.filtered).all() and np.isfinite(out.envelope).all()
    assert np.flatnonzero(out.invalid).tolist() == [100, 200]


def test_wrong_channel_count_is_refused():
    with pytest.raises(InvalidInput, match="3 channels"):
        CausalChain(PreprocessConfig(), FS, 3).process(np.zeros((10, 4)))


def test_finite_rows_matches_numpy():
    from emgpose.preprocess.signal import finite_rows

    x = np.random.default_rng(0).normal(size=(50, 4)) * 1e300  # sums overflow to inf: still finite rows?
    x[3, 2], x[7, 0], x[9, 1], x[9, 3] = np.nan, np.inf, np.inf, -np.inf
    small = x / 1e300
    np.testing.assert_array_equal(finite_rows(small), np.isfinite(small).all(axis=1))
    np.testing.assert_array_equal(finite_rows(x), np.isfinite(x).all(axis=1))
