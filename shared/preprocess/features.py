"""Window features: an explicit registry, name -> function over ``(n_windows, n_channels, n_samples)``.

Each feature reads one of two signals of the chain: ``envelope`` (rectified, smoothed, z-scored) or
``filtered`` (band-passed, scaled to unit variance on the training data). The Hudgins time-domain
features (MAV, WL, ZC, SSC) and RMS are defined on the filtered signal, as in LibEMG; a feature of the
rectified envelope is the plan's "processed EMG channel" summarised over the window.
Every function returns ``(n_windows, n_channels)``.

Most features are sums over the window of a per-sample term (|x|, x², |x[i+1] - x[i]|, a crossing
indicator, ...). For those the registry also states the term, so a stream computes each term once per
sample and every window's sum from a running (prefix) sum, instead of once per overlapping window:
:func:`compute_stream_features` is that fast path, tested equal to the window functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

Signal = Literal["envelope", "filtered"]


Term = Callable[[np.ndarray, float], np.ndarray]


@dataclass(frozen=True)
class Feature:
    """A window feature; ``term``/``span``/``finish`` describe it as a sum of per-sample terms.

    ``term(x, threshold)`` maps ``(n, C)`` samples to ``(n - span, C)`` terms, term ``i`` covering
    samples ``i .. i + span``; the feature is ``finish(sum of the window's terms, window length)``.
    Features without a term (``env_last``) are read directly at the window's last sample.
    """

    name: str
    signal: Signal
    fn: Callable[[np.ndarray, float], np.ndarray]  # (windows, threshold) -> (n_windows, n_channels)
    doc: str
    term: Term | None = None
    span: int = 0
    finish: Callable[[np.ndarray, int], np.ndarray] | None = None


def env_mean(w: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    return w.mean(axis=-1)


def env_last(w: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    return w[..., -1].copy()


def mav(w: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    return np.abs(w).mean(axis=-1)


def rms(w: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    return np.sqrt(np.square(w).mean(axis=-1))


def wl(w: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    return np.abs(np.diff(w, axis=-1)).sum(axis=-1)


def zc(w: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    a, b = w[..., :-1], w[..., 1:]
    crossing = (a * b < 0) & (np.abs(a - b) >= threshold)
    return crossing.sum(axis=-1).astype(np.float64)


def ssc(w: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    left, mid, right = w[..., :-2], w[..., 1:-1], w[..., 2:]
    change = (mid - left) * (mid - right) > threshold
    return change.sum(axis=-1).astype(np.float64)


def _mean(total: np.ndarray, length: int) -> np.ndarray:
    return total / length


def _root_mean(total: np.ndarray, length: int) -> np.ndarray:
    return np.sqrt(np.maximum(total, 0.0) / length)


def _total(total: np.ndarray, length: int) -> np.ndarray:
    return total


def _zc_term(x: np.ndarray, threshold: float) -> np.ndarray:
    a, b = x[:-1], x[1:]
    return ((a * b < 0) & (np.abs(a - b) >= threshold)).astype(np.float64)


def _ssc_term(x: np.ndarray, threshold: float) -> np.ndarray:
    mid = x[1:-1]
    return ((mid - x[:-2]) * (mid - x[2:]) > threshold).astype(np.float64)


FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature("env_mean", "envelope", env_mean, "mean of the smoothed envelope", lambda x, t: x, 0, _mean),
        Feature("env_last", "envelope", env_last, "envelope at the window's last sample"),
        Feature("mav", "filtered", mav, "mean absolute value", lambda x, t: np.abs(x), 0, _mean),
        Feature("rms", "filtered", rms, "root mean square", lambda x, t: np.square(x), 0, _root_mean),
        Feature(
            "wl",
            "filtered",
            wl,
            "waveform length: sum of |x[i+1] - x[i]|",
            lambda x, t: np.abs(np.diff(x, axis=0)),
            1,
            _total,
        ),
        Feature("zc", "filtered", zc, "zero crossings (amplitude step >= threshold)", _zc_term, 1, _total),
        Feature("ssc", "filtered", ssc, "slope sign changes (product > threshold)", _ssc_term, 2, _total),
    )
}


def feature_names(features: tuple[str, ...], num_channels: int) -> list[str]:
    """Column names in the order :func:`compute_features` fills them: feature-major, then channel."""
    return [f"f_{name}_c{c:02d}" for name in features for c in range(num_channels)]


def compute_features(
    windows: dict[Signal, np.ndarray], features: tuple[str, ...], threshold: float = 0.0
) -> np.ndarray:
    """``(n_windows, n_features * n_channels)`` float32 matrix from windows of each signal."""
    columns = [FEATURES[name].fn(windows[FEATURES[name].signal], threshold) for name in features]
    return np.concatenate(columns, axis=1).astype(np.float32, copy=False)


def window_sums(x: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """``x[s : s + length].sum(axis=0)`` for every start, evenly spaced, in O(n) (``(n_windows, C)``).

    Samples are summed in blocks of ``gcd(length, stride)`` (vectorised), and windows from a prefix
    sum over blocks, so the cost does not grow with the windows' overlap.
    """
    step = int(starts[1] - starts[0]) if len(starts) > 1 else length
    block = math.gcd(length, step)
    base = int(starts[0])
    n_blocks = (int(starts[-1]) - base + length) // block
    part = x[base : base + n_blocks * block]
    if part.flags.f_contiguous:  # channel-major memory (the filter's output): reduce along rows of x.T
        sums = part.T.reshape(x.shape[1], n_blocks, block).sum(axis=2, dtype=np.float64).T
    else:
        sums = part.reshape(n_blocks, block, x.shape[1]).sum(axis=1, dtype=np.float64)
    prefix = np.zeros((n_blocks + 1, x.shape[1]))
    np.cumsum(sums, axis=0, out=prefix[1:])
    first = (starts - base) // block
    return prefix[first + length // block] - prefix[first]


def compute_stream_features(
    signals: dict[Signal, np.ndarray],
    starts: np.ndarray,
    length: int,
    features: tuple[str, ...],
    threshold: float = 0.0,
) -> np.ndarray:
    """The same matrix as :func:`compute_features`, from whole ``(n, C)`` signals and window starts.

    ``starts`` must be evenly spaced (one stride). Each term is computed once per sample; a window's
    terms are ``start .. end - span`` (term ``i`` covers samples ``i .. i + span``): the sum over the
    ``length`` padded terms ``start .. end`` minus the ``span`` terms that reach past the window.
    """
    ends = starts + length - 1
    columns = []
    for name in features:
        feature = FEATURES[name]
        x = signals[feature.signal]
        if feature.term is None:
            columns.append(feature.fn(x[ends][:, :, None], threshold))
            continue
        terms = np.zeros_like(x)  # same memory order as the signal
        if len(x) > feature.span:
            terms[: len(x) - feature.span] = feature.term(x, threshold)
        total = window_sums(terms, starts, length)
        for j in range(min(feature.span, length)):
            total -= terms[ends - j]
        columns.append(feature.finish(total, length))
    return np.concatenate(columns, axis=1).astype(np.float32, copy=False)
