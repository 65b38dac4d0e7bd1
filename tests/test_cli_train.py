"""``emgpose train | models | predict | evaluate | calibrate`` as a user runs them (subprocesses)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from test_cli import emgpose, ok, usage_error

QUICK = ("--num-rounds", "8", "--max-depth", "3")


def test_train_list_show_promote_predict_evaluate_calibrate(train_synth: Path, tmp_path: Path) -> None:
    store = (tmp_path / "store").as_uri()
    pre = train_synth / "pre"
    result = emgpose("train", "--dataset", pre, "--name", "arm", "--store", store, *QUICK, cwd=tmp_path)
    out = ok(result)
    assert "trained regression model arm version " in out and "report: " in out
    assert "test/user: mae_deg" in out and ("beats the best baseline" in out or "DOES NOT beat" in out)
    assert "beats_baselines" not in result.stderr  # the verdict once, not again as a raw JSON log line
    first = out.split("version ")[1].split()[0]
    out = ok(emgpose("train", "--dataset", pre, "--name", "arm", "--store", store, *QUICK, cwd=tmp_path))
    second = out.split("version ")[1].split()[0]

    listing = ok(emgpose("models", "list", "--store", store, cwd=tmp_path)).splitlines()
    assert listing[0].split() == ["model", "version", "latest", "task", "created", "test", "metrics"]
    assert [line.split()[:3] for line in listing[1:]] == [["arm", first, "-"], ["arm", second, "latest"]]
    assert "mae_deg" in listing[1]
    summary = ok(emgpose("models", "show", f"arm@{first}", "--store", store, cwd=tmp_path))
    assert summary.startswith(f"arm {first}\n") and "windows of 400 samples every 100" in summary
    assert len(summary.splitlines()) < 25 and "(--json prints the whole bundle.json)" in summary
    shown = json.loads(ok(emgpose("models", "show", f"arm@{first}", "--json", "--store", store, cwd=tmp_path)))
    assert shown["version"] == first and shown["latest"] is False
    assert (
        ok(emgpose("models", "promote", f"arm@{first}", "--store", store, cwd=tmp_path)).strip()
        == f"arm: latest -> {first}"
    )
    assert ok(emgpose("models", "show", "arm", "--store", store, cwd=tmp_path)).startswith(f"arm {first}  (latest)")

    session = train_synth / "data" / "user02_session0_FingerFreeform.hdf5"
    text = ok(emgpose("predict", "--model", "arm", "--store", store, session, cwd=tmp_path))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == (16000 - 400) // 100 + 1  # every window of the 8 s file
    assert abs(float(rows[5]["INDEX_MCP_FE_deg"]) - float(rows[5]["INDEX_MCP_FE_rad"]) * 57.29578) < 1e-3
    ok(emgpose("predict", "--model", f"arm@{second}", "--store", store, session, "--out", "p.csv", cwd=tmp_path))
    assert (tmp_path / "p.csv").read_text().splitlines()[0].startswith("window_end_sample,t_end_s,THUMB_CMC_FE_rad")

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
            "--name",
            "arm-anna",
            "--store",
            store,
            cwd=tmp_path,
        )
    )
    assert f"(from {first}) on 4 s" in out
    before = re.search(r"error before: ([\d.]+) deg MAE", out)
    after = re.search(
        r"error after: +([\d.]+) deg MAE +\(calibrated, cross-validated in time, [+-]\d+%: (better|NOT better)", out
    )
    assert before and after, out
    assert re.search(r"continue +\w+ +\+3 ", out), out  # continued boosting: rounds added to the base model's
    calibrated = out.split("version ")[1].split()[0]
    assert f"emgpose models promote arm-anna@{calibrated} makes it latest" in out
    assert len(ok(emgpose("models", "list", "arm", "--store", store, cwd=tmp_path)).splitlines()) == 1 + 2
    # published without --promote: no `latest`, yet predict --model arm-anna uses the newest version, saying so
    result = emgpose("predict", "--model", "arm-anna", "--store", store, session, "--out", "c.csv", cwd=tmp_path)
    assert f"by arm-anna {calibrated} -> c.csv" in ok(result)
    assert f"using its newest version {calibrated}" in result.stderr


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
