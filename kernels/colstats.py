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
    dtype = launch.float_dtype(x)
    xp = launch.array_module(x)
    x = launch.contiguous(x, dtype)
    sums, squares = xp.zeros(columns, dtype=dtype), xp.zeros(columns, dtype=dtype)
    if rows and columns:
        backend = launch.backend(x)
        blocks, threads = launch.grid_for(rows, backend, block)
        blocks = min(blocks, 4 if backend == "emulate" else 1024)  # grid-stride: each block takes many rows
        launch.run(SOURCE, "colstats", dtype, (blocks, columns), threads, x, np.int64(rows), np.int32(columns),
                   sums, squares)  # fmt: skip
    return sums, squares
