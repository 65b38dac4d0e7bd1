"""XGBoost on the window features: the parameters, one fit function, progress and cancellation hooks.

Regression learns the z-scored joint angles (all joints at once); classification learns class
probabilities (``multi:softprob``, also for two classes, so there is one code path). ``device`` is the
only thing that differs between CPU (``hist``) and GPU (``hist`` on ``cuda``) training.

Regression may instead train with our weighted pseudo-Huber objective (``objective="pseudo_huber"``,
:mod:`emgpose.train.objective`: the CUDA kernel on ``cuda``, its NumPy twin on ``cpu``), evaluated by the
per-joint MAE. Features and targets may be CuPy arrays: the matrices are then built on the device
(``docs/xgboost-device.md`` lists what XGBoost still copies to the host).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import xgboost as xgb
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from emgpose.devices import usable_cpus
from emgpose.errors import InvalidInput
from emgpose.train.objective import JointMAE, PseudoHuberObjective

log = logging.getLogger(__name__)

Task = Literal["regression", "classification"]
Strategy = Literal["one_output_per_tree", "multi_output_tree"]
Objective = Literal["squared_error", "pseudo_huber"]
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
    nthread: int | None = Field(
        None, ge=1, description="CPU threads (default: the CPUs this process may use, cgroup quota included)"
    )
    adaptation: Literal["auto", "none", "session"] = Field(
        "auto",
        description="per-session feature normalisation from unlabelled EMG (emgpose.train.adaptation): auto "
        "keeps it where it scores better on validation windows of held-out users",
    )
    objective: Objective = Field("squared_error", description="regression loss (classification: multi:softprob)")
    huber_delta: float = Field(1.0, gt=0, allow_inf_nan=False, description="pseudo-Huber delta, z-scored units")
    joint_weights: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = Field(
        None, min_length=1, description="pseudo_huber only: one weight per joint (default: all 1)"
    )

    @model_validator(mode="after")
    def _weights_need_pseudo_huber(self) -> BoostConfig:
        if self.joint_weights is not None:
            if self.objective != "pseudo_huber":
                raise ValueError("joint_weights applies to objective=pseudo_huber only")
            if not any(w > 0 for w in self.joint_weights):
                raise ValueError("joint_weights must hold at least one weight > 0")
        return self

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
        params["nthread"] = self.nthread or usable_cpus()  # never XGBoost's all-cores default
        if task == "regression" and self.objective == "pseudo_huber":
            # The gradients come from our objective (fit's obj=); naming XGBoost's own pseudo-Huber here
            # records the loss and its delta in the saved model, and the metric is fit's custom MAE.
            params.update(
                objective="reg:pseudohubererror",
                huber_slope=self.huber_delta,
                disable_default_eval_metric=True,
                multi_strategy=self.multi_strategy,
            )
        elif task == "regression":
            params.update(objective="reg:squarederror", eval_metric="rmse", multi_strategy=self.multi_strategy)
        elif self.objective == "pseudo_huber":
            raise InvalidInput("objective=pseudo_huber is for regression only; classification trains multi:softprob")
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


def on_device(array: Any) -> bool:
    """True for a CuPy (or any ``__cuda_array_interface__``) array."""
    return hasattr(array, "__cuda_array_interface__")


def _float32(x: Any) -> Any:
    """``x`` as C-contiguous float32 on its own side: NumPy on the host, CuPy on the device (no copy across)."""
    if on_device(x):
        import cupy

        return cupy.ascontiguousarray(x, dtype=cupy.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


def matrix(x: Any, y: Any | None = None, ref: xgb.DMatrix | None = None) -> xgb.DMatrix:
    """A histogram-ready matrix (quantised once, the memory-light form for ``hist``). ``x`` and ``y`` may
    be CuPy arrays (features straight from our kernels): XGBoost then reads them on the device."""
    return xgb.QuantileDMatrix(_float32(x), label=y, ref=ref)


def _joints(y: Any) -> int:
    return int(y.shape[1]) if y.ndim == 2 else 1


def _custom_objective(
    config: BoostConfig, task: Task, y_train: Any
) -> tuple[PseudoHuberObjective | None, JointMAE | None]:
    """Our objective and metric for ``objective="pseudo_huber"`` (``(None, None)`` otherwise)."""
    if config.objective != "pseudo_huber" or task != "regression":  # xgb_params refuses classification
        return None, None
    joints = _joints(y_train)
    if config.joint_weights is not None and len(config.joint_weights) != joints:
        raise InvalidInput(f"joint_weights has {len(config.joint_weights)} values but the targets have {joints} joints")
    objective = PseudoHuberObjective(y_train, config.huber_delta, config.joint_weights, device=config.device)
    return objective, JointMAE(config.device)


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
    objective, custom_metric = _custom_objective(config, task, y_train)
    if objective is not None and init_model is None:
        params["base_score"] = objective.intercept()  # a continued model keeps its own intercept
    dtrain = matrix(x_train, y_train)
    evals = [(dtrain, "train")]
    has_val = x_val is not None and y_val is not None and len(x_val) > 0
    if has_val:
        evals.append((matrix(x_val, y_val, ref=dtrain), "val"))
    if custom_metric is not None:
        custom_metric.add(dtrain, y_train)
        if has_val:
            custom_metric.add(evals[1][0], y_val)
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
        obj=objective,
        custom_metric=custom_metric,
    )
    if hooks.stopped_by_cancel:
        raise Cancelled(f"training cancelled after {booster.num_boosted_rounds()} rounds")
    rounds_run = booster.num_boosted_rounds()
    best = rounds_run
    if has_val and booster.attr("best_iteration") is not None:
        best = int(booster.attr("best_iteration")) + 1
        booster = booster[:best]
    metric = custom_metric.name if custom_metric is not None else params["eval_metric"]
    seconds = time.perf_counter() - started
    if prior:  # continued boosting: `best` counts the starting model's rounds too
        log.info("boosted %d rounds on top of the model's %d; kept %d of them (%d in all) in %.1f s",
                 rounds_run - prior, prior, best - prior, best, seconds)  # fmt: skip
    else:
        log.info("boosted %d rounds; kept the first %d (the best on validation) in %.1f s", rounds_run, best, seconds)
    return FitResult(
        booster=booster,
        best_round=best,
        rounds_run=rounds_run,
        history={name: [float(v) for v in values[metric]] for name, values in history.items()},
        metric=metric,
        seconds=round(time.perf_counter() - started, 3),
    )


def predict(booster: xgb.Booster, x: Any, outputs: int) -> np.ndarray:
    """Raw model output: z-scored angles ``(n, J)`` or class probabilities ``(n, C)``, float64 NumPy.

    ``x`` may be a CuPy array: XGBoost predicts on the device (with a ``cuda`` booster) and only the
    ``(n, outputs)`` result comes back to the host.
    """
    if len(x) == 0:
        return np.zeros((0, outputs))
    out = booster.inplace_predict(_float32(x))
    out = np.asarray(out.get() if on_device(out) else out, dtype=np.float64)
    return out[:, None] if out.ndim == 1 else out
