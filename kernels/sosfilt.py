"""Loader of ``sosfilt.cu``: the band-pass SOS cascade with its state carried between chunks.

Twin: ``scipy.signal.sosfilt(sos, x, axis=0, zi=zi)`` as ``CausalChain._filter`` calls it.

Two forms of the same filter: the sequential kernel (one thread per column over all samples) and the
time-blocked parallel scan (:func:`sosfilt_blocked`, one thread per block of samples of a column), which
lets a few long columns fill a device. :func:`sosfilt` picks one (see :func:`choose_block_len`).
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import numpy as np

from emgpose_kernels import launch

SOURCE = "sosfilt.cu"
MAX_SECTIONS = 8  # kMaxSections in sosfilt.cu: the blocked kernels hold 2 x sections states in registers
DEVICE_BLOCK_LEN = 1024  # samples per time block on a device
EMULATED_BLOCK_LEN = 512  # on the emulation: few host threads per launch; tests up to 2047 samples stay sequential
FEW_COLUMNS = 4096  # below this many columns the sequential kernel leaves a device mostly idle


def sosfilt(sos: Any, x: Any, zi: Any, block_len: int | None = None) -> tuple[Any, Any]:
    """``(filtered x, final state)`` for ``x`` of shape ``(n, columns)`` and ``zi`` of ``(sections, 2, columns)``.

    A column is one channel of one session: stack many sessions' channels side by side to filter them
    in one launch. NumPy arrays run on the host emulation, CuPy arrays on the device. ``block_len``:
    ``None`` chooses the form (:func:`choose_block_len`), ``0`` forces the sequential kernel, a positive
    length forces the time-blocked scan with blocks of that many samples (:func:`sosfilt_blocked`).
    """
    n, columns, sections = _shapes(sos, x, zi)
    if block_len is None:
        block_len = choose_block_len(n, columns, sections, launch.backend(x))
    if _block_len(block_len, allow_zero=True):
        return sosfilt_blocked(sos, x, zi, block_len)
    dtype, xp, sos, x = _inputs(sos, x)
    state = xp.array(zi, dtype=dtype, order="C", copy=True)  # updated in place by the kernel
    y = xp.empty_like(x)
    if n and columns:
        blocks, threads = launch.grid_for(columns, launch.backend(x))
        launch.run(SOURCE, "sosfilt", dtype, (blocks,), threads, sos, np.int32(sections), x, y, state,
                   np.int64(n), np.int32(columns))  # fmt: skip
    return y, state


def choose_block_len(n: int, columns: int, sections: int, backend: launch.Backend) -> int:
    """The block length :func:`sosfilt` uses when none is given; ``0`` means the sequential kernel.

    The blocked scan pays for a second pass over ``x`` and a scan over blocks; it wins when there are too
    few columns to fill a device (fewer than ``FEW_COLUMNS``) and enough samples for at least 4 blocks.
    """
    length = DEVICE_BLOCK_LEN if backend == "cuda" else EMULATED_BLOCK_LEN
    if columns < FEW_COLUMNS and n >= 4 * length and sections <= MAX_SECTIONS:
        return length
    return 0


def sosfilt_blocked(sos: Any, x: Any, zi: Any, block_len: int) -> tuple[Any, Any]:
    """:func:`sosfilt` by the time-blocked parallel scan, blocks of ``block_len`` samples (the last may be shorter).

    Three steps (see ``sosfilt.cu``): each block's zero-state final state, a Hillis-Steele scan
    over blocks giving each block's true start state, then each block re-run from that state. ``zf`` equals
    what the sequential filter leaves, so the next chunk continues exactly. The transition powers are
    computed on the host in float64 from ``sos``; a CuPy ``sos`` is read back once for that (pass a NumPy
    ``sos`` to avoid the round trip).
    """
    n, columns, sections = _shapes(sos, x, zi)
    block_len = _block_len(block_len, allow_zero=False)
    if sections > MAX_SECTIONS:
        raise ValueError(
            f"sos has {sections} sections; the blocked form takes at most {MAX_SECTIONS} "
            "(use block_len=0 for the sequential kernel)"
        )
    sos_host = np.asarray(sos.get() if hasattr(sos, "get") else sos, dtype=np.float64)
    dtype, xp, sos, x = _inputs(sos, x)
    y = xp.empty_like(x)
    if not (n and columns):
        return y, xp.array(zi, dtype=dtype, order="C", copy=True)
    blocks = -(-n // block_len)
    backend = launch.backend(x)
    starts = xp.empty((blocks, sections, 2, columns), dtype=dtype)  # step 1 fills starts[1:]
    starts[0] = xp.asarray(zi, dtype=dtype)
    if blocks > 1:
        grid, threads = launch.grid_for((blocks - 1) * columns, backend)
        launch.run(SOURCE, "sosfilt_block_states", dtype, (grid,), threads, sos, np.int32(sections), x, starts,
                   np.int64(n), np.int32(columns), np.int64(block_len), np.int64(blocks))  # fmt: skip
        starts = _scan_blocks(starts, sos_host, block_len)
    zf = xp.empty((sections, 2, columns), dtype=dtype)
    grid, threads = launch.grid_for(blocks * columns, backend)
    launch.run(SOURCE, "sosfilt_block_apply", dtype, (grid,), threads, sos, np.int32(sections), x, y, starts, zf,
               np.int64(n), np.int32(columns), np.int64(block_len), np.int64(blocks))  # fmt: skip
    return y, zf


def _scan_blocks(starts: Any, sos: np.ndarray, block_len: int) -> Any:
    """Step 2: ``starts[k] = S_k``, from ``starts[0] = zi`` and ``starts[k] = f_{k-1}``, by ceil(log2 K) launches.

    Launch ``d`` adds ``P^(2^d) starts[k - 2^d]`` to every block ``k >= 2^d`` (``P = A^block_len``),
    reading one buffer and writing the other; O(K log K) work in log K fully parallel steps.
    """
    blocks, sections, _, columns = starts.shape
    xp = launch.array_module(starts)
    levels = (blocks - 1).bit_length()
    powers = xp.ascontiguousarray(xp.asarray(transition_powers(sos, block_len, levels)), dtype=starts.dtype)
    source, target = starts, xp.empty_like(starts)
    grid, threads = launch.grid_for(starts.size, launch.backend(starts))
    for level in range(levels):
        launch.run(SOURCE, "sosfilt_scan_step", starts.dtype, (grid,), threads, powers, np.int32(level),
                   np.int32(2 * sections), source, target, np.int64(blocks), np.int32(columns),
                   np.int64(1 << level))  # fmt: skip
        source, target = target, source
    return source


def transition_matrix(sos: np.ndarray) -> np.ndarray:
    """``A`` (``2 sections`` square, float64): one zero-input step of the cascade on the flattened state.

    The state is ``zi`` of one column flattened, ``(z0, z1)`` of section 0 first; column ``j`` of ``A`` is
    the state one sample after the unit state ``e_j`` with zero input.
    """
    sos = np.asarray(sos, dtype=np.float64)
    states = 2 * len(sos)
    z = np.eye(states).reshape(len(sos), 2, states)  # one unit state per column
    after = np.empty_like(z)
    v = np.zeros(states)
    for s, (b0, b1, b2, _, a1, a2) in enumerate(sos):
        out = b0 * v + z[s, 0]
        after[s, 0] = b1 * v - a1 * out + z[s, 1]
        after[s, 1] = b2 * v - a2 * out
        v = out
    return after.reshape(states, states)


def transition_powers(sos: np.ndarray, block_len: int, levels: int) -> np.ndarray:
    """``(levels, 2 sections, 2 sections)`` float64: ``P^(2^d)`` for ``d < levels``, ``P = A^block_len``."""
    sos = np.ascontiguousarray(sos, dtype=np.float64)
    return _powers(sos.tobytes(), len(sos), block_len, levels).copy()


@functools.lru_cache(maxsize=32)
def _powers(sos: bytes, sections: int, block_len: int, levels: int) -> np.ndarray:
    """Cached by the coefficients' bytes: a stream calls with the same ``sos`` and block length each chunk."""
    matrix = np.linalg.matrix_power(transition_matrix(np.frombuffer(sos).reshape(sections, 6)), block_len)
    powers = np.empty((levels, 2 * sections, 2 * sections))
    for level in range(levels):
        powers[level] = matrix
        matrix = matrix @ matrix
    return powers


