"""Loader of ``features.cu``: the window features of evenly spaced windows, on the backend of the signals.

Twin: :func:`emgpose.preprocess.features.compute_stream_features`, the CPU fast path; the output is the
same ``(count, F * C)`` float32 matrix in the trainer's column order (feature-major, then channel).
The kernel computes the registry features with a kernel id (``gpu=True``); the others are declared
CPU-only (``Feature.gpu = False``) and :class:`emgpose.preprocess.kernel_path.KernelWindowStream`
computes them on the host from the same z-scored signals.

Every summed feature (all but ``env_last``) is a difference of prefix sums of its per-sample terms,
computed in one pass for every requested feature:

1. ``cell_sums``: the terms of every requested feature and channel, summed in double over *cells* of
   ``cell`` samples. Every window starts ``k * stride`` after the first and is ``length`` long, so any
   divisor of ``gcd(length, stride)`` puts every window boundary on a cell boundary (the CPU's
   ``window_sums`` uses the same fact): the buffer to write and scan is ``cell`` times shorter than one
   row per sample. ``cell`` is the largest such divisor up to :data:`MAX_CELL`, which bounds each
   thread's serial work.
2. A column-wise inclusive scan of the ``(cells + 1, S * C)`` buffer (row 0 is zero): each thread scans
   one tile of rows of one column (consecutive threads take consecutive columns, so every step reads and
   writes a row coalesced), the tiles' totals are scanned the same way, recursively, and added back;
   any number of rows works.
3. ``window_features``: one thread per (window, output column) writes the finished feature straight into
   the float32 output on the device: the window's prefix difference minus the ``span`` terms that reach
   past its end, as the twin computes it; ``env_last`` is read at the window's last sample.

Nothing comes back to the host; the only transfers are the uploads of the small launch tables (the
feature plan and the threshold).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np

from emgpose.preprocess.features import FEATURES
from emgpose_kernels import launch

SOURCE = "features.cu"
MAX_CELL = 32  # samples summed serially per thread before the scan
SCAN_TILE = 64  # rows scanned serially per thread at each level of the scan


@dataclass(frozen=True)
class KernelFeature:
    """How ``features.cu`` computes one registry feature.

    ``id`` is the feature's constant in ``features.cu`` (namespace ``feature_id``), ``signal`` the signal
    it reads and ``span`` the span of its term, ``None`` for a feature read at the window's last sample.
    """

    id: int
    signal: str
    span: int | None


# The one table of kernel ids; check_registry() holds it against emgpose.preprocess.features.FEATURES:
# every registry feature has an id here or is declared CPU-only (Feature.gpu = False).
KERNEL_FEATURES: dict[str, KernelFeature] = {
    "env_mean": KernelFeature(0, "envelope", 0),
    "env_last": KernelFeature(1, "envelope", None),
    "mav": KernelFeature(2, "filtered", 0),
    "rms": KernelFeature(3, "filtered", 0),
    "wl": KernelFeature(4, "filtered", 1),
    "zc": KernelFeature(5, "filtered", 1),
    "ssc": KernelFeature(6, "filtered", 2),
}


def registry_mismatches() -> list[str]:
    """How :data:`KERNEL_FEATURES` and the CPU registry ``FEATURES`` disagree (empty when they agree).

    Every registry feature needs a kernel id here or ``gpu=False`` (declared CPU-only), never both.
    """
    problems = []
    if missing := [name for name in FEATURES if name not in KERNEL_FEATURES and FEATURES[name].gpu]:
        problems.append(f"registry features without a kernel id: {missing} (add one to features.cu and "
                        "KERNEL_FEATURES, or declare the feature CPU-only with gpu=False)")  # fmt: skip
    if both := [name for name in KERNEL_FEATURES if name in FEATURES and not FEATURES[name].gpu]:
        problems.append(f"features declared CPU-only (gpu=False) that have a kernel id: {both}")
    if extra := [name for name in KERNEL_FEATURES if name not in FEATURES]:
        problems.append(f"kernel ids of features the registry lacks: {extra}")
    ids = [kernel.id for kernel in KERNEL_FEATURES.values()]
    if len(set(ids)) != len(ids):
        problems.append(f"kernel ids are not unique: {ids}")
    for name, kernel in KERNEL_FEATURES.items():
        if name not in FEATURES:
            continue
        feature = FEATURES[name]
        expected = (feature.signal, feature.span if feature.term is not None else None)
        if (kernel.signal, kernel.span) != expected:
            problems.append(f"{name}: the kernel reads (signal, span) {(kernel.signal, kernel.span)}, "
                            f"the registry says {expected}")  # fmt: skip
    return problems


def check_registry() -> None:
    """Raises :class:`~emgpose_kernels.launch.KernelError` if the kernel's table and the registry disagree,
    so a feature added to the registry without a kernel id (and not declared CPU-only) fails loudly
    instead of computing nonsense."""
    if problems := registry_mismatches():
        raise launch.KernelError(f"features.cu and the registry FEATURES disagree: {'; '.join(problems)}")


def window_features(
    signals: Mapping[str, Any],
    first: int,
    stride: int,
    count: int,
    length: int,
    features: tuple[str, ...],
    threshold: float = 0.0,
    *,
    scan_tile: int = SCAN_TILE,
) -> Any:
    """``(count, len(features) * C)`` float32 features of the windows ``first + k * stride`` (``k < count``)
    of ``length`` samples, on the backend of the signals (NumPy: host emulation; CuPy: the device).

    ``signals`` maps ``filtered`` and/or ``envelope`` (whichever ``features`` read) to ``(n, C)`` arrays of
    the same shape; they run in float32 when all are float32, else in float64. ``threshold`` is zc's and
    ssc's, compared in the signals' precision as NumPy compares a Python float with an array.
    ``scan_tile``: rows per thread at each level of the prefix scan (at least 2).
    """
    names = _checked_features(features)
    check_registry()
    first, stride, length = _integer("first", first), _integer("stride", stride), _integer("length", length)
    count, scan_tile = _integer("count", count), _integer("scan_tile", scan_tile)
    if scan_tile < 2:
        raise ValueError(f"scan_tile must be at least 2 rows, got {scan_tile}")
    arrays = _checked_signals(signals, names)
    sample = next(iter(arrays.values()))
    n, channels = sample.shape
    _check_windows(n, first, stride, count, length)
    xp = launch.array_module(sample)
    single = all(launch.float_dtype(a) == np.float32 for a in arrays.values())
    dtype = np.dtype(np.float32 if single else np.float64)
    arrays = {name: launch.contiguous(a, dtype) for name, a in arrays.items()}
    out = xp.empty((count, len(names) * channels), dtype=np.float32)
    if count == 0 or channels == 0:
        return out
    filtered = arrays.get("filtered", arrays.get("envelope"))
    envelope = arrays.get("envelope", filtered)
    slots, plan = _plan(names)
    level = xp.asarray([float(threshold)], dtype=dtype)  # the kernels compare in T, as NumPy does
    cell = _cell(length, stride, count)
    rows = ((count - 1) * stride + length) // cell + 1
    prefix = _prefix_sums(filtered, envelope, slots, level, first, cell, rows, scan_tile)
    blocks, threads = launch.grid_for(out.size, launch.backend(filtered))
    launch.run(SOURCE, "window_features", dtype, (blocks,), threads, filtered, envelope,
               xp.asarray(plan, dtype=np.int32), level, prefix, out, np.int64(n), np.int32(channels),
               np.int32(len(names)), np.int32(len(slots)), np.int64(first), np.int64(stride), np.int64(count),
               np.int64(length), np.int32(cell))  # fmt: skip
    return out


def _prefix_sums(
    filtered: Any, envelope: Any, slots: list[int], level: Any, base: int, cell: int, rows: int, tile: int
) -> Any:
    """``(rows, len(slots) * C)`` float64 prefix sums over cells of ``cell`` terms from sample ``base`` on:
    row ``r`` sums the terms of cells ``0 .. r - 1`` of each (slot, channel) column (scan tiles: ``tile``)."""
    xp = launch.array_module(filtered)
    n, channels = filtered.shape
    if not slots:
        return xp.zeros((1, 1), dtype=np.float64)  # every feature is env_last: nothing reads it
    prefix = xp.empty((rows, len(slots) * channels), dtype=np.float64)
    blocks, threads = launch.grid_for(prefix.size, launch.backend(filtered))
    launch.run(SOURCE, "cell_sums", launch.float_dtype(filtered), (blocks,), threads, filtered, envelope,
               xp.asarray(slots, dtype=np.int32), level, prefix, np.int64(n), np.int32(channels),
               np.int32(len(slots)), np.int64(base), np.int32(cell), np.int64(rows))  # fmt: skip
    scan_columns(prefix, tile)
    return prefix


def scan_columns(data: Any, tile: int = SCAN_TILE) -> None:
    """Inclusive prefix sums down each column of ``data`` (``(rows, columns)`` float64, C-contiguous), in
    place, for any number of rows: tiles of ``tile`` rows, their totals scanned recursively, added back."""
    if tile < 2:
        raise ValueError(f"tile must be at least 2 rows, got {tile}")
    rows, columns = data.shape
    if rows == 0 or columns == 0:
        return
    backend = launch.backend(data)
    f64 = np.dtype(np.float64)
    tiles = -(-rows // tile)
    totals = launch.array_module(data).empty((tiles, columns), dtype=np.float64)
    blocks, threads = launch.grid_for(tiles * columns, backend)
    launch.run(SOURCE, "scan_tiles", f64, (blocks,), threads, data, totals, np.int64(rows), np.int32(columns),
               np.int32(tile))  # fmt: skip
    if tiles > 1:
        scan_columns(totals, tile)
        blocks, threads = launch.grid_for((rows - tile) * columns, backend)
        launch.run(SOURCE, "add_tile_offsets", f64, (blocks,), threads, data, totals, np.int64(rows),
                   np.int32(columns), np.int32(tile))  # fmt: skip


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _checked_features(features: Sequence[str]) -> tuple[str, ...]:
    """``features`` as a tuple of registry names, refused (naming the known ones) when empty or unknown."""
    names = (features,) if isinstance(features, str) else tuple(features)
    if not names:
        raise ValueError(f"features must name at least one feature of {list(FEATURES)}")
    if unknown := [name for name in names if name not in FEATURES]:
        raise ValueError(f"unknown features {unknown}: the known features are {list(FEATURES)}")
    if host := [name for name in names if name not in KERNEL_FEATURES and not FEATURES[name].gpu]:
        raise ValueError(f"features {host} are CPU-only (gpu=False): compute them with "
                         "emgpose.preprocess.features.compute_stream_features")  # fmt: skip
    return names


def _checked_signals(signals: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The signals ``names`` read, each ``(n, C)``, of one shape and on one backend."""
    needed = list(dict.fromkeys(KERNEL_FEATURES[name].signal for name in names))
    if missing := [signal for signal in needed if signal not in signals]:
        raise ValueError(f"signals must hold {needed} for features {list(names)}, missing {missing}")
    arrays = {signal: signals[signal] for signal in needed}
    for signal, array in arrays.items():
        if getattr(array, "ndim", None) != 2:
            shape = getattr(array, "shape", type(array).__name__)
            raise ValueError(f"signals[{signal!r}] must be (samples, channels), got shape {shape}")
    shapes = {signal: tuple(array.shape) for signal, array in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"signals must all have one shape (samples, channels), got {shapes}")
    if len({launch.backend(array) for array in arrays.values()}) > 1:
        raise ValueError("signals must all be NumPy arrays (host emulation) or all CuPy arrays (device)")
    return arrays


