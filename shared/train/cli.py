"""``emgpose train | evaluate | models | predict | calibrate``: the training side of the command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from emgpose.cli_views import MODEL_HEADER, model_row, model_summary, table
from emgpose.client_cli import add_server_options, is_remote, remote_models, remote_predict
from emgpose.errors import InvalidInput
from emgpose.settings import get_settings
from emgpose.store import as_uri

if TYPE_CHECKING:
    from emgpose.train.boost import BoostConfig
    from emgpose.train.bundle import ModelRef

# XGBoost, SciPy, pyarrow and scikit-learn are imported inside the commands that use them, so that
# `emgpose --help` and the client commands answer at once (the quick CLI of issue 16).


def _out(text: str) -> None:
    print(text)  # noqa: T201


def _store(args: argparse.Namespace) -> str:
    return args.store or get_settings().store_uri


class RoundsBar:
    """A progress bar over boosting rounds. Other stages (loading, baselines, publishing) show after it,
    not as its label: a ``publishing`` label on a bar of rounds would say something wrong. When the work
    ends the label says so (``trained``)."""

    def __init__(self, done: str = "trained") -> None:
        self.done = done
        self.bar = tqdm(total=0, unit="round", desc="train", mininterval=0.5, delay=0.5, file=sys.stderr)

    def __call__(self, done: int, total: int, stage: str) -> None:
        if stage != "boosting":
            self.bar.set_postfix_str(stage, refresh=False)
            return
        if self.bar.total != total:
            self.bar.total = total
            self.bar.set_description_str("boosting", refresh=False)
        self.bar.set_postfix_str("", refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self, ok: bool = True) -> None:
        self.bar.set_description_str(self.done if ok else "stopped", refresh=False)
        self.bar.set_postfix_str("", refresh=False)
        self.bar.close()


def _with_bar(work: Callable[[RoundsBar], dict], done: str = "trained") -> dict:
    bar = RoundsBar(done)
    ok = False
    try:
        result = work(bar)
        ok = True
        return result
    finally:
        bar.close(ok)


def _quiet(args: argparse.Namespace, *loggers: str) -> None:
    """The command prints its own summary: the library's INFO lines (the verdict as a JSON log line, each
    fold's boosting) would say it twice on the console. ``-v`` shows them."""
    if not args.verbose:
        for name in loggers:
            logging.getLogger(name).setLevel(logging.WARNING)


def _boost_config(args: argparse.Namespace) -> BoostConfig:
    from emgpose.train import boost  # noqa: PLC0415

    params: dict = {"device": args.device}
    if args.params:
        path = Path(args.params)
        try:
            params.update(json.loads(path.read_text()) if path.exists() else json.loads(args.params))
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"--params: expected a JSON object or a JSON file, got {args.params!r} ({exc})"
            ) from None
    for key in ("num_rounds", "learning_rate", "max_depth"):
        if getattr(args, key) is not None:
            params[key] = getattr(args, key)
    return boost.BoostConfig.from_dict(params, source="training parameters")


def print_scores(result: dict) -> None:
    metrics = result.get("metrics") or {}
    verdict = metrics.get("verdict", {})
    for group, v in verdict.items():
        if v.get("beats_baselines") is None:
            continue
        word = "beats" if v["beats_baselines"] else "DOES NOT beat"
        _out(
            f"  {metrics['split']}/{group}: {v['metric']} {v['model']} - {word} the best baseline "
            f"({v['best_baseline']} {v['baseline']})"
        )
    _out(f"  report: {result['report']}")


def cmd_train(args: argparse.Namespace) -> int:
    from emgpose.train.job import run_train

    config = _boost_config(args)
    _quiet(args, "emgpose.train.job", "emgpose.train.boost")
    result = _with_bar(
        lambda bar: run_train(
            as_uri(args.dataset),
            _store(args),
            args.name,
            task=args.task,
            config=config,
            resume=args.resume,
            promote=not args.no_promote,
            progress=bar,
        )
    )
    _out(f"trained {result['task']} model {result['name']} version {result['version']} in {result['seconds']:.1f} s")
    _out(f"  bundle: {result['uri']}")
    print_scores(result)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from emgpose.train.job import run_evaluate

    _quiet(args, "emgpose.train.job")
    result = _with_bar(
        lambda bar: run_evaluate(args.model, as_uri(args.dataset), _store(args), progress=bar), done="evaluated"
    )
    _out(f"evaluated {result['name']} {result['version']} on {args.dataset}")
    print_scores(result)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """The local registry (``--store``/``STORE_URI``); with ``--url``/``--remote``, the gateway's."""
    if is_remote(args):
        return remote_models(args)
    from emgpose.train.bundle import Registry, parse_model_ref  # noqa: PLC0415

    store = _store(args)
    if args.action == "list":
        registry = Registry(store)
        names = [args.ref] if args.ref else registry.names()
        rows = []
        for name in names:
            latest = registry.latest(name)
            for version in registry.versions(name):
                rows.append(model_row(name, version, version == latest, registry.meta(name, version)))
        _out(table(MODEL_HEADER, rows) if rows else f"no models in {store} (train one: emgpose train ...)")
        return 0
    if not args.ref:
        raise InvalidInput(f"models {args.action}: give a model as NAME or NAME@VERSION")
    ref = parse_model_ref(args.ref, store)
    if args.action == "show":
        version = _version(ref)
        meta = ref.registry.meta(ref.name, version)
        _out(json.dumps(meta, indent=2) if args.json else model_summary(meta, ref.registry.latest(ref.name)))
    else:  # promote
        version = ref.registry.resolve(ref.name, ref.version)
        ref.registry.promote(ref.name, version)
        _out(f"{ref.name}: latest -> {version}")
    return 0


