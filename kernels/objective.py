"""Loaders of ``objective.cu``: the weighted pseudo-Huber gradient and Hessian, and the per-joint MAE.

Both run on the backend of their inputs (NumPy: the host emulation, CuPy: the device) and return arrays
of that backend, so a training loop on the device never copies predictions or labels to the host here.
Twins: :func:`emgpose.train.objective.pseudo_huber_twin` and :func:`emgpose.train.objective.mae_per_joint_twin`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from emgpose_kernels import launch

SOURCE = "objective.cu"
MAX_JOINTS = 32  # kMaxJoints in objective.cu: the per-thread accumulators of abs_error_sums
MAX_REDUCTION_BLOCKS = {"cuda": 1024, "emulate": 4}  # grid-stride: each block reduces many rows


def _same_backend(reference: Any, other: Any, name: str) -> None:
    if launch.backend(other) != launch.backend(reference) or not hasattr(other, "shape"):
        kind = "a NumPy" if launch.backend(reference) == "emulate" else "a CuPy"
        raise ValueError(f"{name} must be {kind} array like pred, got {type(other).__name__}")


def _check_pair(pred: Any, label: Any) -> None:
    if getattr(pred, "ndim", None) != 2:
        raise ValueError(f"pred must be (rows, joints), got shape {getattr(pred, 'shape', None)}")
    _same_backend(pred, label, "label")
    if label.shape != pred.shape:
        raise ValueError(f"label must have the shape of pred {pred.shape}, got {label.shape}")


def pseudo_huber_grad_hess(
    pred: Any, label: Any, delta: float, joint_weights: Any, sample_weight: Any | None = None
) -> tuple[Any, Any]:
    """``(grad, hess)``, each ``(rows, joints)``, of the pseudo-Huber loss with slope ``delta``.

    ``pred`` and ``label``: ``(rows, joints)`` arrays of one backend; ``joint_weights``: ``(joints,)``
    (a list, or an array of that backend); ``sample_weight``: ``(rows,)`` or ``None``. Computed in
    ``pred``'s precision (float32 stays float32, anything else runs in float64).
    """
    _check_pair(pred, label)
    if not (math.isfinite(delta) and delta > 0):
        raise ValueError(f"delta must be a finite number > 0, got {delta}")
    rows, joints = pred.shape
    dtype = launch.float_dtype(pred)
    xp = launch.array_module(pred)
    weights = launch.contiguous(xp.asarray(joint_weights), dtype)
    if weights.shape != (joints,):
        raise ValueError(f"joint_weights must be ({joints},) (one per joint), got shape {weights.shape}")
    if sample_weight is None:
        per_row, has_sample_weight = xp.ones(1, dtype=dtype), 0
    else:
        _same_backend(pred, sample_weight, "sample_weight")
        if sample_weight.shape != (rows,):
            raise ValueError(f"sample_weight must be ({rows},) (one per row), got shape {sample_weight.shape}")
        per_row, has_sample_weight = launch.contiguous(sample_weight, dtype), 1
    pred, label = launch.contiguous(pred, dtype), launch.contiguous(label, dtype)
    grad, hess = xp.empty((rows, joints), dtype=dtype), xp.empty((rows, joints), dtype=dtype)
    if rows and joints:
        backend = launch.backend(pred)
        blocks, threads = launch.grid_for(rows * joints, backend)
        launch.run(SOURCE, "pseudo_huber", dtype, (blocks,), threads, pred, label, weights, per_row,
                   xp.full(1, delta, dtype=dtype), grad, hess, np.int64(rows), np.int32(joints),
                   np.int32(has_sample_weight))  # fmt: skip
    return grad, hess


def abs_error_sums(pred: Any, label: Any, block: int | None = None) -> tuple[Any, Any]:
    """``(sums, count)``: per-joint sums of ``|pred - label|`` (``(joints,)`` float64) over the rows whose
    labels are all finite, and the number of those rows (``(1,)`` uint64), on the backend of ``pred``.

    ``block``: threads per block (a multiple of 32, at most 1024; default from ``launch.grid_for``).
    """
    _check_pair(pred, label)
    rows, joints = pred.shape
    if joints > MAX_JOINTS:
        raise ValueError(f"pred must have at most {MAX_JOINTS} joints (columns), got {joints}")
    if block is not None and (block % 32 or not 32 <= block <= 1024):
        raise ValueError(f"block must be a multiple of 32 between 32 and 1024, got {block}")
    dtype = launch.float_dtype(pred)
    xp = launch.array_module(pred)
    pred, label = launch.contiguous(pred, dtype), launch.contiguous(label, dtype)
    sums, count = xp.zeros(joints, dtype=np.float64), xp.zeros(1, dtype=np.uint64)
    if rows and joints:
        backend = launch.backend(pred)
        blocks, threads = launch.grid_for(rows, backend, block)
        blocks = min(blocks, MAX_REDUCTION_BLOCKS[backend])
        launch.run(SOURCE, "abs_error_sums", dtype, (blocks,), threads, pred, label, np.int64(rows),
                   np.int32(joints), sums, count)  # fmt: skip
    return sums, count


def mae_per_joint(pred: Any, label: Any) -> Any:
    """Mean absolute error per joint, ``(joints,)`` float64 on the backend of ``pred``: the mean over the
    rows whose labels are all finite (NaN for every joint when there is none)."""
    sums, count = abs_error_sums(pred, label)
    xp = launch.array_module(sums)
    rows = count.astype(np.float64)
    return xp.where(rows > 0, sums / xp.maximum(rows, 1.0), xp.nan)
