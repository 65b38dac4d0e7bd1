"""Synthetic results for docs/results.md: model vs baselines per generalization group, calibration curve.

    .venv/bin/python bench/results_synth.py --workdir runs/results-synth --out docs/figures

Writes ``synth.json`` and PNGs into ``--out``; the numbers quoted in docs/results.md come from there.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from emgpose.preprocess.job import run_preprocess
from emgpose.synth import SynthConfig, write_dataset
from emgpose.train import plots
from emgpose.train.boost import BoostConfig
from emgpose.train.bundle import Registry
from emgpose.train.calibrate import calibration_curve, read_recording
from emgpose.train.job import run_train

SECONDS = [5.0, 10.0, 20.0, 40.0, 60.0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default="runs/results-synth")
    parser.add_argument("--out", default="docs/figures")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--strategy", default="one_output_per_tree")
    parser.add_argument("--stage-variation", dest="stage_variation", type=float, default=SynthConfig.stage_variation)
    parser.add_argument("--rounds", type=int, default=800)
    parser.add_argument("--tag", default="synth", help="prefix of the output files")
    args = parser.parse_args()
    work, out = Path(args.workdir).resolve(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    config = SynthConfig(
        users=args.users,
        stages=4,
        sessions=2,
        duration_s=args.duration,
        held_out_users=2,
        stage_variation=args.stage_variation,
        seed=3,
    )
    started = time.perf_counter()
    write_dataset(config, str(work / "data"))
    run_preprocess(str(work / "data"), str(work / "pre"))
    t_pre = time.perf_counter() - started
    boost = BoostConfig(multi_strategy=args.strategy, num_rounds=args.rounds)
    result = run_train(str(work / "pre"), str(work / "store"), "synth", config=boost)
    report = json.loads((work / "store" / "models" / "synth" / result["version"] / "report.json").read_text())
    bundle = Registry(str(work / "store")).load("synth")
    curves = {}
    for user in sorted({r["user"] for r in _rows(work) if r["held_out_user"] == "true"}):
        calib = read_recording(str(work / "data" / f"{user}_session0_FingerFreeform.hdf5"))
        tests = [
            read_recording(str(p))
            for p in sorted((work / "data").glob(f"{user}_session1_*.hdf5"))
            if "ThumbsSwirls" not in p.name  # the held-out stage stays out of the calibration curve
        ]
        curves[user] = calibration_curve(bundle, calib, tests, SECONDS)
    mean_curve = {k: np.mean([c[k] for c in curves.values()], axis=0).tolist() for k in curves[next(iter(curves))]}
    plots.plot_curve(
        out / f"{args.tag}_calibration.png",
        {
            label: (SECONDS, mean_curve[label])
            for label in ("uncalibrated", "statistics_only", "boosting_only", "calibrated", "scratch")
        },
        "seconds of the new user's data",
        "MAE on the user's other sessions (deg)",
        "synthetic held-out users: calibration",
    )
    for png in (work / "store" / "models" / "synth" / result["version"] / "plots").glob("*.png"):
        shutil.copy(png, out / f"{args.tag}_{png.name}")
    summary = {
        "config": {**vars(args), "stages": 4, "sessions": 2, "held_out_users": 2},
        "preprocess_s": round(t_pre, 1),
        "train": {k: report["training"][k] for k in ("best_round", "rounds_run", "seconds", "windows")},
        "evaluation": {
            split: {
                "overall": {m: s["mae_deg"] for m, s in ev["overall"].items()},
                **{g: {m: s["mae_deg"] for m, s in gs.items()} for g, gs in ev["by_generalization"].items()},
            }
            for split, ev in report["evaluation"].items()
        },
        "calibration": {"per_user": curves, "mean": mean_curve},
    }
    (out / f"{args.tag}.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary["evaluation"], indent=2))
    print(json.dumps(mean_curve, indent=2))


def _rows(work: Path) -> list[dict]:
    import csv

    with open(work / "data" / "metadata.csv") as fh:
        return list(csv.DictReader(fh))


if __name__ == "__main__":
    main()
