"""Calibration for a new user: own statistics, continued boosting, a new (unpromoted) version."""

import numpy as np
import pytest

from emgpose.errors import InvalidInput
from emgpose.train.bundle import Registry
from emgpose.train.calibrate import (
    calibrate,
    calibration_curve,
    continue_training,
    read_recording,
    recording_windows,
    user_stats,
)


def test_calibration_publishes_a_new_version_with_the_users_statistics(train_model, train_synth):
    result, store = train_model
    registry = Registry(store)
    base = registry.load("hand", result["version"])
    latest_before = registry.latest("hand")
    recording = str(train_synth / "data" / "user02_session0_FingerFreeform.hdf5")
    out = calibrate(f"hand@{result['version']}", recording, store, seconds=5.0, rounds=7)
    assert out["base_version"] == result["version"] and out["seconds"] == 5.0 and out["windows"] > 20
    assert registry.latest("hand") == latest_before  # not promoted unless asked
    new = registry.load("hand", out["version"])
    assert new.booster.num_boosted_rounds() == base.booster.num_boosted_rounds() + 7
    assert new.meta["calibration"]["base"] == {"name": "hand", "version": result["version"]}
    assert new.stats.filtered_mean != base.stats.filtered_mean  # the user's own EMG statistics
    assert new.stats.target_mean == base.stats.target_mean  # outputs stay in the model's space
    # The calibrated model fits the user's calibration windows better than the base model did.
    data = read_recording(recording).first(5.0)
    windows = recording_windows(new, data, new.stats)
    z = new.stats.scale_targets(windows.y)

    def err(bundle):
        return np.abs(bundle.booster.inplace_predict(windows.features) - z).mean()

    assert err(new) < err(base)
    # The trees have seen the user's windows too: the recorded range covers the base one and those windows.
    assert np.all(new.feature_range.low <= base.feature_range.low)
    assert np.all(new.feature_range.high >= base.feature_range.high)
    assert np.mean(new.feature_range.outside(windows.features)) <= np.mean(base.feature_range.outside(windows.features))


def test_calibration_to_another_name_promoted(train_model, train_synth):
    result, store = train_model
    recording = str(train_synth / "data" / "user02_session1_FingerFreeform.hdf5")
    out = calibrate(
        f"hand@{result['version']}", recording, store, rounds=3, name="hand-user02", promote=True, own_stats=False
    )
    registry = Registry(store)
    assert registry.latest("hand-user02") == out["version"]
    new, base = registry.load("hand-user02"), registry.load("hand", result["version"])
    assert new.stats == base.stats and new.meta["calibration"]["statistics"] == "the base model's"


def test_calibration_refuses_what_it_cannot_use(train_model, train_synth, tmp_path):
    result, store = train_model
    recording = str(train_synth / "data" / "user02_session0_FingerFreeform.hdf5")
    with pytest.raises(InvalidInput, match=r"asked for 60 s of calibration data, the recording has 8.0 s"):
        calibrate("hand", recording, store, seconds=60)
    with pytest.raises(InvalidInput, match="recording not found"):
        calibrate("hand", str(tmp_path / "missing.hdf5"), store)
    bundle = Registry(store).load("hand")
    short = read_recording(recording).first(0.1)
    stats = user_stats(bundle.config, short, bundle.stats)
    with pytest.raises(InvalidInput, match="fewer than 2 usable windows"):
        continue_training(bundle, recording_windows(bundle, short, stats))


def test_calibration_curve_reports_every_curve_at_every_length(train_model, train_synth):
    bundle = Registry(train_model[1]).load("hand", train_model[0]["version"])
    calib = read_recording(str(train_synth / "data" / "user02_session0_FingerFreeform.hdf5"))
    tests = [read_recording(str(train_synth / "data" / "user02_session1_FingerFreeform.hdf5"))]
    curves = calibration_curve(bundle, calib, tests, [0.1, 2.0, 6.0], rounds=3, scratch_rounds=5)
    assert curves["seconds"] == [0.1, 2.0, 6.0]
    assert len(set(curves["uncalibrated"])) == 1 and curves["uncalibrated"][0] > 0
    assert curves["calibrated"][0] is None and curves["scratch"][0] is None  # 0.1 s: not one window
    assert all(v > 0 for k in ("statistics_only", "boosting_only", "calibrated", "scratch") for v in curves[k][1:])
