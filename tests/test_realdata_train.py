"""Training on the real recordings in ../shared/data, as docs/results.md does (fewer rounds)."""

import json

import pytest
from test_realdata_preprocess import DATA, _need

from emgpose.importers import import_myo, import_uci
from emgpose.preprocess import PreprocessConfig
from emgpose.preprocess.job import run_preprocess
from emgpose.train.boost import BoostConfig
from emgpose.train.job import run_train

pytestmark = pytest.mark.realdata
QUICK = BoostConfig(num_rounds=25, max_depth=4, nthread=2)


def _report(store, result):
    return json.loads((store / "models" / result["name"] / result["version"] / "report.json").read_text())


@pytest.mark.parametrize(("train_user", "test_user"), [("3", "5"), ("5", "3")])
def test_uci_knee_angle_across_subjects(tmp_path, train_user, test_user):
    files = sorted(_need(DATA / "uci_lower_limb").glob("*.txt"))
    import_uci(files, tmp_path / "data", test_users=[test_user])
    run_preprocess(str(tmp_path / "data"), str(tmp_path / "pre"))
    result = run_train(str(tmp_path / "pre"), str(tmp_path / "store"), "knee", config=QUICK)
    report = _report(tmp_path / "store", result)
    # No val split in the metadata and few windows: the rounds come from blocked cross-validation within the
    # training subject's sessions (never the test subject), then a refit on all of them.
    assert report["split"]["rules"]["test"] == "metadata"
    assert report["split"]["rules"]["val"].startswith("cross-validation")
    assert "val" not in report["split"]["windows"] and len(report["training"]["cross_validation"]["folds"]) == 4
    test = report["evaluation"]["test"]
    assert set(test["overall"]) == {"xgboost", "ridge", "mean"}
    assert 0 < test["overall"]["xgboost"]["mae_deg"] < 90
    assert set(test["overall"]["xgboost"]["per_joint"]) == {"KNEE_FE"}
    assert isinstance(test["verdict"]["overall"]["beats_baselines"], bool)


def test_myo_gestures_across_repetitions(tmp_path):
    import_myo(_need(DATA / "myo_wrist" / "10000-1"), tmp_path / "data")
    config = PreprocessConfig.from_dict({"bandpass": {"low_hz": 10, "high_hz": 90}, "moving_average": 10})
    run_preprocess(str(tmp_path / "data"), str(tmp_path / "pre"), config)
    result = run_train(str(tmp_path / "pre"), str(tmp_path / "store"), "myo", config=QUICK)
    test = _report(tmp_path / "store", result)["evaluation"]["test"]["overall"]
    assert result["task"] == "classification"
    assert test["xgboost"]["accuracy"] > 0.75 > test["majority"]["accuracy"]
    assert len(test["xgboost"]["confusion"]) == 8
