"""The window-feature kernel (``kernels/features.cu``) against its CPU twin ``compute_stream_features``.

The same test bodies run with ``xp`` = NumPy, on the host emulation of the kernels, and with ``xp`` = CuPy
on a device (``gpu`` marker). Tolerances: the output is float32 and both paths sum float64 terms (computed
in the signals' precision), differing only in the order of the additions, so a summed feature is within
``rtol=1e-5`` of the CPU's float32 result (``atol=1e-6`` for values near zero, such as a window mean of a
z-scored signal, or the zero left when a window is shorter than a term's span); the counts zc and ssc
are sums of ones and must be exactly equal, and env_last is a copy.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType

import numpy as np
import pytest
from kernel_support import BACKENDS, array_module, host

from emgpose.preprocess.features import FEATURES, compute_stream_features
from emgpose_kernels.features import KERNEL_FEATURES, check_registry, scan_columns, window_features
from emgpose_kernels.launch import KernelError


@pytest.fixture(params=BACKENDS)
def xp(request: pytest.FixtureRequest) -> ModuleType:
    return array_module(request.param)


KERNEL_NAMES = tuple(name for name in FEATURES if FEATURES[name].gpu)  # the rest are CPU-only
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
EXACT = ("zc", "ssc", "env_last")
SPANNED = ("wl", "zc", "ssc")


def signals(n: int, channels: int, dtype: type, seed: int = 0) -> dict[str, np.ndarray]:
    """Z-scored stand-ins for the chain's two signals (the filtered one has sign changes for zc/ssc)."""
    rng = np.random.default_rng(seed)
    return {
        "filtered": rng.standard_normal((n, channels)).astype(dtype),
        "envelope": rng.standard_normal((n, channels)).astype(dtype),
    }


def assert_matches_twin(xp: ModuleType, data, first, stride, count, length, names, threshold, **options) -> None:
    """``window_features`` equals ``compute_stream_features`` column block by column block."""
    starts = first + stride * np.arange(count)
    want = compute_stream_features(data, starts, length, names, threshold)
    got = window_features({k: xp.asarray(v) for k, v in data.items()}, first, stride, count, length, names,
                          threshold, **options)  # fmt: skip
    assert isinstance(got, xp.ndarray) and got.dtype == np.float32 and got.shape == want.shape
    got = host(got)
    channels = next(iter(data.values())).shape[1]
    for f, name in enumerate(names):
        block = slice(f * channels, (f + 1) * channels)
        if name in EXACT:
            np.testing.assert_array_equal(got[:, block], want[:, block], err_msg=name)
        else:
            np.testing.assert_allclose(got[:, block], want[:, block], **TOLERANCE, err_msg=name)


# (n, channels, first, stride, count, length)
CASES = {
    "overlapping windows, odd n": (301, 3, 5, 7, 38, 20),
    "cells of 8 samples": (200, 2, 0, 8, 22, 24),
    "one channel": (97, 1, 3, 5, 17, 10),
    "one window": (50, 4, 10, 1, 1, 33),
    "a window equal to the whole signal": (64, 2, 0, 1, 1, 64),
    "stride larger than length": (151, 3, 2, 25, 6, 9),
    "last window ends at the last sample": (101, 2, 0, 10, 10, 11),
    "length 1": (40, 2, 0, 3, 13, 1),
    "length 2": (41, 2, 1, 3, 13, 2),
    "one sample": (1, 1, 0, 1, 1, 1),
}


