"""Loader of ``colstats.cu``: per-column sums and sums of squares (the z-score statistics pass).

Twin: ``x.sum(axis=0)`` and ``(x * x).sum(axis=0)``. It exercises every part of the host emulation
that a block reduction needs: warp shuffles, shared memory, ``__syncthreads`` and atomics.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emgpose_kernels import launch

SOURCE = "colstats.cu"


def colstats(x: Any, block: int | None = None) -> tuple[Any, Any]:
    """``(sums, sums of squares)`` per column of ``x`` (``(rows, columns)``); ``block``: threads per block
    (a multiple of 32, at most 1024; default from :func:`emgpose_kernels.launch.grid_for`)."""
    if x.ndim != 2:
        raise ValueError(f"x must be (rows, columns), got shape {x.shape}")
    if block is not None and (block % 32 or not 32 <= block <= 1024):
        raise ValueError(f"block must be a multiple of 32 between 32 and 1024, got {block}")
    rows, columns = x.shape
    dtype = np.dtype(x.dtype) if np.dtype(x.dtype) in launch.SUFFIX else np.dtype(np.float64)
    x = launch.contiguous(x, dtype)
    xp = np if isinstance(x, np.ndarray) else _cupy()
    sums, squares = xp.zeros(columns, dtype=dtype), xp.zeros(columns, dtype=dtype)
    if not rows or not columns:
        return sums, squares
    backend = launch.backend(x)
    blocks, threads = launch.grid_for(rows, backend, block)
    blocks = min(blocks, 4 if backend == "emulate" else 1024)  # grid-stride: each block takes many rows
    if backend == "emulate":
        fn = getattr(launch.emulated(SOURCE), f"colstats_{launch.SUFFIX[dtype]}")
        fn.restype = None
        fn(
            launch.ctypes.c_uint(blocks), launch.ctypes.c_uint(threads), launch.pointer(x),
            launch.ctypes.c_longlong(rows), launch.ctypes.c_int(columns), launch.pointer(sums), launch.pointer(squares),
        )  # fmt: skip
    else:
        cupy = _cupy()
        name = f"colstats<{launch.CTYPE[dtype]}>"
        kernel = launch.cuda_module(SOURCE, ("colstats<double>", "colstats<float>")).get_function(name)
        kernel((blocks, columns), (threads,), (x, cupy.int64(rows), cupy.int32(columns), sums, squares))
    return sums, squares


def _cupy() -> Any:
    import cupy

    return cupy
