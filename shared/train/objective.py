"""What XGBoost needs to train with our pseudo-Huber loss: a custom objective and a per-joint MAE metric.

Each has a plain NumPy twin (used for CPU training and as the tests' reference) and a device path: on
``cuda`` the kernels of ``kernels/objective.cu`` run on CuPy arrays. XGBoost 3.x hands a custom objective
and a custom metric their predictions as NumPy arrays (a copy it makes from the device, see
``docs/xgboost-device.md``), but it accepts CuPy gradients, so on ``cuda`` the labels live on the device
for the whole training, the predictions go up once per round, and the gradients never come down.

Targets are the z-scored joint angles ``(n, J)``: ``delta`` and the metric are in z-scored units unless
the metric is given the targets' standard deviations (radians per z-unit), then it reports degrees.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import xgboost as xgb

from emgpose.formats.joints import finger_of

Device = Literal["cpu", "cuda"]
MIN_HESSIAN = 1e-6  # XGBoost's floor on the summed Hessian when it fits the intercept (a Newton step)


def pseudo_huber_twin(
    pred: np.ndarray,
    label: np.ndarray,
    delta: float,
    joint_weights: Sequence[float] | np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(grad, hess)`` of the weighted pseudo-Huber loss, float64 ``(n, J)``: for ``r = pred - label``
    and ``s = 1 + (r / delta)**2``, ``grad = w r / sqrt(s)`` and ``hess = w / s**1.5`` with
    ``w = joint_weights[j] * sample_weight[i]`` (each 1 when ``None``). The kernel's twin."""
    r = np.asarray(pred, dtype=np.float64) - np.asarray(label, dtype=np.float64)
    w = np.ones(r.shape[1]) if joint_weights is None else np.asarray(joint_weights, dtype=np.float64)
    w = w[None, :] if sample_weight is None else w[None, :] * np.asarray(sample_weight, dtype=np.float64)[:, None]
    z = r / delta
    s = 1.0 + z * z
    root = np.sqrt(s)
    return w * r / root, w / (s * root)


