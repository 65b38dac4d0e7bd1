"""Booster time: XGBoost's ``inplace_predict`` against the compiled model (``MODEL_BACKEND=compiled``).

    .venv/bin/python bench/compiled.py [--rounds 60 [400 ...]] [--repeats 200] [--model NAME --store URI]

Without ``--model``, boosts models of the served shape (16 channels x 6 features = 96 features, 20 joints,
depth 6, one output per tree) on random rows - the trees are full, as on real data - for each ``--rounds``.
Times one booster call on 1, 16 and 256 windows (median of ``--repeats``), XGBoost with the threads a
served bundle gets (all usable CPUs) and with one, the compiled library (one thread); checks both agree;
prints a Markdown table for ``docs/benchmarks.md`` plus the gcc build time and library size.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import xgboost as xgb

from emgpose.devices import usable_cpus
from emgpose.train.bundle import Registry
from emgpose.train.compiled import compile_booster

BATCHES = (1, 16, 256)


def median_us(fn, repeats: int) -> float:  # noqa: ANN001
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def synthetic(rounds: int, features: int = 96, joints: int = 20) -> xgb.Booster:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, features)).astype(np.float32)
    y = (x[:, :joints] + 0.3 * rng.standard_normal((2000, joints))).astype(np.float32)
    params = {"tree_method": "hist", "max_depth": 6, "learning_rate": 0.1, "nthread": usable_cpus(), "seed": 0}
    return xgb.train(params, xgb.DMatrix(x, y), num_boost_round=rounds)


def bench(label: str, booster: xgb.Booster, outputs: int, repeats: int) -> list[str]:
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        compiled = compile_booster(booster, outputs, Path(cache))
        build_s, size = time.perf_counter() - start, compiled.library.stat().st_size
        rows = np.random.default_rng(1).standard_normal((max(BATCHES), booster.num_features())).astype(np.float32)
        diff = float(np.abs(compiled.predict(rows) - booster.inplace_predict(rows)).max())
        one = booster.copy()
        one.set_param({"nthread": 1})
        lines = []
        for n in BATCHES:
            x = rows[:n]
            xgb_all = median_us(lambda x=x: booster.inplace_predict(x), repeats)
            xgb_one = median_us(lambda x=x: one.inplace_predict(x), repeats)
            comp = median_us(lambda x=x: compiled.predict(x), repeats)
            lines.append(
                f"| {label} | {n} | {xgb_all:.0f} | {xgb_one:.0f} | {comp:.0f} | {comp / n:.1f} | "
                f"{min(xgb_all, xgb_one) / comp:.1f}x |"
            )
    print(f"{label}: gcc build {build_s:.1f} s, library {size / 1e6:.2f} MB, max |compiled - XGBoost| {diff:.2g}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, nargs="+", default=[60])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--model", help="a registry model instead of the synthetic ones")
    parser.add_argument("--store", default="file://./runs/store")
    args = parser.parse_args()
    if args.model:
        bundle = Registry(args.store).load(args.model)
        models = iter([(f"{bundle.name} {bundle.version}", bundle.booster, bundle.outputs)])
    else:
        models = ((f"{r} rounds x 20 joints", synthetic(r), 20) for r in args.rounds)  # one trained at a time
    table = [
        f"| model | windows | XGBoost, {usable_cpus()} threads (us) | XGBoost, 1 thread (us) | compiled (us) | "
        "compiled per window (us) | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, booster, outputs in models:
        table += bench(label, booster, outputs, args.repeats)
    print("\n".join(table))


if __name__ == "__main__":
    main()
