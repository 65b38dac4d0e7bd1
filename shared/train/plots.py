"""PNG figures for evaluation reports: angle traces, per-joint errors, confusion matrices, learning curves.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas, so nothing touches pyplot's
global state and no display is needed. Every function writes one PNG (dpi 100) and returns its path.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from emgpose.errors import InvalidInput

DPI = 100
MAX_ANNOTATED_CLASSES = 20
PALETTE_COLOURS = (64, 32, 16)  # tried in turn while a true-colour PNG exceeds MAX_PNG_BYTES (3x smaller)
MAX_PNG_BYTES = 140 * 1024


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> str:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        canvas = fig.canvas
        canvas.draw()
        rgba = np.asarray(canvas.buffer_rgba())
        image = Image.fromarray(np.ascontiguousarray(rgba[..., :3]))
    finally:
        fig.clear()
    for colours in (None, *PALETTE_COLOURS):
        buffer = io.BytesIO()
        encoded = image if colours is None else image.quantize(colours, method=Image.Quantize.MEDIANCUT)
        encoded.save(buffer, format="png", optimize=True, dpi=(DPI, DPI))
        if buffer.tell() <= MAX_PNG_BYTES:
            break
    out.write_bytes(buffer.getvalue())
    return str(out)


def _trace_arrays(trace: dict, index: int) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    missing = [key for key in ("name", "t", "true", "pred", "joints") if key not in trace]
    if missing:
        raise InvalidInput(f"traces[{index}] lacks key(s) {missing}")
    t = np.asarray(trace["t"], dtype=np.float64)
    true = np.asarray(trace["true"], dtype=np.float64)
    pred = np.asarray(trace["pred"], dtype=np.float64)
    joints = [str(j) for j in trace["joints"]]
    if true.ndim == 1:
        true = true[:, None]
    if pred.ndim == 1:
        pred = pred[:, None]
    if t.ndim != 1 or true.ndim != 2:
        raise InvalidInput(f"traces[{index}]: t must be (n,) and true (n, k); got {t.shape} and {true.shape}")
    if pred.shape != true.shape:
        raise InvalidInput(f"traces[{index}]: pred shape {pred.shape} must equal true shape {true.shape}")
    if true.shape[0] != t.shape[0]:
        raise InvalidInput(f"traces[{index}]: t has {t.shape[0]} samples but true has {true.shape[0]}")
    if true.shape[1] != len(joints) or not joints:
        raise InvalidInput(f"traces[{index}]: true has {true.shape[1]} columns but joints names {len(joints)}")
    return str(trace["name"]), t, true, pred, joints


def break_gaps(t: np.ndarray, *series: np.ndarray) -> tuple[np.ndarray, ...]:
    """``t`` and each ``(n, k)`` series with a NaN row inserted wherever consecutive windows lie further
    apart than one stride, so a line stops at windows preprocessing dropped instead of bridging them.
    The stride is the smallest step between windows (kept neighbours are exactly one stride apart)."""
    steps = np.diff(t)
    positive = steps[steps > 0]
    if positive.size == 0:
        return (t, *series)
    gaps = np.flatnonzero(steps > 1.5 * positive.min()) + 1
    return (
        np.insert(t, gaps, np.nan),
        *(np.insert(np.asarray(s, dtype=np.float64), gaps, np.nan, axis=0) for s in series),
    )


def plot_traces(path: str | os.PathLike, traces: list[dict], title: str) -> str:
    """Writes :func:`traces_figure` to ``path``."""
    return _save(traces_figure(traces, title), path)


def traces_figure(traces: list[dict], title: str) -> Figure:
    """One row per session: true (solid) and predicted (dashed) angles in degrees against seconds; the
    panel's title names the session and its joints, in the order of ``trace["joints"]`` (which are also
    the legend's labels and the colours C0, C1, ...). Lines break where windows were dropped."""
    if not traces:
        raise InvalidInput("traces must hold at least one trace; got none")
    parsed = [_trace_arrays(trace, i) for i, trace in enumerate(traces)]
    fig = _figure(10.0, 0.6 + 2.2 * len(parsed))
    axes = fig.subplots(len(parsed), 1, squeeze=False)[:, 0]
    for ax, (name, t, true, pred, joints) in zip(axes, parsed, strict=True):
        t, true, pred = break_gaps(t, true, pred)
        for j, joint in enumerate(joints):
            colour = f"C{j % 10}"
            ax.plot(t, true[:, j], color=colour, linestyle="-", linewidth=1.0, label=joint)
            ax.plot(t, pred[:, j], color=colour, linestyle="--", linewidth=1.0)
        ax.set_title(f"{name}: {', '.join(joints)}  (solid: true, dashed: predicted)", fontsize=9)
        ax.set_xlabel("seconds")
        ax.set_ylabel("degrees")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def plot_joint_errors(path: str | os.PathLike, errors: dict[str, dict[str, float]], title: str) -> str:
    """Grouped bars: one group per joint, one bar per model, height = MAE in degrees."""
    if not errors:
        raise InvalidInput("errors must map at least one model to per-joint MAE; got none")
    joints: list[str] = []
    for per_joint in errors.values():
        joints += [j for j in per_joint if j not in joints]
    if not joints:
        raise InvalidInput("errors must name at least one joint; every model's dict is empty")
    n_models = len(errors)
    width = 0.8 / n_models
    x = np.arange(len(joints))
    fig = _figure(min(14.0, max(6.0, 2.0 + 0.5 * len(joints))), 4.5)
    ax = fig.subplots()
    for m, (model, per_joint) in enumerate(errors.items()):
        heights = [np.nan if per_joint.get(j) is None else float(per_joint[j]) for j in joints]
        ax.bar(x - 0.4 + width * (m + 0.5), heights, width=width, label=str(model), color=f"C{m % 10}")
    ax.set_xticks(x, joints, rotation=75, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_xlim(-0.6, len(joints) - 0.4)
    ax.set_ylabel("MAE (degrees)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


def plot_confusion(path: str | os.PathLike, confusion: list[list[int]], class_names: Sequence[str], title: str) -> str:
    """Row-normalised confusion heat map (rows = true), raw counts written in each cell up to 20 classes."""
    counts = np.asarray(confusion, dtype=np.float64)
    names = [str(c) for c in class_names]
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise InvalidInput(f"confusion must be a square C x C matrix; got shape {counts.shape}")
    if counts.shape[0] != len(names) or not names:
        raise InvalidInput(f"confusion is {counts.shape[0]} x {counts.shape[1]} but class_names has {len(names)}")
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise InvalidInput("confusion counts must be finite and non-negative")
    n = len(names)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    side = min(12.0, max(4.5, 1.5 + 0.45 * n))
    fig = _figure(side + 1.0, side)
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="share of true class", shrink=0.8)
    ticks = np.arange(n)
    ax.set_xticks(ticks, names, rotation=60 if n > 4 else 0, ha="right" if n > 4 else "center", fontsize=8)
    ax.set_yticks(ticks, names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= MAX_ANNOTATED_CLASSES:
        for i in range(n):
            for j in range(n):
                colour = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", color=colour, fontsize=7)
    return _save(fig, path)


def plot_curve(
    path: str | os.PathLike,
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    title: str,
) -> str:
    """One line with markers per label, e.g. error against seconds of calibration data."""
    if not curves:
        raise InvalidInput("curves must hold at least one (x, y) series; got none")
    series = []
    for label, (xs, ys) in curves.items():
        x = np.asarray(xs, dtype=np.float64)
        y = np.asarray(ys, dtype=np.float64)
        if x.ndim != 1 or x.shape != y.shape:
            raise InvalidInput(f"curve {label!r}: x and y must be 1-D of equal length; got {x.shape} and {y.shape}")
        series.append((str(label), x, y))
    fig = _figure(6.5, 4.0)
    ax = fig.subplots()
    for label, x, y in series:
        ax.plot(x, y, marker="o", markersize=4, linewidth=1.2, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
