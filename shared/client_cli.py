"""``emgpose datasets | jobs | stream``, and ``models`` / ``predict`` with ``--url``: the CLI as a client of a
running gateway (``emgpose up``, compose, or a deployment).

Where the server is: ``--url`` or ``EMGPOSE_URL``; the API key: ``--key`` or ``EMGPOSE_API_KEY`` (none with
AUTH_ENABLED=false). ``models`` and ``predict`` read the local registry (``--store``/``STORE_URI``) unless
``--url`` (or ``--remote``, which takes ``EMGPOSE_URL``) sends them to the server, so a command never
changes meaning because a variable happens to be set in the shell. A server's error is shown as its
message (the API's one error shape, :mod:`emgpose.api`), with exit code 2.

Nothing here imports XGBoost, SciPy, matplotlib, pyarrow or scikit-learn: these commands answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from emgpose.cli_help import Formatter
from emgpose.cli_views import MODEL_HEADER, model_row, model_summary, predictions_csv, table
from emgpose.client import API_KEY_ENV, TERMINAL, Client
from emgpose.errors import InvalidInput

URL_ENV = "EMGPOSE_URL"
EXIT_JOB_FAILED = 1
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports it


def _out(text: str) -> None:
    print(text)  # noqa: T201 - the command's own report goes to stdout


def add_server_options(parser: argparse.ArgumentParser, switch: bool = False) -> None:
    """``--url``/``--key`` (and, where the command also works locally, ``--remote``)."""
    if switch:
        parser.add_argument("--url", help="ask the gateway at this URL instead of the local registry (default: local)")
        parser.add_argument("--remote", action="store_true", help=f"ask the gateway at ${URL_ENV}")
    else:
        parser.add_argument(
            "--url",
            default=os.environ.get(URL_ENV),
            help=f"the gateway, e.g. http://127.0.0.1:8000 (default: ${URL_ENV})",
        )
    parser.add_argument("--key", help=f"API key (default: ${API_KEY_ENV}; none where the server has auth off)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each HTTP answer")


def is_remote(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "url", None) or getattr(args, "remote", False))


def connect(args: argparse.Namespace) -> Client:
    url = args.url or os.environ.get(URL_ENV, "").strip()
    if not url:
        raise InvalidInput(f"no server: give --url http://HOST:PORT or set {URL_ENV}")
    return Client(url, timeout_s=args.timeout, api_key=args.key)


def _link(api: Client, value: Any) -> Any:
    """Relative API links (``/v1/...``) made absolute, so a user can open them."""
    return f"{api.http.base_url}{value}" if isinstance(value, str) and value.startswith("/v1/") else value


def read_session(path: str) -> tuple[Any, float]:
    """EMG (samples x channels) and sample rate of a session file (HDF5, emg2pose layout)."""
    import numpy as np  # noqa: PLC0415 - h5py and numpy only when a file is read

    from emgpose.formats.session import SessionReader  # noqa: PLC0415

    with SessionReader(path) as reader:
        parts = [chunk.emg for chunk in reader.iter_chunks(1 << 20)]
        rate = reader.info.sample_rate
    if not parts:
        raise InvalidInput(f"{path}: the recording has no samples")
    return np.concatenate(parts), rate


# --- datasets -------------------------------------------------------------------------------------------


def cmd_datasets(args: argparse.Namespace) -> int:
    with connect(args) as api:
        if args.action == "upload":
            folder = Path(args.folder)
            if not (folder / "metadata.csv").is_file():
                raise InvalidInput(f"{folder}: no metadata.csv (a dataset folder holds metadata.csv and *.hdf5)")
            dataset = api.upload_dataset(args.name or folder.resolve().name, folder)
            _out(
                f"uploaded dataset {dataset['id']} ({dataset['name']}): {dataset['files']} files, "
                f"{(dataset['bytes'] or 0) / 1e6:.1f} MB, {dataset['state']}"
            )
            _out(f"  preprocess it: emgpose jobs submit preprocess --dataset {dataset['id']} --watch")
            return 0
        page = api.call("GET", "/v1/datasets", params={"limit": args.limit})
    rows = [(d["id"], d["name"], d["kind"], d["state"], d["files"], d["created_at"][:19]) for d in page["items"]]
    _out(table(("id", "name", "kind", "state", "files", "created (UTC)"), rows))
    return 0


# --- jobs -----------------------------------------------------------------------------------------------


def _value(text: str) -> Any:
    """``--param`` values: JSON where they parse (numbers, true, objects), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _json_arg(text: str, flag: str) -> dict[str, Any]:
    path = Path(text)
    try:
        value = json.loads(path.read_text() if path.is_file() else text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{flag}: expected a JSON object or a JSON file, got {text!r} ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{flag}: expected a JSON object, got {type(value).__name__}")
    return value


def job_body(args: argparse.Namespace) -> dict[str, Any]:
    """``{"type", "params"}`` from ``--file``, then TYPE, ``--params``, the shortcut flags and ``--param``."""
    body = _json_arg(args.file, "--file") if args.file else {}
    params = dict(body.get("params") or {})
    if args.params:
        params.update(_json_arg(args.params, "--params"))
    for flag in ("dataset", "name", "model"):
        if getattr(args, flag):
            params[flag] = getattr(args, flag)
    for item in args.param:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--param: expected KEY=VALUE, got {item!r}")
        params[key] = _value(text)
    type_ = args.type or body.get("type")
    if not type_:
        raise InvalidInput("jobs submit: give the job type (preprocess, train, evaluate, ...) or a --file with 'type'")
    return {"type": type_, "params": params}


class JobBar:
    """A live bar over a job's percent; its label follows the stage."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.bar = tqdm(total=100, unit="%", desc=job["type"], file=sys.stderr, bar_format="{l_bar}{bar}| {elapsed}")

    def __call__(self, job: dict[str, Any]) -> None:
        self.bar.set_description_str(f"{job['type']} {job['id'][:8]}: {job['stage']}", refresh=False)
        self.bar.update(max(0.0, float(job["progress"]) - self.bar.n))

    def close(self) -> None:
        self.bar.close()


def watch(api: Client, job: dict[str, Any], interval_s: float, timeout_s: float | None) -> int:
    """Follows a job until it ends; prints its final state and result links (or error). Exit 0 on success."""
    bar = JobBar(job)
    deadline = time.monotonic() + timeout_s if timeout_s else None
    try:
        bar(job)
        while job["state"] not in TERMINAL:
            if deadline is not None and time.monotonic() > deadline:
                bar.close()
                _out(
                    f"job {job['id']}: still {job['state']} ({job['stage']}, {job['progress']:.0f}%) after "
                    f"{timeout_s:g} s; watch again with: emgpose jobs watch {job['id']}"
                )
                return EXIT_JOB_FAILED
            time.sleep(interval_s)
            job = api.job(job["id"])
            bar(job)
    except KeyboardInterrupt:
        bar.close()
        _out(f"stopped watching; job {job['id']} goes on (emgpose jobs watch {job['id']}, or jobs cancel)")
        return EXIT_INTERRUPTED
    finally:
        bar.close()
    _out(f"job {job['id']} ({job['type']}): {job['state']}")
    for line in result_lines(api, job.get("result") or {}):
        _out(f"  {line}")
    if job.get("error"):
        _out(f"  error: {job['error']['type']}: {job['error']['message']}")
    return 0 if job["state"] == "succeeded" else EXIT_JOB_FAILED


def result_lines(api: Client, result: dict[str, Any]) -> list[str]:
    """A job's result, one ``key: value`` line each: links made absolute, small mappings on one line
    (``windows: test 1082, train 264``), metrics as the verdict against the baselines."""
    lines = []
    for key, value in result.items():
        if key == "metrics" and isinstance(value, dict):
            for group, v in (value.get("verdict") or {}).items():
                if v.get("beats_baselines") is not None:
                    word = "beats" if v["beats_baselines"] else "DOES NOT beat"
                    lines.append(
                        f"{value.get('split', 'test')}/{group}: {v['metric']} {v['model']:.3g} {word} the "
                        f"best baseline ({v['best_baseline']} {v['baseline']:.3g})"
                    )
        elif isinstance(value, dict) and all(not isinstance(v, dict | list) for v in value.values()):
            lines.append(f"{key}: " + ", ".join(f"{k} {v}" for k, v in sorted(value.items())))
        elif isinstance(value, dict | list):
            lines.append(f"{key}: {json.dumps(value)[:200]}")
        else:
            lines.append(f"{key}: {_link(api, value)}")
    return lines


def cmd_jobs(args: argparse.Namespace) -> int:
    with connect(args) as api:
        if args.action == "submit":
            body = job_body(args)
            job = api.submit(body["type"], body["params"], key=args.idempotency_key)
            _out(f"submitted {job['type']} job {job['id']} ({job['state']})")
            if not args.watch:
                _out(f"  follow it: emgpose jobs watch {job['id']}")
                return 0
            return watch(api, job, args.interval, args.wait)
        if args.action == "watch":
            return watch(api, api.job(args.job_id), args.interval, args.wait)
        if args.action == "cancel":
            job = api.call("POST", f"/v1/jobs/{args.job_id}/cancel")
            _out(f"job {job['id']}: {job['state']}{' (cancel requested)' if job['cancel_requested'] else ''}")
            return 0
        query = {k: v for k, v in (("state", args.state), ("type", args.type), ("limit", args.limit)) if v}
        page = api.call("GET", "/v1/jobs", params=query)
    if args.json:
        _out(json.dumps(page, indent=2))
        return 0
    rows = [
        (j["id"], j["type"], j["state"], j["stage"], f"{j['progress']:.0f}%", j["created_at"][:19])
        for j in page["items"]
    ]
    _out(table(("id", "type", "state", "stage", "progress", "created (UTC)"), rows))
    if page["total"] > len(rows):
        _out(f"({len(rows)} of {page['total']}; --limit shows more)")
    return 0


# --- models and predict through the server (the local ones are in emgpose.train.cli) ---------------------


def remote_models(args: argparse.Namespace) -> int:
    with connect(args) as api:
        if args.action == "list":
            names = [args.ref] if args.ref else [m["name"] for m in api.models()["items"]]
            rows = []
            for name in names:
                for v in api.call("GET", f"/v1/models/{name}", params={"limit": 200})["items"]:
                    rows.append(model_row(name, v["version"], v["latest"], v))
            _out(table(MODEL_HEADER, rows) if rows else "no models on the server yet (train one: emgpose jobs submit)")
            return 0
        if not args.ref:
            raise InvalidInput(f"models {args.action}: give a model as NAME or NAME@VERSION")
        name, _, version = args.ref.partition("@")
        if args.action == "promote":
            if not version:
                raise InvalidInput("models promote: give the version to point 'latest' at, as NAME@VERSION")
            answer = api.call("POST", f"/v1/models/{name}/promote", json={"version": version})
            _out(
                f"{answer['name']}: latest -> {answer['latest']} (was {answer['previous']}; promote that to roll back)"
            )
            return 0
        version = version or api.call("GET", f"/v1/models/{name}", params={"limit": 1})["latest"]
        if not version:
            raise InvalidInput(f"model {name!r} has no 'latest' version: name one as {name}@VERSION")
        meta = api.call("GET", f"/v1/models/{name}/versions/{version}")
    _out(json.dumps(meta, indent=2) if args.json else model_summary(meta, version if meta.get("latest") else None))
    return 0


def remote_predict(args: argparse.Namespace) -> int:
    emg, rate = read_session(args.file)
    with connect(args) as api:
        answer = api.predict(emg, rate)
    text = predictions_csv(answer)
    if args.out:
        Path(args.out).write_text(text)
        n = len(answer["window_end_s"])
        _out(f"{n} windows from {args.file} by {answer['model']} {answer['model_version']} (server) -> {args.out}")
    else:
        sys.stdout.write(text)
    return 0


# --- stream ---------------------------------------------------------------------------------------------

PER_FINGER = ("THUMB_CMC_FE", "INDEX_MCP_FE", "MIDDLE_MCP_FE", "RING_MCP_FE", "PINKY_MCP_FE")


def _wanted(option: str | None, names: list[str]) -> list[str]:
    """``--joints``: a list, ``all``, or by default one flexion per finger (the first five for other models)."""
    if option == "all":
        return list(names)
    if option:
        return [n.strip() for n in option.split(",") if n.strip()]
    default = [n for n in PER_FINGER if n in names]
    return default if len(default) == len(PER_FINGER) else list(names[:5])


def cmd_stream(args: argparse.Namespace) -> int:
    from emgpose.stream_client import replay  # noqa: PLC0415 - websockets only for this command

    emg, rate = read_session(args.file)
    if args.seconds:
        emg = emg[: max(1, round(args.seconds * rate))]
    shown: list[int] = []

    def show(message: dict[str, Any], latency_s: float) -> None:
        names = message.get("joints") or message.get("classes") or []
        if not shown:
            wanted = _wanted(args.joints, names)
            unknown = [n for n in wanted if n not in names]
            if unknown:
                raise InvalidInput(f"--joints: {unknown} not among the model's {names}")
            shown.extend(names.index(n) for n in wanted)
            _out(table(("t (s)", "latency (ms)", *(names[i] for i in shown)), []))
        values = message.get("degrees") or message.get("probabilities")
        last = values[-1]
        _out(
            f"{message['window_end_s'][-1]:7.2f}  {latency_s * 1000:12.1f}  "
            + "  ".join(f"{last[i]:>{len(names[i])}.1f}" for i in shown)
        )

    result = replay(
        args.url or os.environ.get(URL_ENV, ""),
        emg,
        rate,
        api_key=args.key,
        chunk_s=args.chunk_ms / 1000,
        speed=args.speed,
        on_message=show if not args.quiet else None,
    )
    ready, lat = result.ready, sorted(result.latencies_s)
    if result.interrupted:
        _out("interrupted (Ctrl-C): the summary covers what was streamed until then")
    if lat:
        p50, p95 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(0.95 * len(lat)))]
        _out(
            f"streamed {len(emg) / rate:.1f} s of {args.file} to {ready['model']} {ready['model_version']}: "
            f"{result.windows} windows in {len(lat)} messages, latency median {p50 * 1000:.1f} ms, "
            f"95th percentile {p95 * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms"
        )
    else:
        _out(
            f"streamed {len(emg) / rate:.1f} s of {args.file}: no complete window (a window is "
            f"{ready['window_length']} samples)"
        )
    if args.out:
        Path(args.out).write_text(predictions_csv(result.joined()) if lat else "")
        _out(f"  predictions: {args.out}")
    return 0


# --- the parsers ----------------------------------------------------------------------------------------


FORMATTER = Formatter


def register(sub: argparse._SubParsersAction) -> None:
    datasets = sub.add_parser(
        "datasets",
        help="upload or list datasets on a gateway",
        epilog="example: emgpose datasets upload data/synth --url http://127.0.0.1:8000",
    )
    actions = datasets.add_subparsers(dest="action", required=True)
    upload = actions.add_parser(
        "upload",
        help="upload metadata.csv and the *.hdf5 sessions of a folder",
        formatter_class=FORMATTER,
        epilog="example: emgpose datasets upload data/synth",
    )
    upload.add_argument("folder", help="dataset folder (metadata.csv + sessions)")
    upload.add_argument("--name", help="the dataset's name on the server (default: the folder's name)")
    listing = actions.add_parser(
        "list",
        help="datasets on the server, newest first",
        formatter_class=FORMATTER,
        epilog="example: emgpose datasets list --limit 10",
    )
    listing.add_argument("--limit", type=int, default=50, help="most datasets shown")
    for parser in (upload, listing):
        add_server_options(parser)
        parser.set_defaults(func=cmd_datasets)

    jobs = sub.add_parser(
        "jobs",
        help="submit, watch, list or cancel jobs on a gateway",
        epilog="example: emgpose jobs submit train --dataset ID --name hand --watch",
    )
    actions = jobs.add_subparsers(dest="action", required=True)
    submit = actions.add_parser(
        "submit",
        help="submit a job (type and parameters as flags or a JSON file)",
        formatter_class=FORMATTER,
        epilog="examples:\n  emgpose jobs submit preprocess --dataset 3f2a... --watch\n"
        "  emgpose jobs submit train --dataset 7c1e... --name hand --param config='{\"num_rounds\": 300}'\n"
        '  emgpose jobs submit --file job.json   # {"type": "train", "params": {...}}',
    )
    submit.add_argument("type", nargs="?", help="preprocess, train, evaluate, benchmark, ... (or 'type' in --file)")
    submit.add_argument("--file", help='JSON file holding the whole body: {"type": ..., "params": {...}}')
    submit.add_argument("--params", help="the params object, as JSON or a JSON file")
    submit.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one parameter (VALUE read as JSON where it parses); repeatable",
    )
    submit.add_argument("--dataset", help="shortcut for --param dataset=ID")
    submit.add_argument("--name", help="shortcut for --param name=NAME (train: the model's name)")
    submit.add_argument("--model", help="shortcut for --param model=NAME@VERSION (evaluate)")
    submit.add_argument("--idempotency-key", dest="idempotency_key", help="a retry with the same key gets the same job")
    submit.add_argument("--watch", action="store_true", help="follow the job with a progress bar until it ends")
    watching = actions.add_parser(
        "watch",
        help="a live progress bar until the job ends, then its results",
        formatter_class=FORMATTER,
        epilog="example: emgpose jobs watch 9b1d0c7e2f3a...",
    )
    watching.add_argument("job_id", help="the job's id (from jobs submit or jobs list)")
    for parser in (submit, watching):
        parser.add_argument("--interval", type=float, default=0.5, help="seconds between polls")
        parser.add_argument("--wait", type=float, help="give up watching after this many seconds (default: never)")
    cancel = actions.add_parser(
        "cancel",
        help="cancel a queued or running job",
        formatter_class=FORMATTER,
        epilog="example: emgpose jobs cancel 9b1d0c7e2f3a...",
    )
    cancel.add_argument("job_id", help="the job's id")
    listing = actions.add_parser(
        "list",
        help="jobs on the server, newest first",
        formatter_class=FORMATTER,
        epilog="example: emgpose jobs list --state running",
    )
    listing.add_argument(
        "--state", choices=("queued", "running", "succeeded", "failed", "cancelled"), help="only jobs in this state"
    )
    listing.add_argument("--type", help="only jobs of this type")
    listing.add_argument("--limit", type=int, default=20, help="most jobs shown")
    listing.add_argument("--json", action="store_true", help="the server's answer as JSON")
    for parser in (submit, watching, cancel, listing):
        add_server_options(parser)
        parser.set_defaults(func=cmd_jobs)

    stream = sub.add_parser(
        "stream",
        help="replay a recording through the server's WebSocket stream in real time: live angles and latency",
        formatter_class=FORMATTER,
        epilog="example: emgpose stream data/synth/user0_stage0_s0.hdf5 --url http://127.0.0.1:8000 --joints all",
    )
    stream.add_argument("file", help="session file (.hdf5) at the served model's sample rate and channel count")
    stream.add_argument("--chunk-ms", dest="chunk_ms", type=float, default=50.0, help="milliseconds of EMG per message")
    stream.add_argument("--speed", type=float, default=1.0, help="times real time (0: as fast as answers come)")
    stream.add_argument("--seconds", type=float, help="only the first N seconds (default: the whole recording)")
    stream.add_argument(
        "--joints",
        help="joints (or classes) shown per message, comma-separated, or 'all' "
        "(default: one flexion per finger, else the first five)",
    )
    stream.add_argument("--out", help="also write every window's prediction to this CSV")
    stream.add_argument("--quiet", action="store_true", help="only the summary line")
    add_server_options(stream)
    stream.set_defaults(func=cmd_stream)
