"""The training feature range: recorded in the bundle, reported per group, carried by every prediction."""

import json

import numpy as np
import pytest
from test_cli import emgpose, ok

from emgpose.errors import DataFormatError
from emgpose.formats import SessionReader
from emgpose.formats.session import SessionWriter
from emgpose.train.bundle import Registry
from emgpose.train.coverage import FLAG_SHARE, FeatureRange
from emgpose.train.data import load_preprocessed
from emgpose.train.predict import predict


def test_feature_range_share_outside_and_round_trip():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(10_000, 3))
    fr = FeatureRange.fit(train)
    np.testing.assert_allclose(fr.low, np.quantile(train, 0.005, axis=0))
    assert np.mean(fr.outside(train)) == pytest.approx(0.01, abs=0.002)  # 0.5 % below and above, per feature
    windows = np.array([[0.0, 0.0, 0.0], [0.0, 9.0, 0.0], [-9.0, 9.0, 9.0]])
    np.testing.assert_allclose(fr.outside(windows), [0.0, 1 / 3, 1.0])
    assert fr.summary(windows) == {"features_outside": round(4 / 9, 4), "windows_flagged": round(2 / 3, 4)}
    back = FeatureRange.from_dict(json.loads(json.dumps(fr.to_dict())), 3, "here")
    np.testing.assert_array_equal(back.high, fr.high)
    wider = fr.union(FeatureRange(fr.low + 1, fr.high + 1))
    np.testing.assert_array_equal(wider.low, fr.low) and np.testing.assert_array_equal(wider.high, fr.high + 1)
    with pytest.raises(DataFormatError, match="here: feature_range covers 3 and 3 features, the bundle has 4"):
        FeatureRange.from_dict(fr.to_dict(), 4, "here")
    with pytest.raises(DataFormatError, match="numeric 'low' and 'high'"):
        FeatureRange.from_dict({"low": [0.0]}, 1, "here")


def test_training_records_the_range_and_reports_coverage_per_group(train_model, train_synth):
    result, store = train_model
    bundle = Registry(store).load("hand")
    data = load_preprocessed(str(train_synth / "pre"))
    train = data.table.take(data.table.ids["split"].astype(str) == "train")
    assert bundle.feature_range is not None and len(bundle.feature_range.low) == len(bundle.feature_names)
    assert np.all(bundle.feature_range.low >= train.features.min(axis=0))
    assert np.all(bundle.feature_range.high <= train.features.max(axis=0))
    report = json.loads((train_synth / "store" / "models" / "hand" / result["version"] / "report.json").read_text())
    coverage = report["coverage"]
    assert 0 < coverage["train"]["overall"]["features_outside"] < 0.02  # 0.5 % each side (264 windows: 2 rows)
    assert set(coverage["test"]["by_generalization"]) == {"user", "stage", "user_stage"}
    # New users and stages leave the training range more often than training windows do.
    for group in coverage["test"]["by_generalization"].values():
        assert group["features_outside"] > coverage["train"]["overall"]["features_outside"]


def _training_session(train_synth):
    data = load_preprocessed(str(train_synth / "pre"))
    session = next(s for s in data.summary["sessions"] if s["split"] == "train")
    with SessionReader(train_synth / "data" / f"{session['filename']}.hdf5") as reader:
        return next(reader.iter_chunks(10**7, 0, None)).emg


def test_predictions_flag_input_outside_the_training_range(train_model, train_synth):
    bundle = Registry(train_model[1]).load("hand")
    emg = _training_session(train_synth)
    usual = predict(bundle, emg)
    assert usual.out_of_range.shape == (len(usual),) and np.mean(usual.out_of_range > FLAG_SHARE) < 0.05
    # The same movements through an amplifier with 20x the gain: far outside what the trees saw.
    loud = predict(bundle, emg * 20)
    assert np.mean(loud.out_of_range > FLAG_SHARE) > 0.9
    assert loud.to_csv().splitlines()[0].endswith(",out_of_range")
    # A bundle written before the range was recorded still predicts, without the column.
    bundle.meta.pop("feature_range")
    del bundle.__dict__["feature_range"]
    old = predict(bundle, emg)
    assert old.out_of_range is None and "out_of_range" not in old.to_csv().splitlines()[0]
    np.testing.assert_array_equal(old.values, usual.values)


def test_cli_predict_warns_about_extrapolated_windows(train_model, train_synth, tmp_path):
    emg = _training_session(train_synth)[:20_000] * 20
    path = tmp_path / "loud.hdf5"
    with SessionWriter(str(path), sample_rate=2000.0, num_channels=16, filename="loud") as writer:
        writer.append(np.arange(len(emg)) / 2000.0, emg.astype(np.float32), np.zeros((len(emg), 20)))
    run = emgpose("predict", "--model", "hand", "--store", train_model[1], path, "--out", "p.csv", cwd=tmp_path)
    ok(run)
    assert "have more than 10% of their features outside the range hand" in run.stderr
    assert (tmp_path / "p.csv").read_text().splitlines()[0].endswith(",out_of_range")