def _check_windows(n: int, first: int, stride: int, count: int, length: int) -> None:
    if first < 0:
        raise ValueError(f"first must be a sample index >= 0, got {first}")
    if stride < 1:
        raise ValueError(f"stride must be at least 1 sample, got {stride}")
    if count < 0:
        raise ValueError(f"count must be >= 0 windows, got {count}")
    if length < 1:
        raise ValueError(f"length must be at least 1 sample, got {length}")
    last = first + (count - 1) * stride
    if count and last + length > n:
        raise ValueError(f"window {count - 1} (samples {last} .. {last + length - 1}) reaches past the end of the "
                         f"signal ({n} samples)")  # fmt: skip


def _plan(names: tuple[str, ...]) -> tuple[list[int], list[list[int]]]:
    """``(slots, plan)``: the kernel ids of the distinct summed features (one prefix column block each), and
    per requested feature its ``[kernel id, slot]`` (slot -1 for a feature read at the last sample)."""
    slots: list[int] = []
    plan = []
    for name in names:
        kernel = KERNEL_FEATURES[name]
        if kernel.span is None:
            plan.append([kernel.id, -1])
            continue
        if kernel.id not in slots:
            slots.append(kernel.id)
        plan.append([kernel.id, slots.index(kernel.id)])
    return slots, plan


def _cell(length: int, stride: int, count: int) -> int:
    """Samples per cell: the largest divisor of ``gcd(length, stride)`` up to :data:`MAX_CELL`, so every
    window starts and ends on a cell boundary (one window: any divisor of its length)."""
    step = math.gcd(length, stride) if count > 1 else length
    return max(d for d in range(1, min(step, MAX_CELL) + 1) if step % d == 0)
