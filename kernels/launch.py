"""Where a kernel runs: compiling, loading and launching the ``.cu`` sources, in one place.

Grid and block sizes are computed here (:func:`grid_for`); a loader casts its inputs to the kernel's
exact dtype and makes them C-contiguous before a launch, because neither CuPy nor ctypes checks them.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

HERE = Path(__file__).resolve().parent
EMULATION_HEADER = HERE / "emu" / "cuda_host.h"
Backend = Literal["cuda", "emulate"]
SUFFIX = {np.dtype(np.float64): "f64", np.dtype(np.float32): "f32"}
CTYPE = {np.dtype(np.float64): "double", np.dtype(np.float32): "float"}

BLOCK = 256  # threads per block on a device
EMULATED_BLOCK = 32  # host threads per emulated block: one warp keeps emulation fast


class KernelError(RuntimeError):
    """A kernel could not be built or launched (compiler missing, no device)."""


def backend(array: Any) -> Backend:
    """``cuda`` for a CuPy array, ``emulate`` for a NumPy array."""
    return "emulate" if isinstance(array, np.ndarray) else "cuda"


def grid_for(work: int, backend_: Backend, block: int | None = None) -> tuple[int, int]:
    """``(blocks, threads per block)`` covering ``work`` items (grid-stride kernels accept fewer blocks)."""
    threads = block or (BLOCK if backend_ == "cuda" else EMULATED_BLOCK)
    blocks = max(1, -(-work // threads))
    return (min(blocks, 65535 * 32) if backend_ == "cuda" else min(blocks, 64)), threads


def cache_dir() -> Path:
    root = os.environ.get("EMGPOSE_KERNEL_CACHE") or os.path.join(tempfile.gettempdir(), "emgpose-kernels")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@functools.cache
def emulated(source: str) -> ctypes.CDLL:
    """The host build of ``kernels/<source>`` (cached by the hash of the sources it includes)."""
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        raise KernelError("the host emulation of the kernels needs g++ (or CXX) with C++20")
    files = [HERE / source, HERE / "common.cuh", EMULATION_HEADER]
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
    library = cache_dir() / f"{Path(source).stem}-{digest}.so"
    if not library.exists():
        partial = library.with_suffix(f".{os.getpid()}.tmp")
        command = [compiler, "-std=c++20", "-O2", "-pthread", "-shared", "-fPIC", "-include",
                   str(EMULATION_HEADER), "-x", "c++", str(HERE / source), "-o", str(partial)]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise KernelError(f"g++ could not build the emulation of {source}:\n{result.stderr[-4000:]}")
        os.replace(partial, library)  # atomic: concurrent builds never load half a file
    return ctypes.CDLL(str(library))


def pointer(array: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(array.ctypes.data)


@functools.cache
def cuda_module(source: str, names: tuple[str, ...]) -> Any:
    """CuPy's ``RawModule`` of ``kernels/<source>``, one template instance per name in ``names``."""
    try:
        import cupy
    except ImportError as exc:  # pragma: no cover - only where CuPy is missing
        raise KernelError("the cuda backend needs CuPy") from exc
    code = (HERE / source).read_text()
    return cupy.RawModule(code=code, options=("--std=c++17", f"-I{HERE}"), name_expressions=names, backend="nvrtc")


def contiguous(array: Any, dtype: np.dtype) -> Any:
    """``array`` as a C-contiguous array of ``dtype`` on its own backend (no copy when it already is)."""
    if isinstance(array, np.ndarray):
        return np.ascontiguousarray(array, dtype=dtype)
    import cupy

    return cupy.ascontiguousarray(array, dtype=dtype)