def _shapes(sos: Any, x: Any, zi: Any) -> tuple[int, int, int]:
    """``(n, columns, sections)``, or a ``ValueError`` naming the argument whose shape does not fit."""
    if x.ndim != 2:
        raise ValueError(f"x must be (samples, columns), got shape {x.shape}")
    if sos.ndim != 2 or sos.shape[1] != 6:
        raise ValueError(f"sos must be (sections, 6), got shape {sos.shape}")
    n, columns = x.shape
    sections = sos.shape[0]
    if tuple(zi.shape) != (sections, 2, columns):
        raise ValueError(f"zi must be ({sections}, 2, {columns}), got shape {tuple(zi.shape)}")
    return n, columns, sections


def _block_len(block_len: Any, allow_zero: bool) -> int:
    """``block_len`` as an ``int``: a positive number of samples (or 0 where it selects the sequential kernel)."""
    length = operator.index(block_len)
    if length < (0 if allow_zero else 1):
        lowest = "0 (sequential) or more" if allow_zero else "at least 1"
        raise ValueError(f"block_len must be {lowest} samples, got {block_len}")
    return length


def _inputs(sos: Any, x: Any) -> tuple[np.dtype, Any, Any, Any]:
    """``(dtype, array module, sos, x)``: both cast to the kernel's dtype, C-contiguous, on ``x``'s backend."""
    dtype = launch.float_dtype(x)
    xp = launch.array_module(x)
    return dtype, xp, launch.contiguous(xp.asarray(sos), dtype), launch.contiguous(x, dtype)