def _version(ref: ModelRef) -> str:
    """The named version, else ``latest``, else (a model published without ``--promote``, e.g. by
    ``calibrate --name X``) its newest version, said on stderr."""
    if ref.version or ref.registry.latest(ref.name) is not None:
        return ref.registry.resolve(ref.name, ref.version)
    versions = ref.registry.versions(ref.name)
    if not versions:
        return ref.registry.resolve(ref.name)  # raises NotFound naming the models there are
    print(  # noqa: T201
        f"note: {ref.name} has no 'latest' (published without --promote); using its newest version "
        f"{versions[-1]} (`emgpose models promote {ref.name}@{versions[-1]}` makes it latest)",
        file=sys.stderr,
    )
    return versions[-1]


def cmd_predict(args: argparse.Namespace) -> int:
    """Local (``--model`` from the registry) or, with ``--url``/``--remote``, through the server's model."""
    if is_remote(args):
        if args.model:
            raise InvalidInput("predict --url: the server predicts with the model it serves; drop --model")
        return remote_predict(args)
    if not args.model:
        raise InvalidInput("predict: give --model NAME (local registry) or --url URL (the server's model)")
    from emgpose.train.bundle import parse_model_ref  # noqa: PLC0415
    from emgpose.train.calibrate import read_recording  # noqa: PLC0415
    from emgpose.train.coverage import FLAG_SHARE, flagged  # noqa: PLC0415
    from emgpose.train.predict import predict  # noqa: PLC0415

    ref = parse_model_ref(args.model, _store(args))
    bundle = ref.registry.load(ref.name, _version(ref))
    recording = read_recording(args.file)
    result = predict(bundle, recording.emg, recording.time)
    if result.out_of_range is not None and len(result):
        count = flagged(result.out_of_range)
        if count:
            print(  # noqa: T201
                f"warning: {count} of {len(result)} windows ({count / len(result):.0%}) have more than "
                f"{FLAG_SHARE:.0%} of their features outside the range {bundle.name} {bundle.version} was trained "
                f"on; answers there are extrapolations (the out_of_range column; `emgpose calibrate` adapts "
                f"the model to this user)",
                file=sys.stderr,
            )
    text = result.to_csv()
    if args.out:
        Path(args.out).write_text(text)
        _out(f"{len(result)} windows from {args.file} by {bundle.name} {bundle.version} -> {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from emgpose.train.calibrate import STATISTICS, STRATEGIES, calibrate

    _quiet(args, "emgpose.train.calibrate", "emgpose.train.boost")
    result = calibrate(
        args.model,
        args.data,
        _store(args),
        seconds=args.seconds,
        rounds=args.rounds,
        learning_rate=args.learning_rate,
        name=args.name,
        promote=args.promote,
        device=args.device,
        strategies=(args.strategy,) if args.strategy else STRATEGIES,
        statistics=("model",) if args.keep_stats else STATISTICS,
    )
    unit = "deg MAE" if result["measure"] == "mae_deg" else "error rate"
    chosen = result["chosen"]
    _out(
        f"calibrated {result['name']} version {result['version']} (from {result['base_version']}) on "
        f"{result['seconds']:g} s, {result['windows']} windows{', promoted to latest' if result['promoted'] else ''}"
    )
    before = result["base_error"]
    _out(f"  error before: {before:.3f} {unit}  (the base model on these windows)")
    if chosen.get("folds"):
        after = chosen["cv_error"]
        change = f", {(after - before) / before:+.0%}" if before else ""
        verdict = "better" if after < before else "NOT better: keep using the base model"
        _out(f"  error after:  {after:.3f} {unit}  (calibrated, cross-validated in time{change}: {verdict})")
    else:
        _out("  error after:  not measured (too few windows to cross-validate; record more seconds)")
    _out(f"  {'way':<10} {'statistics':<11} {'rounds':>7} {'cross-validated ' + unit:>28}")
    for c in result["candidates"]:
        mark = "  <- chosen" if c == chosen else ""
        score = f"{c['cv_error']:.3f}" if c.get("folds") else "not compared (too few windows)"
        rounds = f"+{c['rounds']}" if c["strategy"] == "continue" else str(c["rounds"])
        _out(f"  {c['strategy']:<10} {c['statistics']:<11} {rounds:>7} {score:>28}{mark}")
    _out("  (rounds: +N are boosted on top of the base model's trees; refit grows N new ones)")
    _out(f"  bundle: {result['uri']}")
    if not result["promoted"]:
        ref = f"{result['name']}@{result['version']}"
        _out(
            f"  not promoted: emgpose predict --model {ref} FILE uses it; emgpose models promote {ref} makes it latest"
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    store_help = "model store URI (default: STORE_URI from the environment)"

    train = sub.add_parser("train", help="train an XGBoost model (and baselines) on a preprocessed dataset")
    train.add_argument("--dataset", required=True, help="preprocessed dataset (folder or store URI)")
    train.add_argument("--name", required=True, help="model name in the registry")
    train.add_argument(
        "--task", choices=("regression", "classification"), help="joint angles or gestures (default: from the dataset)"
    )
    train.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where XGBoost trains")
    train.add_argument(
        "--num-rounds",
        dest="num_rounds",
        type=int,
        help="most boosting rounds; early stopping may end sooner (default: 400, BoostConfig's)",
    )
    train.add_argument(
        "--learning-rate", dest="learning_rate", type=float, help="XGBoost's eta (default: 0.1, BoostConfig's)"
    )
    train.add_argument("--max-depth", dest="max_depth", type=int, help="tree depth (default: 6, BoostConfig's)")
    train.add_argument("--params", help="more XGBoost settings, as JSON or a JSON file (see BoostConfig)")
    train.add_argument("--resume", help="continue boosting from this model (NAME, NAME@VERSION or location)")
    train.add_argument("--no-promote", action="store_true", help="publish without moving 'latest'")
    train.add_argument("--store", help=store_help)
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="score a model (and baselines) on a preprocessed dataset")
    ev.add_argument("--model", required=True, help="NAME, NAME@VERSION, or a store URI of a model version")
    ev.add_argument("--dataset", required=True, help="preprocessed dataset (folder or store URI)")
    ev.add_argument("--store", help=store_help)
    ev.set_defaults(func=cmd_evaluate)

    models = sub.add_parser(
        "models",
        help="list, show or promote model versions (local registry; --url: the server's)",
        description="Model versions in the local registry (--store or STORE_URI) by default; with --url URL "
        "(or --remote, which takes $EMGPOSE_URL) the same on a running gateway.",
    )
    models.add_argument("action", choices=("list", "show", "promote"), help="list versions, show one, or move latest")
    models.add_argument("ref", nargs="?", help="NAME or NAME@VERSION (list: optional name)")
    models.add_argument("--json", action="store_true", help="show: the whole bundle.json instead of a summary")
    models.add_argument("--store", help=store_help)
    add_server_options(models, switch=True)
    models.set_defaults(func=cmd_models)

    pred = sub.add_parser(
        "predict",
        help="joint angles (or classes) per window of an HDF5 session file (local model; --url: the server's)",
        description="One CSV row per window: window_end_sample, t_end_s, then <joint>_rad and <joint>_deg (or "
        "p_<class> and class). With --model, a model of the local registry; with --url URL (or --remote), the "
        "model the server serves.",
    )
    pred.add_argument("--model", help="NAME, NAME@VERSION, or a store URI of a model version (local)")
    pred.add_argument("file", help="session file (.hdf5) at the model's sample rate and channel count")
    pred.add_argument("--out", help="write CSV here instead of standard output")
    pred.add_argument("--store", help=store_help)
    add_server_options(pred, switch=True)
    pred.set_defaults(func=cmd_predict)

    cal = sub.add_parser(
        "calibrate",
        help="adapt a model to a new user from short recordings",
        description="Tries continued boosting on the model's trees and a refit on the user's windows, each with "
        "the user's own normalisation statistics and the model's, by blocked cross-validation in time within each "
        "recording; publishes the best as a new version and prints every way's error.",
        epilog="example: emgpose calibrate --model hand --data anna_1.hdf5 anna_2.hdf5 --seconds 12 --name hand-anna",
    )
    cal.add_argument("--model", required=True, help="NAME, NAME@VERSION, or a store URI of a model version")
    cal.add_argument("--data", required=True, nargs="+", help="the new user's recordings (.hdf5 with angles or labels)")
    cal.add_argument("--seconds", type=float, help="use the first N seconds in total, shared between the recordings")
    cal.add_argument("--rounds", type=int, help="fixed boosting rounds (default: chosen by cross-validation)")
    cal.add_argument("--learning-rate", dest="learning_rate", type=float, default=0.1, help="XGBoost's eta")
    cal.add_argument("--strategy", choices=("continue", "refit"), help="only this way (default: the better of both)")
    cal.add_argument("--name", help="publish under this model name (default: the base model's)")
    cal.add_argument("--promote", action="store_true", help="point 'latest' at the calibrated version")
    cal.add_argument(
        "--keep-stats", dest="keep_stats", action="store_true", help="only the model's normalisation statistics"
    )
    cal.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where XGBoost trains")
    cal.add_argument("--store", help=store_help)
    cal.set_defaults(func=cmd_calibrate)
