"""Scoring a model beside its baselines on the held-out splits, and the report (JSON + PNG plots).

Regression is scored on joint angles in radians turned into degrees (the emg2pose metric: mean absolute
error over all joints); classification on accuracy and macro F1. Every figure is computed for the whole
split and, where the metadata names them, per generalization group (held-out user, stage, both).
Windows touching IK failures never reach this point: preprocessing drops them and counts them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from emgpose.errors import InvalidInput
from emgpose.preprocess.normalize import NormStats
from emgpose.train import baselines, boost, metrics, plots
from emgpose.train.data import Split, WindowTable
from emgpose.train.smoothing import smooth_rows

REPORT_FORMAT = "emgpose.report/1"
MODEL = "xgboost"
Predict = Callable[[np.ndarray], np.ndarray]  # features -> radians (regression) or probabilities


@dataclass
class Task:
    """What is learnt and how it is scored."""

    kind: str  # "regression" | "classification"
    names: list[str]  # joints or classes
    stats: NormStats  # target scaling (regression)

    @property
    def key_metric(self) -> tuple[str, bool]:
        """The figure a verdict compares, and whether lower is better."""
        return ("mae_deg", True) if self.kind == "regression" else ("macro_f1", False)

    def targets(self, table: WindowTable) -> np.ndarray:
        """What the booster learns: z-scored angles, or class indices."""
        if self.kind == "regression":
            return self.stats.scale_targets(table.y).astype(np.float32)
        if table.label is None:
            raise InvalidInput("classification needs a dataset with gesture labels (column 'label')")
        bad = (table.label < 0) | (table.label >= len(self.names))
        if bad.any():
            raise InvalidInput(
                f"labels must lie in [0, {len(self.names)}) to match the dataset's label_names; "
                f"found {np.unique(table.label[bad])[:5].tolist()}"
            )
        return table.label

    def score(self, table: WindowTable, output: np.ndarray) -> dict[str, Any]:
        if self.kind == "regression":
            return metrics.regression_metrics(table.y, output, self.names)
        return metrics.classification_metrics(table.label, output, self.names)

    def booster_predictor(self, booster: Any) -> Predict:
        outputs = len(self.names)
        if self.kind == "regression":
            return lambda x: self.stats.unscale_targets(boost.predict(booster, x, outputs))
        return lambda x: boost.predict(booster, x, outputs)


class SmoothedPredictor:
    """The booster's answers smoothed per session in time (:mod:`emgpose.train.smoothing`), as deployed."""

    def __init__(self, predict: Predict, alpha: float) -> None:
        self.predict, self.alpha = predict, alpha

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return self.predict(features)

    def on_table(self, table: WindowTable) -> np.ndarray:
        return smooth_rows(self.predict(table.features), table.ids["session"], table.window_end, self.alpha)


def run_model(model: Predict, table: WindowTable) -> np.ndarray:
    """A model's answers on a table's rows; a model that smooths over time gets the rows' sessions and order."""
    on_table = getattr(model, "on_table", None)
    return on_table(table) if on_table is not None else model(table.features)


def fit_baselines(task: Task, train: WindowTable, val: WindowTable | None) -> dict[str, Predict]:
    """The constant and the linear baseline, fitted on the same training rows as the model."""
    x, y = train.features, task.targets(train)
    has_val = val is not None and len(val) > 0
    xv, yv = (val.features, task.targets(val)) if has_val else (None, None)
    if task.kind == "regression":
        mean = baselines.MeanRegressor().fit(x, y)
        ridge = baselines.RidgeRegressor().fit(x, y, xv, yv)
        return {
            "ridge": lambda f: task.stats.unscale_targets(ridge.predict(f)),
            "mean": lambda f: task.stats.unscale_targets(mean.predict(f)),
        }
    n = len(task.names)
    majority = baselines.MajorityClassifier(n).fit(x, y)
    logistic = baselines.LogisticClassifier(n).fit(x, y, xv, yv)
    return {"logistic": logistic.predict_proba, "majority": majority.predict_proba}


