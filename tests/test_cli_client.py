"""``emgpose`` as a client of a running gateway (issue 16): datasets upload, jobs submit/watch/list/cancel,
models and predict with ``--url``, and ``stream FILE`` through the WebSocket; the quick CLI; the rough edges.

The server side is real: an embedded stack (``emgpose up``'s processes: gateway, preprocess and train
workers, inference; SQLite, the filesystem broker, a local store, API keys on) on ports 18610/18611. The
commands run as a user runs them: subprocesses of the console script.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from test_cli import ok, usage_error

from emgpose.cli import build_parser, main
from emgpose.cli_help import commands
from emgpose.cli_views import predictions_csv, time_column
from emgpose.client import Client
from emgpose.client_cli import result_lines
from emgpose.settings import get_settings
from emgpose.train.cli import RoundsBar
from emgpose.up import Stack, running

GATEWAY_PORT, INFERENCE_PORT = 18610, 18611
HEAVY = ("xgboost", "scipy", "matplotlib", "pyarrow", "sklearn", "h5py")
SESSION = "user02_session0_FingerFreeform.hdf5"  # a test-split session of conftest's TRAIN_SYNTH


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("client-stack")
    env = {
        "DATABASE_URL": f"sqlite:///{work / 'emgpose.db'}",
        "STORE_URI": (work / "store").as_uri(),
        "BROKER_DIR": str(work / "broker"),
        "REDIS_URL": "",
        "ALLOWED_DATA_ROOTS": "",
        "AUTH_ENABLED": "true",
        "MODEL_NAME": "hand",
        "RELOAD_INTERVAL_S": "0.5",
        "INFERENCE_WORKERS": "1",
        "DEVICE": "cpu",
        "LOG_LEVEL": "WARNING",
    }
    stack = Stack(work, gateway_port=GATEWAY_PORT, inference_port=INFERENCE_PORT, preprocess_concurrency=1, env=env)
    with running(stack, timeout_s=90):
        yield stack


@pytest.fixture
def client(stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """Runs an ``emgpose`` command in this process (``emgpose.cli.main``, what the console script calls) with
    the server in EMGPOSE_URL and the stack's admin key in EMGPOSE_API_KEY (or ``key``; None: no key).
    In-process because a fresh interpreter per command costs seconds on a busy machine; the console
    script itself runs in test_client_commands_and_help_import_no_heavy_modules."""

    def run(*args: str | Path, key: str | None = "stack") -> Run:
        monkeypatch.setenv("EMGPOSE_URL", stack.gateway_url)
        if key is None:
            monkeypatch.delenv("EMGPOSE_API_KEY", raising=False)
        else:
            monkeypatch.setenv("EMGPOSE_API_KEY", stack.api_key if key == "stack" else key)
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess([str(a) for a in args], code, out, err)

    return run


Run = subprocess.CompletedProcess[str]


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def _field(text: str, name: str) -> str:
    match = re.search(rf"^  {name}: (\S+)$", text, re.MULTILINE)
    assert match, f"no '{name}:' line in\n{text}"
    return match.group(1)


def test_upload_jobs_models_predict_and_stream_against_a_real_stack(
    stack: Stack, client: Callable[..., Run], train_synth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = ok(client("datasets", "upload", train_synth / "data", "--name", "lab"))
    raw_id = re.search(r"uploaded dataset ([0-9a-f]{32}) \(lab\): 13 files", out).group(1)

    result = client("jobs", "submit", "preprocess", "--dataset", raw_id, "--watch")
    out = ok(result)
    assert "preprocess" in result.stderr and "100%" in result.stderr  # the live bar reached the end
    assert re.search(r"job [0-9a-f]{32} \(preprocess\): succeeded", out), out
    pre_id = _field(out, "dataset_id")
    assert _field(out, "dataset") == f"{stack.gateway_url}/v1/datasets/{pre_id}"  # links made absolute

    body = tmp_path / "train.json"
    body.write_text(json.dumps({"type": "train", "params": {"name": "hand", "config": {"num_rounds": 8}}}))
    out = ok(
        client(
            "jobs",
            "submit",
            "--file",
            body,
            "--dataset",
            pre_id,
            "--param",
            'config={"num_rounds": 8, "max_depth": 3}',
            "--watch",
        )
    )
    assert re.search(r"\(train\): succeeded", out), out
    version = _field(out, "version")

    listing = ok(client("jobs", "list")).splitlines()
    assert listing[0].split() == ["id", "type", "state", "stage", "progress", "created", "(UTC)"]
    assert [line.split()[1:3] for line in listing[1:3]] == [["train", "succeeded"], ["preprocess", "succeeded"]]

    models = ok(client("models", "list", "--remote")).splitlines()
    assert models[0].split()[:4] == ["model", "version", "latest", "task"]
    assert models[1].split()[:4] == ["hand", version, "latest", "regression"] and "mae_deg" in models[1]
    shown = ok(client("models", "show", "hand", "--url", stack.gateway_url))
    assert shown.startswith(f"hand {version}  (latest)\n") and "regression, 20 joints" in shown
    assert len(shown.splitlines()) < 25
    full = json.loads(ok(client("models", "show", f"hand@{version}", "--remote", "--json")))
    assert full["version"] == version and len(full["feature_names"]) > 20

    with Client(stack.gateway_url, api_key=stack.api_key) as api:
        api.wait_for_model(version, stack.inference_url)
    session = train_synth / "data" / SESSION
    out = ok(client("predict", session, "--remote", "--out", "server.csv"))
    assert f"by hand {version} (server) -> server.csv" in out
    server = read_csv(tmp_path / "server.csv")
    assert list(server[0])[:3] == ["window_end_sample", "t_end_s", "THUMB_CMC_FE_rad"]
    assert len(server) == (16000 - 400) // 100 + 1
    # EMGPOSE_URL is set, yet without --url/--remote predict reads the local registry (here, the stack's store)
    local = ok(client("predict", "--model", f"hand@{version}", "--store", stack.env["STORE_URI"], session))
    local_rows = list(csv.DictReader(io.StringIO(local)))
    assert [r["window_end_sample"] for r in local_rows] == [r["window_end_sample"] for r in server]
    np.testing.assert_allclose(
        [float(r["INDEX_MCP_FE_deg"]) for r in server], [float(r["INDEX_MCP_FE_deg"]) for r in local_rows], atol=1e-3
    )

    result = client("stream", session, "--speed", "0", "--chunk-ms", "100", "--out", "stream.csv")
    out = ok(result)
    lines = out.splitlines()
    fingers = ["THUMB_CMC_FE", *(f"{f}_MCP_FE" for f in ("INDEX", "MIDDLE", "RING", "PINKY"))]
    assert lines[0].split() == ["t", "(s)", "latency", "(ms)", *fingers]  # one flexion per finger by default
    assert len(lines[1].split()) == 2 + len(fingers)
    assert re.search(rf"streamed 8\.0 s of .* to hand {version}: {len(server)} windows in \d+ messages, latency", out)
    streamed = read_csv(tmp_path / "stream.csv")
    assert [r["window_end_sample"] for r in streamed] == [r["window_end_sample"] for r in server]
    np.testing.assert_allclose(
        [float(r["RING_DIP_FE_deg"]) for r in streamed], [float(r["RING_DIP_FE_deg"]) for r in server], atol=1e-2
    )

    out = ok(client("models", "promote", f"hand@{version}", "--remote"))
    assert out.strip() == f"hand: latest -> {version} (was {version}; promote that to roll back)"


def test_server_errors_are_shown_as_the_servers_message(
    stack: Stack, client: Callable[..., Run], train_synth: Path
) -> None:
    missing = "0" * 32
    detail = httpx.get(f"{stack.gateway_url}/v1/jobs/{missing}", headers={"Authorization": f"Bearer {stack.api_key}"})
    assert detail.status_code == 404
    line = usage_error(client("jobs", "watch", missing), "jobs")
    assert line == f"emgpose jobs: error: HTTP 404: {detail.json()['detail']}"

    line = usage_error(client("jobs", "list", key="emg_not_a_key"), "jobs")
    assert "HTTP 401" in line and "key" in line.lower()
    line = usage_error(client("jobs", "list", key=None), "jobs")
    assert "HTTP 401" in line

    line = usage_error(client("jobs", "submit", "train", "--dataset", missing, "--name", "x"), "jobs")
    assert "HTTP 404" in line and missing in line
    line = usage_error(client("jobs", "submit", "train", "--param", "oops"), "jobs")
    assert "--param: expected KEY=VALUE, got 'oops'" in line
    line = usage_error(client("models", "show", "ghost", "--remote"), "models")
    assert "HTTP 404" in line and "ghost" in line
    line = usage_error(client("stream", train_synth / "data" / SESSION, key="emg_not_a_key"), "stream")
    assert line.startswith("emgpose stream: error: the stream answered 401: ") and "Bearer" in line
    result = client("jobs", "list", "--url", "http://127.0.0.1:18699")
    assert "127.0.0.1:18699" in usage_error(result, "jobs")


def test_watch_of_a_job_that_does_not_succeed_exits_nonzero(
    stack: Stack, client: Callable[..., Run], train_synth: Path
) -> None:
    with Client(stack.gateway_url, api_key=stack.api_key) as api:
        dataset = api.upload_dataset("again", train_synth / "data")
        job = api.submit("preprocess", {"dataset": dataset["id"]})
        api.call("POST", f"/v1/jobs/{job['id']}/cancel")
    result = client("jobs", "watch", job["id"], "--interval", "0.2")
    assert result.returncode == 1, result.stderr
    assert f"job {job['id']} (preprocess): cancelled" in result.stdout


def test_client_commands_and_help_import_no_heavy_modules(stack: Stack, tmp_path: Path) -> None:
    """The quick CLI: ``--help``, and the client commands that read no recording, load none of XGBoost,
    SciPy, matplotlib, pyarrow, scikit-learn, h5py (checked in fresh interpreters, as a user starts them)."""
    url = stack.gateway_url
    commands = [["jobs", "list", "--url", url], ["datasets", "list", "--url", url], ["models", "list", "--url", url]]
    probe = (
        "import sys\nfrom emgpose.cli import main\n"
        "codes = []\n"
        "for argv in ARGV:\n"
        "    try:\n        codes.append(main(argv))\n    except SystemExit as exc:\n        codes.append(exc.code)\n"
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules), codes)\n"
    )
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("EMGPOSE_")}, "EMGPOSE_API_KEY": stack.api_key}
    for argv, codes in (([["--help"]], [0]), (commands, [0, 0, 0])):
        result = subprocess.run(
            [sys.executable, "-c", probe.replace("ARGV", repr(argv))],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        last = result.stdout.strip().splitlines()[-1]
        assert last == f"HEAVY [] {codes}", f"{argv}: {last}\n{result.stderr}"


# --- the rough edges of issue 16 that need no server ------------------------------------------------------


def _every_command() -> list[tuple[str, argparse.ArgumentParser]]:
    parser = build_parser()
    return [("", parser), *commands(parser)]


def test_every_command_shows_an_example_and_every_option_a_help_text() -> None:
    missing_help = [
        f"emgpose {path} {action.option_strings[-1]}"
        for path, parser in _every_command()
        for action in parser._actions
        if action.option_strings and not action.help
    ]
    assert not missing_help
    no_example = [path for path, parser in _every_command()[1:] if not (parser.epilog or "").startswith("example")]
    assert not no_example


def test_help_shows_defaults_and_no_rest_backticks(capsys: pytest.CaptureFixture[str]) -> None:
    for path, parser in _every_command():
        text = parser.format_help()
        assert "``" not in text, f"emgpose {path} --help:\n{text}"
        assert "(default: None)" not in text and "(default: False)" not in text, text
        for action in parser._actions:
            if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
                shown = " ".join(parser._get_formatter()._expand_help(action).split())  # as the help wraps it
                assert "default" in shown, f"emgpose {path} {action.option_strings[-1]}: {shown}"
    synth = dict(_every_command())["synth"].format_help()
    assert "simulated users (default: 4)" in synth and "EMG channels (default: 16)" in synth
    top = build_parser().format_help()
    assert "emgpose run" in top and "``" not in top


def test_train_help_states_the_boosting_defaults_it_would_use() -> None:
    from emgpose.train.boost import BoostConfig

    text = " ".join(dict(_every_command())["train"].format_help().split())
    defaults = BoostConfig()
    assert f"(default: {defaults.num_rounds}, BoostConfig's)" in text
    assert f"(default: {defaults.learning_rate:g}, BoostConfig's)" in text
    assert f"(default: {defaults.max_depth}, BoostConfig's)" in text


def test_db_current_names_the_database_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        assert main(["db", "current"]) == 0
        out = capsys.readouterr().out
        assert (
            out.strip() == f"database sqlite:///{tmp_path / 'runs' / 'emgpose.db'}: does not exist yet "
            "(`emgpose db upgrade` creates it)"
        )
        assert not (tmp_path / "runs").exists()
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
        assert main(["db", "upgrade", "--url", url]) == 0
        assert main(["db", "current", "--url", url]) == 0
        assert re.fullmatch(rf"database {re.escape(url)}: revision \w+\n", capsys.readouterr().out.split("\n", 1)[1])
    finally:
        get_settings.cache_clear()


def test_rounds_bar_label_follows_the_work_and_ends_as_done() -> None:
    bar = RoundsBar()
    bar(0, 1, "loading")
    for done in range(1, 5):
        bar(done, 4, "boosting")
    bar(0, 1, "publishing")
    assert bar.bar.desc.startswith("boosting") and "publishing" in bar.bar.postfix  # a stage after, not a label
    bar.close()
    assert bar.bar.desc.startswith("trained") and not bar.bar.postfix


def test_watch_result_lines_are_readable() -> None:
    with Client("http://127.0.0.1:18699") as api:
        lines = result_lines(
            api,
            {
                "dataset": "/v1/datasets/ab",
                "windows": {"train": 3, "test": 1},
                "metrics": {
                    "split": "test",
                    "verdict": {
                        "overall": {
                            "metric": "mae_deg",
                            "model": 9.0,
                            "best_baseline": "ridge",
                            "baseline": 10.0,
                            "beats_baselines": True,
                        }
                    },
                },
            },
        )
    assert lines == [
        "dataset: http://127.0.0.1:18699/v1/datasets/ab",
        "windows: test 1, train 3",
        "test/overall: mae_deg 9 beats the best baseline (ridge 10)",
    ]


def test_predictions_csv_columns_carry_units_and_old_files_still_read() -> None:
    answer = {
        "task": "regression",
        "joints": ["KNEE_FE"],
        "window_end_sample": [399, 499],
        "window_end_s": [0.1995, 0.2495],
        "radians": [[0.5], [0.25]],
        "degrees": [[28.6479], [14.3239]],
    }
    rows = list(csv.reader(io.StringIO(predictions_csv(answer))))
    assert rows[0] == ["window_end_sample", "t_end_s", "KNEE_FE_rad", "KNEE_FE_deg"]
    assert rows[1] == ["399", "0.199500", "0.5", "28.6479"]
    assert time_column(rows[0]) == "t_end_s" and time_column(["window_end", "t_end", "x_rad"]) == "t_end"


def test_the_folders_the_readme_commands_make_are_ignored_by_git() -> None:
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["data/synth/metadata.csv", "processed/synth/summary.json", "angles.csv", "runs/emgpose.db"]
    result = subprocess.run(["git", "check-ignore", *paths], cwd=root, capture_output=True, text=True, timeout=30)
    assert result.stdout.split() == paths, result.stderr
