"""How far the model beats ridge on held-out stages, across synthetic forward models (docs/results.md).

    .venv/bin/python bench/synth_variants.py --out docs/figures/synth_variants.json

Each variant: 6 users x 4 stages x 2 sessions x 30 s (2 users and 1 stage held out, seed 3), the default
preprocessing, 300 boosting rounds (one thread, so that runs are comparable), MAE in degrees per
generalization group for XGBoost, ridge and the mean. The last line boosts trees on ridge's residual
(ridge's prediction as XGBoost's base margin) on the ``recruitment 2`` data.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import xgboost as xgb

from emgpose.preprocess.job import run_preprocess
from emgpose.synth import SynthConfig, write_dataset
from emgpose.train.baselines import RidgeRegressor
from emgpose.train.boost import BoostConfig
from emgpose.train.data import assign_splits, load_preprocessed
from emgpose.train.job import choose_task, run_train

VARIANTS = {
    "default": {},
    "recruitment 2": {"recruitment": 2.0},
    "recruitment 3": {"recruitment": 3.0},
    "recruitment 2, effort 0.5": {"recruitment": 2.0, "effort_variation": 0.5},
    "sharpness 3": {"sharpness": 3.0},
    "recruitment 2, 6 stages x 20 s": {"recruitment": 2.0, "stages": 6, "duration_s": 20.0},
    "recruitment 2, 32 channels": {"recruitment": 2.0, "channels": 32},
}


def run_variant(work: Path, overrides: dict, rounds: int) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    config = SynthConfig(
        **{"users": 6, "stages": 4, "sessions": 2, "duration_s": 30.0, "held_out_users": 2, "seed": 3, **overrides}
    )
    started = time.perf_counter()
    write_dataset(config, str(work / "data"))
    run_preprocess(str(work / "data"), str(work / "pre"))
    result = run_train(str(work / "pre"), str(work / "store"), "v", config=BoostConfig(num_rounds=rounds, nthread=1))
    report = json.loads((work / "store" / "models" / "v" / result["version"] / "report.json").read_text())
    scores = {}
    for split, ev in report["evaluation"].items():
        scores[split] = {m: round(s["mae_deg"], 2) for m, s in ev["overall"].items()}
        for group, group_scores in ev["by_generalization"].items():
            scores[group] = {m: round(s["mae_deg"], 2) for m, s in group_scores.items()}
    return {"seconds": round(time.perf_counter() - started), "best_round": report["training"]["best_round"], **scores}


def ridge_base_margin(pre: Path, rounds: int) -> dict:
    """Trees boosted on ridge's residual: ridge's prediction is each row's starting margin."""
    data = load_preprocessed(pre.as_uri())
    task = choose_task(data, None)
    split = assign_splits(data.table, data.window_length)
    train, val, test = (data.table.take(split.rows(s)) for s in ("train", "val", "test"))
    ridge = RidgeRegressor().fit(train.features, task.targets(train), val.features, task.targets(val))
    params = BoostConfig(nthread=1).xgb_params("regression")

    def matrix(t):  # noqa: ANN001, ANN202
        d = xgb.DMatrix(t.features, label=task.targets(t))
        d.set_base_margin(ridge.predict(t.features))
        return d

    booster = xgb.train(params, matrix(train), rounds, evals=[(matrix(val), "val")], early_stopping_rounds=30,
                        verbose_eval=False)  # fmt: skip

    def mae(t) -> float:  # noqa: ANN001
        z = booster.predict(matrix(t), iteration_range=(0, booster.best_iteration + 1))
        pred, true = np.degrees(task.stats.unscale_targets(z)), np.degrees(t.y)
        ok = np.isfinite(true).all(axis=1)
        return round(float(np.mean(np.abs(pred[ok] - true[ok]))), 2)

    groups = test.ids["generalization"].astype(str)
    return {"val": mae(val), **{g: mae(test.take(groups == g)) for g in np.unique(groups)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default="runs/synth-variants")
    parser.add_argument("--out", default="docs/figures/synth_variants.json")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    work = Path(args.workdir).resolve()
    results = {}
    for name, overrides in VARIANTS.items():
        results[name] = run_variant(work / name.replace(" ", "_").replace(",", ""), overrides, args.rounds)
        r = results[name]
        print(f"{name:<32} " + "  ".join(
            f"{g} {r[g]['xgboost']:.2f}/{r[g]['ridge']:.2f}" for g in ("val", "user", "stage", "user_stage")
        ), flush=True)  # fmt: skip
    results["ridge base margin (recruitment 2)"] = ridge_base_margin(work / "recruitment_2" / "pre", args.rounds)
    print("ridge base margin:", results["ridge base margin (recruitment 2)"])
    Path(args.out).write_text(json.dumps({"rounds": args.rounds, "variants": results}, indent=2))


if __name__ == "__main__":
    main()
