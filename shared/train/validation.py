"""Choosing the number of boosting rounds by blocked chronological cross-validation (small data).

Each fold (:func:`emgpose.train.data.blocked_folds`) boosts with early stopping on its validation block;
the rounds kept are the median of the folds' best rounds, and the model is then refitted on every
training window with that many rounds and no early stopping. With a few hundred windows this beats
carving a fifth of them out for early stopping, which both shrinks the training set and picks the rounds
on one short stretch of time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emgpose.train import boost


@dataclass
class CrossValidation:
    rounds: int  # what the refit on all training windows boosts
    folds: list[dict[str, Any]] = field(default_factory=list)  # per fold: windows, best round, score
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # validated table rows
    fold_of: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # their fold
    predictions: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # out-of-fold raw outputs

    def to_dict(self) -> dict[str, Any]:
        return {"rule": "median of the folds' best rounds", "rounds": self.rounds, "folds": self.folds}


def rounds_by_cv(
    config: boost.BoostConfig,
    kind: boost.Task,
    features: np.ndarray,
    targets: Callable[[np.ndarray], np.ndarray],
    folds: list[tuple[np.ndarray, np.ndarray]],
    *,
    num_class: int = 0,
    outputs: int = 1,
    cancelled: Callable[[], bool] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> CrossValidation:
    """Early-stopped fits on each fold; ``targets(rows)`` gives the training targets of table rows.

    Each fold's model also answers its validation block (raw output: z-scored angles or probabilities,
    ``outputs`` columns): these out-of-fold answers choose what else is chosen on validation (smoothing).
    """
    reports, rows, fold_of, predictions = [], [], [], []
    for i, (train, val) in enumerate(folds):
        if progress:
            progress(i, len(folds), "validating")
        fit = boost.fit(
            config,
            kind,
            features[train],
            targets(train),
            features[val],
            targets(val),
            num_class=num_class,
            cancelled=cancelled,
        )
        rows.append(val)
        fold_of.append(np.full(len(val), i))
        predictions.append(boost.predict(fit.booster, features[val], outputs))
        history = fit.history.get("val", [])
        score = history[fit.best_round - 1] if len(history) >= fit.best_round else None
        reports.append(
            {
                "train_windows": len(train),
                "val_windows": len(val),
                "best_round": fit.best_round,
                "val_" + fit.metric: score,
            }  # fmt: skip
        )
    rounds = max(1, int(np.median([r["best_round"] for r in reports])))
    return CrossValidation(rounds, reports, np.concatenate(rows), np.concatenate(fold_of), np.vstack(predictions))
