"""What every kernel test shares: one test body on both backends.

A kernel test module defines ``xp`` as ``pytest.fixture(params=BACKENDS)`` over :func:`array_module`:
NumPy (the kernels' ``.cu`` sources on the host emulation, always) or, under the ``gpu`` marker, CuPy on a
device, skipped saying why where there is none. Nothing here needs a conftest, so the device's
``scripts/gpu-check`` runs the kernel tests with ``--noconftest``.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest


def cupy_or_skip() -> ModuleType:
    """CuPy with a usable device, or a skip that says which of the two is missing."""
    try:
        import cupy
    except ImportError:
        pytest.skip("CuPy is not installed: the cuda backend runs where CuPy and an NVIDIA GPU exist")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("CuPy finds no CUDA device")
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        pytest.skip(f"CuPy finds no CUDA device: {exc}")
    return cupy


BACKENDS = ["emulate", pytest.param("cuda", marks=pytest.mark.gpu)]


def array_module(backend: str) -> ModuleType:
    """NumPy for ``emulate``, CuPy (or a skip) for ``cuda``."""
    return np if backend == "emulate" else cupy_or_skip()


def host(a) -> np.ndarray:
    """An array of either backend as a NumPy array."""
    return a.get() if hasattr(a, "get") else np.asarray(a)
