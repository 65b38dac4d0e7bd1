"""Importers: real recordings from the team's data folder, plus small synthetic tables and broken inputs."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.io

from emgpose.errors import DataFormatError, InvalidInput, NotFound
from emgpose.formats.metadata import METADATA_FILE, read_metadata
from emgpose.formats.session import SessionReader
from emgpose.importers import IMPORTERS, import_myo, import_ninapro, import_table, import_uci
from emgpose.importers.cli import register
from emgpose.importers.myo import LABEL_NAMES, repetitions

DATA = Path(os.environ.get("EMGPOSE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
UCI = DATA / "uci_lower_limb"
MYO = DATA / "myo_wrist" / "10000-1"
NINAPRO = DATA / "ninapro_db1" / "S1_A1_E1.mat"


def _need(path: Path) -> None:
    if not path.exists():
        pytest.skip(
            f"real recordings not found at {path} (set EMGPOSE_SHARED_DATA to the shared data folder)"
        )


def _read(out: Path, name: str):
    with SessionReader(out / f"{name}.hdf5") as reader:
        return reader.info, reader.read()


def _metadata(out: Path):
    return read_metadata((out / METADATA_FILE).read_text(), METADATA_FILE)


def _uci_rows(path: Path) -> list[list[str]]:
    """Data rows of a UCI file, independently of the importer: after the blank line, not all empty."""
    lines = path.read_text().splitlines()
    body = lines[lines.index("") + 1 :]
    return [cells for cells in (line.split("\t") for line in body) if any(c.strip() for c in cells)]


# ---------------------------------------------------------------- real data


@pytest.mark.realdata
def test_uci_real_files(tmp_path: Path) -> None:
    _need(UCI)
    files = sorted(UCI.glob("*.txt"))
    result = import_uci(files, tmp_path / "ds", test_users=["5"])
    out = result.out_dir
    assert [r.filename for r in result.sessions] == [f.stem for f in files]
    assert len(files) == 6
    for path in files:
        info, chunk = _read(out, path.stem)
        rows = _uci_rows(path)
        assert info.num_samples == len(rows) == result.samples[path.stem]
        assert info.sample_rate == 1000.0
        assert info.num_channels == 4
        assert info.joint_names == ("KNEE_FE",)
        assert info.user == path.stem[0] and info.stage == path.stem[2:] and info.session == path.stem
        expected_names = (
            ("Recto Femoral", "Biceps Femoral", "Vasto Medial", "EMG Semitendinoso")
            if path.stem.startswith("3A")
            else ("RF", "BF", "VM", "ST")
        )
        assert info.channel_names == expected_names
        assert chunk.time[0] == 0.0 and chunk.time[-1] == pytest.approx((len(rows) - 1) / 1000.0)
        last_angle = math.radians(float(rows[-1][4]))
        assert chunk.joint_angles[-1, 0] == pytest.approx(last_angle)
    _, amar = _read(out, "3Amar")
    assert amar.joint_angles[0, 0] == pytest.approx(math.radians(4.7))
    np.testing.assert_array_equal(amar.emg[0], np.float32([0.0067, -0.021, 0.0675, -0.0195]))
    assert not np.isnan(amar.emg).any()


@pytest.mark.realdata
def test_uci_real_nan_tail_and_metadata(tmp_path: Path) -> None:
    _need(UCI)
    result = import_uci(sorted(UCI.glob("*.txt")), tmp_path / "ds", test_users=["5"])
    _, nmar = _read(result.out_dir, "5Nmar")
    nan_rows = np.flatnonzero(np.isnan(nmar.emg).all(axis=1))
    assert len(nan_rows) == 17 and nan_rows[0] == len(nmar.time) - 17 and nan_rows[-1] == len(nmar.time) - 1
    assert not np.isnan(nmar.emg[: nan_rows[0]]).any()
    assert not np.isnan(nmar.joint_angles).any()
    assert nmar.joint_angles[-1, 0] == pytest.approx(math.radians(38.6))
    assert any("5Nmar.txt: 17 row(s) have empty EMG" in n for n in result.notes)
    rows = {r.filename: r for r in _metadata(result.out_dir)}
    assert rows == {r.filename: r for r in result.sessions}
    for name, row in rows.items():
        held = name.startswith("5")
        assert row.split == ("test" if held else "train")
        assert row.held_out_user is held and row.generalization == ("user" if held else "")


@pytest.mark.realdata
def test_myo_real_folder(tmp_path: Path) -> None:
    _need(MYO)
    result = import_myo(MYO, tmp_path / "ds")
    out = result.out_dir
    assert len(result.sessions) == 8 * 6
    for gesture in range(8):
        lines = [ln for ln in (MYO / f"{gesture}.txt").read_text().splitlines() if ln.strip()]
        names = [f"10000-1_g{gesture}_r{k}" for k in range(1, 7)]
        assert sum(result.samples[n] for n in names) == len(lines)
        labels = []
        for name in names:
            info, chunk = _read(out, name)
            assert info.sample_rate == 200.0 and info.num_channels == 8 and info.joint_names == ()
            assert info.has_label and info.label_names == LABEL_NAMES
            assert info.stage == LABEL_NAMES[gesture] and info.user == "10000-1"
            assert set(np.unique(chunk.label)) == ({0} if gesture == 0 else {0, gesture})
            if gesture:  # one rest block, then one gesture block
                assert chunk.label[0] == 0 and chunk.label[-1] == gesture
                assert np.count_nonzero(np.diff(chunk.label)) == 1
            assert np.all(chunk.emg == np.round(chunk.emg)) and np.abs(chunk.emg).max() <= 128
            labels.append(chunk.label)
        first = [int(v) for v in lines[0].split(",")]
        _, chunk = _read(out, names[0])
        np.testing.assert_array_equal(chunk.emg[0], first[:8])
        np.testing.assert_array_equal(np.concatenate(labels), [int(ln.rsplit(",", 1)[1]) for ln in lines])
    splits = {r.filename: r.split for r in _metadata(out)}
    assert splits["10000-1_g3_r6"] == "test" and splits["10000-1_g3_r5"] == "val"
    assert {splits[f"10000-1_g3_r{k}"] for k in range(1, 5)} == {"train"}
    assert sorted(splits.values()).count("test") == 8


@pytest.mark.realdata
def test_ninapro_real_file(tmp_path: Path) -> None:
    _need(NINAPRO)
    result = import_ninapro(NINAPRO, tmp_path / "ds")
    mat = scipy.io.loadmat(NINAPRO)
    assert len(result.sessions) == 12 * 10
    assert sum(result.samples.values()) == mat["emg"].shape[0]
    assert any("uncalibrated" in n for n in result.notes)
    previous_end = None
    for row in _metadata(result.out_dir):
        rep = int(row.filename.rsplit("_r", 1)[1])
        movement = int(row.filename.split("_m")[1][:2])
        assert row.split == ("test" if rep in (2, 5, 7) else "val" if rep == 10 else "train")
        info, chunk = _read(result.out_dir, row.filename)
        assert info.num_channels == 10 and info.sample_rate == 100.0
        assert info.joint_names == tuple(f"GLOVE_{j:02d}" for j in range(22))
        assert set(np.unique(chunk.label)) == {0, movement}
        first = round(chunk.time[0] * 100)
        assert first == (0 if previous_end is None else previous_end + 1)  # sessions tile the file
        previous_end = round(chunk.time[-1] * 100)
        np.testing.assert_array_equal(chunk.joint_angles, mat["glove"][first : previous_end + 1])
        np.testing.assert_array_equal(chunk.emg, mat["emg"][first : previous_end + 1].astype(np.float32))
        assert set(np.unique(mat["rerepetition"][first : previous_end + 1])) == {0, rep}
    assert previous_end == mat["emg"].shape[0] - 1


# ---------------------------------------------------------------- table importer (synthetic)


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_table_csv(tmp_path: Path) -> None:
    src = _csv(
        tmp_path / "rec.csv",
        "t,emg_1,emg_0,knee,label,comment\n0.5,1,2,90,0,hello\n0.6,3,,180,2,x\n0.7,5,6,45,1,y\n",
    )
    result = IMPORTERS["table"](
        src, tmp_path / "ds", sample_rate=10.0, channels="emg_*", targets=["knee"], target_units="deg",
        label="label", time="t", user="u1", stage="s", split="val",
    )  # fmt: skip
    info, chunk = _read(result.out_dir, "rec")
    assert info.channel_names == ("emg_1", "emg_0") and info.joint_names == ("knee",)
    np.testing.assert_allclose(chunk.time, [0.5, 0.6, 0.7])
    np.testing.assert_array_equal(chunk.emg, np.float32([[1, 2], [3, np.nan], [5, 6]]))
    np.testing.assert_allclose(chunk.joint_angles[:, 0], [math.pi / 2, math.pi, math.pi / 4])
    np.testing.assert_array_equal(chunk.label, [0, 2, 1])
    (row,) = _metadata(result.out_dir)
    assert (row.filename, row.split, row.user, row.stage) == ("rec", "val", "u1", "s")


def test_table_parquet_default_time(tmp_path: Path) -> None:
    src = tmp_path / "p.parquet"
    table = pa.table({"a": pa.array([1, 2, 3], pa.int16()), "b": [0.1, 0.2, 0.3], "g": pa.array([4, 5, 6])})
    pq.write_table(table, src)
    result = import_table(src, tmp_path / "ds", sample_rate=4.0, channels=["b", "a"], label="g")
    info, chunk = _read(result.out_dir, "p")
    assert info.channel_names == ("b", "a") and info.joint_names == () and info.num_samples == 3
    np.testing.assert_allclose(chunk.time, [0.0, 0.25, 0.5])
    np.testing.assert_array_equal(chunk.emg, np.float32([[0.1, 1], [0.2, 2], [0.3, 3]]))
    np.testing.assert_array_equal(chunk.label, [4, 5, 6])
    pq.write_table(table.append_column("s", pa.array(["x", "y", "z"])), src)
    with pytest.raises(DataFormatError, match=r"p\.parquet: column 's' must be numeric, it holds string"):
        import_table(src, tmp_path / "ds2", sample_rate=4.0, channels=["b", "s"], label="g")


def test_table_missing_column_names_file_and_columns(tmp_path: Path) -> None:
    src = _csv(tmp_path / "r.csv", "emg_0,knee\n1,2\n")
    with pytest.raises(
        DataFormatError, match=r"r\.csv: target column 'ankle' is missing; columns: \['emg_0'"
    ):
        import_table(src, tmp_path / "ds", sample_rate=1.0, channels="emg_*", targets=["ankle"])
    with pytest.raises(DataFormatError, match="no column matches channel pattern 'x_\\*'"):
        import_table(src, tmp_path / "ds", sample_rate=1.0, channels="x_*", targets=["knee"])
    assert not (tmp_path / "ds").exists()


def test_table_non_numeric_column(tmp_path: Path) -> None:
    src = _csv(tmp_path / "r.csv", "emg_0,knee\n1,2\n3,oops\n")
    with pytest.raises(DataFormatError, match=r"r\.csv line 3 column 2 \('knee' = 'oops'\).*numeric"):
        import_table(src, tmp_path / "ds", sample_rate=1.0, channels=["emg_0"], targets=["knee"])


def test_table_non_numeric_after_first_block(tmp_path: Path) -> None:
    body = "".join(f"{i},{i}\n" for i in range(40000)) + "1,bad\n"
    src = _csv(tmp_path / "big.csv", "emg_0,knee\n" + body)
    with pytest.raises(DataFormatError, match=r"big\.csv line 40002 column 2 \('knee' = 'bad'\)"):
        import_table(src, tmp_path / "ds", sample_rate=1.0, channels=["emg_0"], targets=["knee"])
    assert not (tmp_path / "ds").exists()


def test_table_needs_targets_or_label_and_existing_file(tmp_path: Path) -> None:
    src = _csv(tmp_path / "r.csv", "emg_0,knee\n1,2\n")
    with pytest.raises(InvalidInput, match="targets .* or label"):
        import_table(src, tmp_path / "ds", sample_rate=1.0, channels=["emg_0"])
    with pytest.raises(NotFound, match="nope.csv: input file does not exist"):
        import_table(tmp_path / "nope.csv", tmp_path / "ds", sample_rate=1.0, channels=["e"], label="l")


def test_table_label_and_time_rules(tmp_path: Path) -> None:
    src = _csv(tmp_path / "r.csv", "e,l,t\n1,0,0.0\n2,1.5,0.1\n")
    with pytest.raises(DataFormatError, match=r"r\.csv line 3: label column 'l' must hold integers"):
        import_table(src, tmp_path / "ds", sample_rate=1.0, channels=["e"], label="l")
    src = _csv(tmp_path / "s.csv", "e,l,t\n1,0,0.0\n2,1,0.0\n")
    with pytest.raises(DataFormatError, match=r"s\.csv line 3: time column 't' must increase"):
        import_table(src, tmp_path / "ds", sample_rate=1.0, channels=["e"], label="l", time="t")


def test_failed_import_leaves_no_metadata(tmp_path: Path) -> None:
    good = _csv(tmp_path / "a.csv", "e,l\n1,0\n")
    bad = _csv(tmp_path / "b.csv", "e,l\n1,x\n")
    out = tmp_path / "ds"
    out.mkdir()
    with pytest.raises(DataFormatError, match="b.csv"):
        import_table([good, bad], out, sample_rate=1.0, channels=["e"], label="l")
    assert list(out.iterdir()) == []
    import_table(good, out, sample_rate=1.0, channels=["e"], label="l")
    with pytest.raises(InvalidInput, match="already holds a dataset"):
        import_table(good, out, sample_rate=1.0, channels=["e"], label="l")
    assert sorted(p.name for p in out.iterdir()) == ["a.hdf5", METADATA_FILE]


# ---------------------------------------------------------------- other formats, synthetic


UCI_HEADER = (
    "File Name: x.log\n"
    "Channel 1: 'RF', 3 values, engineering units: mV, no filters.\n"
    "Channel 2: 'FX', 3 values, engineering units: deg, no filters.\n"
    "\n"
)


def test_uci_bad_header_and_cells(tmp_path: Path) -> None:
    bad = _csv(tmp_path / "1Amar.txt", UCI_HEADER.replace("'RF', 3 values", "RF 3 values") + "1\t2\n")
    with pytest.raises(DataFormatError, match=r"1Amar\.txt line 2: channel line must read"):
        import_uci(bad, tmp_path / "ds")
    bad = _csv(tmp_path / "2Nsen.txt", UCI_HEADER + "1\t2\n1\tx\n")
    with pytest.raises(DataFormatError, match=r"2Nsen\.txt line 6 column 2: expected a number, got 'x'"):
        import_uci(bad, tmp_path / "ds")
    bad = _csv(tmp_path / "3Npie.txt", "0.1\t2\n")
    with pytest.raises(DataFormatError, match=r"3Npie\.txt line 1: a header .* must come before"):
        import_uci(bad, tmp_path / "ds")
    bad = _csv(tmp_path / "walk.txt", UCI_HEADER + "1\t2\n")
    with pytest.raises(DataFormatError, match=r"file name must be <subject><A\|N><mar\|pie\|sen>"):
        import_uci(bad, tmp_path / "ds")
    good = _csv(tmp_path / "4Amar.txt", UCI_HEADER + "1\t2\n")
    with pytest.raises(InvalidInput, match=r"name \['9'\], but the files hold users \['4'\]"):
        import_uci(good, tmp_path / "ds", test_users=["9"])
    assert not (tmp_path / "ds").exists()


def test_uci_csv_variant(tmp_path: Path) -> None:
    src = _csv(tmp_path / "7Nsen.csv", "RF,BF,FX\n0.1,0.2,90\n,,45\n")
    result = import_uci(src, tmp_path / "ds", val_users=["7"])
    info, chunk = _read(result.out_dir, "7Nsen")
    assert info.channel_names == ("RF", "BF") and info.num_samples == 2
    np.testing.assert_allclose(chunk.joint_angles[:, 0], [math.pi / 2, math.pi / 4])
    assert np.isnan(chunk.emg[1]).all()
    assert result.sessions[0].split == "val" and result.sessions[0].held_out_user


def test_myo_repetitions_and_options(tmp_path: Path) -> None:
    assert repetitions(np.array([2, 2, 0, 0, 2, 0]), 10) == [(0, 2), (2, 5), (5, 6)]
    assert repetitions(np.zeros(25, int), 10) == [(0, 10), (10, 25)]
    folder = tmp_path / "u7"
    folder.mkdir()
    labels = [0, 0, 3, 3] * 4
    (folder / "3.txt").write_text("\r\n".join(f"{i},1,2,3,4,5,6,-7,{g}" for i, g in enumerate(labels)))
    result = import_myo(folder, tmp_path / "ds", sample_rate=2.0, test_last=2, val_last=0)
    assert [r.split for r in result.sessions] == ["train", "train", "test", "test"]
    _, chunk = _read(result.out_dir, "u7_g3_r2")
    np.testing.assert_allclose(chunk.time, [2.0, 2.5, 3.0, 3.5])  # time counts from the file start
    np.testing.assert_array_equal(chunk.emg[:, 0], [4, 5, 6, 7])
    (folder / "3.txt").write_text("1,2,3,4,5,6,7,8,0\n1,2,3,4,5,6,7,8,5\n")
    with pytest.raises(DataFormatError, match=r"3\.txt line 2 column 9: label must be 0 \(rest\) or 3"):
        import_myo(folder, tmp_path / "ds2")
    with pytest.raises(NotFound, match="no <gesture>.txt files"):
        import_myo(tmp_path / "ds", tmp_path / "ds3")


def _mat(path: Path, labels: list[int], reps: list[int], **extra: object) -> Path:
    n = len(labels)
    data = {
        "emg": np.arange(n * 2, dtype=float).reshape(n, 2),
        "glove": np.ones((n, 3)),
        "restimulus": np.array(labels, dtype=np.uint8)[:, None],
        "rerepetition": np.array(reps, dtype=np.uint8)[:, None],
        **extra,
    }
    scipy.io.savemat(path, data)
    return path


def test_ninapro_synthetic_segments(tmp_path: Path) -> None:
    # rest, m1 r1 cut by a short rest (one session), rest, m2 r1, rest
    src = _mat(tmp_path / "S4_A1_E2.mat", [0, 1, 0, 1, 0, 2, 2, 0], [0, 1, 0, 1, 0, 1, 1, 0])
    result = import_ninapro(src, tmp_path / "ds", test_reps=[1], val_reps=[])
    assert result.samples == {"S4_E2_m01_r01": 5, "S4_E2_m02_r01": 3}
    assert {r.split for r in result.sessions} == {"test"} and result.sessions[0].user == "4"
    info, chunk = _read(result.out_dir, "S4_E2_m02_r01")
    assert info.joint_names == ("GLOVE_00", "GLOVE_01", "GLOVE_02") and info.stage == "E2"
    np.testing.assert_allclose(chunk.time, [0.05, 0.06, 0.07])
    bad = _mat(tmp_path / "S4_A1_E3.mat", [1, 0, 2, 0, 1], [1, 0, 1, 0, 1])
    with pytest.raises(DataFormatError, match="movement 1 repetition 1 occurs twice"):
        import_ninapro(bad, tmp_path / "ds2")
    bad = tmp_path / "S4_A1_E4.mat"
    scipy.io.savemat(bad, {"emg": np.zeros((2, 2))})
    with pytest.raises(DataFormatError, match=r"S4_A1_E4\.mat: variable 'glove' is missing"):
        import_ninapro(bad, tmp_path / "ds3")
    with pytest.raises(InvalidInput, match="listed in both"):
        import_ninapro(src, tmp_path / "ds4", test_reps=[1], val_reps=[1])


# ---------------------------------------------------------------- command line


def _cli() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emgpose")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _csv(tmp_path / "r.csv", "emg_a,emg_b,knee\n1,2,0.5\n3,4,0.6\n")
    out = tmp_path / "ds"
    args = _cli().parse_args(
        ["import", "table", str(src), "--out", str(out), "--sample-rate", "100", "--channels", "emg_*",
         "--targets", "knee"]
    )  # fmt: skip
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"train\t{out / 'r.hdf5'}\t2 samples", str(out / METADATA_FILE)]
    args = _cli().parse_args(
        ["import", "table", str(src), "--out", str(tmp_path / "ds2"), "--sample-rate", "100",
         "--channels", "emg_*", "--targets", "ankle"]
    )  # fmt: skip
    assert args.func(args) == 2
    assert "target column 'ankle' is missing" in capsys.readouterr().err


@pytest.mark.realdata
def test_cli_uci_real(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _need(UCI)
    out = tmp_path / "ds"
    args = _cli().parse_args(
        ["import", "uci", str(UCI / "5Nmar.txt"), "--out", str(out), "--test-users", "5"]
    )
    assert args.func(args) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"test\t{out / '5Nmar.hdf5'}\t{len(_uci_rows(UCI / '5Nmar.txt'))} samples",
        str(out / METADATA_FILE),
    ]


def _knee(path: Path, degrees: np.ndarray) -> Path:
    rows = "".join(f"{0.01 * np.sin(i):.4f},{0.02:.4f},{d:.2f}\n" for i, d in enumerate(degrees))
    return _csv(path, "RF,BF,FX\n" + rows)


def test_sessions_with_the_opposite_sign_are_named_and_can_be_flipped_per_user(tmp_path: Path) -> None:
    swing = 30 + 30 * np.sin(np.linspace(0, 12, 200))  # 0 to 60 degrees
    files = [_knee(tmp_path / f"{u}Nmar.csv", swing) for u in ("3", "4")] + [_knee(tmp_path / "8Nmar.csv", -swing)]
    result = import_uci(files, tmp_path / "as-recorded")
    sign_notes = [n for n in result.notes if "opposite sign" in n]
    assert len(sign_notes) == 1 and "session(s) of 8 run from -" in sign_notes[0]
    assert "--target-sign 8=-1" in sign_notes[0]

    fixed = import_uci(files, tmp_path / "flipped", target_sign="8=-1", target_offset="4=10deg")
    assert not [n for n in fixed.notes if "opposite sign" in n]
    assert "user 8: angles x -1 + 0 deg (--target-sign/--target-offset)" in fixed.notes
    _, flipped = _read(fixed.out_dir, "8Nmar")
    np.testing.assert_allclose(flipped.joint_angles[:, 0], np.radians(swing), atol=1e-4)
    _, shifted = _read(fixed.out_dir, "4Nmar")
    np.testing.assert_allclose(shifted.joint_angles[:, 0], np.radians(swing + 10), atol=1e-4)


@pytest.mark.parametrize(
    ("sign", "offset", "message"),
    [
        ("2", None, r"'2' is not a value or USER=VALUE"),
        ("8=-1,-1,1", None, "more than one value for everyone"),
        (None, "=3", "names no user"),
        ("9=-1", None, r"name users \['9'\], but the files hold"),
        (None, "4=ten", "'4=ten' is not a value"),
    ],
)
def test_bad_target_conventions_are_refused_naming_the_option(tmp_path: Path, sign, offset, message) -> None:
    src = _knee(tmp_path / "4Nmar.csv", np.linspace(0, 60, 20))
    with pytest.raises(InvalidInput, match=message):
        import_uci(src, tmp_path / "ds", target_sign=sign, target_offset=offset)
    assert not (tmp_path / "ds").exists()


def test_cli_target_sign_flips_the_angles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _csv(tmp_path / "r.csv", "emg_a,emg_b,knee\n1,2,0.5\n3,4,0.6\n")
    args = _cli().parse_args(
        ["import", "table", str(src), "--out", str(tmp_path / "ds"), "--sample-rate", "100", "--channels", "emg_*",
         "--targets", "knee", "--target-sign", "-1", "--target-offset", "0.25"]
    )  # fmt: skip
    assert args.func(args) == 0
    _, chunk = _read(tmp_path / "ds", "r")
    np.testing.assert_allclose(chunk.joint_angles[:, 0], [-0.25, -0.35])
    assert "angles x -1 + 14.3239 deg" in capsys.readouterr().err
