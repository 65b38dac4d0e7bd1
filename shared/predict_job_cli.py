"""``emgpose predict-job``: a batch prediction on a running gateway (the ``predict`` job), its outputs fetched.

    emgpose predict-job --url http://127.0.0.1:8000 --model hand --dataset 3f2a...7b --out runs/pred

submits ``{"type": "predict", ...}`` to ``POST /v1/jobs``, follows its progress and, unless ``--no-wait``,
downloads what the job wrote (``summary.json`` and one CSV/Parquet per session) from
``GET /v1/jobs/{id}/outputs/{file}`` into ``--out``. The server and key options are those of the other
client commands (:mod:`emgpose.client_cli`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from emgpose.client import ApiError, Client
from emgpose.client_cli import add_server_options, connect
from emgpose.errors import InvalidInput, Unavailable

EXIT_JOB_FAILED = 1


def predict_params(args: argparse.Namespace) -> dict[str, Any]:
    """The job's ``params`` from the options (the gateway validates them in full)."""
    params: dict[str, Any] = {"model": args.model, "formats": args.formats}
    for option in ("version", "dataset", "split", "prefix", "files"):
        value = getattr(args, option)
        if value is not None:
            params[option] = value
    return params


def download(api: Client, job: dict[str, Any], out: Path) -> list[Path]:
    """Every file the job's result lists, written below ``out`` (a session's folders kept); each file
    appears whole (written beside it, then renamed), so an interrupted download leaves no partial table."""
    written = []
    root = out.resolve()
    for name in job["result"].get("files", []):
        target = (root / name).resolve()
        if not target.is_relative_to(root):  # names are the job's own, but never write outside --out
            raise InvalidInput(f"job {job['id']}: output name {name!r} leads outside {out}")
        partial = target.with_name(f".{target.name}.part")
        url = f"/v1/jobs/{job['id']}/outputs/{name}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with api.http.stream("GET", url) as response, open(partial, "wb") as fh:
                if response.status_code >= 400:
                    raise ApiError(response.status_code, response.read().decode("utf-8", "replace"))
                for block in response.iter_bytes():
                    fh.write(block)
            partial.replace(target)
        except httpx.HTTPError as exc:
            raise Unavailable(f"{api.http.base_url}{url}: {exc}") from exc
        except OSError as exc:
            raise InvalidInput(f"{target}: cannot write the download ({exc})") from exc
        finally:
            partial.unlink(missing_ok=True)
        written.append(target)
    return written


def cmd_predict_job(args: argparse.Namespace) -> int:
    with connect(args) as api:
        job = api.submit("predict", predict_params(args))
        print(f"job {job['id']} queued: GET /v1/jobs/{job['id']}", file=sys.stderr)  # noqa: T201
        if args.no_wait:
            print(json.dumps(job, indent=2))  # noqa: T201
            return 0
        bar = tqdm(total=100, unit="%", mininterval=0.3, file=sys.stderr, bar_format="{l_bar}{bar}|")

        def show(now: dict[str, Any]) -> None:
            bar.set_description_str(f"predict: {now['stage']}", refresh=False)
            bar.update(now["progress"] - bar.n)

        try:
            job = api.wait(job, timeout_s=args.wait_timeout, on_progress=show)
        except ApiError as exc:
            print(f"emgpose predict-job: {exc.message}", file=sys.stderr)  # noqa: T201
            return EXIT_JOB_FAILED
        finally:
            bar.close()
        result = job["result"]
        files = download(api, job, Path(args.out)) if args.out else []
    summary = (
        f"{result['sessions']} sessions, {result['windows']} windows by {result['model']} {result['version']}"
        + (f", MAE {result['mae_deg']:.2f} deg" if result.get("mae_deg") is not None else "")
        + (f", {result['flagged_windows']} windows flagged" if result.get("flagged_windows") else "")
    )
    print(summary)  # noqa: T201
    print(f"outputs: {result['outputs']}" + (f" -> {len(files)} files in {args.out}" if files else ""))  # noqa: T201
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "predict-job",
        help="batch-predict stored sessions on a gateway (a predict job) and download the tables",
        description=__doc__,
        epilog="example: emgpose predict-job --url http://127.0.0.1:8000 --model hand --dataset DATASET_ID --out pred",
    )
    add_server_options(parser)
    parser.add_argument("--model", required=True, help="NAME, NAME@VERSION or a model location")
    parser.add_argument("--version", help="a version of --model (default: its promoted latest)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="a raw dataset id or location (metadata.csv)")
    source.add_argument("--prefix", help="a folder or S3 prefix: every .hdf5 below it")
    source.add_argument("--files", nargs="+", metavar="URI", help="session files (.hdf5) by location")
    parser.add_argument("--split", choices=("train", "val", "test"), help="only this split of --dataset")
    parser.add_argument(
        "--formats", nargs="+", choices=("csv", "parquet"), default=["csv", "parquet"], help="tables per session"
    )
    parser.add_argument("--out", help="download the outputs into this folder (default: leave them in the store)")
    parser.add_argument("--no-wait", action="store_true", help="print the queued job and return")
    parser.add_argument("--wait-timeout", type=float, default=3600.0, help="seconds to wait for the job")
    parser.set_defaults(func=cmd_predict_job)
