"""Window features by hand, and the registry."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from emgpose.errors import InvalidInput
from emgpose.preprocess import FEATURES, PreprocessConfig, compute_features, feature_names
from emgpose.preprocess.features import compute_stream_features

W = np.array([[[1.0, -1.0, 2.0, -2.0]]])  # one window, one channel


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("env_mean", 0.0),
        ("env_last", -2.0),
        ("mav", 1.5),
        ("rms", np.sqrt(2.5)),
        ("wl", 2.0 + 3.0 + 4.0),
        ("zc", 3.0),
        ("ssc", 2.0),
    ],
)
def test_feature_by_hand(name, expected):
    assert FEATURES[name].fn(W, 0.0)[0, 0] == pytest.approx(expected)


def test_thresholds_suppress_small_crossings():
    w = np.array([[[0.1, -0.1, 0.1, -3.0]]])
    assert FEATURES["zc"].fn(w, 0.5)[0, 0] == 1.0  # only the 0.1 -> -3.0 step is large enough
    assert FEATURES["ssc"].fn(w, 0.0)[0, 0] == 2.0
    assert FEATURES["ssc"].fn(w, 0.5)[0, 0] == 1.0  # products 0.04 (dropped) and 0.62 (kept)


def test_features_match_a_python_loop_over_windows():
    rng = np.random.default_rng(3)
    windows = rng.normal(size=(7, 4, 40))
    names = ("mav", "rms", "wl", "zc", "ssc")
    got = compute_features({"filtered": windows, "envelope": windows}, names)
    for i in range(7):
        for c in range(4):
            x = windows[i, c]
            ref = [
                np.mean(np.abs(x)),
                np.sqrt(np.mean(x**2)),
                sum(abs(x[k + 1] - x[k]) for k in range(39)),
                sum(1 for k in range(39) if x[k] * x[k + 1] < 0),
                sum(1 for k in range(1, 39) if (x[k] - x[k - 1]) * (x[k] - x[k + 1]) > 0),
            ]
            cols = [j * 4 + c for j in range(5)]
            np.testing.assert_allclose(got[i, cols], ref, rtol=1e-5)


def test_feature_names_are_feature_major():
    assert feature_names(("mav", "zc"), 2) == ["f_mav_c00", "f_mav_c01", "f_zc_c00", "f_zc_c01"]


def test_registry_has_the_required_features():
    assert {"env_mean", "mav", "rms", "wl", "zc", "ssc"} <= set(FEATURES)


def test_unknown_feature_is_refused_naming_the_choices():
    with pytest.raises(InvalidInput, match=r"features.*unknown features \['kurtosis'\]"):
        PreprocessConfig.from_dict({"features": ["mav", "kurtosis"]})


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(3, 300),
    length=st.integers(3, 60),
    stride=st.integers(1, 30),
    threshold=st.sampled_from([0.0, 0.3]),
    seed=st.integers(0, 2**16),
)
def test_stream_fast_path_equals_the_window_functions(n, length, stride, threshold, seed):
    x = np.random.default_rng(seed).normal(size=(n, 3))
    starts = np.arange(0, max(n - length + 1, 0), stride)
    if len(starts) == 0:
        return
    names = tuple(FEATURES)
    windows = sliding_window_view(x, length, axis=0)[starts]
    reference = compute_features({"filtered": windows, "envelope": windows}, names, threshold)
    fast = compute_stream_features({"filtered": x, "envelope": x}, starts, length, names, threshold)
    np.testing.assert_allclose(fast, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("order", ["C", "F"])
def test_window_sums_in_either_memory_order(order):
    from emgpose.preprocess.features import window_sums

    x = np.asarray(np.random.default_rng(0).normal(size=(1000, 5)), order=order)
    starts = np.arange(3, 1000 - 400, 100)
    expected = np.stack([x[s : s + 400].sum(axis=0) for s in starts])
    np.testing.assert_allclose(window_sums(x, starts, 400), expected, rtol=1e-10)
