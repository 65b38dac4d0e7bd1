"""End to end: synthetic sessions -> preprocessing job -> outputs in the store (local and S3)."""

import json
import shutil

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from emgpose.errors import DataFormatError, InvalidInput, NotFound
from emgpose.formats import SessionReader, read_metadata
from emgpose.preprocess import PreprocessConfig
from emgpose.preprocess.job import run_preprocess
from emgpose.store import open_store
from emgpose.synth import SynthConfig, write_dataset

SMALL = SynthConfig(users=3, stages=2, sessions=2, duration_s=3.0, chunk_samples=4096)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth")
    write_dataset(SMALL, str(path))
    return path


@pytest.fixture
def data_dir(synth_dir, tmp_path):
    """A private copy each test may damage."""
    return shutil.copytree(synth_dir, tmp_path / "data")


@pytest.fixture(scope="module")
def done(synth_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    summary = run_preprocess(str(synth_dir), str(out))
    return summary, out


def _snapshot(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_outputs_are_complete_and_consistent(done, synth_dir):
    summary, out = done
    rows = read_metadata((synth_dir / "metadata.csv").read_text())
    keys = open_store(str(out)).list()
    assert sorted(p.name for p in out.iterdir()) == ["master.parquet", "sessions", "stats.json", "summary.json"]
    assert keys == sorted(
        ["master.parquet", "stats.json", "summary.json"] + [f"sessions/{r.filename}.parquet" for r in rows]
    )
    master = pq.read_table(out / "master.parquet")
    assert master.num_rows == sum(s["windows_kept"] for s in summary["sessions"]) > 0
    assert [c for c in master.column_names if c.startswith("f_")] == summary["feature_names"]
    assert len(summary["feature_names"]) == 6 * 16
    for rec in summary["sessions"]:
        assert pq.read_table(out / rec["output"]).num_rows == rec["windows_kept"]
    assert set(summary["counts"]) == {"train", "val", "test"}
    assert summary["window"] == {"length_samples": 400, "stride_samples": 100}
    assert json.loads((out / "summary.json").read_text())["counts"] == summary["counts"]


def test_targets_are_the_angles_at_each_window_end(done, synth_dir):
    summary, out = done
    rec = summary["sessions"][0]
    table = pq.read_table(out / rec["output"]).to_pydict()
    with SessionReader(synth_dir / f"{rec['filename']}.hdf5") as r:
        angles = r.read().joint_angles
        time = r.read().time
    ends = np.array(table["window_end"])
    np.testing.assert_array_equal(table["y_THUMB_CMC_FE"], angles[ends, 0])
    np.testing.assert_array_equal(table["t_end"], time[ends])
    start, stop = rec["range"]
    assert ends.min() >= start + 399 and ends.max() < stop  # windows lie inside the metadata range
    stats = summary["stats"]
    expected = (angles[ends, 3] - stats["target_mean"][3]) / stats["target_std"][3]
    np.testing.assert_allclose(table["yz_THUMB_IP_FE"], expected, rtol=1e-5)


def test_statistics_come_from_the_training_split_only(done, synth_dir):
    summary, _ = done
    train, everything = [], []
    for rec in summary["sessions"]:
        with SessionReader(synth_dir / f"{rec['filename']}.hdf5") as r:
            y = r.read(*rec["range"]).joint_angles
        y = y[~(y == 0).all(axis=1)]
        everything.append(y)
        if rec["split"] == "train":
            train.append(y)
    mean = summary["stats"]["target_mean"]
    np.testing.assert_allclose(mean, np.concatenate(train).mean(axis=0), rtol=1e-9)
    assert not np.allclose(mean, np.concatenate(everything).mean(axis=0), rtol=1e-6)
    assert summary["stats"]["samples"] == summary["counts"]["train"]["samples"]


def test_ik_failures_are_dropped_and_counted(done):
    summary, out = done
    dropped = sum(agg["windows_dropped"]["ik_failure"] for agg in summary["counts"].values())
    assert dropped > 0
    master = pq.read_table(out / "master.parquet")
    y = np.column_stack([master[c].to_numpy() for c in master.column_names if c.startswith("y_")])
    assert not (np.abs(y) < 1e-6).all(axis=1).any()


def test_rerun_writes_the_same_keys_and_tables(done, synth_dir, tmp_path):
    summary, out = done
    again = tmp_path / "again"
    run_preprocess(str(synth_dir), str(again), PreprocessConfig(chunk_samples=1024))
    first, second = _snapshot(out), _snapshot(again)
    assert first.keys() == second.keys()
    a, b = pq.read_table(out / "master.parquet"), pq.read_table(again / "master.parquet")
    assert a.column_names == b.column_names and a.num_rows == b.num_rows
    for name in summary["feature_names"]:  # other chunking, same numbers (causal state carried)
        np.testing.assert_allclose(a[name].to_numpy(), b[name].to_numpy(), rtol=2e-5, atol=2e-5)


def test_csv_on_request(synth_dir, tmp_path):
    summary = run_preprocess(str(synth_dir), str(tmp_path), PreprocessConfig(output={"csv": True}))
    rec = summary["sessions"][0]
    lines = (tmp_path / "sessions" / f"{rec['filename']}.csv").read_text().splitlines()
    assert len(lines) == rec["windows_kept"] + 1 and lines[0].startswith('"session","user"')


def test_missing_file_fails_before_anything_is_written(data_dir, tmp_path):
    (data_dir / "user01_session1_FingerFreeform.hdf5").unlink()
    with pytest.raises(NotFound, match="user01_session1_FingerFreeform.hdf5.*does not exist"):
        run_preprocess(str(data_dir), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.*"))


def test_rate_too_low_for_the_band(tmp_path):
    write_dataset(
        SynthConfig(users=2, stages=2, sessions=1, duration_s=3.0, sample_rate=500.0), str(tmp_path / "d")
    )
    with pytest.raises(InvalidInput, match=r"\.hdf5: band-pass high edge 450 Hz needs sample_rate > 900 Hz"):
        run_preprocess(str(tmp_path / "d"), str(tmp_path / "out"))
    config = PreprocessConfig(bandpass={"high_hz": 200.0})
    assert (
        run_preprocess(str(tmp_path / "d"), str(tmp_path / "out"), config)["counts"]["train"]["windows_kept"]
        > 0
    )


def test_nan_heavy_file_is_refused_and_old_outputs_survive(data_dir, tmp_path):
    out = tmp_path / "out"
    run_preprocess(str(data_dir), str(out))
    before = _snapshot(out)
    victim = data_dir / "user02_session0_FingerFreeform.hdf5"
    with h5py.File(victim, "a") as f:
        ds = f["emg2pose/timeseries"]
        rows = ds[:]
        rows["emg"][1000:2000, 3] = np.nan  # a sixth of the session
        ds[:] = rows
    with pytest.raises(
        DataFormatError, match=r"user02_session0_FingerFreeform.hdf5: 25.0% of EMG samples.*NaN"
    ):
        run_preprocess(str(data_dir), str(out))
    assert _snapshot(out) == before


def test_some_nan_emg_is_dropped_and_counted(data_dir, tmp_path):
    victim = data_dir / "user00_session0_FingerFreeform.hdf5"
    with h5py.File(victim, "a") as f:
        ds = f["emg2pose/timeseries"]
        rows = ds[:]
        rows["emg"][3000, 0] = np.inf
        ds[:] = rows
    summary = run_preprocess(str(data_dir), str(tmp_path / "out"))
    rec = next(s for s in summary["sessions"] if s["filename"] == victim.stem)
    assert rec["windows_dropped"]["emg_invalid"] == 4  # 400-sample windows every 100 samples


def test_channel_mismatch_names_the_file(data_dir, tmp_path):
    from emgpose.formats import SessionWriter

    name = "user01_session0_FingerFreeform"
    with SessionWriter(data_dir / f"{name}.hdf5", sample_rate=2000.0, num_channels=8) as w:
        w.append(1603600000.0 + np.arange(6000) / 2000.0, np.zeros((6000, 8)), np.ones((6000, 20)))
    with pytest.raises(DataFormatError, match=f"{name}.hdf5: channel count 8 differs from 16"):
        run_preprocess(str(data_dir), str(tmp_path / "out"))


def test_time_range_outside_the_file(data_dir, tmp_path):
    text = (data_dir / "metadata.csv").read_text().splitlines()
    cols = text[0].split(",")
    row = text[1].split(",")
    row[cols.index("start")], row[cols.index("end")] = "1.0", "2.0"
    (data_dir / "metadata.csv").write_text("\n".join([text[0], ",".join(row), *text[2:]]) + "\n")
    with pytest.raises(DataFormatError, match=r"time range \[1.0, 2.0\].*selects no samples"):
        run_preprocess(str(data_dir), str(tmp_path / "out"))


def test_bad_config_file_names_the_setting(tmp_path):
    path = tmp_path / "pre.yaml"
    path.write_text("bandpass:\n  low_hz: 500\n  high_hz: 450\nwindow:\n  lenght: 100\n")
    with pytest.raises(
        InvalidInput, match=r"pre.yaml: bandpass: .*low_hz \(500.0\) must be below.*window.lenght"
    ):
        PreprocessConfig.load(path)


def test_s3_in_and_out(s3_store_uri, synth_dir):
    data = open_store(f"{s3_store_uri}/raw")
    for path in sorted(synth_dir.iterdir()):
        data.put_file(path.name, str(path))
    summary = run_preprocess(f"{s3_store_uri}/raw", f"{s3_store_uri}/processed")
    out = open_store(f"{s3_store_uri}/processed")
    assert "summary.json" in out.list() and "master.parquet" in out.list()
    assert not [k for k in out.list() if "staging" in k]
    assert json.loads(out.get_bytes("summary.json"))["counts"] == summary["counts"]


def test_a_worker_pool_gives_the_same_outputs(done, synth_dir, tmp_path):
    summary, out = done
    pooled = run_preprocess(str(synth_dir), str(tmp_path / "pooled"), workers=2)
    assert pooled["workers"] == 2 and summary["workers"] == 1
    assert pooled["stats"] == summary["stats"]
    assert pooled["sessions"] == summary["sessions"]
    a, b = pq.read_table(out / "master.parquet"), pq.read_table(tmp_path / "pooled" / "master.parquet")
    assert a.equals(b)


def test_an_error_in_a_pool_worker_reaches_the_caller(data_dir, tmp_path):
    victim = data_dir / "user02_session0_FingerFreeform.hdf5"
    with h5py.File(victim, "a") as f:
        ds = f["emg2pose/timeseries"]
        rows = ds[:]
        rows["emg"][1000:2000, 3] = np.nan
        ds[:] = rows
    with pytest.raises(DataFormatError, match="user02_session0_FingerFreeform.hdf5: 25.0% of EMG samples"):
        run_preprocess(str(data_dir), str(tmp_path / "out"), workers=2)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.*"))


def test_summary_states_the_ik_failure_rule(done):
    summary, _ = done
    assert summary["ik_failure_rule"] == "every joint within 1e-06 rad of 0"
