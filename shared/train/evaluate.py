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
    traces: list[dict[str, Any]] = []
    if task.kind == "regression":
        held = table.take(split.rows(name))
        sessions = []
        for session in list(dict.fromkeys(held.ids["session"]))[:TRACE_SESSIONS]:
            part = held.take(held.ids["session"] == session)
            sessions.append((str(session), part.t_end, part.y, run_model(models[MODEL], part)))
        traces = session_traces(sessions, task.names)
    return draw_plots(outdir, task, scores["overall"], traces, f"{name} sessions")


TRACE_SESSIONS = 3  # panels in traces.png
TRACE_JOINTS = 3  # joints per panel
TRACE_SECONDS = 20.0  # of each session, from its first window


def draw_plots(
    outdir: str, task: Task, overall: dict[str, dict[str, Any]], traces: list[dict[str, Any]], where: str
) -> list[str]:
    """The report's PNGs from scores already computed: ``joint_errors.png`` (MAE per joint, one bar per
    model in ``overall``) and ``traces.png`` (``traces``, from :func:`session_traces`) for regression,
    ``confusion.png`` of the model for classification. ``where`` names the windows in the titles.
    Training's held-out sessions and calibration's windows both go through here."""
    os.makedirs(outdir, exist_ok=True)
    files = []
    if task.kind == "regression":
        errors = {label: {j: s["mae_deg"] for j, s in result["per_joint"].items()} for label, result in overall.items()}
        files.append(
            plots.plot_joint_errors(os.path.join(outdir, "joint_errors.png"), errors, f"MAE per joint ({where})")
        )
        if traces:
            title = f"predicted (dashed) vs true angles, {where}"
            files.append(plots.plot_traces(os.path.join(outdir, "traces.png"), traces, title))
    else:
        confusion = overall[MODEL]["confusion"]
        files.append(plots.plot_confusion(os.path.join(outdir, "confusion.png"), confusion, task.names, where))
    return files


def session_traces(
    sessions: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    names: list[str],
    joints: int = TRACE_JOINTS,
    seconds: float = TRACE_SECONDS,
) -> list[dict[str, Any]]:
    """Traces for :func:`plots.plot_traces` from ``(name, t_end, true, pred)`` per session (radians,
    rows in time order): each session's first ``seconds``, in degrees, of the ``joints`` joints that
    move most over all the sessions together. One choice for every panel, so a joint keeps its name,
    colour and legend entry from panel to panel."""
    cut = []
    for name, t_end, true, pred in sessions:
        t = np.asarray(t_end, dtype=np.float64) - float(t_end[0]) if len(t_end) else np.asarray(t_end)
        keep = t <= seconds
        if keep.sum() >= 2:
            cut.append((name, t[keep], np.asarray(true)[keep], np.asarray(pred)[keep]))
    if not cut:
        return []
    spread = np.std(np.concatenate([true for _, _, true, _ in cut]), axis=0)
    top = np.argsort(-spread, kind="stable")[: min(joints, len(names))]
    return [
        {
            "name": name,
            "t": t,
            "true": np.degrees(true[:, top]),
            "pred": np.degrees(pred[:, top]),
            "joints": [names[i] for i in top],
        }
        for name, t, true, pred in cut
    ]
