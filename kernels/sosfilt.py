"""Loader of ``sosfilt.cu``: the band-pass SOS cascade with its state carried between chunks.

Twin: ``scipy.signal.sosfilt(sos, x, axis=0, zi=zi)`` as ``CausalChain._filter`` calls it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emgpose_kernels import launch

SOURCE = "sosfilt.cu"


def sosfilt(sos: Any, x: Any, zi: Any) -> tuple[Any, Any]:
    """``(filtered x, final state)`` for ``x`` of shape ``(n, columns)`` and ``zi`` of ``(sections, 2, columns)``.

    A column is one channel of one session: stack many sessions' channels side by side to filter them
    in one launch. NumPy arrays run on the host emulation, CuPy arrays on the device.
    """
    if x.ndim != 2:
        raise ValueError(f"x must be (samples, columns), got shape {x.shape}")
    if sos.ndim != 2 or sos.shape[1] != 6:
        raise ValueError(f"sos must be (sections, 6), got shape {sos.shape}")
    n, columns = x.shape
    sections = sos.shape[0]
    if tuple(zi.shape) != (sections, 2, columns):
        raise ValueError(f"zi must be ({sections}, 2, {columns}), got shape {tuple(zi.shape)}")
    dtype = np.dtype(x.dtype) if np.dtype(x.dtype) in launch.SUFFIX else np.dtype(np.float64)
    x = launch.contiguous(x, dtype)
    xp = np if isinstance(x, np.ndarray) else _cupy()
    sos = launch.contiguous(xp.asarray(sos), dtype)
    state = xp.array(zi, dtype=dtype, order="C", copy=True)  # updated in place by the kernel
    y = xp.empty_like(x)
    if n and columns:
        backend = launch.backend(x)
        blocks, threads = launch.grid_for(columns, backend)
        suffix = launch.SUFFIX[dtype]
        if backend == "emulate":
            fn = getattr(launch.emulated(SOURCE), f"sosfilt_{suffix}")
            fn.restype = None
            fn(
                launch.ctypes.c_uint(blocks), launch.ctypes.c_uint(threads), launch.pointer(sos),
                launch.ctypes.c_int(sections), launch.pointer(x), launch.pointer(y), launch.pointer(state),
                launch.ctypes.c_longlong(n), launch.ctypes.c_int(columns),
            )  # fmt: skip
        else:
            cupy = _cupy()
            name = f"sosfilt<{launch.CTYPE[dtype]}>"
            kernel = launch.cuda_module(SOURCE, ("sosfilt<double>", "sosfilt<float>")).get_function(name)
            kernel((blocks,), (threads,), (sos, cupy.int32(sections), x, y, state, cupy.int64(n),
                                           cupy.int32(columns)))  # fmt: skip
    return y, state


def _cupy() -> Any:
    import cupy

    return cupy
