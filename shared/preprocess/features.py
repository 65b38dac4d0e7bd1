"""Window features: an explicit registry, name -> function over ``(n_windows, n_channels, n_samples)``.

Each feature reads one of two signals of the chain: ``envelope`` (rectified, smoothed, z-scored) or
``filtered`` (band-passed, scaled to unit variance on the training data). The Hudgins time-domain
features (MAV, WL, ZC, SSC) and RMS are defined on the filtered signal, as in LibEMG; a feature of the
rectified envelope is the plan's "processed EMG channel" summarised over the window.
Every function returns ``(n_windows, n_channels)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

Signal = Literal["envelope", "filtered"]


@dataclass(frozen=True)
class Feature:
    name: str
    signal: Signal
    fn: Callable[[np.ndarray, float], np.ndarray]  # (windows, threshold) -> (n_windows, n_channels)
    doc: str


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


FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature("env_mean", "envelope", env_mean, "mean of the smoothed envelope"),
        Feature("env_last", "envelope", env_last, "envelope at the window's last sample"),
        Feature("mav", "filtered", mav, "mean absolute value"),
        Feature("rms", "filtered", rms, "root mean square"),
        Feature("wl", "filtered", wl, "waveform length: sum of |x[i+1] - x[i]|"),
        Feature("zc", "filtered", zc, "zero crossings (amplitude step >= threshold)"),
        Feature("ssc", "filtered", ssc, "slope sign changes (product > threshold)"),
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
