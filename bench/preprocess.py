"""Benchmark: the preprocessing job against a straightforward SciPy baseline, in one command.

    python bench/preprocess.py                       # 24 sessions x 60 s, 16 ch at 2 kHz (~0.7 GB)
    python bench/preprocess.py --size-gb 4 --no-baseline   # bounded memory on a multi-GB dataset

Each variant runs in its own child process (so peak RSS is its own), on the same synthetic dataset;
throughput is EMG channel-samples per second over the selected time ranges (the statistics pass and
the window pass both count, as both are part of the job). The baseline (bench/baseline.py) computes
the same master table; the script checks the two agree before printing the ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent


def child(variant: str, data: str, out: str, workers: int) -> None:
    """Runs one variant and prints a JSON line with its wall time and peak memory."""
    sys.path.insert(0, str(HERE))
    from baseline import run_baseline

    from emgpose.preprocess.job import run_preprocess

    start = time.perf_counter()
    if variant == "pipeline":
        summary = run_preprocess(data, out, workers=workers)
        windows = sum(s["windows_kept"] for s in summary["sessions"])
    else:
        windows = run_baseline(data, os.path.join(out, "master.parquet"))
    seconds = time.perf_counter() - start
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # pool workers
    print(json.dumps({"seconds": seconds, "windows": windows, "peak_rss_mb": (self_kb + kids_kb) / 1024}))


def run_child(variant: str, data: str, out: str, workers: int) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--data", data, "--out", out, "--workers", str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_dataset(path: Path, args: argparse.Namespace) -> tuple[int, float]:
    """Writes (or reuses) the synthetic dataset; returns (channel-samples in ranges, size in GB)."""
    from emgpose.preprocess.dataset import Dataset
    from emgpose.synth import SynthConfig, write_dataset

    if args.size_gb:
        per_session = SynthConfig(duration_s=args.duration).bytes_per_session
        sessions = max(1, math.ceil(args.size_gb * 1e9 / per_session))
        users, stages, reps = 4, 3, max(1, math.ceil(sessions / 12))
    else:
        users, stages, reps = args.users, args.stages, args.sessions
    config = SynthConfig(users=users, stages=stages, sessions=reps, duration_s=args.duration, seed=7)
    if not (path / "metadata.csv").exists():
        print(f"writing {users * stages * reps} synthetic sessions to {path} ...", file=sys.stderr)
        write_dataset(config, str(path))
    with Dataset(str(path)) as ds:
        train = sum(e.samples for e in ds.split("train"))
        total = (train + sum(e.samples for e in ds.sessions)) * ds.layout.num_channels
    size = sum(p.stat().st_size for p in path.iterdir()) / 1e9
    return total, size


def compare_features(pipeline_out: str, baseline_out: str) -> dict:
    """How far the pipeline's features are from the baseline's (float64) ones.

    Continuous features may differ by float32 rounding; the counts (ZC, SSC) may differ by one where
    a product of neighbouring samples is within rounding of zero, so their mismatch share is reported.
    """
    a = pq.read_table(os.path.join(pipeline_out, "master.parquet"))
    b = pq.read_table(os.path.join(baseline_out, "master.parquet"))
    names = [c for c in a.column_names if c.startswith("f_")]
    if a.num_rows != b.num_rows:
        raise SystemExit(f"the variants disagree: {a.num_rows} windows vs {b.num_rows}")
    counts = [i for i, n in enumerate(names) if n.startswith(("f_zc_", "f_ssc_"))]
    cont = [i for i in range(len(names)) if i not in counts]
    fa = np.column_stack([a[c].to_numpy() for c in names]).astype(np.float64)
    fb = np.column_stack([b[f"x{i}"].to_numpy() for i in range(len(names))])
    rel = np.abs(fa[:, cont] - fb[:, cont]) / np.maximum(np.abs(fb[:, cont]), 1.0)
    diff = np.abs(fa[:, counts] - fb[:, counts])
    return {
        "max_rel_difference_continuous": float(rel.max()),
        "count_mismatch_share": float((diff > 0).mean()),
        "max_count_difference": float(diff.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", choices=["pipeline", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help="existing dataset folder (default: a cached synthetic one)")
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--stages", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per session")
    parser.add_argument("--size-gb", type=float, default=0.0, help="make the dataset about this large")
    parser.add_argument("--workers", type=int, default=0, help="pipeline worker processes (0: one per core)")
    parser.add_argument("--no-baseline", action="store_true", help="time the pipeline only")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "emgpose-bench"))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, args.out, args.workers or None)
        return

    tag = f"{args.size_gb}gb" if args.size_gb else f"{args.users}u{args.stages}s{args.sessions}x{args.duration:g}s"
    data = Path(args.data) if args.data else Path(args.cache) / tag
    data.mkdir(parents=True, exist_ok=True)
    channel_samples, size_gb = make_dataset(data, args)
    results: dict = {"dataset": str(data), "size_gb": round(size_gb, 3), "channel_samples": channel_samples}
    with tempfile.TemporaryDirectory() as tmp:
        variants = ["pipeline"] if args.no_baseline else ["baseline", "pipeline"]
        for variant in variants:
            out = os.path.join(tmp, variant)
            os.makedirs(out)
            r = run_child(variant, str(data), out, args.workers)
            r["throughput"] = channel_samples / r["seconds"]
            results[variant] = r
            print(
                f"{variant:>9}: {r['seconds']:7.2f} s  {r['throughput'] / 1e6:7.2f} M channel-samples/s  "
                f"peak RSS {r['peak_rss_mb']:7.0f} MB  ({r['windows']} windows)"
            )
        if not args.no_baseline:
            agree = compare_features(os.path.join(tmp, "pipeline"), os.path.join(tmp, "baseline"))
            results["agreement"] = agree
            results["speedup"] = results["pipeline"]["throughput"] / results["baseline"]["throughput"]
            print(
                f"  speed-up: {results['speedup']:.1f}x (target 5x); features agree to "
                f"{agree['max_rel_difference_continuous']:.1e} (relative), ZC/SSC counts differ in "
                f"{agree['count_mismatch_share']:.4%} of cells by at most {agree['max_count_difference']:.0f}"
            )
    results["machine"] = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    )
    print(f"  dataset: {size_gb:.2f} GB, {channel_samples / 1e6:.0f} M channel-samples; {results['machine']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
