"""Windowing: counts, causal targets, drops, and chunked-vs-whole equality."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emgpose.errors import InvalidInput
from emgpose.preprocess import DROP_REASONS, NormStats, PreprocessConfig, WindowStream
from emgpose.preprocess.config import to_samples

FS = 1000.0


def _stream(length=50, stride=20, targets=2, **cfg):
    config = PreprocessConfig(window={"length": length, "stride": stride}, **cfg)
    return WindowStream(config, FS, 3, NormStats.identity(3, targets), num_targets=targets)


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), np.arange(n) / FS, rng.uniform(0.2, 1.0, size=(n, 2))


def _feed(stream, x, t, y, cuts):
    bounds = np.unique(np.clip(np.cumsum(cuts), 0, len(x)))
    batches = [stream.push(x[:0], t[:0], y[:0])]  # an empty chunk is harmless
    batches += [
        stream.push(xs, ts, ys)
        for xs, ts, ys in zip(np.split(x, bounds), np.split(t, bounds), np.split(y, bounds), strict=True)
        if len(xs)
    ]
    return {
        "end": np.concatenate([b.end_index for b in batches]),
        "features": np.concatenate([b.features for b in batches]),
        "targets": np.concatenate([b.targets for b in batches]),
        "reason": np.concatenate([b.reason for b in batches]),
    }


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 600),
    length=st.integers(1, 120),
    stride=st.integers(1, 60),
    cuts=st.lists(st.integers(1, 250), min_size=1, max_size=8),
)
def test_window_count_and_chunking(n, length, stride, cuts):
    x, t, y = _data(n)
    got = _feed(_stream(length, stride), x, t, y, cuts)
    expected = 0 if n < length else (n - length) // stride + 1
    assert len(got["end"]) == expected
    np.testing.assert_array_equal(got["end"], length - 1 + stride * np.arange(expected))
    whole = _feed(_stream(length, stride), x, t, y, [max(n, 1)])
    np.testing.assert_allclose(got["features"], whole["features"], rtol=1e-5, atol=1e-6)


def test_target_is_the_last_sample_of_the_window():
    x, t, y = _data(300)
    batch = _stream(50, 20).push(x, t, y)
    np.testing.assert_array_equal(batch.targets, y[batch.end_index])
    np.testing.assert_array_equal(batch.end_time, t[batch.end_index])


def test_windows_touching_ik_failures_are_dropped():
    x, t, y = _data(300)
    y[100:105] = 0.0  # IK failure: every angle zero
    batch = _stream(50, 10).push(x, t, y)
    touching = (batch.end_index >= 100) & (batch.end_index - 49 <= 104)
    assert touching.any()
    assert np.all(batch.reason[touching] == DROP_REASONS.index("ik_failure"))
    assert np.all(batch.reason[~touching] == 0)


def test_nan_target_drops_only_windows_ending_there():
    x, t, y = _data(300)
    y[149, 1] = np.nan
    batch = _stream(50, 10).push(x, t, y)
    assert batch.reason[batch.end_index == 149].tolist() == [DROP_REASONS.index("target_invalid")]
    assert (batch.reason != 0).sum() == 1


def test_nan_emg_drops_windows_touching_it():
    x, t, y = _data(300)
    x[120, 2] = np.nan
    batch = _stream(50, 10).push(x, t, y)
    touching = (batch.end_index >= 120) & (batch.end_index - 49 <= 120)
    assert np.all(batch.reason[touching] == DROP_REASONS.index("emg_invalid"))
    assert np.all(batch.reason[~touching] == 0)
    assert np.isfinite(batch.features).all()


def test_window_spec_in_milliseconds():
    assert to_samples("200ms", 2000.0, "w") == 400
    assert to_samples("0.05s", 2000.0, "w") == 100
    assert to_samples(7, 2000.0, "w") == 7
    with pytest.raises(InvalidInput, match="less than one sample"):
        to_samples("0.1ms", 1000.0, "window.stride")
    with pytest.raises(InvalidInput, match="window.length"):
        to_samples("two seconds", 1000.0, "window.length")


def test_a_single_joint_at_exactly_zero_is_a_real_angle_not_an_ik_failure():
    from emgpose.preprocess.windows import ik_failures

    knee = np.array([[0.0], [0.3], [0.0]])
    assert not ik_failures(knee, 1e-6).any()
    hand = np.array([[0.0, 0.0], [0.0, 0.2], [1e-9, -1e-9]])
    assert ik_failures(hand, 1e-6).tolist() == [True, False, True]
