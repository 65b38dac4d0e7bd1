"""Plots: each writes a small valid PNG at dpi 100, and mismatched inputs are refused."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from emgpose.formats.joints import EMG2POSE_JOINTS
from emgpose.train.evaluate import session_traces
from emgpose.train.plots import (
    break_gaps,
    plot_confusion,
    plot_curve,
    plot_joint_errors,
    plot_traces,
    traces_figure,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path, returned) -> tuple[int, int]:
    """Asserts a plausible PNG of modest size; returns (width, height) in pixels."""
    assert returned == str(path)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert 1024 < len(data) < 150 * 1024, len(data)
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _trace(name, n=1500, k=3, seed=0, noise=0.0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 50.0
    true = np.stack([30 * np.sin(t * (j + 1) / 3) for j in range(k)], axis=1)
    pred = true + rng.normal(scale=3.0, size=true.shape) + rng.normal(scale=noise, size=true.shape)
    return {"name": name, "t": t, "true": true, "pred": pred, "joints": list(EMG2POSE_JOINTS[:k])}


def test_plot_traces_writes_png(tmp_path):
    path = tmp_path / "nested" / "traces.png"
    width, height = _check_png(path, plot_traces(path, [_trace("s1"), _trace("s2", k=2, seed=1)], "traces"))
    assert width == 1000  # 10 inches at dpi 100
    assert height > 400  # two rows


@pytest.mark.parametrize(("n", "noise"), [(3000, 0.0), (12000, 0.0), (12000, 15.0)])
def test_plot_traces_stays_small_for_long_noisy_sessions(tmp_path, n, noise):
    path = tmp_path / "noisy.png"
    traces = [_trace(f"s{i}", n=n, k=4, seed=i, noise=noise) for i in range(4)]
    _check_png(path, plot_traces(path, traces, "noisy"))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"pred": np.zeros((100, 2))}, "pred shape"),
        ({"t": np.arange(99.0)}, "99 samples"),
        ({"joints": ["a", "b"]}, "joints names 2"),
    ],
)
def test_plot_traces_rejects_mismatches(tmp_path, change, match):
    trace = _trace("s", n=100) | change
    with pytest.raises(ValueError, match=match):
        plot_traces(tmp_path / "bad.png", [trace], "bad")
    assert not (tmp_path / "bad.png").exists()


def test_plot_traces_rejects_empty_and_incomplete(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        plot_traces(tmp_path / "x.png", [], "empty")
    with pytest.raises(ValueError, match="lacks key"):
        plot_traces(tmp_path / "x.png", [{"name": "s", "t": np.arange(3.0)}], "incomplete")


def test_plot_joint_errors_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    errors = {
        model: {joint: float(rng.uniform(2, 15)) for joint in EMG2POSE_JOINTS} for model in ("xgboost", "ridge", "mean")
    }
    del errors["mean"]["PINKY_DIP_FE"]  # a model missing one joint still plots
    path = tmp_path / "joints.png"
    width, height = _check_png(path, plot_joint_errors(path, errors, "per-joint MAE"))
    assert (width, height) == (1200, 450)


def test_plot_joint_errors_rejects_empty(tmp_path):
    with pytest.raises(ValueError, match="at least one model"):
        plot_joint_errors(tmp_path / "x.png", {}, "empty")
    with pytest.raises(ValueError, match="at least one joint"):
        plot_joint_errors(tmp_path / "x.png", {"ridge": {}}, "empty")


def test_plot_confusion_writes_png_with_empty_rows(tmp_path):
    confusion = [[5, 1, 0], [0, 0, 0], [2, 0, 7]]  # a class with no true windows must not divide by zero
    path = tmp_path / "confusion.png"
    _check_png(path, plot_confusion(path, confusion, ["rest", "fist", "pinch"], "confusion"))


def test_plot_confusion_many_classes_without_annotations(tmp_path):
    rng = np.random.default_rng(0)
    n = 25
    confusion = (rng.integers(0, 5, size=(n, n)) + np.eye(n, dtype=int) * 50).tolist()
    path = tmp_path / "confusion25.png"
    _check_png(path, plot_confusion(path, confusion, [f"gesture_{i}" for i in range(n)], "many"))


@pytest.mark.parametrize(
    ("confusion", "names", "match"),
    [
        ([[1, 2, 3], [4, 5, 6]], ["a", "b"], "square"),
        ([[1, 2], [3, 4]], ["a", "b", "c"], "class_names has 3"),
        ([[1, -2], [3, 4]], ["a", "b"], "non-negative"),
    ],
)
def test_plot_confusion_rejects_mismatches(tmp_path, confusion, names, match):
    with pytest.raises(ValueError, match=match):
        plot_confusion(tmp_path / "bad.png", confusion, names, "bad")


def test_plot_curve_writes_png(tmp_path):
    seconds = [0, 10, 30, 60, 120]
    curves = {
        "calibrated": (seconds, [14.0, 11.5, 10.2, 9.1, 8.7]),
        "from scratch": (seconds[1:], [22.0, 16.0, 12.5, 10.0]),
        "no calibration": (seconds, [14.0] * 5),
    }
    path = tmp_path / "curve.png"
    width, height = _check_png(path, plot_curve(path, curves, "seconds of calibration data", "MAE (deg)", "calib"))
    assert (width, height) == (650, 400)


def test_plot_curve_rejects_mismatched_lengths(tmp_path):
    with pytest.raises(ValueError, match="equal length"):
        plot_curve(tmp_path / "bad.png", {"c": ([1, 2, 3], [1.0, 2.0])}, "x", "y", "bad")
    with pytest.raises(ValueError, match="at least one"):
        plot_curve(tmp_path / "bad.png", {}, "x", "y", "bad")


def test_plots_leave_pyplot_state_alone(tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plot_curve(tmp_path / "c.png", {"a": ([0, 1], [1, 0])}, "x", "y", "t")
    plot_confusion(tmp_path / "m.png", [[1, 0], [0, 1]], ["a", "b"], "t")
    assert plt.get_fignums() == before


def _lines(ax):
    """(true, pred) y-data per joint, in plotting order (solid then dashed for each joint)."""
    lines = ax.get_lines()
    return [(lines[i].get_ydata(), lines[i + 1].get_ydata()) for i in range(0, len(lines), 2)]


def test_traces_break_the_line_where_windows_were_dropped():
    t = np.r_[np.arange(10) * 0.05, 2.0 + np.arange(10) * 0.05]  # 1.55 s of dropped windows after row 9
    trace = {**_trace("s1", n=20, k=2), "t": t}
    fig = traces_figure([trace], "gap")
    (ax,) = fig.axes
    for true, pred in _lines(ax):
        assert len(true) == 21 and np.isnan(true[10]) and np.isnan(pred[10])
        assert np.isfinite(np.delete(true, 10)).all()
    np.testing.assert_allclose(_lines(ax)[1][0][11:], trace["true"][10:, 1])
    assert np.isnan(ax.get_lines()[0].get_xdata()[10])


def test_traces_without_gaps_are_drawn_unchanged():
    t = np.arange(30) * 0.05
    t2, values = break_gaps(t, np.ones((30, 2)))
    np.testing.assert_array_equal(t2, t)
    assert values.shape == (30, 2)


def test_trace_panels_name_the_joints_they_draw_in_every_session():
    names = list(EMG2POSE_JOINTS)
    rng = np.random.default_rng(3)
    ring_dip, ring_mcp = names.index("RING_DIP_FE"), names.index("RING_MCP_FE")
    sessions = []
    for s, (big, second) in enumerate([(ring_dip, ring_mcp), (ring_mcp, ring_dip)]):
        t = 100.0 + np.arange(200) * 0.05
        y = rng.normal(scale=0.01, size=(200, len(names)))
        y[:, big] += 0.8 * np.sin(t)
        y[:, second] += 0.6 * np.cos(t)
        y[:, names.index("THUMB_IP_FE")] += 0.3 * np.sin(2 * t)
        sessions.append((f"s{s}", t, y, y + 0.01))
    traces = session_traces(sessions, names)
    assert [tr["joints"] for tr in traces] == [["RING_DIP_FE", "RING_MCP_FE", "THUMB_IP_FE"]] * 2
    fig = traces_figure(traces, "named")
    for ax, (name, _, y, pred) in zip(fig.axes, sessions, strict=True):
        joints = traces[0]["joints"]
        assert ax.get_title() == f"{name}: {', '.join(joints)}  (solid: true, dashed: predicted)"
        assert [text.get_text() for text in ax.get_legend().get_texts()] == joints
        for joint, (true_line, pred_line) in zip(joints, _lines(ax), strict=True):
            np.testing.assert_allclose(true_line, np.degrees(y[:, names.index(joint)]))
            np.testing.assert_allclose(pred_line, np.degrees(pred[:, names.index(joint)]))
    assert all(tr["t"][0] == 0.0 and tr["t"][-1] <= 20.0 for tr in traces)
