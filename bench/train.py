"""Training time and peak memory on about a million windows (CPU, or ``--device cuda``).

    .venv/bin/python bench/train.py --windows 1000000 --rounds 20

The windows come from the real pipeline: synthetic sessions preprocessed with a 1 ms stride, so the
table has the usual 96 features and 20 joints. Each variant trains in a fresh child process, so its
peak RSS is its own. The ridge baseline (what every training run fits beside the booster) is the
reference the booster's time is compared with, in the same command.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from emgpose.preprocess import PreprocessConfig
from emgpose.preprocess.job import run_preprocess
from emgpose.synth import SynthConfig, write_dataset


def child(args: argparse.Namespace) -> None:
    from emgpose.train import baselines, boost
    from emgpose.train.data import load_preprocessed

    started = time.perf_counter()
    data = load_preprocessed(args.pre)
    train = data.table  # every window, whatever its split: this measures speed, not accuracy
    y = data.stats.scale_targets(train.y).astype("float32")
    loaded = time.perf_counter()
    if args.variant == "ridge":
        baselines.RidgeRegressor().fit(train.features, y)
    else:
        config = boost.BoostConfig(
            num_rounds=args.rounds, multi_strategy=args.variant, device=args.device, early_stopping_rounds=10**6
        )
        boost.fit(config, "regression", train.features, y)
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "variant": args.variant,
                "windows": len(train),
                "features": train.features.shape[1],
                "targets": y.shape[1],
                "load_s": round(loaded - started, 2),
                "fit_s": round(done - loaded, 2),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workdir", default="runs/bench-train")
    parser.add_argument("--variants", default="ridge,one_output_per_tree,multi_output_tree")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--pre", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    work = Path(args.workdir).resolve()
    pre = work / f"pre-{args.windows}"
    if not (pre / "summary.json").exists():
        stride = 2  # samples: 1 ms at 2 kHz
        seconds = args.windows * stride / 2000.0 / 0.97  # about 3 % of windows are trimmed or IK failures
        config = SynthConfig(users=4, stages=3, sessions=2, duration_s=seconds / 24 + 1.2, seed=11)
        write_dataset(config, str(work / "data"))
        chain = PreprocessConfig.from_dict({"window": {"length": "200ms", "stride": stride}})
        run_preprocess(str(work / "data"), str(pre), chain)
    rows = []
    for variant in args.variants.split(","):
        cmd = [sys.executable, __file__, "--child", "--variant", variant, "--pre", str(pre)]
        cmd += ["--rounds", str(args.rounds), "--device", args.device]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    ridge = next((r for r in rows if r["variant"] == "ridge"), None)
    for r in rows:
        if r["variant"] != "ridge":
            r["s_per_round"] = round(r["fit_s"] / args.rounds, 3)
            if ridge:
                r["fit_vs_ridge"] = round(r["fit_s"] / ridge["fit_s"], 1)
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
