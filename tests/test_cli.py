"""The ``emgpose`` console script, run as a user runs it: a subprocess of the installed entry point.

Success paths check the files on disk and the summary the command prints; error paths check the
contract of ``main``: exit code 2 and one ``emgpose <command>: error: ...`` line on stderr that names
the problem, no traceback, nothing on stdout.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

EMGPOSE = Path(sys.executable).parent / "emgpose"
SMALL = ("--users", "2", "--stages", "2", "--sessions", "1", "--duration", "3")  # 4 sessions of 3 s
# a developer's shell must not leak in
_ISOLATE = ("S3_ENDPOINT_URL", "STORE_URI", "S3_REGION", "LOG_LEVEL", "DATABASE_URL", "REDIS_URL", "BROKER_DIR")


def emgpose(*args: str | Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _ISOLATE}
    return subprocess.run(
        [str(EMGPOSE), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def usage_error(result: subprocess.CompletedProcess[str], command: str) -> str:
    """Asserts the error contract and returns the one error line."""
    assert result.returncode == 2, f"exit {result.returncode}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"emgpose {command}: error: "), errors[0]
    return errors[0]


def metadata_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metadata.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-session synthetic dataset written by ``emgpose synth`` (shared by the module's tests)."""
    assert EMGPOSE.is_file(), f"console script missing at {EMGPOSE}; is the package installed?"
    root = tmp_path_factory.mktemp("cli-data")
    out = ok(emgpose("synth", "--out", root / "data", *SMALL, cwd=root))
    assert "wrote 4 sessions" in out
    data = root / "data"
    rows = metadata_rows(data)
    assert len(rows) == 4
    assert {f"{row['filename']}.hdf5" for row in rows} == {p.name for p in data.glob("*.hdf5")}
    return data


def test_preprocess_prints_where_it_wrote_and_writes_csv(dataset: Path, tmp_path: Path) -> None:
    out = ok(emgpose("preprocess", "--data", dataset, "--out", "out", "--csv", cwd=tmp_path))
    root = (tmp_path / "out").resolve()  # a relative --out is resolved against the working directory
    assert f"master table: {root.as_uri()}/master.parquet" in out
    assert f"summary:      {root.as_uri()}/summary.json" in out
    assert out.startswith(f"preprocessed 4 sessions from {dataset.resolve().as_uri()}")

    summary = json.loads((root / "summary.json").read_text())
    assert summary["input"]["sessions"] == 4
    assert summary["config"]["output"]["csv"] is True
    kept = sum(agg["windows_kept"] for agg in summary["counts"].values())
    assert kept > 0
    assert pq.read_metadata(root / summary["output"]["master"]).num_rows == kept
    assert (root / "stats.json").is_file()

    sessions = {row["filename"] for row in metadata_rows(dataset)}
    assert {p.stem for p in (root / "sessions").glob("*.parquet")} == sessions
    assert {p.stem for p in (root / "sessions").glob("*.csv")} == sessions
    for path in (root / "sessions").glob("*.csv"):
        with open(path, newline="") as f:
            header = next(csv.reader(f))
        assert header[:2] == ["session", "user"] and "f_rms_c00" in header


def test_preprocess_without_csv_flag_writes_no_csv(dataset: Path, tmp_path: Path) -> None:
    ok(emgpose("preprocess", "--data", dataset, "--out", tmp_path / "out", cwd=tmp_path))
    assert len(list((tmp_path / "out" / "sessions").glob("*.parquet"))) == 4
    assert not list((tmp_path / "out" / "sessions").glob("*.csv"))


def test_run_goes_through_the_rest_api_from_upload_to_prediction(tmp_path: Path) -> None:
    work = tmp_path / "w"
    out = ok(emgpose("run", "--workdir", work, "--duration", "3", "--rounds", "10", cwd=tmp_path, timeout=600))
    assert "stack up: gateway http://127.0.0.1:" in out and "uploaded dataset " in out
    assert re.search(r"preprocess job [0-9a-f]{32}: windows test \d+, train \d+, val \d+ -> dataset", out), out
    assert re.search(r"  overall +mae_deg [\d.]+: (beats|DOES NOT beat) the best baseline", out), out
    version = re.search(r"train job [0-9a-f]{32}: model demo version (\S+) \(cpu\)", out).group(1)
    assert f"with model version {version}: MAE " in out
    report = out.split("report: ")[-1].split()[0]
    assert json.loads(Path(report.removeprefix("file://")).read_text())["evaluation"]["test"]
    assert (work / "data" / "metadata.csv").is_file() and (work / "emgpose.db").is_file()
    # Where everything is: the plots, the full predictions CSV behind the preview, the upload's record.
    plots = out.split("  plots:  ")[1].splitlines()[0].split(", ")
    assert sorted(Path(p.removeprefix("file://")).name for p in plots) == ["joint_errors.png", "traces.png"]
    assert all(Path(p.removeprefix("file://")).read_bytes().startswith(b"\x89PNG") for p in plots)
    preview = re.search(r"preview: 4 of (\d+) windows, 4 of 20 joints \(degrees\); all of them: (\S+)", out)
    assert preview, out
    with open(preview.group(2), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert Path(preview.group(2)) == (work / "predictions.csv").resolve() and len(rows) == int(preview.group(1))
    assert list(rows[0])[:2] == ["window_end_sample", "t_end_s"] and sum(c.endswith("_deg") for c in rows[0]) == 20
    uploaded = re.search(r"uploaded dataset ([0-9a-f]{32}): ", out).group(1)
    assert json.loads((work / "data.upload.json").read_text())["dataset"] == uploaded
    assert out.strip().splitlines()[-1].startswith("stack stopped: gateway and inference no longer answer")


def test_preprocess_of_a_folder_without_metadata_names_metadata_csv(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    line = usage_error(emgpose("preprocess", "--data", "empty", "--out", "out", cwd=tmp_path), "preprocess")
    assert "metadata.csv" in line
    assert not (tmp_path / "out" / "summary.json").exists()


def test_config_with_an_unknown_key_names_the_key(dataset: Path, tmp_path: Path) -> None:
    config = tmp_path / "chain.yaml"
    config.write_text("bandpass:\n  low_hz: 20\n  hihg_hz: 400\n")
    result = emgpose("preprocess", "--data", dataset, "--out", "out", "--config", config, cwd=tmp_path)
    line = usage_error(result, "preprocess")
    assert "hihg_hz" in line and "chain.yaml" in line
    assert not (tmp_path / "out").exists()


def test_sample_rate_too_low_for_the_default_band_says_what_rate_is_needed(tmp_path: Path) -> None:
    ok(emgpose("synth", "--out", "slow", *SMALL, "--rate", "500", cwd=tmp_path))
    line = usage_error(emgpose("preprocess", "--data", "slow", "--out", "out", cwd=tmp_path), "preprocess")
    assert "900 Hz" in line and "500 Hz" in line
    assert not (tmp_path / "out" / "summary.json").exists()


def test_synth_with_options_that_break_a_rule_is_a_usage_error(tmp_path: Path) -> None:
    line = usage_error(emgpose("synth", "--out", "d", "--users", "1", cwd=tmp_path), "synth")
    assert "users" in line
