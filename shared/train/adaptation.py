"""Per-session adaptation without labels: each stream's features normalised by its own running statistics.

A new person's EMG differs from the training people's by electrode placement, skin and anatomy: mostly
gains and offsets per channel, which move every feature of that channel. No angle is needed to see
them: the person's own feature statistics show them. :class:`RunningFeatureNorm` z-scores each window's
features by the mean and variance of the stream's windows so far, including this one (causal), blended with
the training population's statistics counted as :data:`PRIOR_WINDOWS` windows, so the first windows of
a stream are scaled like the training data and the session's own scale takes over as it accumulates.

The same code runs offline (each session's rows in time order: :meth:`FeatureAdaptation.apply_table`) and
per stream in :class:`~emgpose.train.predict.Predictor`, hence in the inference service and its stream.
Whether a model uses it is chosen on validation windows of held-out users (``BoostConfig.adaptation``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from emgpose.train.data import WindowTable

PRIOR_WINDOWS = 40.0  # weight of the population statistics, in windows (2 s at the default 50 ms stride)
MIN_STD = 1e-6


@dataclass(frozen=True)
class FeatureAdaptation:
    """The population's feature statistics (the prior) and the weight they carry."""

    mean: np.ndarray  # (d,)
    std: np.ndarray  # (d,)
    prior_windows: float = PRIOR_WINDOWS

    @classmethod
    def fit(cls, features: np.ndarray) -> FeatureAdaptation:
        x = np.asarray(features, dtype=np.float64)
        return cls(x.mean(axis=0), np.maximum(x.std(axis=0), MIN_STD))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "running-session",
            "prior_windows": self.prior_windows,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> FeatureAdaptation | None:
        if not data:
            return None
        return cls(np.asarray(data["mean"]), np.asarray(data["std"]), float(data["prior_windows"]))

    def stream(self) -> RunningFeatureNorm:
        return RunningFeatureNorm(self)

    def apply_table(self, table: WindowTable) -> WindowTable:
        """A copy of ``table`` whose features are adapted per session, each session in time order."""
        out = np.empty_like(table.features)
        sessions = table.ids["session"]
        for session in dict.fromkeys(sessions.tolist()):
            rows = np.flatnonzero(sessions == session)
            rows = rows[np.argsort(table.window_end[rows], kind="stable")]
            out[rows] = self.stream()(table.features[rows])
        return WindowTable(out, table.y, table.label, table.window_end, table.t_end, table.ids)


class RunningFeatureNorm:
    """One stream's causal feature normalisation, carrying its count, mean and M2 between calls."""

    def __init__(self, adaptation: FeatureAdaptation) -> None:
        self.prior = adaptation
        self.count = 0
        self.mean = np.zeros_like(adaptation.mean)
        self.m2 = np.zeros_like(adaptation.mean)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float64)
        if len(x) == 0:
            return np.asarray(features, dtype=np.float32)
        # Running count, mean and M2 after each row (Welford, vectorised over the chunk by cumulative sums).
        n = self.count + np.arange(1, len(x) + 1)[:, None]
        total = self.mean * self.count + np.cumsum(x, axis=0)
        mean = total / n
        squares = self.m2 + self.mean**2 * self.count + np.cumsum(x * x, axis=0)
        m2 = np.maximum(squares - n * mean**2, 0.0)
        w = self.prior.prior_windows
        blended_mean = (w * self.prior.mean + n * mean) / (w + n)
        between = w * n / (w + n) * (mean - self.prior.mean) ** 2
        blended_var = (w * self.prior.std**2 + m2 + between) / (w + n)
        self.count, self.mean, self.m2 = int(n[-1, 0]), mean[-1], m2[-1]
        return ((x - blended_mean) / np.sqrt(np.maximum(blended_var, MIN_STD**2))).astype(np.float32)
