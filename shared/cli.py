"""emgpose: joint angles from surface EMG.

Locally: synth, import, preprocess, train, evaluate, models, predict, calibrate. The services: db, up, run,
keys. As a client of a running gateway (--url or EMGPOSE_URL, --key or EMGPOSE_API_KEY): datasets, jobs,
stream, and models / predict with --url."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from tqdm import tqdm

from emgpose.cli_help import polish
from emgpose.client_cli import register as register_client
from emgpose.errors import EmgPoseError
from emgpose.export_c import register as register_export
from emgpose.importers.cli import register as register_import
from emgpose.keys_cli import register as register_keys
from emgpose.predict_job_cli import register as register_predict_job
from emgpose.services_cli import register as register_services
from emgpose.settings import get_settings
from emgpose.store import as_uri
from emgpose.train.cli import register as register_train

log = logging.getLogger("emgpose")

EPILOG = """examples:
  emgpose run                                   # the main job: a local stack, data in, a served model out
  emgpose up                                    # the stack alone, then as its client:
  emgpose jobs list --url http://127.0.0.1:8000
  emgpose <command> --help                      # each command's options, defaults and an example"""


class _Bar:
    """A tqdm bar fed with absolute (done, total) counts; the description follows the stage."""

    def __init__(self, unit: str, desc: str) -> None:
        self.bar = tqdm(total=0, unit=unit, unit_scale=True, desc=desc, mininterval=0.5, delay=0.5, file=sys.stderr)

    def __call__(self, done: int, total: int, stage: str | None = None) -> None:
        if total and self.bar.total != total:
            self.bar.total = total
        if stage and self.bar.desc != stage:
            self.bar.set_description_str(stage)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _with_bar(unit: str, desc: str, work: Callable[[_Bar], object]) -> object:
    bar = _Bar(unit, desc)
    try:
        return work(bar)
    finally:
        bar.close()


def cmd_synth(args: argparse.Namespace) -> int:
    from emgpose.synth import SynthConfig, write_dataset  # noqa: PLC0415 - the quick CLI: SciPy, h5py when used

    config = SynthConfig(
        users=args.users,
        stages=args.stages,
        sessions=args.sessions,
        duration_s=args.duration,
        sample_rate=args.rate,
        channels=args.channels,
        seed=args.seed,
    )
    n = config.users * config.stages * config.sessions
    size_gb = n * config.bytes_per_session / 1e9
    log.info("writing %d sessions of %.1f s (%.2f GB) to %s", n, config.duration_s, size_gb, args.out)
    rows = _with_bar("sample", "synth", lambda bar: write_dataset(config, as_uri(args.out), bar))
    print(f"wrote {len(rows)} sessions and metadata.csv to {args.out}")  # noqa: T201
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    from emgpose.preprocess.config import PreprocessConfig  # noqa: PLC0415 - the quick CLI
    from emgpose.preprocess.job import run_preprocess  # noqa: PLC0415

    config = PreprocessConfig.load(args.config)
    if args.csv:
        config = config.model_copy(update={"output": config.output.model_copy(update={"csv": True})})
    data, out = as_uri(args.data), as_uri(args.out)
    summary = _with_bar("sample", "preprocess", lambda bar: run_preprocess(data, out, config, bar, args.workers))
    _print_summary(summary)
    return 0


def _print_summary(summary: dict) -> None:
    out = summary["output"]["uri"].rstrip("/")
    lines = [
        f"preprocessed {summary['input']['sessions']} sessions from {summary['input']['uri']}",
        f"  {summary['num_channels']} channels at {summary['sample_rate']:g} Hz, "
        f"{len(summary['feature_names'])} features, window {summary['window']['length_samples']}"
        f"/{summary['window']['stride_samples']} samples (length/stride)",
    ]
    for split, agg in sorted(summary["counts"].items()):
        dropped = ", ".join(f"{k} {v}" for k, v in agg["windows_dropped"].items() if v) or "none"
        lines.append(
            f"  {split:<5} {agg['sessions']:3d} sessions {agg['windows_kept']:8d} windows (dropped: {dropped})"
        )
    timings = summary["timings_s"]
    lines.append(
        f"  {timings['total']:.1f} s ({summary['throughput_channel_samples_per_s'] / 1e6:.1f} M channel-samples/s)"
    )
    lines.append(f"  master table: {out}/{summary['output']['master']}")
    lines.append(f"  summary:      {out}/summary.json")
    print("\n".join(lines))  # noqa: T201


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emgpose", description=__doc__, epilog=EPILOG)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = sub.add_parser("synth", help="write a synthetic dataset in the emg2pose layout")
    synth.add_argument("--out", required=True, help="folder or store URI (file://, s3://)")
    synth.add_argument("--users", type=int, default=4, help="simulated users")
    synth.add_argument("--stages", type=int, default=3, help="stages (gesture sets) per user")
    synth.add_argument("--sessions", type=int, default=2, help="sessions per user and stage")
    synth.add_argument("--duration", type=float, default=20.0, help="seconds per session")
    synth.add_argument("--rate", type=float, default=2000.0, help="sample rate, Hz")
    synth.add_argument("--channels", type=int, default=16, help="EMG channels")
    synth.add_argument("--seed", type=int, default=0, help="random seed (same seed, same data)")
    synth.set_defaults(func=cmd_synth)

    pre = sub.add_parser("preprocess", help="clean, window and featurise a dataset")
    pre.add_argument("--data", required=True, help="dataset folder or URI holding metadata.csv")
    pre.add_argument("--out", required=True, help="output store URI (file://, s3://) or folder")
    pre.add_argument("--config", help="YAML/JSON preprocessing config (defaults: the plan's chain)")
    pre.add_argument("--csv", action="store_true", help="also write per-session CSV tables")
    pre.add_argument("--workers", type=int, help="worker processes sharing the sessions (default: one per core)")
    pre.set_defaults(func=cmd_preprocess)

    register_import(sub)
    register_train(sub)
    register_services(sub)
    register_keys(sub)
    register_export(sub)
    register_client(sub)
    register_predict_job(sub)
    return polish(parser)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = "DEBUG" if args.verbose else get_settings().log_level
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise on a console
    try:
        return int(args.func(args))
    except EmgPoseError as exc:
        print(f"emgpose {args.command}: error: {exc.message}", file=sys.stderr)  # noqa: T201
        return 2


if __name__ == "__main__":
    sys.exit(main())
