"""The comparative study of the plan: CPU, CuPy's built-in GPU chain, our kernels, our kernels + our objective.

    python bench/compare.py                                  # 32 sessions x 120 s, 16 ch at 2 kHz, all configs
    python bench/compare.py --configs cpu --sessions 2 --duration 20 --rounds 20   # a CPU-only smoke run
    python bench/compare.py --data s3://bucket/raw/lab --xgb-windows 5000000       # your data, XGBoost at scale

Each configuration runs in its own process on the same dataset (:mod:`emgpose.study`); GPU ones are
reported as skipped where CuPy sees no device. Writes ``report.json`` and ``stages.png``, ``memory.png``,
``accuracy.png`` to ``--out`` and prints a table. The same study runs as a gateway job of type ``benchmark``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from emgpose.study import CONFIGS, STAGES, StudyOptions, run_study, save, write_plots
from emgpose.synth import SynthConfig, write_dataset


def table(report: dict) -> str:
    lines = [f"device: {report['device'] or 'none (CPU only)'}; host cores: {report['host']['cores']}"]
    header = f"{'config':<24}" + "".join(f"{s:>10}" for s in STAGES) + f"{'total':>10}{'MAE deg':>10}{'host GiB':>10}"
    lines.append(header + f"{'dev GiB':>9}")
    for name, result in report["configs"].items():
        if "seconds" not in result:
            lines.append(f"{name:<24}{result.get('skipped') or result.get('error')}")
            continue
        cells = "".join(f"{result['seconds'][s]:>10.3f}" for s in STAGES)
        memory = f"{result['peak_host_bytes'] / 2**30:>10.2f}{result['peak_device_bytes'] / 2**30:>9.2f}"
        lines.append(f"{name:<24}{cells}{result['total_seconds']:>10.2f}{result['accuracy']['mae_deg']:>10.3f}{memory}")
    lines.append(f"comparison: {json.dumps(report['comparison'])}")
    if "bandwidth" in report:
        lines.append(f"bandwidth: {json.dumps(report['bandwidth'])}")
    if "xgboost" in report:
        lines.append(f"xgboost: {json.dumps(report['xgboost'])}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="a raw dataset with joint angles (default: synthetic, generated)")
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--stages", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=4, help="sessions per user and stage")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds per session")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--nthread", type=int, default=None, help="XGBoost CPU threads (default: all cores)")
    parser.add_argument("--xgb-windows", type=int, default=0, help="also XGBoost CPU vs CUDA at this many windows")
    parser.add_argument("--xgb-rounds", type=int, default=5)
    parser.add_argument("--out", default=f"out/compare-{time.strftime('%Y%m%dT%H%M%S')}")
    parser.add_argument("--no-plots", action="store_true", help="write report.json only")
    parser.add_argument("--plots-from", metavar="REPORT", help="only draw the plots of an earlier report.json")
    args = parser.parse_args()
    if args.plots_from:
        report = json.loads(open(args.plots_from).read())
        print(table(report))
        print("wrote " + ", ".join(write_plots(report, os.path.dirname(os.path.abspath(args.plots_from)))))
        return

    with tempfile.TemporaryDirectory(prefix="emgpose-compare-") as tmp:
        data = args.data
        if data is None and not [name for name in args.configs.split(",") if name]:
            data = "(none: XGBoost only)"
        elif data is None:
            data = os.path.join(tmp, "data")
            synth = SynthConfig(users=args.users, stages=args.stages, sessions=args.sessions, duration_s=args.duration)
            started = time.perf_counter()
            print(
                f"generating {args.users * args.stages * args.sessions} sessions x {args.duration:g} s ...", flush=True
            )
            write_dataset(synth, data)
            print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)
        report = run_study(
            data,
            [name for name in args.configs.split(",") if name],
            StudyOptions(rounds=args.rounds, nthread=args.nthread),
            xgb_windows=args.xgb_windows,
            xgb_rounds=args.xgb_rounds,
            progress=lambda message: print(message, flush=True),
        )
    paths = save(report, args.out, plots=not args.no_plots)
    print(table(report))
    print("wrote " + ", ".join(paths))
    failed = [name for name, result in report["configs"].items() if "error" in result]
    if failed:
        for name in failed:
            print(f"{name} failed:\n{report['configs'][name].get('log', '')}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