def score_models(task: Task, table: WindowTable, models: dict[str, Predict]) -> dict[str, Any]:
    """Every model on ``table``: overall and per generalization group, plus the verdict."""
    outputs = {label: run_model(fn, table) for label, fn in models.items()}
    overall = {label: task.score(table, out) for label, out in outputs.items()}
    groups = table.ids["generalization"].astype(str)
    by_group = metrics.grouped(groups, lambda m: {k: task.score(table.take(m), out[m]) for k, out in outputs.items()})
    result = {"windows": len(table), "overall": overall, "by_generalization": by_group}
    result["verdict"] = {"overall": verdict(task, overall), **{g: verdict(task, s) for g, s in by_group.items()}}
    return result


def verdict(task: Task, scores: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Whether the model beats every baseline on the key metric, and by how much."""
    key, lower = task.key_metric
    mine = scores[MODEL].get(key)
    others = {k: v.get(key) for k, v in scores.items() if k != MODEL and v.get(key) is not None}
    if mine is None or not others:
        return {"metric": key, "beats_baselines": None}
    best_label = min(others, key=others.get) if lower else max(others, key=others.get)
    best = others[best_label]
    beats = mine < best if lower else mine > best
    return {
        "metric": key,
        "model": mine,
        "best_baseline": best_label,
        "baseline": best,
        "beats_baselines": bool(beats),
        "improvement": round((best - mine) / best if lower else mine - best, 4) if best else None,
    }


def evaluate(
    task: Task, table: WindowTable, split: Split, models: dict[str, Predict], splits: tuple[str, ...] = ("val", "test")
) -> dict[str, Any]:
    """Scores on each held-out split that has rows."""
    return {name: score_models(task, table.take(split.rows(name)), models) for name in splits if split.rows(name).any()}


def headline(evaluation: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The split a one-line summary should quote: test where there is one, else validation."""
    for name in ("test", "val"):
        if name in evaluation:
            return name, evaluation[name]
    return None


def report(
    *,
    task: Task,
    model: dict[str, Any],
    dataset: dict[str, Any],
    split: Split,
    evaluation: dict[str, Any],
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "format": REPORT_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "task": task.kind,
        "model": model,
        "dataset": dataset,
        "split": {"rules": split.rules, "windows": split.counts()},
        "training": training or {},
        "evaluation": evaluation,
    }


def write_plots(
    outdir: str, task: Task, table: WindowTable, split: Split, models: dict[str, Predict], evaluation: dict[str, Any]
) -> list[str]:
    """PNG plots next to the report: traces, per-joint errors (regression) or the confusion matrix."""
    chosen = headline(evaluation)
    if chosen is None:
        return []
    name, scores = chosen
    os.makedirs(outdir, exist_ok=True)
    held = table.take(split.rows(name))
    files = []
    if task.kind == "regression":
        errors = {
            label: {j: s["mae_deg"] for j, s in result["per_joint"].items()}
            for label, result in scores["overall"].items()
        }
        files.append(
            plots.plot_joint_errors(os.path.join(outdir, "joint_errors.png"), errors, f"MAE per joint ({name})")
        )
        traces = _traces(held, models[MODEL], task.names)
        if traces:
            title = f"predicted (dashed) vs true angles, {name} sessions"
            files.append(plots.plot_traces(os.path.join(outdir, "traces.png"), traces, title))
    else:
        confusion = scores["overall"][MODEL]["confusion"]
        files.append(plots.plot_confusion(os.path.join(outdir, "confusion.png"), confusion, task.names, f"{name}"))
    return files


def _traces(held: WindowTable, model: Predict, names: list[str], sessions: int = 3, seconds: float = 20.0) -> list:
    """Up to ``sessions`` sessions' first ``seconds``: the three joints that move most, in degrees."""
    out = []
    for session in list(dict.fromkeys(held.ids["session"]))[:sessions]:
        part = held.take(held.ids["session"] == session)
        t = part.t_end - part.t_end[0]
        part = part.take(t <= seconds)
        if len(part) < 2:
            continue
        top = np.argsort(-np.std(part.y, axis=0))[: min(3, len(names))]
        pred = run_model(model, part)
        out.append(
            {
                "name": str(session),
                "t": part.t_end - part.t_end[0],
                "true": np.degrees(part.y[:, top]),
                "pred": np.degrees(pred[:, top]),
                "joints": [names[i] for i in top],
            }
        )
    return out
