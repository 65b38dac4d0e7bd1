"""The comparative study (emgpose.study, bench/compare.py) on a machine without a GPU.

The kernels' configurations run on the host emulation (``emulate-*``), so the study's GPU code path (one
``(L, S*C)`` matrix for every session, pass-1 statistics, the feature matrix regrouped per session)
is checked against the CPU configuration here; the ``gpu-*`` ones report that they were skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from emgpose.errors import InvalidInput
from emgpose.study import STAGES, StudyOptions, run_study, save
from emgpose.synth import SynthConfig, write_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("study")
    write_dataset(SynthConfig(users=3, stages=2, sessions=2, duration_s=6.0, channels=4, seed=2), str(path))
    return str(path)


@pytest.fixture(scope="module")
def report(data: str) -> dict:
    configs = ["cpu", "emulate-kernels", "emulate-kernels-objective", "gpu-kernels"]
    return run_study(data, configs, StudyOptions(rounds=15, nthread=1))


def test_the_emulated_kernels_give_the_cpu_chain_s_windows_and_accuracy(report: dict):
    cpu, kernels = report["configs"]["cpu"], report["configs"]["emulate-kernels"]
    assert set(cpu["seconds"]) == set(STAGES) and cpu["peak_host_bytes"] > 0
    assert kernels["windows"] == cpu["windows"] and kernels["windows"]["train"] > 0
    assert kernels["shape"] == cpu["shape"] == {"samples": 10000, "sessions": 12, "channels": 4, "features": 24}
    # The same features to float32 rounding and the same trees: the same test error.
    assert kernels["accuracy"]["mae_deg"] == pytest.approx(cpu["accuracy"]["mae_deg"], rel=1e-3)
    agreement = report["comparison"]["accuracy"]["configs"]
    assert agreement["emulate-kernels"]["agrees"] and agreement["emulate-kernels-objective"]["agrees"]
    assert report["configs"]["emulate-kernels-objective"]["objective"] == "pseudo_huber"
    assert "no CUDA device" in report["configs"]["gpu-kernels"]["skipped"]
    assert report["device"] is None and "bandwidth" not in report


def test_report_and_plots_are_written(report: dict, tmp_path: Path):
    paths = save(report, tmp_path)
    assert sorted(Path(p).name for p in paths) == ["accuracy.png", "memory.png", "report.json", "stages.png"]
    assert json.loads((tmp_path / "report.json").read_text())["format"] == "emgpose.study/1"
    assert all(Path(p).stat().st_size > 1000 for p in paths)


def test_unknown_configurations_are_refused_by_name(data: str):
    with pytest.raises(InvalidInput, match=r"unknown study configurations \['gpu-fast'\]"):
        run_study(data, ["cpu", "gpu-fast"], StudyOptions(rounds=1))


def test_the_command_line_runs_xgboost_at_scale_alone_and_redraws_plots(tmp_path: Path):
    command = [sys.executable, str(ROOT / "bench" / "compare.py"), "--configs", "", "--xgb-windows", "3000",
               "--xgb-rounds", "2", "--nthread", "1", "--out", str(tmp_path), "--no-plots"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    xgb = json.loads((tmp_path / "report.json").read_text())["xgboost"]
    assert xgb["windows"] == 3000 and xgb["cpu"]["seconds"] > 0 and "cuda" not in xgb
    assert not list(tmp_path.glob("*.png"))


def test_cpu_only_features_and_multi_window_rows_are_refused_by_name(data: str):
    """The study's chains compute the kernel features over one window length; the rest are refused."""
    from emgpose.study import run_config

    with pytest.raises(InvalidInput, match=r"features \['ar', 'mnf'\] are CPU-only \(no GPU twin yet\)"):
        run_config("cpu", data, StudyOptions(rounds=1, preprocess={"features": ["mav", "ar", "mnf"]}))
    with pytest.raises(InvalidInput, match="leave window.extra_lengths empty and context at 0"):
        run_config("cpu", data, StudyOptions(rounds=1, preprocess={"context": 1}))
