"""Evaluation metrics as JSON-ready dicts: joint-angle regression, gesture classification, per-group splits.

Angles come in radians and are reported in degrees. Every number is a plain Python ``float``/``int``
(or ``None`` where it is undefined), so results go straight into ``json.dumps``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from emgpose.errors import InvalidInput
from emgpose.formats.joints import finger_of

DEG_DIGITS = 4  # degrees: 1e-4 deg is far below any measurement error
UNIT_DIGITS = 6  # R², accuracy, F1, log loss
PROBA_FLOOR = 1e-15


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _check_names(names: Sequence[str], what: str) -> list[str]:
    names = [str(n) for n in names]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise InvalidInput(f"{what} must be unique; repeated: {dupes}")
    return names


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, joint_names: Sequence[str]) -> dict:
    """MAE/RMSE (degrees) and R² of joint angles given in radians, overall, per joint and per finger.

    Rows whose truth has any non-finite value are left out and counted in ``excluded_windows``.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    names = _check_names(joint_names, "joint_names")
    if y_true.ndim != 2:
        raise InvalidInput(f"y_true must be 2-D (n, J); got shape {y_true.shape}")
    if y_pred.shape != y_true.shape:
        raise InvalidInput(f"y_pred must have the shape of y_true {y_true.shape}; got {y_pred.shape}")
    if y_true.shape[1] != len(names):
        raise InvalidInput(f"y_true has {y_true.shape[1]} joints but joint_names has {len(names)}")

    keep = np.isfinite(y_true).all(axis=1)
    n_used = int(keep.sum())
    excluded = int(y_true.shape[0] - n_used)
    if n_used == 0:
        return {
            "windows": 0,
            "excluded_windows": excluded,
            "mae_deg": None,
            "rmse_deg": None,
            "r2_mean": None,
            "per_joint": {},
            "per_finger": {},
        }
    truth, pred = y_true[keep], y_pred[keep]
    if not np.isfinite(pred).all():
        bad = int((~np.isfinite(pred).all(axis=1)).sum())
        raise InvalidInput(f"y_pred must be finite where y_true is; {bad} row(s) hold NaN/inf")

    err_deg = np.rad2deg(pred - truth)
    abs_err = np.abs(err_deg)
    sq_err = err_deg**2
    sse = ((pred - truth) ** 2).sum(axis=0)
    sst = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
    constant = np.ptp(truth, axis=0) == 0  # SST is zero in exact arithmetic (the mean may round)

    per_joint: dict[str, dict] = {}
    r2_values: list[float] = []
    for j, name in enumerate(names):
        r2 = None if constant[j] else float(1.0 - sse[j] / sst[j])
        if r2 is not None:
            r2_values.append(r2)
        per_joint[name] = {
            "mae_deg": _round(abs_err[:, j].mean(), DEG_DIGITS),
            "rmse_deg": _round(np.sqrt(sq_err[:, j].mean()), DEG_DIGITS),
            "r2": _round(r2, UNIT_DIGITS),
        }

    fingers: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        finger = finger_of(name)
        if finger is not None:
            fingers.setdefault(finger, []).append(j)
    per_finger = {finger: _round(abs_err[:, cols].mean(), DEG_DIGITS) for finger, cols in fingers.items()}

    return {
        "windows": n_used,
        "excluded_windows": excluded,
        "mae_deg": _round(abs_err.mean(), DEG_DIGITS),
        "rmse_deg": _round(np.sqrt(sq_err.mean()), DEG_DIGITS),
        "r2_mean": _round(np.mean(r2_values), UNIT_DIGITS) if r2_values else None,
        "per_joint": per_joint,
        "per_finger": per_finger,
    }


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, macro F1, log loss, per-class precision/recall/F1 and the confusion matrix (rows = true)."""
    names = _check_names(class_names, "class_names")
    n_classes = len(names)
    proba = np.asarray(proba, dtype=np.float64)
    labels = np.asarray(y_true)
    if n_classes == 0:
        raise InvalidInput("class_names must name at least one class; got none")
    if labels.ndim != 1:
        raise InvalidInput(f"y_true must be 1-D (n,); got shape {labels.shape}")
    if proba.ndim != 2 or proba.shape != (labels.shape[0], n_classes):
        raise InvalidInput(f"proba must have shape (n, C) = {(labels.shape[0], n_classes)}; got {proba.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not (np.issubdtype(labels.dtype, np.number) and np.all(np.isfinite(labels)) and np.all(labels % 1 == 0)):
            raise InvalidInput(f"y_true must hold integer class indices; got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise InvalidInput(f"y_true values must lie in [0, {n_classes}); got range [{labels.min()}, {labels.max()}]")
    if not np.isfinite(proba).all():
        raise InvalidInput("proba must be finite; it holds NaN/inf")

    n = int(labels.shape[0])
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    if n == 0:
        return {
            "windows": 0,
            "accuracy": None,
            "macro_f1": None,
            "log_loss": None,
            "per_class": {},
            "confusion": confusion.tolist(),
            "class_names": names,
        }
    predicted = proba.argmax(axis=1)
    np.add.at(confusion, (labels, predicted), 1)
    true_pos = np.diag(confusion)
    support = confusion.sum(axis=1)  # true count per class
    called = confusion.sum(axis=0)  # predicted count per class

    per_class: dict[str, dict] = {}
    f1_present: list[float] = []
    for c, name in enumerate(names):
        tp = int(true_pos[c])
        precision = tp / int(called[c]) if called[c] else 0.0
        recall = tp / int(support[c]) if support[c] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if support[c] or called[c]:
            f1_present.append(f1)
        per_class[name] = {
            "precision": _round(precision, UNIT_DIGITS),
            "recall": _round(recall, UNIT_DIGITS),
            "f1": _round(f1, UNIT_DIGITS),
            "support": int(support[c]),
        }

    p_true = np.maximum(proba[np.arange(n), labels], PROBA_FLOOR)
    return {
        "windows": n,
        "accuracy": _round(true_pos.sum() / n, UNIT_DIGITS),
        "macro_f1": _round(np.mean(f1_present), UNIT_DIGITS),
        "log_loss": _round(-np.log(p_true).mean(), UNIT_DIGITS),
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "class_names": names,
    }


def grouped(groups: np.ndarray, fn: Callable[[np.ndarray], dict]) -> dict[str, dict]:
    """``{g: fn(groups == g)}`` for every distinct non-empty string ``g`` in ``groups``, keys sorted."""
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise InvalidInput(f"groups must be 1-D (n,); got shape {groups.shape}")
    values = sorted({g for g in groups.tolist() if isinstance(g, str) and g})
    return {g: fn(np.asarray(groups == g, dtype=bool)) for g in values}
