"""XGBoost on the window features: the parameters, one fit function, progress and cancellation hooks.

Regression learns the z-scored joint angles (all joints at once); classification learns class
probabilities (``multi:softprob``, also for two classes, so there is one code path). ``device`` is the
only thing that differs between CPU (``hist``) and GPU (``hist`` on ``cuda``) training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import xgboost as xgb
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emgpose.errors import InvalidInput

log = logging.getLogger(__name__)

Task = Literal["regression", "classification"]
Strategy = Literal["one_output_per_tree", "multi_output_tree"]
RoundProgress = Callable[[int, int, str], None]  # (rounds done, rounds planned, stage)


class BoostConfig(BaseModel):
    """Training parameters. The defaults are what ``docs/results.md`` measured as a good trade-off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: Literal["cpu", "cuda"] = "cpu"
    num_rounds: int = Field(400, ge=1, le=100_000)
    learning_rate: float = Field(0.1, gt=0, le=1)
    max_depth: int = Field(6, ge=1, le=16)
    min_child_weight: float = Field(1.0, ge=0)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    max_bin: int = Field(256, ge=2, le=1024)
    early_stopping_rounds: int = Field(30, ge=1)
    multi_strategy: Strategy = "one_output_per_tree"
    seed: int = 0
    nthread: int | None = Field(None, ge=1, description="CPU threads (default: all cores)")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "training parameters") -> BoostConfig:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors())
            raise InvalidInput(f"{source}: {problems}") from None

    def xgb_params(self, task: Task, num_class: int = 0) -> dict[str, Any]:
        params: dict[str, Any] = {
            "tree_method": "hist",
            "device": self.device,
            "learning_rate": self.learning_rate,
            "max_depth": self.max_depth,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "reg_lambda": self.reg_lambda,
            "max_bin": self.max_bin,
            "seed": self.seed,
        }
        if self.nthread:
            params["nthread"] = self.nthread
        if task == "regression":
            params.update(objective="reg:squarederror", eval_metric="rmse", multi_strategy=self.multi_strategy)
        else:
            params.update(objective="multi:softprob", eval_metric="mlogloss", num_class=num_class)
        return params


class Cancelled(Exception):
    """Raised out of :func:`fit` when the ``cancelled`` hook said so between two rounds."""


@dataclass
class FitResult:
    booster: xgb.Booster  # trimmed to the best round when early stopping ran
    best_round: int  # rounds kept
    rounds_run: int
    history: dict[str, list[float]] = field(default_factory=dict)  # "train"/"val" -> metric per round
    metric: str = ""
    seconds: float = 0.0


class _Hooks(xgb.callback.TrainingCallback):
    """Reports each round, checkpoints every ``every`` rounds, and stops when cancelled."""

    def __init__(
        self,
        total: int,
        progress: RoundProgress | None,
        cancelled: Callable[[], bool] | None,
        checkpoint: Callable[[xgb.Booster], None] | None,
        every: int,
    ) -> None:
        super().__init__()
        self.total, self.progress, self.cancelled = total, progress, cancelled
        self.checkpoint, self.every = checkpoint, every
        self.stopped_by_cancel = False

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: dict) -> bool:
        done = model.num_boosted_rounds()
        if self.progress:
            self.progress(done, self.total, "boosting")
        if self.checkpoint and done % self.every == 0:
            self.checkpoint(model)
        if self.cancelled and self.cancelled():
            self.stopped_by_cancel = True
            return True
        return False


def matrix(x: np.ndarray, y: np.ndarray | None = None, ref: xgb.DMatrix | None = None) -> xgb.DMatrix:
    """A histogram-ready matrix (quantised once, the memory-light form for ``hist``)."""
    return xgb.QuantileDMatrix(np.ascontiguousarray(x, dtype=np.float32), label=y, ref=ref)


def fit(
    config: BoostConfig,
    task: Task,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    *,
    num_class: int = 0,
    init_model: xgb.Booster | None = None,
    progress: RoundProgress | None = None,
    cancelled: Callable[[], bool] | None = None,
    checkpoint: Callable[[xgb.Booster], None] | None = None,
    checkpoint_every: int = 25,
) -> FitResult:
    """Boosts up to ``config.num_rounds`` new rounds (after ``init_model``'s, when continuing).

    With validation data, training stops ``early_stopping_rounds`` after the best validation score
    and the returned booster keeps the rounds up to that best one.
    """
    if len(x_train) == 0:
        raise InvalidInput("no training windows: the training split is empty")
    started = time.perf_counter()
    params = config.xgb_params(task, num_class)
    dtrain = matrix(x_train, y_train)
    evals = [(dtrain, "train")]
    has_val = x_val is not None and y_val is not None and len(x_val) > 0
    if has_val:
        evals.append((matrix(x_val, y_val, ref=dtrain), "val"))
    prior = init_model.num_boosted_rounds() if init_model is not None else 0
    hooks = _Hooks(prior + config.num_rounds, progress, cancelled, checkpoint, checkpoint_every)
    history: dict[str, dict[str, list[float]]] = {}
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=config.num_rounds,
        evals=evals,
        early_stopping_rounds=config.early_stopping_rounds if has_val else None,
        evals_result=history,
        verbose_eval=False,
        xgb_model=init_model,
        callbacks=[hooks],
    )
    if hooks.stopped_by_cancel:
        raise Cancelled(f"training cancelled after {booster.num_boosted_rounds()} rounds")
    rounds_run = booster.num_boosted_rounds()
    best = rounds_run
    if has_val and booster.attr("best_iteration") is not None:
        best = int(booster.attr("best_iteration")) + 1
        booster = booster[:best]
    metric = params["eval_metric"]
    log.info("boosted %d rounds (kept %d) in %.1f s", rounds_run - prior, best, time.perf_counter() - started)
    return FitResult(
        booster=booster,
        best_round=best,
        rounds_run=rounds_run,
        history={name: [float(v) for v in values[metric]] for name, values in history.items()},
        metric=metric,
        seconds=round(time.perf_counter() - started, 3),
    )


def predict(booster: xgb.Booster, x: np.ndarray, outputs: int) -> np.ndarray:
    """Raw model output: z-scored angles ``(n, J)`` or class probabilities ``(n, C)``, float64."""
    if len(x) == 0:
        return np.zeros((0, outputs))
    out = booster.inplace_predict(np.ascontiguousarray(x, dtype=np.float32))
    out = np.asarray(out, dtype=np.float64)
    return out[:, None] if out.ndim == 1 else out
