"""Causal smoothing of the model's answers, window after window: an exponential filter chosen on validation.

Successive windows overlap (200 ms windows every 50 ms by default), so the true angles change little from
one window to the next while the model's errors are partly independent: averaging each answer with the
previous smoothed one cuts the jitter. The filter is causal (``s[k] = a * y[k] + (1 - a) * s[k-1]``), so it
adds no look-ahead; its lag is what the validation score weighs against the noise it removes. ``a = 1``
is no smoothing, and is kept whenever nothing smoother scores better.

The factor is chosen on the validation windows (or the out-of-fold windows of the cross-validation) per
session in time order, saved in the bundle, and applied identically offline (:func:`smooth_rows`, per
session), in :class:`~emgpose.train.predict.Predictor` (one state per stream) and therefore in the
inference service and its WebSocket stream. For gestures the class probabilities are smoothed (a convex
combination of probability vectors is one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ALPHAS = (1.0, 0.8, 0.6, 0.45, 0.3, 0.2, 0.12)  # candidate factors; 1.0 = off


@dataclass(frozen=True)
class Smoothing:
    """The chosen factor and how it was chosen (saved in ``bundle.json`` under ``smoothing``)."""

    alpha: float = 1.0
    chosen_on: str = "default (no validation windows)"
    scores: dict[str, float] = field(default_factory=dict)  # alpha (as text) -> validation score

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "exponential", "alpha": self.alpha, "chosen_on": self.chosen_on, "scores": self.scores}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Smoothing:
        if not data:
            return cls()
        return cls(float(data["alpha"]), str(data.get("chosen_on", "")), dict(data.get("scores", {})))


class Smoother:
    """One stream's exponential filter over successive answers (rows), carrying its state between calls."""

    def __init__(self, alpha: float) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"smoothing factor must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self._state: np.ndarray | None = None

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if self.alpha == 1.0 or len(values) == 0:
            return values
        out = np.empty_like(values, dtype=np.float64)
        state = self._state
        for i, row in enumerate(values):
            state = row if state is None else self.alpha * row + (1.0 - self.alpha) * state
            out[i] = state
        self._state = out[-1].copy()
        return out


def smooth_rows(values: np.ndarray, groups: np.ndarray, order: np.ndarray, alpha: float) -> np.ndarray:
    """``values`` smoothed per group (a session) in ``order`` (window ends); rows stay where they were."""
    if alpha == 1.0 or len(values) == 0:
        return values
    out = np.empty_like(values, dtype=np.float64)
    for group in dict.fromkeys(groups.tolist()):
        rows = np.flatnonzero(groups == group)
        rows = rows[np.argsort(order[rows], kind="stable")]
        out[rows] = Smoother(alpha)(values[rows])
    return out


def choose(
    values: np.ndarray,
    groups: np.ndarray,
    order: np.ndarray,
    score: Callable[[np.ndarray], float],
    chosen_on: str,
    alphas: tuple[float, ...] = ALPHAS,
) -> Smoothing:
    """The factor with the lowest ``score`` (lower is better) of the smoothed validation answers."""
    if len(values) < 2:
        return Smoothing(1.0, f"default (too few {chosen_on} windows)")
    scores = {f"{a:g}": float(score(smooth_rows(values, groups, order, a))) for a in alphas}
    best = min(alphas, key=lambda a: (scores[f"{a:g}"], -a))  # ties keep the lighter smoothing
    return Smoothing(best, chosen_on, scores)
