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


def float_dtype(array: Any) -> np.dtype:
    """The dtype a kernel instance runs in for ``array``: float32 stays float32, anything else is float64."""
    return np.dtype(array.dtype) if np.dtype(array.dtype) in SUFFIX else np.dtype(np.float64)


def array_module(array: Any) -> Any:
    """NumPy for a NumPy array (the emulation), CuPy for a CuPy array (the device)."""
    if isinstance(array, np.ndarray):
        return np
    import cupy

    return cupy


def contiguous(array: Any, dtype: np.dtype) -> Any:
    """``array`` as a C-contiguous array of ``dtype`` on its own backend (no copy when it already is)."""
    return array_module(array).ascontiguousarray(array, dtype=dtype)


_SCALARS = {np.dtype(np.int32): ctypes.c_int, np.dtype(np.int64): ctypes.c_longlong}


def run(source: str, kernel: str, dtype: np.dtype, grid: tuple[int, ...], block: int, *args: Any) -> None:
    """Launches ``kernel<dtype>`` of ``kernels/<source>`` on the backend of ``args[0]``.

    ``args`` are the kernel's arguments in order: arrays (contiguous, of the right dtype) and NumPy
    scalars of the kernel's exact integer type (``np.int32`` for ``int``, ``np.int64`` for ``long long``).
    The emulation receives them packed as CUDA packs them (an array of pointers to each argument).
    """
    grid_x, grid_y = (tuple(grid) + (1,))[:2]
    if backend(args[0]) == "cuda":
        names = tuple(f"{kernel}<{name}>" for name in CTYPE.values())
        function = cuda_module(source, names).get_function(f"{kernel}<{CTYPE[dtype]}>")
        function((grid_x, grid_y), (block,), args)
        return
    values = [
        ctypes.c_void_p(a.ctypes.data) if isinstance(a, np.ndarray) else _SCALARS[np.dtype(type(a))](a) for a in args
    ]
    packed = (ctypes.c_void_p * len(values))(*(ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values))
    function = getattr(emulated(source), f"{kernel}_{SUFFIX[dtype]}")
    function.restype = None
    function(ctypes.c_uint(grid_x), ctypes.c_uint(grid_y), ctypes.c_uint(block), packed)


@functools.cache
def cuda_module(source: str, names: tuple[str, ...]) -> Any:
    """CuPy's ``RawModule`` of ``kernels/<source>``, one template instance per name in ``names``."""
    try:
        import cupy
    except ImportError as exc:  # pragma: no cover - only where CuPy is missing
        raise KernelError("the cuda backend needs CuPy") from exc
    code = (HERE / source).read_text()
    return cupy.RawModule(code=code, options=("--std=c++17", f"-I{HERE}"), name_expressions=names, backend="nvrtc")
