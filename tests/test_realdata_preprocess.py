"""Real recordings from ../shared/data, imported and preprocessed end to end, as a user would."""

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from emgpose.errors import InvalidInput
from emgpose.importers import import_myo, import_ninapro, import_uci
from emgpose.preprocess import PreprocessConfig
from emgpose.preprocess.job import run_preprocess

DATA = Path(os.environ.get("EMGPOSE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
pytestmark = pytest.mark.realdata


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real recordings not found at {path} (set EMGPOSE_SHARED_DATA to the shared data folder)")
    return path


def test_uci_knee_angle_with_the_default_chain(tmp_path):
    files = sorted(_need(DATA / "uci_lower_limb").glob("*.txt"))
    import_uci(files, tmp_path / "uci", test_users=["5"])
    summary = run_preprocess(str(tmp_path / "uci"), str(tmp_path / "out"))
    assert summary["sample_rate"] == 1000.0 and summary["joint_names"] == ["KNEE_FE"]
    assert summary["window"] == {"length_samples": 200, "stride_samples": 50}
    assert summary["counts"]["train"]["windows_kept"] > 1000 and summary["counts"]["test"]["windows_kept"] > 300
    # 5Nmar ends with 17 rows of empty EMG cells (NaN): counted, and no kept window touches them.
    nmar = next(s for s in summary["sessions"] if s["filename"] == "5Nmar")
    assert nmar["invalid_emg_fraction"] == pytest.approx(17 / nmar["samples"], abs=1e-6)
    ends = pq.read_table(tmp_path / "out" / "sessions" / "5Nmar.parquet")["window_end"].to_numpy()
    assert ends.max() < nmar["samples"] - 17
    master = pq.read_table(tmp_path / "out" / "master.parquet")
    assert np.isfinite(np.column_stack([master[c].to_numpy() for c in summary["feature_names"]])).all()
    knee = master["y_KNEE_FE"].to_numpy()
    assert 0 < np.degrees(knee).max() < 130  # radians, physiological range


def test_myo_at_200_hz_needs_a_band_that_fits(tmp_path):
    import_myo(_need(DATA / "myo_wrist" / "10000-1"), tmp_path / "myo")
    with pytest.raises(InvalidInput, match=r"needs sample_rate > 900 Hz, but the data is sampled at 200 Hz"):
        run_preprocess(str(tmp_path / "myo"), str(tmp_path / "out"))
    config = PreprocessConfig.from_dict({"bandpass": {"low_hz": 10, "high_hz": 90}, "moving_average": 10})
    summary = run_preprocess(str(tmp_path / "myo"), str(tmp_path / "out"), config)
    assert summary["has_label"] and summary["label_names"][:2] == ["rest", "flexion"]
    labels = pq.read_table(tmp_path / "out" / "master.parquet")["label"].to_numpy()
    assert set(np.unique(labels)) == set(range(8))


def test_ninapro_envelopes_without_band_pass(tmp_path):
    import_ninapro(_need(DATA / "ninapro_db1" / "S1_A1_E1.mat"), tmp_path / "nina")
    config = PreprocessConfig.from_dict({"bandpass": {"enabled": False}, "rectify": False, "moving_average": 5})
    summary = run_preprocess(str(tmp_path / "nina"), str(tmp_path / "out"), config)
    assert summary["num_channels"] == 10 and len(summary["joint_names"]) == 22
    assert set(summary["counts"]) == {"train", "val", "test"}
    table = pq.read_table(tmp_path / "out" / "master.parquet")
    assert set(np.unique(table["label"].to_numpy())) == set(range(13))
