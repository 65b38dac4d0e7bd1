"""The richer window features against golden values from LibEMG's own definitions, and their contracts.

Golden values come from ``tests/libemg_reference.py``, a transcription of LibEMG 2.0.3's feature
extractor (and librosa's Burg LPC for AR) that never calls emgpose; both the per-window functions
(:func:`compute_features`) and the stream's fast path (:func:`compute_stream_features`) must match them.
"""

from __future__ import annotations

import libemg_reference as ref
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal

from emgpose.errors import InvalidInput
from emgpose.preprocess import FEATURES, NormStats, PreprocessConfig, WindowStream, compute_features, feature_names
from emgpose.preprocess.features import AR_ORDER, FeatureParams, compute_stream_features, num_columns

FS = 1000.0
WAMP = 0.05
CHANNELS = 3


def emg_like(n: int, channels: int = CHANNELS, seed: int = 0) -> np.ndarray:
    """Band-passed noise with a slowly varying, per-channel gain: z-scored EMG's look."""
    rng = np.random.default_rng(seed)
    sos = signal.butter(4, [20, 300], btype="bandpass", fs=FS, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal((n, channels)), axis=0)
    gain = 1.0 + 0.8 * np.sin(np.linspace(0, 6, n))[:, None] * np.linspace(0.5, 1.5, channels)
    x = x * gain
    return x / x.std(axis=0)


def golden(name: str, windows: np.ndarray) -> np.ndarray:
    """The reference's ``(n_windows, width * C)`` columns in emgpose's order for feature ``name``."""
    if name == "ar":  # LibEMG: channel-major (c0 a1..a4, c1 a1..a4); emgpose: value-major
        n, c = windows.shape[:2]
        return ref.ar(windows, AR_ORDER).reshape(n, c, AR_ORDER).transpose(0, 2, 1).reshape(n, AR_ORDER * c)
    if name == "wamp":
        return ref.wamp(windows, WAMP)
    if name in ("mnf", "mdf"):
        return getattr(ref, name)(windows, FS)
    if name == "log_mav":
        return np.log(ref.mav(windows))
    if name == "log_rms":
        return np.log(ref.rms(windows))
    if name == "mav_share":
        amplitude = ref.mav(windows)
        return amplitude / amplitude.sum(axis=1, keepdims=True)
    return getattr(ref, name)(windows)


NEW = ("ls", "mfl", "msr", "wamp", "m0", "m2", "m4", "sparsi", "irf", "wlf", "act", "mob", "comp", "ar", "mnf",
       "mdf", "log_mav", "log_rms", "mav_share")  # fmt: skip
CLASSIC = ("mav", "rms", "wl", "zc", "ssc")
PARAMS = FeatureParams(zc_threshold=0.0, wamp_threshold=WAMP, sample_rate=FS)
# (length, stride): a power of two, lengths that zero-pad the spectrum, overlapping and disjoint windows
SHAPES = [(256, 64), (200, 50), (150, 150), (37, 10)]


def test_the_registry_has_the_libemg_groups_and_the_extra_features():
    groups = {
        "LS4": {"ls", "mfl", "msr", "wamp"},
        "TDPSD": {"m0", "m2", "m4", "sparsi", "irf", "wlf"},
        "HJORTH": {"act", "mob", "comp"},
        "other": {"ar", "mnf", "mdf", "log_mav", "log_rms", "mav_share"},
    }
    for group, names in groups.items():
        assert names <= set(FEATURES), group
    assert set(NEW) == set().union(*groups.values())


