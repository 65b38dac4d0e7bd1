"""``emgpose export --format c``: the sources compile with gcc and answer as the booster does on real windows."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from inference_support import NAME, recording

from emgpose.cli import main
from emgpose.export_c import write_sources
from emgpose.preprocess.signal import design_sos
from emgpose.train.bundle import Bundle, Registry
from emgpose.train.compiled import gcc
from emgpose.train.predict import Predictor

pytestmark = pytest.mark.skipif(gcc() is None, reason="gcc is not installed: the export's check compiles C")

# Our own harness (not the export's): full emgpose_predict on rows from a file, plus the constants.
HARNESS = r"""
#include <stdio.h>
#include "emgpose_model.h"
#include "emgpose_constants.h"
int main(int argc, char **argv) {
    FILE *in = fopen(argv[1], "rb");
    float x[EMGPOSE_NUM_FEATURES], y[EMGPOSE_NUM_OUTPUTS];
    while (fread(x, sizeof x, 1, in) == 1) {
        emgpose_predict(x, y);
        for (int k = 0; k < EMGPOSE_NUM_OUTPUTS; ++k) printf("%.9g ", y[k]);
        printf("\n");
    }
    fprintf(stderr, "%d %d %d %s %s\n", EMGPOSE_WINDOW_SAMPLES, EMGPOSE_NUM_SOS, EMGPOSE_NUM_CHANNELS,
            emgpose_feature_names[0], emgpose_output_names[EMGPOSE_NUM_OUTPUTS - 1]);
    for (int i = 0; i < EMGPOSE_NUM_SOS * 6; ++i) fprintf(stderr, "%.9g ", emgpose_sos[i]);
    return 0;
}
"""


def _run_exported(bundle: Bundle, folder: Path, rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
    write_sources(bundle, folder)
    (folder / "harness.c").write_text(HARNESS)
    exe = folder / "harness"
    sources = [str(folder / n) for n in ("emgpose_booster.c", "emgpose_model.c", "harness.c")]
    subprocess.run([gcc(), "-std=c99", "-O2", "-Wall", "-Werror", "-o", str(exe), *sources, "-lm"], check=True)
    (folder / "rows.f32").write_bytes(np.ascontiguousarray(rows, dtype=np.float32).tobytes())
    done = subprocess.run([str(exe), str(folder / "rows.f32")], capture_output=True, text=True, check=True)
    return np.loadtxt(done.stdout.splitlines(), ndmin=2), done.stderr.split("\n")


def test_exported_c_predicts_what_the_bundle_predicts(train_model, tmp_path):
    bundle = Registry(train_model[1]).load(NAME)
    rows = Predictor(bundle, backend="xgboost").prepare(recording(3.0, seed=3)).features
    got, constants = _run_exported(bundle, tmp_path / "c", rows)
    expected = bundle.stats.unscale_targets(bundle.booster.inplace_predict(rows))
    assert got.shape == (len(rows), len(bundle.joint_names)) and len(rows) > 20
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    window, sections, channels, first, last = constants[0].split()
    length, _ = bundle.config.window.samples(bundle.sample_rate)
    assert (int(window), int(channels), first, last) == (
        length,
        bundle.num_channels,
        bundle.feature_names[0],
        bundle.joint_names[-1],
    )
    sos = design_sos(bundle.config, bundle.sample_rate)
    assert int(sections) == len(sos)
    np.testing.assert_allclose(np.array(constants[1].split(), dtype=float), sos.ravel(), rtol=1e-6, atol=1e-7)


def test_classifier_exports_probabilities(train_model, tmp_path):
    base = Registry(train_model[1]).load(NAME)
    registry = Registry((tmp_path / "store").as_uri())  # its own store: the shared one keeps only `hand`
    rows = Predictor(base, backend="xgboost").prepare(recording(4.0, seed=4)).features
    labels = np.argsort(np.argsort(rows[:, 0])) * 3 // len(rows)  # three classes by the first feature
    booster = xgb.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 3, "nthread": 1},
        xgb.DMatrix(rows, labels),
        num_boost_round=8,
    )
    meta = {k: v for k, v in base.meta.items() if k not in ("version", "files", "latest", "format", "joint_names")}
    meta.update(name="gesture", task="classification", class_names=["rest", "fist", "open"])
    registry.publish(meta, booster, files={})
    bundle = registry.load("gesture")
    got, _ = _run_exported(bundle, tmp_path / "c", rows)
    np.testing.assert_allclose(got, booster.inplace_predict(rows), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_cli_export_writes_checks_and_reports(train_model, tmp_path, capsys):
    out = tmp_path / "edge"
    assert main(["export", "--model", NAME, "--store", train_model[1], "--format", "c", "--out", str(out)]) == 0
    report = json.loads((out / "export.json").read_text())
    assert report["windows_checked"] > 20 and report["max_abs_diff"] < 1e-5
    assert report["object_bytes"] > 0 and report["c_us_per_window"] > 0
    assert {p.name for p in out.iterdir()} >= {"emgpose_model.h", "emgpose_constants.h", "emgpose_booster.c"}
    assert "windows match XGBoost" in capsys.readouterr().out


def test_cli_export_refuses_unknown_format_and_model(train_model, tmp_path, capsys):
    store = train_model[1]
    assert main(["export", "--model", NAME, "--store", store, "--format", "onnx", "--out", str(tmp_path)]) == 2
    assert "only 'c' is supported" in capsys.readouterr().err
    assert main(["export", "--model", "nosuch", "--store", store, "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
