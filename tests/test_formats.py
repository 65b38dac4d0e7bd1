"""Session files (emg2pose layout) and metadata.csv."""

import h5py
import numpy as np
import pytest

from emgpose.errors import DataFormatError, NotFound
from emgpose.formats import (
    EMG2POSE_JOINTS,
    MetadataRow,
    SessionReader,
    SessionWriter,
    read_metadata,
    write_metadata,
)


def _write(path, n=5000, channels=16, joints=EMG2POSE_JOINTS, label=False, chunk=1000):
    t = 1000.0 + np.arange(n) / 2000.0
    emg = np.random.default_rng(0).normal(size=(n, channels)).astype(np.float32)
    angles = np.linspace(0, 1, n * len(joints)).reshape(n, len(joints)) if joints else None
    lab = (np.arange(n) // 1000).astype(np.int32) if label else None
    with SessionWriter(
        path,
        sample_rate=2000.0,
        num_channels=channels,
        joint_names=joints,
        with_label=label,
        user="u1",
        stage="s1",
        session="x",
        side="left",
    ) as w:
        for i in range(0, n, chunk):
            w.append(
                t[i : i + chunk],
                emg[i : i + chunk],
                None if angles is None else angles[i : i + chunk],
                None if lab is None else lab[i : i + chunk],
            )
    return t, emg, angles, lab


def test_round_trip_in_the_emg2pose_layout(tmp_path):
    path = tmp_path / "s.hdf5"
    t, emg, angles, _ = _write(path)
    with h5py.File(path) as f:  # the layout DESIGN.md describes, read with plain h5py
        ds = f["emg2pose/timeseries"]
        assert ds.dtype["emg"].shape == (16,) and ds.dtype["joint_angles"].shape == (20,)
        assert ds.dtype["time"] == np.dtype("<f8") and ds.dtype["emg"].base == np.dtype("<f4")
        assert f["emg2pose"].attrs["sample_rate"] == 2000.0
        assert f["emg2pose"].attrs["start"] == t[0] and f["emg2pose"].attrs["end"] == t[-1]
    with SessionReader(path) as r:
        info = r.info
        assert (info.num_samples, info.num_channels, info.joint_names) == (5000, 16, EMG2POSE_JOINTS)
        assert (info.user, info.stage, info.side, info.filename) == ("u1", "s1", "left", "s")
        chunks = list(r.iter_chunks(777, start=10, stop=4000))
    assert [c.offset for c in chunks][:3] == [10, 787, 1564]
    np.testing.assert_array_equal(np.concatenate([c.emg for c in chunks]), emg[10:4000])
    np.testing.assert_array_equal(np.concatenate([c.joint_angles for c in chunks]), angles[10:4000])
    np.testing.assert_array_equal(np.concatenate([c.time for c in chunks]), t[10:4000])


def test_index_range_by_time(tmp_path):
    t, *_ = _write(tmp_path / "s.hdf5")
    with SessionReader(tmp_path / "s.hdf5") as r:
        assert r.index_range(t[100], t[200]) == (100, 201)
        assert r.index_range(float("nan"), t[10] + 1e-7) == (0, 11)
        assert r.index_range(None, None) == (0, 5000)


def test_label_only_session_with_any_channel_count(tmp_path):
    _, _, _, lab = _write(tmp_path / "g.hdf5", channels=8, joints=(), label=True)
    with SessionReader(tmp_path / "g.hdf5") as r:
        assert r.info.has_label and not r.info.has_joints and r.info.num_channels == 8
        np.testing.assert_array_equal(r.read().label, lab)


def test_custom_joint_names(tmp_path):
    _write(tmp_path / "k.hdf5", joints=("KNEE_FE",))
    with SessionReader(tmp_path / "k.hdf5") as r:
        assert r.info.joint_names == ("KNEE_FE",)


def test_file_is_invisible_until_closed(tmp_path):
    path = tmp_path / "s.hdf5"
    with pytest.raises(RuntimeError), SessionWriter(path, sample_rate=100.0, num_channels=2) as w:
        w.append(np.arange(3.0), np.zeros((3, 2)), np.ones((3, 20)))
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.move("emg2pose", "other"), "missing HDF5 group 'emg2pose'"),
        (lambda f: f["emg2pose"].attrs.__delitem__("sample_rate"), "'sample_rate' is required"),
        (
            lambda f: f["emg2pose"].attrs.__setitem__("num_channels", 3),
            "num_channels=3 but field 'emg' has 16",
        ),
        (lambda f: f["emg2pose"].attrs.__setitem__("joint_names", ["A", "B"]), "2 names for 20 joint angles"),
    ],
)
def test_broken_files_name_the_file_and_rule(tmp_path, mutate, message):
    path = tmp_path / "bad.hdf5"
    _write(path, n=100)
    with h5py.File(path, "a") as f:
        mutate(f)
    with pytest.raises(DataFormatError, match=message) as err:
        SessionReader(path)
    assert "bad.hdf5" in str(err.value)


def test_missing_and_non_hdf5_files(tmp_path):
    with pytest.raises(NotFound, match="nope.hdf5"):
        SessionReader(tmp_path / "nope.hdf5")
    (tmp_path / "text.hdf5").write_text("not hdf5")
    with pytest.raises(DataFormatError, match="text.hdf5: not a readable HDF5 file"):
        SessionReader(tmp_path / "text.hdf5")


def test_metadata_round_trip_and_validation():
    rows = [
        MetadataRow("a", split="train", user="u", start=1.5, end=9.0),
        MetadataRow("b", split="test", generalization="user", held_out_user=True),
    ]
    assert read_metadata(write_metadata(rows)) == rows
    with pytest.raises(DataFormatError, match="line 2: column 'split' must be one of"):
        read_metadata("filename,split\na,training\n")
    with pytest.raises(DataFormatError, match="line 3: filename 'a' appears twice"):
        read_metadata("filename\na\na.hdf5\n")
    with pytest.raises(DataFormatError, match="required column 'filename'"):
        read_metadata("file,split\na,train\n")
    with pytest.raises(DataFormatError, match="'end' .* must be after 'start'"):
        read_metadata("filename,start,end\na,5,4\n")
    with pytest.raises(DataFormatError, match="column 'start'.*expected a number"):
        read_metadata("filename,start\na,soon\n")


def test_index_range_with_uneven_time(tmp_path):
    """Dropped samples break the rate's prediction; the binary search still finds the range."""
    n = 3000
    t = 50.0 + np.arange(n) / 1000.0
    t[1000:] += 0.75  # a gap of 750 samples' time
    with SessionWriter(tmp_path / "gap.hdf5", sample_rate=1000.0, num_channels=1, joint_names=("A",)) as w:
        w.append(t, np.zeros((n, 1)), np.ones((n, 1)))
    with SessionReader(tmp_path / "gap.hdf5") as r:
        for lo, hi in [(t[5], t[999]), (t[1000], t[2500]), (t[998], t[1003]), (t[0] - 1, t[-1] + 1)]:
            i0, i1 = r.index_range(lo, hi)
            expected = np.flatnonzero((t >= lo) & (t <= hi))
            assert (i0, i1) == (expected[0], expected[-1] + 1)
