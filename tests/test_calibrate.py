"""Calibration for a new user: ways compared by cross-validation, own statistics, continued boosting or a refit,
a new (unpromoted) version."""

import numpy as np
import pytest

from emgpose.errors import InvalidInput
from emgpose.train.bundle import Registry
from emgpose.train.calibrate import (
    Windows,
    calibrate,
    calibration_curve,
    calibration_folds,
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
    out = calibrate(
        f"hand@{result['version']}",
        recording,
        store,
        seconds=5.0,
        rounds=7,
        strategies=("continue",),
        statistics=("own",),
    )
    assert out["base_version"] == result["version"] and out["seconds"] == 5.0 and out["windows"] > 20
    assert registry.latest("hand") == latest_before  # not promoted unless asked
    new = registry.load("hand", out["version"])
    assert new.booster.num_boosted_rounds() == base.booster.num_boosted_rounds() + 7
    assert new.meta["calibration"]["base"] == {"name": "hand", "version": result["version"]}
    assert new.meta["calibration"]["chosen"]["strategy"] == "continue" and out["chosen"]["rounds"] == 7
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
    # The same plots a trained version gets, drawn on the calibration windows, listed in the bundle.
    plots = {key for key in base.meta["files"] if key.startswith("plots/")}
    assert plots == {"plots/joint_errors.png", "plots/traces.png"}
    assert plots <= set(new.meta["files"]) and new.meta["calibration"]["plots"] == sorted(plots)
    for key in plots:
        assert registry.store.get_bytes(f"models/hand/{out['version']}/{key}").startswith(b"\x89PNG")


def test_calibration_to_another_name_promoted(train_model, train_synth):
    result, store = train_model
    recording = str(train_synth / "data" / "user02_session1_FingerFreeform.hdf5")
    out = calibrate(
        f"hand@{result['version']}", recording, store, rounds=3, name="hand-user02", promote=True, statistics=("model",)
    )
    registry = Registry(store)
    assert registry.latest("hand-user02") == out["version"]
    new, base = registry.load("hand-user02"), registry.load("hand", result["version"])
    assert new.stats == base.stats and new.meta["calibration"]["chosen"]["statistics"] == "model"


def test_calibration_refuses_what_it_cannot_use(train_model, train_synth, tmp_path):
    result, store = train_model
    recording = str(train_synth / "data" / "user02_session0_FingerFreeform.hdf5")
    with pytest.raises(InvalidInput, match=r"asked for 60 s of calibration data, the recording has 8.0 s"):
        calibrate("hand", recording, store, seconds=60)
    with pytest.raises(InvalidInput, match="recording not found"):
        calibrate("hand", str(tmp_path / "missing.hdf5"), store)
    with pytest.raises(InvalidInput, match="fewer than 2 usable windows"):
        calibrate("hand", recording, store, seconds=0.1)
    with pytest.raises(InvalidInput, match=r"calibration strategy: \['boost'\]"):
        calibrate("hand", recording, store, strategies=("boost",))
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


def test_calibration_compares_every_way_over_several_recordings_and_keeps_the_best(train_model, train_synth):
    result, store = train_model
    recordings = [str(train_synth / "data" / f"user02_session{i}_FingerFreeform.hdf5") for i in (0, 1)]
    out = calibrate(f"hand@{result['version']}", recordings, store, seconds=8.0)
    assert out["seconds"] == 8.0  # 4 s of each recording
    ways = {(c["strategy"], c["statistics"]) for c in out["candidates"]}
    assert ways == {("continue", "own"), ("continue", "model"), ("refit", "own"), ("refit", "model")}
    assert all(c["folds"] >= 2 and c["cv_error"] > 0 and 1 <= c["rounds"] <= 300 for c in out["candidates"])
    assert out["chosen"] == min(out["candidates"], key=lambda c: c["cv_error"])
    registry = Registry(store)
    new, base = registry.load("hand", out["version"]), registry.load("hand", result["version"])
    prior = base.booster.num_boosted_rounds() if out["chosen"]["strategy"] == "continue" else 0
    assert new.booster.num_boosted_rounds() == prior + out["chosen"]["rounds"]
    assert new.meta["calibration"]["recordings"] == recordings and new.meta["calibration"]["base_error"] > 0
    assert (new.stats == base.stats) == (out["chosen"]["statistics"] == "model")


def test_calibration_folds_are_blocks_in_time_of_every_recording_with_a_gap():
    def windows(n):
        return Windows(np.zeros((n, 1)), None, None, np.arange(n) * 0.05 + 0.2)

    folds = calibration_folds([windows(40), windows(20)], gap_s=0.2, k=4)
    assert len(folds) == 4
    train, val = folds[1]
    assert list(val) == list(range(10, 20)) + list(range(45, 50))  # block 1 of each recording
    # 0.2 s = 4 strides: windows 6..9 and 20..23 of the first recording share samples with its block
    assert not set(range(6, 24)) & set(train) and {5, 24} <= set(train)
    assert not set(val) & set(train)
    assert calibration_folds([windows(3)], gap_s=1.0, k=4) == []  # nothing left to train on
