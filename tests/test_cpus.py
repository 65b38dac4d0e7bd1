"""Threads sized to the CPUs a process may really use: affinity and a cgroup CPU quota (docker --cpus)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emgpose.devices import cgroup_cpu_quota, usable_cpus
from emgpose.train.boost import BoostConfig


def _write(root: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return str(root)


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),  # cgroup v2, docker --cpus 1.5
        ({"cpu.max": "max 100000\n"}, None),  # v2 without a limit
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),  # v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1 without a limit
        ({"cpu.max": "garbage"}, None),
        ({}, None),
    ],
)
def test_cgroup_quota_in_both_layouts(tmp_path: Path, files: dict[str, str], quota: float | None):
    assert cgroup_cpu_quota(_write(tmp_path, files)) == quota


def test_a_quota_caps_the_threads_and_never_below_one(tmp_path: Path):
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(_write(tmp_path / "a", {"cpu.max": "50000 100000"})) == 1
    assert usable_cpus(_write(tmp_path / "b", {"cpu.max": "max 100000"})) == affinity
    assert usable_cpus(_write(tmp_path / "c", {"cpu.max": f"{(affinity + 4) * 100000} 100000"})) == affinity


def test_affinity_limits_the_threads_and_xgboost_gets_them_by_default():
    code = (
        "import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
        "from emgpose.devices import usable_cpus; from emgpose.train.boost import BoostConfig; "
        "print(usable_cpus(), BoostConfig().xgb_params('regression')['nthread'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "1"]
    assert BoostConfig(nthread=3).xgb_params("regression")["nthread"] == 3
