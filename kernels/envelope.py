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
    dtype = np.dtype(y.dtype) if np.dtype(y.dtype) in launch.SUFFIX else np.dtype(np.float64)
    y, history = launch.contiguous(y, dtype), launch.contiguous(history, dtype)
    xp = np if isinstance(y, np.ndarray) else _cupy()
    mean = launch.contiguous(xp.asarray(mean), dtype)
    inv_std = launch.contiguous(1.0 / xp.asarray(std, dtype=dtype), dtype)
    out = xp.empty_like(y)
    if n:
        _launch(y, history, mean, inv_std, out, n, channels, ma, rectify)
    rect = xp.abs if rectify else xp.positive
    tail = xp.concatenate([history, rect(y)])[len(history) + n - (ma - 1) :] if ma > 1 else history
    return out, xp.ascontiguousarray(tail)


def _launch(y: Any, history: Any, mean: Any, inv_std: Any, out: Any, n: int, channels: int, ma: int, rectify: bool):
    backend = launch.backend(y)
    blocks, threads = launch.grid_for(n * channels, backend)
    suffix = launch.SUFFIX[np.dtype(y.dtype)]
    if backend == "emulate":
        fn = getattr(launch.emulated(SOURCE), f"envelope_{suffix}")
        fn.restype = None
        fn(
            launch.ctypes.c_uint(blocks), launch.ctypes.c_uint(threads),
            *(launch.pointer(a) for a in (y, history, mean, inv_std, out)),
            launch.ctypes.c_longlong(n), launch.ctypes.c_int(channels), launch.ctypes.c_int(ma),
            launch.ctypes.c_int(int(rectify)),
        )  # fmt: skip
        return
    cupy = _cupy()
    name = f"envelope<{launch.CTYPE[np.dtype(y.dtype)]}>"
    kernel = launch.cuda_module(SOURCE, ("envelope<double>", "envelope<float>")).get_function(name)
    kernel((blocks,), (threads,), (y, history, mean, inv_std, out, cupy.int64(n), cupy.int32(channels),
                                   cupy.int32(ma), cupy.int32(int(rectify))))  # fmt: skip


def _cupy() -> Any:
    import cupy

    return cupy
