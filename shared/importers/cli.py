"""``emgpose import {uci,myo,ninapro,table} SRC... --out DIR [options]``: the importers on the command line.

The main CLI calls :func:`register` with its ``add_subparsers()`` object; the chosen handler is stored as
``func`` and returns the exit code (0 done, 2 the inputs or options broke a rule).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from emgpose.errors import EmgPoseError


def _names(text: str) -> list[str]:
    """``"3,5"`` -> ``["3", "5"]`` (empty items dropped)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _ints(text: str) -> list[int]:
    try:
        return [int(item) for item in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _uci(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], dict[str, Any]]:
    p.add_argument("--test-users", type=_names, default=[], help="comma-separated users held out for test")
    p.add_argument("--val-users", type=_names, default=[], help="comma-separated users held out for val")
    _conventions(p)
    return lambda a: {"test_users": a.test_users, "val_users": a.val_users, **_convention_options(a)}


def _conventions(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target-sign", help="1 or -1 for every user, or USER=-1,... (flip some users' angles)")
    p.add_argument("--target-offset", help="added after the sign, radians or e.g. 10deg; or USER=10deg,...")


def _convention_options(a: argparse.Namespace) -> dict[str, Any]:
    return {"target_sign": a.target_sign, "target_offset": a.target_offset}


def _myo(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], dict[str, Any]]:
    p.add_argument("--sample-rate", type=float, default=200.0, help="samples per second (default 200)")
    p.add_argument("--test-last", type=int, default=1, help="last N repetitions of a file -> test")
    p.add_argument("--val-last", type=int, default=1, help="the N repetitions before those -> val")
    p.add_argument("--block-seconds", type=float, default=10.0, help="block length for rest-only files")
    return lambda a: {
        "sample_rate": a.sample_rate,
        "test_last": a.test_last,
        "val_last": a.val_last,
        "block_seconds": a.block_seconds,
    }


def _ninapro(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], dict[str, Any]]:
    p.add_argument("--test-reps", type=_ints, default=[2, 5, 7], help="repetitions -> test (default 2,5,7)")
    p.add_argument("--val-reps", type=_ints, default=[10], help="repetitions -> val (default 10)")
    p.add_argument("--raw-labels", action="store_true", help="use stimulus/repetition, not the re- ones")
    return lambda a: {"test_reps": a.test_reps, "val_reps": a.val_reps, "relabelled": not a.raw_labels}


def _table(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], dict[str, Any]]:
    p.add_argument("--sample-rate", type=float, required=True, help="samples per second")
    p.add_argument("--channels", type=_names, required=True, help="EMG columns: a,b,c or a pattern emg_*")
    p.add_argument("--targets", type=_names, default=[], help="joint-angle columns, comma-separated")
    p.add_argument("--target-units", choices=("rad", "deg"), default="rad", help="units of the target columns")
    p.add_argument("--label", help="integer gesture column")
    p.add_argument("--label-names", type=_names, default=[], help="names of labels 0, 1, ...")
    p.add_argument("--time", help="time column in seconds (default: row index / sample rate)")
    p.add_argument("--delimiter", help="CSV delimiter (default ',' or tab for .tsv)")
    p.add_argument("--user", default="", help="user attribute of the session(s)")
    p.add_argument("--session", help="session name (one file only; default: the file's stem)")
    p.add_argument("--stage", default="", help="stage attribute of the session(s)")
    p.add_argument("--split", choices=("train", "val", "test"), default="train", help="the split the sessions go to")
    _conventions(p)
    keys = ("sample_rate", "channels", "targets", "target_units", "label", "label_names", "time")
    return lambda a: {
        **{k: getattr(a, k) for k in (*keys, "delimiter", "user", "session", "stage", "split")},
        **_convention_options(a),
    }


_FORMATS = {"uci": _uci, "myo": _myo, "ninapro": _ninapro, "table": _table}
_HELP = {
    "uci": "UCI 'EMG dataset in Lower Limb' .txt files (knee angle -> KNEE_FE, radians)",
    "myo": "Myo armband folders of <gesture>.txt files (one session per repetition)",
    "ninapro": "NinaPro DB1 .mat files (one session per movement repetition; raw glove targets)",
    "table": "CSV or Parquet tables, one session per file (columns named by options)",
}


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Adds ``import`` (with one sub-command per format) to an ``add_subparsers()`` object."""
    parser = subparsers.add_parser("import", help="convert lab recordings into a dataset folder")
    formats = parser.add_subparsers(dest="import_format", required=True, metavar="FORMAT")
    for name, add_options in _FORMATS.items():
        sub = formats.add_parser(name, help=_HELP[name], description=_HELP[name])
        sub.add_argument("sources", nargs="+", metavar="SRC", help="input files (or folders, for myo)")
        sub.add_argument("--out", required=True, help="dataset folder to write")
        sub.add_argument("--side", default="", help="side attribute of every session (e.g. right)")
        sub.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
        sub.set_defaults(func=run_import, import_options=add_options(sub))
    return parser


def run_import(args: argparse.Namespace) -> int:
    """Runs the chosen importer; prints one line per session and the metadata.csv path."""
    from emgpose.importers import IMPORTERS  # noqa: PLC0415 - SciPy, pyarrow, h5py only when importing

    options = args.import_options(args)
    try:
        result = IMPORTERS[args.import_format](
            args.sources, args.out, side=args.side, overwrite=args.overwrite, **options
        )
    except EmgPoseError as exc:
        print(f"emgpose import: error: {exc.message}", file=sys.stderr)  # noqa: T201
        return 2
    for row in result.sessions:
        print(f"{row.split}\t{result.out_dir / row.file}\t{result.samples[row.filename]} samples")  # noqa: T201
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)  # noqa: T201
    print(result.metadata_path)  # noqa: T201
    return 0
