"""Which compute device a worker uses: ``auto`` picks the GPU where one exists, and says so when not."""

from __future__ import annotations

import functools
import logging
from typing import Literal

from emgpose.errors import InvalidInput

log = logging.getLogger(__name__)


@functools.lru_cache
def gpu_available() -> bool:
    """True where CuPy imports and sees at least one CUDA device (never initialises more than that)."""
    try:
        import cupy  # noqa: PLC0415 - optional: only GPU images install it

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, or CUDA driver/runtime errors on a machine without a GPU
        return False


def resolve_device(requested: str) -> Literal["cpu", "cuda"]:
    """``cpu`` or ``cuda`` for a setting of ``auto``, ``cpu`` or ``cuda``.

    ``auto`` falls back to the CPU, with a warning, where no GPU is usable; an explicit ``cuda`` where
    none exists is an error rather than a silent slowdown.
    """
    if requested == "cpu":
        return "cpu"
    if requested not in ("auto", "cuda"):
        raise InvalidInput(f"device must be 'auto', 'cpu' or 'cuda', got {requested!r}")
    if gpu_available():
        return "cuda"
    if requested == "cuda":
        raise InvalidInput("device 'cuda' was requested but no CUDA GPU is usable here (CuPy sees none); use 'cpu'")
    log.warning("no CUDA GPU is usable here: falling back to the CPU (set DEVICE=cpu to silence this)")
    return "cpu"
