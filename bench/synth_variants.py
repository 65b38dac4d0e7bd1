"""How far the model beats ridge on held-out stages, across synthetic forward models (docs/results.md).

    .venv/bin/python bench/synth_variants.py --out docs/figures/synth_variants.json

Each variant: 6 users x 4 stages x 2 sessions x 30 s (2 users and 1 stage held out, seed 3), the default
preprocessing, 300 boosting rounds (one thread, so that runs are comparable), MAE in degrees per
generalization group for XGBoost, ridge and the mean. Then, on the ``default`` data unless said:

* ``ridge base margin``: trees boosted on ridge's residual (ridge's prediction as the base margin), on the
  ``recruitment 2`` data;
* ``tree shapes``: other depths, learning rates and column sampling (does regularisation buy extrapolation?);
* ``stage seen``: XGBoost and ridge trained with session 0 of the held-out stage added, scored on session 1
  of the seen users: the margin a stage would give once it is no longer new (an upper bound for the
  held-out stage margin), on ``default`` and on ``shared synergies, sharpness 3, recruitment 2``;
* ``coverage``: the share of each group's features outside the training range (``emgpose.train.coverage``).

``--only NAME ...`` reruns some variants and merges them into the existing ``--out`` file.
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
from emgpose.train.coverage import FeatureRange
from emgpose.train.data import WindowTable, assign_splits, load_preprocessed
from emgpose.train.job import choose_task, run_train

VARIANTS = {
    "default": {},
    "recruitment 2": {"recruitment": 2.0},
    "recruitment 3": {"recruitment": 3.0},
    "recruitment 2, effort 0.5": {"recruitment": 2.0, "effort_variation": 0.5},
    "sharpness 3": {"sharpness": 3.0},
    "recruitment 2, 6 stages x 20 s": {"recruitment": 2.0, "stages": 6, "duration_s": 20.0},
    "recruitment 2, 32 channels": {"recruitment": 2.0, "channels": 32},
    "shared synergies": {"stage_synergies": 6},
    "shared synergies, sharpness 3, recruitment 2": {"stage_synergies": 6, "sharpness": 3.0, "recruitment": 2.0},
}
TREE_SHAPES = {
    "depth 1, lr 0.3, 1500 rounds": ({"max_depth": 1, "learning_rate": 0.3}, 1500),
    "depth 2, lr 0.2, 1000 rounds": ({"max_depth": 2, "learning_rate": 0.2}, 1000),
    "depth 3, 600 rounds": ({"max_depth": 3}, 600),
    "depth 6, 1500 rounds": ({"max_depth": 6}, 1500),
    "depth 6, colsample_bynode 0.3, 1000 rounds": ({"max_depth": 6, "colsample_bynode": 0.3}, 1000),
    "depth 8, min_child_weight 20, 800 rounds": ({"max_depth": 8, "min_child_weight": 20}, 800),
}
STAGE_SEEN = ("default", "shared synergies, sharpness 3, recruitment 2")
EXTRAS = ("ridge base margin", "tree shapes", "stage seen", "coverage")


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


class Split:
    """The train/val/test windows of one variant's preprocessed data, and MAE in degrees per group."""

    def __init__(self, pre: Path) -> None:
        data = load_preprocessed(pre.as_uri())
        self.task = choose_task(data, None)
        split = assign_splits(data.table, data.window_length)
        self.train, self.val, self.test = (data.table.take(split.rows(s)) for s in ("train", "val", "test"))
        self.groups = self.test.ids["generalization"].astype(str)

    def mae(self, z: np.ndarray, t) -> float:  # noqa: ANN001
        pred, true = np.degrees(self.task.stats.unscale_targets(z)), np.degrees(t.y)
        ok = np.isfinite(true).all(axis=1)
        return round(float(np.mean(np.abs(pred[ok] - true[ok]))), 2)

    def parts(self) -> dict[str, WindowTable]:
        """Validation and each test group (``user``, ``stage``, ``user_stage``)."""
        return {"val": self.val, **{g: self.test.take(self.groups == g) for g in np.unique(self.groups)}}

    def scores(self, predict) -> dict:  # noqa: ANN001
        """``predict(table) -> scaled targets``, scored on val and on each test group."""
        return {name: self.mae(predict(t), t) for name, t in self.parts().items()}

    def ridge(self, train=None) -> RidgeRegressor:  # noqa: ANN001
        train = train if train is not None else self.train
        targets = self.task.targets
        return RidgeRegressor().fit(train.features, targets(train), self.val.features, targets(self.val))

    def boost(self, params: dict, rounds: int, train=None, margin=None) -> tuple:  # noqa: ANN001
        """XGBoost with early stopping on val; ``margin(table)`` is each row's starting prediction."""
        train = train if train is not None else self.train

        def matrix(t):  # noqa: ANN001, ANN202
            d = xgb.DMatrix(t.features, label=self.task.targets(t))
            if margin is not None:
                d.set_base_margin(margin(t))
            return d

        params = {**BoostConfig(nthread=1).xgb_params("regression"), **params}
        evals = [(matrix(self.val), "val")]
        booster = xgb.train(params, matrix(train), rounds, evals=evals, early_stopping_rounds=30, verbose_eval=False)
        predict = lambda t: booster.predict(matrix(t), iteration_range=(0, booster.best_iteration + 1))  # noqa: E731
        return predict, booster.best_iteration + 1


