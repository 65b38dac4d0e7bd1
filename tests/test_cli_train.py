"""``emgpose train | models | predict | evaluate | calibrate`` as a user runs them (subprocesses)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from test_cli import emgpose, ok, usage_error

QUICK = ("--num-rounds", "8", "--max-depth", "3")


def test_train_list_show_promote_predict_evaluate_calibrate(train_synth: Path, tmp_path: Path) -> None:
    store = (tmp_path / "store").as_uri()
    pre = train_synth / "pre"
    out = ok(emgpose("train", "--dataset", pre, "--name", "arm", "--store", store, *QUICK, cwd=tmp_path))
    assert "trained regression model arm version " in out and "report: " in out
    assert "test/user: mae_deg" in out and ("beats the best baseline" in out or "DOES NOT beat" in out)
    first = out.split("version ")[1].split()[0]
    out = ok(emgpose("train", "--dataset", pre, "--name", "arm", "--store", store, *QUICK, cwd=tmp_path))
    second = out.split("version ")[1].split()[0]

    listing = ok(emgpose("models", "list", "--store", store, cwd=tmp_path)).splitlines()
    assert [line.split("\t")[:3] for line in listing] == [["arm", first, ""], ["arm", second, "latest"]]
    assert "mae_deg" in listing[0]
    shown = json.loads(ok(emgpose("models", "show", f"arm@{first}", "--store", store, cwd=tmp_path)))
    assert shown["version"] == first and shown["latest"] is False
    assert (
        ok(emgpose("models", "promote", f"arm@{first}", "--store", store, cwd=tmp_path)).strip()
        == f"arm: latest -> {first}"
    )
    assert json.loads(ok(emgpose("models", "show", "arm", "--store", store, cwd=tmp_path)))["version"] == first

    session = train_synth / "data" / "user02_session0_FingerFreeform.hdf5"
    text = ok(emgpose("predict", "--model", "arm", "--store", store, session, cwd=tmp_path))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == (16000 - 400) // 100 + 1  # every window of the 8 s file
    assert abs(float(rows[5]["INDEX_MCP_FE_deg"]) - float(rows[5]["INDEX_MCP_FE_rad"]) * 57.29578) < 1e-3
    ok(emgpose("predict", "--model", f"arm@{second}", "--store", store, session, "--out", "p.csv", cwd=tmp_path))
    assert (tmp_path / "p.csv").read_text().splitlines()[0].startswith("window_end,t_end,THUMB_CMC_FE_rad")

    out = ok(emgpose("evaluate", "--model", "arm", "--dataset", pre, "--store", store, cwd=tmp_path))
    assert f"evaluated arm {first}" in out and "/evaluations/" in out

    out = ok(
        emgpose(
            "calibrate",
            "--model",
            "arm",
            "--data",
            session,
            "--seconds",
            "4",
            "--rounds",
            "3",
            "--store",
            store,
            cwd=tmp_path,
        )
    )
    assert f"(from {first}) on 4 s" in out
    assert len(ok(emgpose("models", "list", "arm", "--store", store, cwd=tmp_path)).splitlines()) == 3


def test_cli_errors_name_the_problem(train_synth: Path, tmp_path: Path) -> None:
    store = (tmp_path / "store").as_uri()
    line = usage_error(emgpose("models", "show", "ghost", "--store", store, cwd=tmp_path), "models")
    assert "model 'ghost' not found" in line
    line = usage_error(
        emgpose("train", "--dataset", train_synth / "data", "--name", "x", "--store", store, cwd=tmp_path), "train"
    )
    assert "summary.json not found" in line and "emgpose preprocess" in line
    line = usage_error(
        emgpose(
            "train",
            "--dataset",
            train_synth / "pre",
            "--name",
            "x",
            "--params",
            '{"depth": 3}',
            "--store",
            store,
            cwd=tmp_path,
        ),
        "train",
    )
    assert "depth" in line and "Extra inputs are not permitted" in line
