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
    dtype = launch.float_dtype(x)
    xp = launch.array_module(x)
    x = launch.contiguous(x, dtype)
    sos = launch.contiguous(xp.asarray(sos), dtype)
    state = xp.array(zi, dtype=dtype, order="C", copy=True)  # updated in place by the kernel
    y = xp.empty_like(x)
    if n and columns:
        blocks, threads = launch.grid_for(columns, launch.backend(x))
        launch.run(SOURCE, "sosfilt", dtype, (blocks,), threads, sos, np.int32(sections), x, y, state,
                   np.int64(n), np.int32(columns))  # fmt: skip
    return y, state
