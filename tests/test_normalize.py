"""Streaming z-score statistics against NumPy on the concatenated data."""

import numpy as np

from emgpose.preprocess.normalize import NormStats, RunningStats


def test_running_stats_match_numpy_over_masked_chunks():
    rng = np.random.default_rng(0)
    chunks = [rng.normal(loc=3.0, scale=2.0, size=(n, 4)) for n in (1, 17, 500, 3)]
    masks = [rng.random(len(c)) > 0.3 for c in chunks]
    stats = RunningStats(4)
    for c, m in zip(chunks, masks, strict=True):
        stats.update(c, m)
    selected = np.concatenate([c[m] for c, m in zip(chunks, masks, strict=True)])
    np.testing.assert_allclose(stats.mean, selected.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.std(), selected.std(axis=0), rtol=1e-10)
    assert stats.count[0] == len(selected)


def test_constant_column_keeps_unit_scale_and_round_trips():
    f, e, t = RunningStats(2), RunningStats(2), RunningStats(1)
    x = np.column_stack([np.ones(10), np.arange(10.0)])
    f.update(x)
    e.update(x)
    t.update(np.arange(10.0)[:, None])
    stats = NormStats.from_running(f, e, t)
    assert stats.filtered_std[0] == 1.0
    z = stats.scale_targets(np.array([[4.5]]))
    assert z[0, 0] == 0.0
    assert NormStats.from_dict(stats.to_dict()) == stats
    np.testing.assert_allclose(stats.unscale_targets(stats.scale_targets(np.array([[7.0]]))), [[7.0]])


def test_merged_accumulators_equal_one_pass():
    rng = np.random.default_rng(1)
    a, b = rng.normal(2.0, 3.0, (300, 2)), rng.normal(-1.0, 0.5, (50, 2))
    one, left, right, empty = RunningStats(2), RunningStats(2), RunningStats(2), RunningStats(2)
    one.update(np.concatenate([a, b]))
    left.update(a)
    right.update(b)
    left.merge(right)
    left.merge(empty)
    np.testing.assert_allclose(left.mean, one.mean, rtol=1e-12)
    np.testing.assert_allclose(left.std(), one.std(), rtol=1e-12)
    empty.merge(one)
    np.testing.assert_allclose(empty.mean, one.mean, rtol=1e-12)