@pytest.mark.parametrize("threshold", [0.0, 0.3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_every_feature_in_registry_order_equals_the_cpu_twin(xp: ModuleType, case, dtype: type, threshold: float):
    n, channels, first, stride, count, length = case
    assert_matches_twin(xp, signals(n, channels, dtype), first, stride, count, length, KERNEL_NAMES, threshold)


SUBSETS = [
    ("ssc", "env_last", "rms", "zc"),
    tuple(np.random.default_rng(5).permutation(list(KERNEL_NAMES))[:5]),
    ("rms", "zc", "rms"),  # a feature twice: one prefix column block, two output blocks
    ("env_last",),  # nothing summed: no prefix sums at all
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("names", SUBSETS, ids=["-".join(s) for s in SUBSETS])
def test_a_shuffled_subset_in_its_own_order_equals_the_cpu_twin(xp: ModuleType, names, dtype: type):
    data = signals(120, 3, dtype, seed=2)
    assert_matches_twin(xp, data, 4, 6, 15, 17, names, 0.25)


@pytest.mark.parametrize(
    "names, signal", [(("env_mean", "env_last"), "envelope"), (SPANNED + ("mav", "rms"), "filtered")]
)
def test_only_the_signal_the_features_read_is_needed(xp: ModuleType, names, signal: str):
    data = {signal: signals(60, 2, np.float32, seed=4)[signal]}
    assert_matches_twin(xp, data, 1, 4, 12, 13, names, 0.1)


@pytest.mark.parametrize("threshold", [0.0, 0.0625, 0.5])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ties_at_the_threshold_and_zeros_count_as_on_the_cpu(xp: ModuleType, dtype: type, threshold: float):
    """Quarter steps: exact zeros, steps exactly at the threshold (zc: >=) and products exactly at it (ssc: >)."""
    grid = np.random.default_rng(9).integers(-4, 5, (80, 2)) * 0.25
    data = {"filtered": grid.astype(dtype), "envelope": grid.astype(dtype)}
    assert_matches_twin(xp, data, 2, 3, 24, 9, ("zc", "ssc", "wl"), threshold)


def test_the_threshold_is_compared_in_the_signals_precision(xp: ModuleType):
    """|0.35f - -0.35f| is float32(0.7), below the double 0.7: NumPy counts it on float32, so must the kernel."""
    x = np.tile(np.array([[0.35], [-0.35]], dtype=np.float32), (10, 1))
    assert_matches_twin(xp, {"filtered": x}, 0, 4, 5, 4, ("zc",), 0.7)
    assert host(window_features({"filtered": xp.asarray(x)}, 0, 4, 5, 4, ("zc",), 0.7)).min() == 3.0


@pytest.mark.parametrize("length", [1, 2])
def test_windows_shorter_than_the_span_count_nothing(xp: ModuleType, length: int):
    data = signals(30, 2, np.float64, seed=6)
    got = host(window_features({k: xp.asarray(v) for k, v in data.items()}, 0, 2, 14, length, SPANNED))
    spans = {name: FEATURES[name].span for name in SPANNED}
    for f, name in enumerate(SPANNED):
        if length <= spans[name]:
            np.testing.assert_allclose(got[:, 2 * f : 2 * f + 2], 0.0, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("tile", [2, 3, 5])
def test_deep_prefix_scans_give_the_same_features(xp: ModuleType, tile: int):
    """Tiles of a few rows make the scan recurse several levels on a small signal (cells of 1 sample)."""
    assert_matches_twin(xp, signals(151, 2, np.float64, seed=8), 3, 5, 28, 11, KERNEL_NAMES, 0.2, scan_tile=tile)


@pytest.mark.parametrize("tile", [2, 3, 64])
@pytest.mark.parametrize("rows", [1, 2, 63, 64, 65, 517])
def test_scan_columns_equals_cumsum(xp: ModuleType, rows: int, tile: int):
    x = np.random.default_rng(rows).standard_normal((rows, 3))
    data = xp.array(x)  # a copy: the scan works in place
    scan_columns(data, tile)
    np.testing.assert_allclose(host(data), np.cumsum(x, axis=0), rtol=1e-12, atol=1e-12)


def test_no_windows_gives_an_empty_matrix(xp: ModuleType):
    data = {k: xp.asarray(v) for k, v in signals(10, 3, np.float32).items()}
    got = window_features(data, 0, 1, 0, 4, ("mav", "zc"))
    assert got.shape == (0, 6) and got.dtype == np.float32


def test_a_window_past_the_signal_end_is_refused(xp: ModuleType):
    data = {k: xp.asarray(v) for k, v in signals(50, 2, np.float64).items()}
    with pytest.raises(ValueError, match=r"window 4 \(samples 40 \.\. 50\) reaches past the end of the signal"):
        window_features(data, 0, 10, 5, 11, ("mav",))
    with pytest.raises(ValueError, match="past the end of the signal"):
        window_features(data, 45, 1, 1, 6, ("env_last",))


def test_bad_arguments_are_refused_naming_what_is_wrong(xp: ModuleType):
    data = {k: xp.asarray(v) for k, v in signals(50, 2, np.float64).items()}
    with pytest.raises(ValueError, match=r"unknown features \['kurtosis'\]: the known features are \['env_mean'"):
        window_features(data, 0, 1, 1, 5, ("mav", "kurtosis"))
    with pytest.raises(ValueError, match="at least one feature"):
        window_features(data, 0, 1, 1, 5, ())
    with pytest.raises(ValueError, match=r"one shape \(samples, channels\)"):
        window_features({"filtered": data["filtered"], "envelope": data["envelope"][:, :1]}, 0, 1, 1, 5,
                        ("mav", "env_mean"))  # fmt: skip
    with pytest.raises(ValueError, match=r"signals\['filtered'\] must be \(samples, channels\), got shape \(50,\)"):
        window_features({"filtered": data["filtered"][:, 0]}, 0, 1, 1, 5, ("mav",))
    with pytest.raises(ValueError, match=r"missing \['envelope'\]"):
        window_features({"filtered": data["filtered"]}, 0, 1, 1, 5, ("mav", "env_last"))
    with pytest.raises(ValueError, match="stride must be at least 1"):
        window_features(data, 0, 0, 2, 5, ("mav",))
    with pytest.raises(ValueError, match="first must be a sample index >= 0"):
        window_features(data, -1, 1, 2, 5, ("mav",))
    with pytest.raises(ValueError, match="length must be an integer"):
        window_features(data, 0, 1, 2, 5.0, ("mav",))
    with pytest.raises(ValueError, match="scan_tile must be at least 2"):
        window_features(data, 0, 1, 2, 5, ("mav",), scan_tile=1)
    with pytest.raises(ValueError, match=r"features \['ar', 'mnf'\] are CPU-only \(gpu=False\)"):
        window_features(data, 0, 1, 1, 5, ("mav", "ar", "mnf"))


def test_every_registry_feature_has_a_kernel_id_or_is_declared_cpu_only():
    assert list(KERNEL_FEATURES) == list(KERNEL_NAMES)
    assert set(FEATURES) - set(KERNEL_FEATURES) == {name for name in FEATURES if not FEATURES[name].gpu}
    check_registry()


def test_a_cpu_only_feature_that_claims_a_kernel_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(FEATURES, "mav", dataclasses.replace(FEATURES["mav"], gpu=False))
    with pytest.raises(KernelError, match=r"declared CPU-only \(gpu=False\) that have a kernel id: \['mav'\]"):
        check_registry()


def test_a_registry_feature_neither_on_the_kernel_nor_declared_cpu_only_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(FEATURES, "ls", dataclasses.replace(FEATURES["ls"], gpu=True))
    with pytest.raises(KernelError, match=r"registry features without a kernel id: \['ls'\]"):
        check_registry()


def test_a_feature_added_to_the_registry_without_a_kernel_id_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(FEATURES, "kurtosis", dataclasses.replace(FEATURES["rms"], name="kurtosis"))
    with pytest.raises(KernelError, match=r"registry features without a kernel id: \['kurtosis'\]"):
        check_registry()
    data = signals(20, 1, np.float64)
    with pytest.raises(KernelError, match="without a kernel id"):
        window_features(data, 0, 1, 1, 5, ("mav",))


def test_a_registry_feature_whose_span_changed_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(FEATURES, "wl", dataclasses.replace(FEATURES["wl"], span=2))
    with pytest.raises(KernelError, match=r"wl: the kernel reads \(signal, span\) \('filtered', 1\)"):
        check_registry()
