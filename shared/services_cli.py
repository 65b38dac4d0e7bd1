"""``emgpose db``, ``emgpose up`` and ``emgpose run`` (the main job, through the REST API)."""

from __future__ import annotations

import argparse
import csv
import os
import socket
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from emgpose.client import Client
from emgpose.run_upload import record_path, upload_once
from emgpose.settings import get_settings
from emgpose.up import Stack, running, serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cmd_db(args: argparse.Namespace) -> int:
    """``current`` names the database and only reads it: a SQLite file that does not exist is not created."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    from emgpose.db.engine import normalize_url  # noqa: PLC0415
    from emgpose.db.migrate import current, upgrade  # noqa: PLC0415

    text = args.url or get_settings().database_url
    try:
        given = make_url(text)
    except ArgumentError:
        return cmd_db_invalid(text)
    if given.drivername.startswith("sqlite") and given.database not in (None, "", ":memory:"):
        given = given.set(database=str(Path(given.database).resolve()))
        if args.action == "current" and not Path(given.database).exists():  # normalize_url would make its folder
            shown = given.render_as_string(hide_password=True)
            print(f"database {shown}: does not exist yet (`emgpose db upgrade` creates it)")  # noqa: T201
            return 0
    url = normalize_url(given.render_as_string(hide_password=False))
    shown = make_url(url).render_as_string(hide_password=True)
    if args.action == "upgrade":
        upgrade(url)
    print(f"database {shown}: revision {current(url) or 'none (run emgpose db upgrade)'}")  # noqa: T201
    return 0


def cmd_db_invalid(text: str) -> int:
    from emgpose.db.engine import normalize_url  # noqa: PLC0415

    normalize_url(text)  # raises InvalidInput naming the accepted forms
    return 2


def cmd_up(args: argparse.Namespace) -> int:
    stack = Stack(
        Path(args.workdir),
        host=args.host,
        gateway_port=args.gateway_port,
        inference_port=args.inference_port,
        preprocess_concurrency=args.concurrency,
    )
    return serve(stack)


class JobBar:
    """A progress bar over a job's percent; the description follows its stage."""

    def __init__(self, desc: str) -> None:
        self.bar = tqdm(total=100, unit="%", desc=desc, mininterval=0.3, file=sys.stderr, bar_format="{l_bar}{bar}|")

    def __call__(self, job: dict[str, Any]) -> None:
        self.bar.set_description_str(f"{job['type']}: {job['stage']}", refresh=False)
        self.bar.update(job["progress"] - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _wait(api: Client, job: dict[str, Any]) -> dict[str, Any]:
    bar = JobBar(job["type"])
    try:
        return api.wait(job, on_progress=bar)
    finally:
        bar.close()


def cmd_run(args: argparse.Namespace) -> int:
    """The main job through the REST API: synthetic data uploaded, preprocessed, trained, served, predicted."""
    from emgpose.synth import SynthConfig, write_dataset  # noqa: PLC0415 - the quick CLI: SciPy, h5py when used

    work = Path(args.workdir).resolve()
    data = work / "data"
    config = SynthConfig(duration_s=args.duration, seed=args.seed)
    write_dataset(config, data.as_uri())
    stack = Stack(work, gateway_port=free_port(), inference_port=free_port(), env={"MODEL_NAME": args.name})
    say = print  # the run's own report goes to stdout
    with running(stack), Client(stack.gateway_url, api_key=stack.api_key) as api:
        say(f"stack up: gateway {stack.gateway_url}, inference {stack.inference_url} (logs in {work / 'logs'})")
        if stack.api_key is not None:
            say(f"admin API key in {stack.key_file} (export EMGPOSE_API_KEY=$(cat {stack.key_file}))")
        upload = upload_once(api, "synthetic", data)
        dataset = upload.dataset
        size = f"{dataset['files']} files, {(dataset['bytes'] or 0) / 1e6:.1f} MB"
        if upload.reused:
            say(f"reused dataset {dataset['id']} ({size}): the files are unchanged since it was uploaded "
                f"(sha256 {upload.sha256[:12]}, {record_path(data)})")  # fmt: skip
        else:
            say(f"uploaded dataset {dataset['id']}: {size}")
        pre = _wait(api, api.submit("preprocess", {"dataset": dataset["id"]}))
        windows = ", ".join(f"{split} {n}" for split, n in sorted(pre["result"]["windows"].items()))
        say(f"preprocess job {pre['id']}: windows {windows} -> dataset {pre['result']['dataset_id']}")
        params = {"dataset": pre["result"]["dataset_id"], "name": args.name, "config": {"num_rounds": args.rounds}}
        trained = _wait(api, api.submit("train", params))
        result = trained["result"]
        say(f"train job {trained['id']}: model {result['model']} version {result['version']} ({result['device']})")
        say(f"  report: {result['report']}")
        say(f"  plots:  {', '.join(_plot_urls(result)) or 'none'}")
        for group, v in result["metrics"].get("verdict", {}).items():
            beats = "beats" if v["beats_baselines"] else "DOES NOT beat"
            say(f"  {group:<10} {v['metric']} {v['model']:.2f}: {beats} the best baseline ({v['best_baseline']} "
                f"{v['baseline']:.2f})")  # fmt: skip
        api.wait_for_model(result["version"], stack.inference_url)
        _predict_demo(api, data, work / PREDICTIONS_FILE, say)
    say(f"stack stopped: gateway and inference no longer answer (`MODEL_NAME={args.name} emgpose up --workdir "
        f"{work}` serves this folder's data and models again)")  # fmt: skip
    return 0


PREDICTIONS_FILE = "predictions.csv"
PREVIEW_ROWS = 4
PREVIEW_JOINTS = 4


def _plot_urls(result: dict[str, Any]) -> list[str]:
    """Where the version's plots are: the report lists them relative to the version's folder."""
    import json  # noqa: PLC0415

    from emgpose.store import open_store  # noqa: PLC0415

    version = open_store(result["uri"])
    return [version.url(p) for p in json.loads(version.get_bytes("report.json")).get("plots", [])]


def _predict_demo(api: Client, data: Path, out: Path, say: Any) -> None:
    import numpy as np  # noqa: PLC0415

    from emgpose.cli_views import predictions_csv  # noqa: PLC0415
    from emgpose.train.calibrate import read_recording  # noqa: PLC0415

    with open(data / "metadata.csv") as fh:
        row = next(r for r in csv.DictReader(fh) if r["split"] == "test")
    rec = read_recording(str(data / f"{row['filename']}.hdf5"))
    rec = rec.first(min(4.0, len(rec.time) / rec.sample_rate))
    answer = api.predict(rec.emg, rec.sample_rate)
    degrees = np.asarray(answer["degrees"])
    ends = np.asarray(answer["window_end_s"])
    index = np.clip(np.searchsorted(rec.time - rec.time[0], ends) - 1, 0, len(rec.time) - 1)
    truth = np.degrees(rec.angles[index])
    ok = np.any(np.abs(rec.angles[index]) > 1e-6, axis=1)  # IK failures carry all-zero angles
    mae = float(np.mean(np.abs(degrees[ok] - truth[ok])))
    say(f"predicted {len(degrees)} windows of {row['filename']} (held-out {row['generalization']}) with "
        f"model version {answer['model_version']}: MAE {mae:.1f} deg against the true angles")  # fmt: skip
    out.write_text(predictions_csv(answer))
    joints = answer["joints"][:PREVIEW_JOINTS]
    rows = list(range(0, len(degrees), max(1, len(degrees) // PREVIEW_ROWS)))[:PREVIEW_ROWS]
    say(f"  preview: {len(rows)} of {len(degrees)} windows, {len(joints)} of {len(answer['joints'])} joints "
        f"(degrees); all of them: {out}")  # fmt: skip
    say("  window end (s)  " + "  ".join(f"{j:>14}" for j in joints))
    for i in rows:
        say(f"  {ends[i]:14.3f}  " + "  ".join(f"{v:14.1f}" for v in degrees[i, : len(joints)]))


def register(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="job database: migrate (the pre-start step) or show the revision")
    db.add_argument("action", choices=["upgrade", "current"])
    db.add_argument("--url", help="database URL (default DATABASE_URL)")
    db.set_defaults(func=cmd_db)

    up = sub.add_parser("up", help="run every service as a local process (SQLite, local store, no servers needed)")
    up.add_argument(
        "--workdir",
        default=os.environ.get("EMGPOSE_WORKDIR", "runs/local"),
        help="database, store, broker, logs and API key live here (or $EMGPOSE_WORKDIR)",
    )
    up.add_argument("--host", default="127.0.0.1", help="address the services listen on")
    up.add_argument("--gateway-port", dest="gateway_port", type=int, default=8000, help="the REST gateway's port")
    up.add_argument(
        "--inference-port", dest="inference_port", type=int, default=8001, help="the inference service's port"
    )
    up.add_argument("--concurrency", type=int, default=2, help="preprocess worker threads")
    up.set_defaults(func=cmd_up)

    run = sub.add_parser("run", help="the main job through the REST API: synth -> upload -> preprocess -> train "
                                     "-> serve -> predict")  # fmt: skip
    run.add_argument(
        "--workdir",
        default=os.environ.get("EMGPOSE_WORKDIR", "runs/demo"),
        help="the stack's folder: data, store, logs (or $EMGPOSE_WORKDIR)",
    )
    run.add_argument("--duration", type=float, default=20.0, help="seconds per synthetic session")
    run.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    run.add_argument("--name", default="demo", help="model name (the stack serves it)")
    run.add_argument("--rounds", type=int, default=200, help="most boosting rounds (early stopping may end sooner)")
    run.set_defaults(func=cmd_run)
