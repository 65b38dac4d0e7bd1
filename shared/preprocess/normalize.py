"""Z-score statistics: accumulated over the training split in one streaming pass, saved, re-applied."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


class RunningStats:
    """Per-column count, mean and M2 (Chan et al.'s parallel update), fed chunk by chunk."""

    def __init__(self, num_columns: int) -> None:
        self.count = np.zeros(num_columns, dtype=np.float64)
        self.mean = np.zeros(num_columns, dtype=np.float64)
        self.m2 = np.zeros(num_columns, dtype=np.float64)

    def update(self, x: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Adds the rows of ``x`` (n, k) selected by the boolean ``rows`` mask (all when ``None``)."""
        if rows is not None and not rows.all():
            x = x[rows]
        if len(x) == 0:
            return
        batch = RunningStats(x.shape[1])
        batch.count[:] = len(x)
        batch.mean = x.mean(axis=0)
        batch.m2 = np.square(x - batch.mean).sum(axis=0)
        self.merge(batch)

    def merge(self, other: RunningStats) -> None:
        """Combines another accumulator's rows into this one (order does not matter)."""
        total = self.count + other.count
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(total > 0, other.count / total, 0.0)
        delta = other.mean - self.mean
        self.mean = self.mean + delta * share
        self.m2 = self.m2 + other.m2 + np.square(delta) * self.count * share
        self.count = total

    def std(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(self.m2 / self.count)


def _zscore(x: np.ndarray, mean: list[float], std: list[float], dtype: type) -> np.ndarray:
    out = np.subtract(x, np.asarray(mean, dtype=dtype), dtype=dtype, casting="same_kind")
    out *= 1.0 / np.asarray(std, dtype=dtype)
    return out


def _safe_std(std: np.ndarray) -> np.ndarray:
    """A constant (or unseen) column keeps scale 1 instead of dividing by zero."""
    return np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)


@dataclass(frozen=True)
class NormStats:
    """What the z-score needs, per EMG channel and per joint; travels with datasets and models."""

    filtered_mean: list[float]
    filtered_std: list[float]
    envelope_mean: list[float]
    envelope_std: list[float]
    target_mean: list[float]
    target_std: list[float]
    samples: int  # EMG samples the statistics were computed on

    @classmethod
    def from_running(cls, filtered: RunningStats, envelope: RunningStats, target: RunningStats) -> NormStats:
        if filtered.count.size and filtered.count.max() == 0:
            raise ValueError("no valid training samples to compute z-score statistics from")
        return cls(
            filtered_mean=filtered.mean.tolist(),
            filtered_std=_safe_std(filtered.std()).tolist(),
            envelope_mean=envelope.mean.tolist(),
            envelope_std=_safe_std(envelope.std()).tolist(),
            target_mean=target.mean.tolist()
            if target.count.size and target.count.min() > 0
            else [0.0] * target.mean.size,
            target_std=_safe_std(target.std()).tolist(),
            samples=int(filtered.count.max()) if filtered.count.size else 0,
        )

    @classmethod
    def identity(cls, num_channels: int, num_targets: int) -> NormStats:
        """No scaling: used when ``zscore`` is disabled."""
        zeros, ones = [0.0] * num_channels, [1.0] * num_channels
        return cls(zeros, ones, zeros, ones, [0.0] * num_targets, [1.0] * num_targets, 0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> NormStats:
        return cls(**data)

    def scale_filtered(self, x: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        return _zscore(x, self.filtered_mean, self.filtered_std, dtype)

    def scale_envelope(self, x: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        return _zscore(x, self.envelope_mean, self.envelope_std, dtype)

    def scale_targets(self, y: np.ndarray) -> np.ndarray:
        return (y - np.asarray(self.target_mean)) / np.asarray(self.target_std)

    def unscale_targets(self, z: np.ndarray) -> np.ndarray:
        return z * np.asarray(self.target_std) + np.asarray(self.target_mean)
