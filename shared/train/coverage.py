"""Whether windows lie inside the feature range a model was trained on.

Trees answer a constant beyond the last split they learnt, so a window whose features fall outside the
training range gets an answer the training data never checked: another amplifier gain, another
subject's amplitudes (most UCI cross-subject windows, docs/results.md). The bundle keeps each feature's
0.5th and 99.5th training percentile; every prediction carries, per window, the share of its features
outside them, and every report the same per split and generalization group. A check per feature does
not see new combinations of in-range features (a new synthetic stage stays inside the range).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from emgpose.errors import DataFormatError
from emgpose.train.data import Split, WindowTable

QUANTILES = (0.005, 0.995)
MAX_ROWS = 200_000  # percentiles from at most this many evenly spaced rows: enough, and cheap at 1M windows
FLAG_SHARE = 0.1  # a window with more than this share of its features outside the range is flagged


def flagged(share: np.ndarray) -> int:
    """How many windows have more than ``FLAG_SHARE`` of their features outside the range."""
    return int(np.count_nonzero(share > FLAG_SHARE))


@dataclass(frozen=True)
class FeatureRange:
    low: np.ndarray  # (d,) float64
    high: np.ndarray  # (d,) float64

    @classmethod
    def fit(cls, features: np.ndarray) -> FeatureRange:
        if len(features) == 0:
            raise ValueError("a feature range needs at least one window")
        rows = features[:: max(1, len(features) // MAX_ROWS)]
        low, high = np.quantile(rows.astype(np.float64), QUANTILES, axis=0)
        return cls(low, high)

    def union(self, other: FeatureRange) -> FeatureRange:
        return FeatureRange(np.minimum(self.low, other.low), np.maximum(self.high, other.high))

    def outside(self, features: np.ndarray) -> np.ndarray:
        """``(n,)`` share of each window's features outside the range (0 inside, 1 all outside)."""
        if len(features) == 0:
            return np.zeros(0)
        return np.mean((features < self.low) | (features > self.high), axis=1)

    def summary(self, features: np.ndarray) -> dict[str, float]:
        """Mean share of features outside, and the share of windows flagged (over ``FLAG_SHARE``)."""
        share = self.outside(features)
        if len(share) == 0:
            return {"features_outside": 0.0, "windows_flagged": 0.0}
        return {
            "features_outside": round(float(share.mean()), 4),
            "windows_flagged": round(flagged(share) / len(share), 4),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"quantiles": list(QUANTILES), "low": self.low.tolist(), "high": self.high.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], num_features: int, where: str) -> FeatureRange:
        try:
            low, high = np.asarray(data["low"], dtype=np.float64), np.asarray(data["high"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(f"{where}: feature_range needs numeric 'low' and 'high' lists ({exc})") from exc
        if low.shape != (num_features,) or high.shape != (num_features,):
            raise DataFormatError(
                f"{where}: feature_range covers {low.size} and {high.size} features, the bundle has {num_features}"
            )
        if not (np.isfinite(low).all() and np.isfinite(high).all() and (low <= high).all()):
            raise DataFormatError(f"{where}: feature_range must be finite with low <= high for every feature")
        return cls(low, high)


def coverage_report(feature_range: FeatureRange, table: WindowTable, split: Split) -> dict[str, Any]:
    """Per split (and generalization group where the metadata has them): how far outside the range."""
    out: dict[str, Any] = {"quantiles": list(QUANTILES), "flag_share": FLAG_SHARE}
    for name in ("train", "val", "test"):
        rows = split.rows(name)
        if not rows.any():
            continue
        part = table.take(rows)
        entry: dict[str, Any] = {"overall": feature_range.summary(part.features)}
        groups = part.ids.get("generalization")
        if groups is not None:
            groups = groups.astype(str)
            named = [g for g in np.unique(groups) if g]
            if named:
                entry["by_generalization"] = {g: feature_range.summary(part.features[groups == g]) for g in named}
        out[name] = entry
    return out
