"""Which compute device a worker uses: ``auto`` picks the GPU where one exists, and says so when not."""

from __future__ import annotations

import functools
import logging
import os
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


def cgroup_cpu_quota(root: str = "/sys/fs/cgroup") -> float | None:
    """The CPUs a cgroup CPU quota allows this process (``docker run --cpus``, compose ``cpus``), or None.

    Reads cgroup v2 (``cpu.max``: ``"<quota> <period>"`` or ``"max <period>"``) or v1
    (``cpu/cpu.cfs_quota_us`` and ``cpu/cpu.cfs_period_us``, quota -1 for none).
    """
    try:
        with open(os.path.join(root, "cpu.max")) as f:
            quota, _, period = f.read().strip().partition(" ")
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as f:
            quota_us = int(f.read().strip())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as f:
            period_us = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


def usable_cpus(root: str = "/sys/fs/cgroup") -> int:
    """Threads worth running here: the CPUs this process may run on (affinity), capped by a cgroup quota.

    XGBoost's default (every core of the machine) crawls when the cores are busy or throttled: its
    OpenMP threads wait on each other. A container limited to 2 CPUs on a 16-core box gets 2.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        cpus = min(cpus, max(1, int(quota)))
    return max(1, cpus)