def ridge_base_margin(pre: Path, rounds: int) -> dict:
    """Trees boosted on ridge's residual: ridge's prediction is each row's starting margin."""
    split = Split(pre)
    ridge = split.ridge()
    predict, _ = split.boost({}, rounds, margin=lambda t: ridge.predict(t.features))
    return split.scores(predict)


def tree_shapes(pre: Path) -> dict:
    split = Split(pre)
    ridge = split.ridge()
    out = {"ridge": split.scores(lambda t: ridge.predict(t.features))}
    for name, (params, rounds) in TREE_SHAPES.items():
        started = time.perf_counter()
        predict, best = split.boost(params, rounds)
        out[name] = {"best_round": best, "seconds": round(time.perf_counter() - started), **split.scores(predict)}
        print(f"  {name:<44} {out[name]}", flush=True)
    return out


def stage_seen(pre: Path, rounds: int) -> dict:
    """Both models with session 0 of the held-out stage (seen users) in training, scored on its session 1."""
    split = Split(pre)
    stage = split.test.take(split.groups == "stage")
    first = np.array(["_session0" in s for s in stage.ids["session"].astype(str)])
    seen, scored = stage.take(first), stage.take(~first)
    out = {}
    for name, train in (("stage new", split.train), ("stage seen", concat_tables(split.train, seen))):
        ridge = split.ridge(train)
        predict, _ = split.boost({}, rounds, train=train)
        out[name] = {
            "xgboost": split.mae(predict(scored), scored),
            "ridge": split.mae(ridge.predict(scored.features), scored),
        }
    return out


def concat_tables(a: WindowTable, b: WindowTable) -> WindowTable:
    both = lambda x, y: None if x is None else np.concatenate([x, y])  # noqa: E731
    return WindowTable(
        features=both(a.features, b.features), y=both(a.y, b.y), label=both(a.label, b.label),
        window_end=both(a.window_end, b.window_end), t_end=both(a.t_end, b.t_end),
        ids={k: both(v, b.ids[k]) for k, v in a.ids.items()},
    )  # fmt: skip


def coverage(pre: Path) -> dict:
    """How many features of each group's windows fall outside the training range (as the bundle records it)."""
    split = Split(pre)
    feature_range = FeatureRange.fit(split.train.features)
    return {name: feature_range.summary(t.features) for name, t in split.parts().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default="runs/synth-variants")
    parser.add_argument("--out", default="docs/figures/synth_variants.json")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--only", nargs="+", choices=[*VARIANTS, *EXTRAS], help="rerun these, keep the rest of --out")
    args = parser.parse_args()
    work = Path(args.workdir).resolve()
    out = Path(args.out)
    results = json.loads(out.read_text()) if args.only and out.exists() else {"rounds": args.rounds, "variants": {}}
    wanted = set(args.only or [*VARIANTS, *EXTRAS])

    def pre(name: str) -> Path:
        """The variant's preprocessed data, made (and scored) first if this run has not made it."""
        folder = work / name.replace(" ", "_").replace(",", "")
        if name in wanted or not (folder / "pre" / "summary.json").exists():
            results["variants"][name] = r = run_variant(folder, VARIANTS[name], args.rounds)
            print(f"{name:<44} " + "  ".join(
                f"{g} {r[g]['xgboost']:.2f}/{r[g]['ridge']:.2f}" for g in ("val", "user", "stage", "user_stage")
            ), flush=True)  # fmt: skip
            wanted.discard(name)
        return folder / "pre"

    for name in VARIANTS:
        if name in wanted:
            pre(name)
    if "ridge base margin" in wanted:
        r = ridge_base_margin(pre("recruitment 2"), args.rounds)
        results["variants"]["ridge base margin (recruitment 2)"] = r
        print("ridge base margin (recruitment 2):", r, flush=True)
    if "tree shapes" in wanted:
        print("tree shapes (default data):", flush=True)
        results["tree_shapes"] = tree_shapes(pre("default"))
    if "stage seen" in wanted:
        results["stage_seen"] = {name: stage_seen(pre(name), args.rounds) for name in STAGE_SEEN}
        print("stage seen:", results["stage_seen"], flush=True)
    if "coverage" in wanted:
        results["coverage"] = {
            name: coverage(pre(name)) for name in VARIANTS if name in STAGE_SEEN + ("shared synergies",)
        }
        print("coverage:", results["coverage"], flush=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
