"""Evaluation metrics as JSON-ready dicts: joint-angle regression, gesture classification, per-group splits.

The figures are scikit-learn's (``sklearn.metrics``); this module checks the inputs, leaves out what is
undefined and writes the report's layout. Angles come in radians and are reported in degrees. Every
number is a plain Python ``float``/``int`` (or ``None`` where it is undefined), so results go straight
into ``json.dumps``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    precision_recall_fscore_support,
    r2_score,
)

from emgpose.errors import InvalidInput
from emgpose.formats.joints import finger_of

DEG_DIGITS = 4  # degrees: 1e-4 deg is far below any measurement error
UNIT_DIGITS = 6  # R², accuracy, F1, log loss
PROBA_FLOOR = 1e-15  # log loss: a true class given probability 0 costs -log(1e-15) = 34.5, not infinity
PROBA_SUM_TOLERANCE = 1e-4  # |row sum - 1| allowed in proba: float32 softmax outputs stay far inside it


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

    truth_deg, pred_deg = np.rad2deg(truth), np.rad2deg(pred)
    mae = mean_absolute_error(truth_deg, pred_deg, multioutput="raw_values")  # (J,): every joint has n rows,
    mse = mean_squared_error(truth_deg, pred_deg, multioutput="raw_values")  # so their mean is the overall one
    # R² is undefined for a joint whose truth is constant (zero variance); it is left out, not forced to 0/1.
    varying = np.ptp(truth, axis=0) > 0
    r2 = np.full(len(names), np.nan)
    if varying.any():
        r2[varying] = r2_score(truth[:, varying], pred[:, varying], multioutput="raw_values")

    per_joint = {
        name: {
            "mae_deg": _round(mae[j], DEG_DIGITS),
            "rmse_deg": _round(np.sqrt(mse[j]), DEG_DIGITS),
            "r2": _round(r2[j], UNIT_DIGITS) if varying[j] else None,
        }
        for j, name in enumerate(names)
    }

    fingers: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        finger = finger_of(name)
        if finger is not None:
            fingers.setdefault(finger, []).append(j)
    per_finger = {finger: _round(mae[cols].mean(), DEG_DIGITS) for finger, cols in fingers.items()}

    return {
        "windows": n_used,
        "excluded_windows": excluded,
        "mae_deg": _round(mae.mean(), DEG_DIGITS),
        "rmse_deg": _round(np.sqrt(mse.mean()), DEG_DIGITS),
        "r2_mean": _round(r2[varying].mean(), UNIT_DIGITS) if varying.any() else None,
        "per_joint": per_joint,
        "per_finger": per_finger,
    }


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, macro F1, log loss, per-class precision/recall/F1 and the confusion matrix (rows = true).

    The predicted class is the most probable one. A class's precision (recall) is 0 when it is never
    predicted (never true); macro F1 averages over the classes that are true or predicted at least once,
    so a class absent from both neither helps nor hurts. The log loss floors the true class's
    probability at ``PROBA_FLOOR``, so one confident mistake costs 34.5 rather than infinity.
    """
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
    if proba.size and (proba.min() < 0 or proba.max() > 1):
        raise InvalidInput(f"proba must lie in [0, 1]; got range [{proba.min():.6g}, {proba.max():.6g}]")
    sums = proba.sum(axis=1)
    if np.any(np.abs(sums - 1.0) > PROBA_SUM_TOLERANCE):
        worst = float(sums[np.argmax(np.abs(sums - 1.0))])
        raise InvalidInput(f"proba rows must sum to 1 (within {PROBA_SUM_TOLERANCE:g}); a row sums to {worst:.6g}")

    n = int(labels.shape[0])
    if n == 0:
        return {
            "windows": 0,
            "accuracy": None,
            "macro_f1": None,
            "log_loss": None,
            "per_class": {},
            "confusion": np.zeros((n_classes, n_classes), dtype=np.int64).tolist(),
            "class_names": names,
        }
    classes = np.arange(n_classes)
    predicted = proba.argmax(axis=1)
    # With one class the matrix is [[n]]; scikit-learn would warn that a (1, 1) matrix may lack labels.
    confusion = confusion_matrix(labels, predicted, labels=classes) if n_classes > 1 else np.array([[n]])
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, average=None, zero_division=0.0
    )
    per_class = {
        name: {
            "precision": _round(precision[c], UNIT_DIGITS),
            "recall": _round(recall[c], UNIT_DIGITS),
            "f1": _round(f1[c], UNIT_DIGITS),
            "support": int(support[c]),
        }
        for c, name in enumerate(names)
    }
    present = np.union1d(labels, predicted)
    macro_f1 = f1_score(labels, predicted, labels=present, average="macro", zero_division=0.0)
    return {
        "windows": n,
        "accuracy": _round(accuracy_score(labels, predicted), UNIT_DIGITS),
        "macro_f1": _round(macro_f1, UNIT_DIGITS),
        "log_loss": _round(_log_loss(labels, proba / sums[:, None], n_classes), UNIT_DIGITS),
        "per_class": per_class,
        "confusion": confusion.astype(np.int64).tolist(),
        "class_names": names,
    }


def _log_loss(labels: np.ndarray, proba: np.ndarray, n_classes: int) -> float:
    """Mean ``-log(max(p_true, PROBA_FLOOR))`` over rows whose probabilities sum to 1.

    scikit-learn's own clip (the float64 epsilon, 2.2e-16) lies below the floor, so it never binds. With
    a single class every row gives it probability 1, and the loss is 0 (scikit-learn would read a
    one-column ``proba`` as the positive class of a binary problem).
    """
    if n_classes == 1:
        return 0.0
    return float(log_loss(labels, np.maximum(proba, PROBA_FLOOR), labels=np.arange(n_classes)))


def grouped(groups: np.ndarray, fn: Callable[[np.ndarray], dict]) -> dict[str, dict]:
    """``{g: fn(groups == g)}`` for every distinct non-empty string ``g`` in ``groups``, keys sorted."""
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise InvalidInput(f"groups must be 1-D (n,); got shape {groups.shape}")
    values = sorted({g for g in groups.tolist() if isinstance(g, str) and g})
    return {g: fn(np.asarray(groups == g, dtype=bool)) for g in values}
