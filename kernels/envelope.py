"""Loader of ``envelope.cu``: rectify + causal moving average + z-score in one pass.

Twin: ``CausalChain._smooth`` then ``NormStats.scale_envelope`` (:mod:`emgpose.preprocess`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emgpose_kernels import launch

SOURCE = "envelope.cu"


def envelope(y: Any, history: Any, mean: Any, std: Any, ma: int, rectify: bool = True) -> tuple[Any, Any]:
    """``(z-scored moving average of |y|, the history for the next chunk)``.

    ``y`` is ``(n, C)`` (NumPy: host emulation; CuPy: the device), ``history`` the last ``ma - 1``
    rectified samples before it (``(ma - 1, C)``, zeros at the start of a stream), ``mean`` and ``std``
    per channel.
    """
    if ma < 1:
        raise ValueError(f"moving average length must be at least 1 sample, got {ma}")
    if y.ndim != 2:
        raise ValueError(f"y must be (samples, channels), got shape {y.shape}")
    n, channels = y.shape
    if tuple(history.shape) != (ma - 1, channels):
        raise ValueError(f"history must be ({ma - 1}, {channels}) for ma={ma}, got shape {tuple(history.shape)}")
    dtype = launch.float_dtype(y)
    xp = launch.array_module(y)
    y, history = launch.contiguous(y, dtype), launch.contiguous(history, dtype)
    mean = launch.contiguous(xp.asarray(mean), dtype)
    inv_std = launch.contiguous(1.0 / xp.asarray(std, dtype=dtype), dtype)
    out = xp.empty_like(y)
    if n:
        blocks, threads = launch.grid_for(n * channels, launch.backend(y))
        launch.run(SOURCE, "envelope", dtype, (blocks,), threads, y, history, mean, inv_std, out,
                   np.int64(n), np.int32(channels), np.int32(ma), np.int32(rectify))  # fmt: skip
    rect = xp.abs if rectify else xp.positive
    tail = xp.concatenate([history, rect(y)])[len(history) + n - (ma - 1) :] if ma > 1 else history
    return out, xp.ascontiguousarray(tail)