@pytest.mark.parametrize(("length", "stride"), SHAPES)
@pytest.mark.parametrize("name", NEW + CLASSIC)
def test_window_functions_and_the_stream_give_libemg_values(name: str, length: int, stride: int):
    x = emg_like(3000, seed=length)
    starts = np.arange(0, len(x) - length + 1, stride)
    windows = sliding_window_view(x, length, axis=0)[starts]
    want = golden(name, windows)
    per_window = compute_features({"filtered": windows}, (name,), PARAMS)
    stream = compute_stream_features({"filtered": x}, starts, length, (name,), PARAMS)
    assert per_window.shape == stream.shape == want.shape == (len(starts), FEATURES[name].width * CHANNELS)
    if name in ("zc", "ssc", "wamp", "mdf"):  # counts and a spectral bin: exact
        np.testing.assert_array_equal(per_window, want, err_msg=name)
        np.testing.assert_array_equal(stream, want, err_msg=name)
    else:  # float32 output of float64 arithmetic
        np.testing.assert_allclose(per_window, want, rtol=2e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(stream, want, rtol=2e-5, atol=1e-6, err_msg=name)


def test_float32_signals_as_the_stream_has_them_stay_close_to_the_float64_reference():
    x = emg_like(2000, seed=4)
    starts = np.arange(0, 2000 - 200 + 1, 50)
    windows = sliding_window_view(x, 200, axis=0)[starts]
    stream = compute_stream_features({"filtered": x.astype(np.float32)}, starts, 200, NEW, PARAMS)
    want = np.concatenate([golden(name, windows) for name in NEW], axis=1)
    count_columns = [i for i, n in enumerate(feature_names(NEW, CHANNELS)) if n.startswith(("f_wamp_", "f_mdf_"))]
    other = np.setdiff1d(np.arange(want.shape[1]), count_columns)
    np.testing.assert_allclose(stream[:, other], want[:, other], rtol=2e-3, atol=2e-4)
    # a step or a bin may flip where float32 rounding moves a value across the threshold or the half power
    assert np.mean(stream[:, count_columns] == want[:, count_columns]) > 0.97


def test_ar_names_are_value_major_then_channel():
    names = feature_names(("mav", "ar", "zc"), 2)
    assert names[:2] == ["f_mav_c00", "f_mav_c01"]
    assert names[2:10] == [f"f_ar_k{k}_c{c:02d}" for k in range(1, 5) for c in range(2)]
    assert names[10:] == ["f_zc_c00", "f_zc_c01"]
    assert num_columns(("mav", "ar", "zc"), 2) == len(names) == 12


def test_ar_coefficients_recover_a_known_autoregressive_process():
    """x[n] = 0.6 x[n-1] - 0.3 x[n-2] + e[n]: Burg gives a1 = -0.6, a2 = 0.3, a3 = a4 = 0 (LPC signs)."""
    rng = np.random.default_rng(1)
    x = signal.lfilter([1.0], [1.0, -0.6, 0.3], rng.standard_normal(20000))[:, None]
    coefficients = compute_features({"filtered": x.T[None]}, ("ar",))[0]
    np.testing.assert_allclose(coefficients, [-0.6, 0.3, 0.0, 0.0], atol=0.02)


def test_mean_and_median_frequency_find_a_sine_in_hz():
    t = np.arange(512) / FS
    x = np.sin(2 * np.pi * 125.0 * t)[None, None, :]
    for rate in (FS, 2 * FS):
        p = FeatureParams(sample_rate=rate)
        scale = rate / FS
        assert FEATURES["mdf"].fn(x, p)[0, 0] == pytest.approx(125.0 * scale)  # exactly on a bin
        assert FEATURES["mnf"].fn(x, p)[0, 0] == pytest.approx(125.0 * scale, rel=0.02)


def test_channel_shares_ignore_a_users_overall_gain_but_not_one_channels():
    x = emg_like(1000, seed=2)
    starts = np.arange(0, 801, 100)
    base = compute_stream_features({"filtered": x}, starts, 200, ("mav_share",))
    louder = compute_stream_features({"filtered": 7.5 * x}, starts, 200, ("mav_share",))
    np.testing.assert_allclose(louder, base, rtol=1e-6)
    np.testing.assert_allclose(base.sum(axis=1), 1.0, rtol=1e-6)
    one = x * np.array([2.0, 1.0, 1.0])
    assert (compute_stream_features({"filtered": one}, starts, 200, ("mav_share",))[:, 0] > base[:, 0]).all()


def test_log_amplitudes_turn_a_gain_into_an_offset():
    x = emg_like(1000, seed=3)
    starts = np.arange(0, 801, 100)
    names = ("log_mav", "log_rms")
    shift = compute_stream_features({"filtered": 3.0 * x}, starts, 200, names) - compute_stream_features(
        {"filtered": x}, starts, 200, names
    )
    np.testing.assert_allclose(shift, np.log(3.0), rtol=1e-5)


def test_wamp_counts_steps_above_its_own_threshold():
    w = np.array([[[0.0, 0.2, 0.25, -0.5, -0.45]]])
    assert FEATURES["wamp"].fn(w, FeatureParams(wamp_threshold=0.1))[0, 0] == 2.0  # 0.2 and 0.75
    assert FEATURES["wamp"].fn(w, FeatureParams(wamp_threshold=0.5))[0, 0] == 1.0
    assert FEATURES["wamp"].fn(w, FeatureParams(zc_threshold=9.0, wamp_threshold=0.0))[0, 0] == 4.0


@pytest.mark.parametrize("length", [1, 2, 3, 4])
def test_short_windows_match_between_the_stream_and_the_window_functions(length: int):
    x = np.random.default_rng(length).normal(size=(90, 2))
    starts = np.arange(0, 90 - length + 1, 3)
    windows = sliding_window_view(x, length, axis=0)[starts]
    names = tuple(FEATURES)
    want = compute_features({"filtered": windows, "envelope": windows}, names, PARAMS)
    got = compute_stream_features({"filtered": x, "envelope": x}, starts, length, names, PARAMS)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_flat_and_zero_windows_give_finite_values_without_warnings():
    x = np.zeros((400, 2))
    x[200:, 1] = 1.5  # a constant, non-zero channel as well
    starts = np.arange(0, 201, 50)
    names = tuple(FEATURES)
    with np.errstate(all="raise"):
        got = compute_stream_features({"filtered": x, "envelope": x}, starts, 200, names, PARAMS)
        windows = sliding_window_view(x, 200, axis=0)[starts]
        per_window = compute_features({"filtered": windows, "envelope": windows}, names, PARAMS)
    assert np.isfinite(got).all() and np.isfinite(per_window).all()
    np.testing.assert_allclose(got, per_window, rtol=1e-5, atol=1e-6)
    shares = got[:, [i for i, n in enumerate(feature_names(names, 2)) if n.startswith("f_mav_share_")]]
    np.testing.assert_allclose(shares[0], [0.5, 0.5])  # both channels flat at zero: an equal share


def test_every_feature_is_causal():
    """A window's features do not change when samples after its last one change."""
    x = emg_like(1200, seed=5)
    later = x.copy()
    later[700:] = np.random.default_rng(6).normal(size=(500, CHANNELS)) * 5
    starts = np.arange(0, 1200 - 150 + 1, 25)
    names = tuple(FEATURES)
    a = compute_stream_features({"filtered": x, "envelope": x}, starts, 150, names, PARAMS)
    b = compute_stream_features({"filtered": later, "envelope": later}, starts, 150, names, PARAMS)
    before = starts + 150 - 1 < 700
    np.testing.assert_allclose(b[before], a[before], rtol=1e-5, atol=1e-6)
    assert not np.allclose(b[~before], a[~before])


def test_a_stream_in_chunks_equals_one_push_with_every_feature():
    config = PreprocessConfig(window={"length": 120, "stride": 40}, features=tuple(FEATURES), wamp_threshold=0.2)
    x = np.random.default_rng(7).normal(size=(2000, CHANNELS)) * 30
    t = np.arange(2000) / FS
    whole = WindowStream(config, FS, CHANNELS, NormStats.identity(CHANNELS, 0)).push(x, t)
    stream = WindowStream(config, FS, CHANNELS, NormStats.identity(CHANNELS, 0))
    parts = [stream.push(x[a:b], t[a:b]) for a, b in [(0, 1), (1, 333), (333, 1000), (1000, 1999), (1999, 2000)]]
    chunked = np.concatenate([p.features for p in parts])
    assert whole.features.shape == (48, num_columns(config.features, CHANNELS))
    np.testing.assert_allclose(chunked, whole.features, rtol=1e-4, atol=1e-4)


def test_the_stream_reads_the_wamp_threshold_and_the_sample_rate_from_its_config():
    x = emg_like(2000, seed=8) * 20
    t = np.arange(2000) / FS
    features = {}
    for rate, threshold in ((FS, 0.1), (FS, 2.0), (2 * FS, 0.1)):
        config = PreprocessConfig(window={"length": 200, "stride": 100}, features=("wamp", "mnf"),
                                  wamp_threshold=threshold, bandpass={"enabled": False})  # fmt: skip
        batch = WindowStream(config, rate, CHANNELS, NormStats.identity(CHANNELS, 0)).push(x, t)
        features[(rate, threshold)] = batch.features
    wamp, mnf = slice(0, CHANNELS), slice(CHANNELS, 2 * CHANNELS)
    assert (features[(FS, 2.0)][:, wamp] < features[(FS, 0.1)][:, wamp]).all()
    np.testing.assert_allclose(features[(2 * FS, 0.1)][:, mnf], 2 * features[(FS, 0.1)][:, mnf], rtol=1e-5)


def test_the_wamp_threshold_is_validated_by_name():
    with pytest.raises(InvalidInput, match="wamp_threshold: Input should be greater than or equal to 0"):
        PreprocessConfig.from_dict({"wamp_threshold": -0.1})


def test_the_default_feature_list_is_unchanged():
    assert PreprocessConfig().features == ("env_mean", "mav", "rms", "wl", "zc", "ssc")