def mae_per_joint_twin(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Mean ``|pred - label|`` per joint over the rows whose labels are all finite (NaN when none is),
    float64 ``(J,)``: the twin of ``emgpose_kernels.objective.mae_per_joint``."""
    pred, label = np.asarray(pred, dtype=np.float64), np.asarray(label, dtype=np.float64)
    keep = np.isfinite(label).all(axis=1)
    if not keep.any():
        return np.full(label.shape[1], np.nan)
    return np.abs(pred[keep] - label[keep]).mean(axis=0)


def mae_per_finger(per_joint: Sequence[float] | np.ndarray, joint_names: Sequence[str]) -> dict[str, float]:
    """Per-finger MAE from the J per-joint values (all joints of a finger have the same rows, so the
    finger's MAE is the mean of its joints'), the grouping of ``regression_metrics``' ``per_finger``."""
    values = [float(v) for v in np.asarray(per_joint, dtype=np.float64).tolist()]
    if len(values) != len(joint_names):
        raise ValueError(f"per_joint has {len(values)} values but joint_names has {len(joint_names)}")
    fingers: dict[str, list[float]] = {}
    for value, name in zip(values, joint_names, strict=True):
        finger = finger_of(name)
        if finger is not None:
            fingers.setdefault(finger, []).append(value)
    return {finger: float(np.mean(group)) for finger, group in fingers.items()}


def intercept(grad: np.ndarray, hess: np.ndarray) -> list[float]:
    """Per-target ``base_score`` the way XGBoost fits it for a built-in objective: one Newton step from a
    zero margin, ``-sum(grad) / max(sum(hess), 1e-6)`` per column of the gradients taken at 0."""
    return (-grad.sum(axis=0) / np.maximum(hess.sum(axis=0), MIN_HESSIAN)).tolist()


def _as_matrix(array: Any) -> Any:
    return array.reshape(-1, 1) if array.ndim == 1 else array


def _to_host(array: Any) -> np.ndarray:
    """A NumPy array of ``array`` (a copy from the device for a CuPy array)."""
    return array.get() if hasattr(array, "__cuda_array_interface__") else np.asarray(array)


class _Backend:
    """Where the objective and the metric compute: NumPy twins on ``cpu``, kernels on CuPy on ``cuda``."""

    def __init__(self, device: Device) -> None:
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        self.device = device
        self.xp: Any = np
        if device == "cuda":
            import cupy

            self.xp = cupy

    def float32(self, array: Any) -> Any:
        """``array`` as a C-contiguous float32 array of this backend (one host-device copy at most)."""
        if self.device == "cpu":
            return np.ascontiguousarray(_to_host(array), dtype=np.float32)
        return self.xp.ascontiguousarray(self.xp.asarray(array), dtype=self.xp.float32)


class PseudoHuberObjective:
    """``obj=`` for ``xgb.train``: the weighted pseudo-Huber gradient and Hessian of the predictions.

    ``label``: the training targets ``(n, J)`` (NumPy or CuPy), kept as float32 (what XGBoost keeps)
    on the device that computes. With all weights 1 it is XGBoost's ``reg:pseudohubererror`` with
    ``huber_slope = delta``. Returns float64 NumPy arrays on ``cpu`` and float32 CuPy arrays on ``cuda``.
    """

    def __init__(
        self,
        label: Any,
        delta: float,
        joint_weights: Sequence[float] | None = None,
        sample_weight: Any | None = None,
        device: Device = "cpu",
    ) -> None:
        if not (math.isfinite(delta) and delta > 0):
            raise ValueError(f"delta must be a finite number > 0, got {delta}")
        self.backend = _Backend(device)
        self.label = self.backend.float32(_as_matrix(label))
        joints = self.label.shape[1]
        weights = [1.0] * joints if joint_weights is None else [float(w) for w in joint_weights]
        if len(weights) != joints:
            raise ValueError(f"joint_weights must have {joints} values (one per joint), got {len(weights)}")
        self.delta = float(delta)
        self.joint_weights = self.backend.xp.asarray(weights, dtype=np.float64 if device == "cpu" else np.float32)
        self.sample_weight = None if sample_weight is None else self.backend.float32(sample_weight)
        if self.sample_weight is not None and self.sample_weight.shape != (self.label.shape[0],):
            raise ValueError(f"sample_weight must be ({self.label.shape[0]},), got {self.sample_weight.shape}")

    def gradients(self, pred: Any) -> tuple[Any, Any]:
        """``(grad, hess)`` at ``pred`` (``(n, J)``, or ``(n,)`` for one joint) on this backend."""
        pred = self.backend.float32(pred).reshape(self.label.shape)
        if self.backend.device == "cpu":
            return pseudo_huber_twin(pred, self.label, self.delta, self.joint_weights, self.sample_weight)
        from emgpose_kernels.objective import pseudo_huber_grad_hess

        return pseudo_huber_grad_hess(pred, self.label, self.delta, self.joint_weights, self.sample_weight)

    def __call__(self, predt: np.ndarray, dtrain: xgb.DMatrix) -> tuple[Any, Any]:
        if predt.shape[0] != self.label.shape[0]:
            raise ValueError(f"predt has {predt.shape[0]} rows but the objective's labels have {self.label.shape[0]}")
        return self.gradients(predt)

    def intercept(self) -> list[float]:
        """Per-joint ``base_score`` the way XGBoost fits it for ``reg:pseudohubererror`` (a Newton step
        from 0), so a model trained with this objective starts where the built-in one does."""
        grad, hess = self.gradients(self.backend.xp.zeros(self.label.shape, dtype=np.float32))
        xp = self.backend.xp
        sums = xp.stack([grad.astype(np.float64).sum(axis=0), hess.astype(np.float64).sum(axis=0)])
        total_grad, total_hess = _to_host(sums)  # J numbers per row: the only copy back, once per fit
        return intercept(total_grad[None, :], total_hess[None, :])


class JointMAE:
    """``custom_metric=`` for ``xgb.train``: the mean over joints of the per-joint MAE.

    In z-scored units (name ``mae``), or in degrees (name ``mae_deg``) when ``target_std`` gives each
    joint's standard deviation in radians per z-unit. Labels registered with :meth:`add` stay on the
    computing device; for another matrix the metric reads ``dmatrix.get_label()`` (a host copy).
    """

    def __init__(self, device: Device = "cpu", target_std: Sequence[float] | None = None) -> None:
        self.backend = _Backend(device)
        self.scale = None if target_std is None else np.rad2deg(np.asarray(target_std, dtype=np.float64))
        self.name = "mae" if target_std is None else "mae_deg"
        self._labels: weakref.WeakKeyDictionary[xgb.DMatrix, Any] = weakref.WeakKeyDictionary()

    def add(self, dmatrix: xgb.DMatrix, label: Any) -> None:
        """Keeps ``label`` (``(n, J)``) for ``dmatrix`` on the computing device (one copy, now)."""
        self._labels[dmatrix] = self.backend.float32(_as_matrix(label))

    def per_joint(self, pred: Any, label: Any) -> np.ndarray:
        """Per-joint MAE ``(J,)`` (float64 NumPy) of ``pred`` against ``label``, in this metric's unit."""
        label = _as_matrix(label)
        pred = self.backend.float32(pred).reshape(label.shape)
        if self.backend.device == "cpu":
            mae = mae_per_joint_twin(pred, label)
        else:
            from emgpose_kernels.objective import mae_per_joint

            mae = _to_host(mae_per_joint(pred, self.backend.float32(label)))  # J numbers
        if self.scale is not None:
            if self.scale.shape != mae.shape:
                raise ValueError(f"target_std has {self.scale.size} values but the labels have {mae.size} joints")
            mae = mae * self.scale
        return mae

    def __call__(self, predt: np.ndarray, dmatrix: xgb.DMatrix) -> tuple[str, float]:
        label = self._labels.get(dmatrix)
        if label is None:
            label = dmatrix.get_label().reshape(predt.shape[0], -1)
        return self.name, float(np.mean(self.per_joint(predt, label)))
