"""Accuracy on a new user's short recordings: the project's defaults beside a plain reference, in one command.

    python bench/accuracy.py                      # every UCI recording in ../shared/data, first 15 s, 70/30
    python bench/accuracy.py --seconds 15 --out out/accuracy.json
    python bench/accuracy.py --skip-across        # only the within-recording part

Also, UCI across subjects (3 to 5, 5 to 3): the uncalibrated model against the mean, and calibration with
6 s and 12 s of the new subject against training from scratch on the same seconds.

Within each recording of `../shared/data/uci_lower_limb` (cut to its first ``--seconds``), the first 70 %
in time is training data and the last 30 % the test: two session files of one user, imported as the
CLI would. Two models see the same windows (the project's preprocessing):

* **defaults**: :func:`emgpose.train.job.run_train` with its defaults (small-data cross-validation of
  the rounds, smoothing and adaptation chosen on validation, ...), as ``emgpose train`` runs it;
* **reference**: a plain script: XGBoost with fixed parameters (its own defaults: 100 rounds, depth 6,
  learning rate 0.3) on every training window, no validation split, no smoothing.

The issue's targets: the defaults' median MAE at most 0.85x the reference's, and worse than it by more than
10 % on no recording. Each run prints a table and writes JSON; repeat and quote medians.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import xgboost as xgb

from emgpose.formats.metadata import METADATA_FILE, MetadataRow, write_metadata
from emgpose.formats.session import SessionReader, SessionWriter
from emgpose.importers import import_myo, import_ninapro, import_uci
from emgpose.preprocess.config import PreprocessConfig
from emgpose.preprocess.job import run_preprocess
from emgpose.synth import SynthConfig, write_dataset
from emgpose.train import boost
from emgpose.train.bundle import Registry
from emgpose.train.data import load_preprocessed
from emgpose.train.job import run_train

DATA = Path(os.environ.get("EMGPOSE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
TRAIN_SHARE = 0.7

# Options compared in the ablation (``--ablation``): preprocessing settings merged into each part's own, and
# training settings. "defaults" is what the CLI does with no options.
VARIANTS: dict[str, tuple[dict, dict]] = {
    "defaults": ({}, {}),
    "no per-session adaptation": ({}, {"adaptation": "none"}),
    "adaptation always": ({}, {"adaptation": "session"}),
    "+ 800 ms window": ({"window": {"extra_lengths": ["800ms"]}}, {}),
    "+ 400 and 800 ms windows": ({"window": {"extra_lengths": ["400ms", "800ms"]}}, {}),
    "+ context of 4 windows": ({"context": 4}, {}),
    "+ LS4 and Hjorth": ({"features": ["env_mean", "mav", "rms", "wl", "zc", "ssc", "ls", "mfl", "msr", "wamp",
                                       "act", "mob", "comp"]}, {}),
    "+ log amplitude, channel share": ({"features": ["env_mean", "mav", "rms", "wl", "zc", "ssc", "log_mav",
                                                     "log_rms", "mav_share"]}, {}),
    "+ MNF/MDF": ({"features": ["env_mean", "mav", "rms", "wl", "zc", "ssc", "mnf", "mdf"]}, {}),
}  # fmt: skip
VARIANT = VARIANTS["defaults"]


def preprocess_config(base: dict | None = None) -> PreprocessConfig:
    """``base`` (a part's own settings) with the chosen variant's preprocessing settings merged in."""
    merged = dict(base or {})
    for key, value in VARIANT[0].items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    return PreprocessConfig.from_dict(merged)


def boost_config(**settings: object) -> boost.BoostConfig:
    return boost.BoostConfig.from_dict({"nthread": cores(), **settings, **VARIANT[1]})


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def split_recording(source: Path, seconds: float, out: Path) -> None:
    """The recording's first ``seconds`` as two sessions of one user: train (70 %) then test (30 %)."""
    with tempfile.TemporaryDirectory(prefix="emgpose-acc-") as tmp:
        imported = import_uci(source, Path(tmp) / "ds")
        row = imported.sessions[0]
        with SessionReader(Path(tmp) / "ds" / row.file) as reader:
            info = reader.info
            n = min(info.num_samples, int(seconds * info.sample_rate))
            chunk = reader.read(0, n)
    cut = int(n * TRAIN_SHARE)
    out.mkdir(parents=True)
    rows = []
    for part, (lo, hi) in {"train": (0, cut), "test": (cut, n)}.items():
        name = f"{row.filename}_{part}"
        with SessionWriter(
            out / f"{name}.hdf5",
            sample_rate=info.sample_rate,
            num_channels=info.num_channels,
            joint_names=info.joint_names,
            channel_names=info.channel_names,
            filename=name,
            user=row.user,
            session=name,
            stage=row.stage,
        ) as writer:
            writer.append(chunk.time[lo:hi], chunk.emg[lo:hi], chunk.joint_angles[lo:hi])
        rows.append(MetadataRow(filename=name, split=part, user=row.user, session=name, stage=row.stage))
    (out / METADATA_FILE).write_text(write_metadata(rows))


def reference_mae(pre: str) -> float:
    """XGBoost with its fixed defaults on every training window, no validation: test MAE in degrees."""
    data = load_preprocessed(pre)
    table, splits = data.table, data.table.ids["split"]
    train, test = table.take(splits == "train"), table.take(splits == "test")
    model = xgb.XGBRegressor(n_jobs=cores(), tree_method="hist")
    model.fit(train.features, train.y)
    predicted = np.asarray(model.predict(test.features), dtype=np.float64).reshape(test.y.shape)
    return float(np.degrees(np.abs(predicted - test.y)).mean())


def within_recordings(seconds: float) -> list[dict]:
    results = []
    for source in sorted((DATA / "uci_lower_limb").glob("*.txt")):
        with tempfile.TemporaryDirectory(prefix="emgpose-acc-") as tmp:
            raw, pre = Path(tmp) / "raw", Path(tmp) / "pre"
            split_recording(source, seconds, raw)
            run_preprocess(str(raw), str(pre), preprocess_config())
            result = run_train(str(pre), str(Path(tmp) / "store"), "acc", config=boost_config())
            report = json.loads(Path(result["report"].removeprefix("file://")).read_text())
            test = report["evaluation"]["test"]["overall"]
            row = {
                "recording": source.stem,
                "windows": report["split"]["windows"],
                "defaults_mae_deg": test["xgboost"]["mae_deg"],
                "ridge_mae_deg": test["ridge"]["mae_deg"],
                "mean_mae_deg": test["mean"]["mae_deg"],
                "reference_mae_deg": round(reference_mae(str(pre)), 4),
                "rounds": report["training"]["rounds_run"],
                "val_rule": report["split"]["rules"]["val"],
                "smoothing": Registry(str(Path(tmp) / "store")).meta("acc").get("smoothing", {}).get("alpha"),
            }
            row["ratio"] = round(row["defaults_mae_deg"] / row["reference_mae_deg"], 3)
            results.append(row)
            print(  # noqa: T201
                f"{row['recording']:<8} train {row['windows'].get('train', 0):>4}"
                f" test {row['windows'].get('test', 0):>4}"
                f"  defaults {row['defaults_mae_deg']:6.2f}  reference {row['reference_mae_deg']:6.2f}"
                f"  ridge {row['ridge_mae_deg']:6.2f}  mean {row['mean_mae_deg']:6.2f}  ratio {row['ratio']:.2f}",
                flush=True,
            )
    return results


def across_subjects(calibration_too: bool = True) -> dict:
    """UCI 3 to 5 and 5 to 3: uncalibrated against the mean, and calibration against training from scratch on
    the same seconds of the new subject (6 s and 12 s, a third from the start of each of their recordings;
    tested on the rest), as ``bench/results_real.py`` draws them."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from results_real import TEST_FROM_S, _part  # noqa: PLC0415

    from emgpose.train.calibrate import Recording, calibration_curve, read_recording  # noqa: PLC0415

    files = sorted((DATA / "uci_lower_limb").glob("*.txt"))
    out = {}
    for train_user, test_user in (("3", "5"), ("5", "3")):
        with tempfile.TemporaryDirectory(prefix="emgpose-acc-") as tmp:
            work = Path(tmp)
            import_uci(files, work / "data", test_users=[test_user])
            run_preprocess(str(work / "data"), str(work / "pre"), preprocess_config())
            result = run_train(str(work / "pre"), str(work / "store"), "knee", config=boost_config())
            report = json.loads(Path(result["report"].removeprefix("file://")).read_text())
            test = report["evaluation"]["test"]["overall"]
            bundle = Registry(str(work / "store")).load("knee")
            recordings = [read_recording(str(p)) for p in sorted((work / "data").glob(f"{test_user}*.hdf5"))]
            tests = [_part(r, TEST_FROM_S, None) for r in recordings]

            def calibration(seconds: float, recordings: list = recordings) -> list[Recording]:
                return [_part(r, 0.0, seconds / len(recordings)) for r in recordings]

            curve = calibration_curve(bundle, calibration, tests, [6.0, 12.0]) if calibration_too else None
        entry = {
            "uncalibrated_mae_deg": test["xgboost"]["mae_deg"],
            "mean_mae_deg": test["mean"]["mae_deg"],
            "uncalibrated_vs_mean": round(test["xgboost"]["mae_deg"] / test["mean"]["mae_deg"], 3),
            "target_uncalibrated_vs_mean_at_most": 0.7,
        }
        line = (
            f"UCI {train_user}->{test_user}: uncalibrated {entry['uncalibrated_mae_deg']:.2f} vs mean "
            f"{entry['mean_mae_deg']:.2f} deg"
        )
        if curve is not None:
            entry["calibration"] = {
                f"{s:g}s": {
                    **{k: curve[k][i] for k in ("calibrated", "chosen", "continued", "boosting_only", "scratch")},
                    "calibrated_vs_scratch": None
                    if not curve["scratch"][i]
                    else round(curve["calibrated"][i] / curve["scratch"][i], 3),
                }
                for i, s in enumerate(curve["seconds"])
            }
            entry["target_calibrated_vs_scratch_at_most"] = 0.8
            cal = entry["calibration"]
            line += "".join(
                f"; {k} calibrated {cal[k]['calibrated']:.2f} ({cal[k]['chosen']['strategy']}, "
                f"{cal[k]['chosen']['statistics']} statistics) vs scratch {cal[k]['scratch']:.2f}"
                for k in ("6s", "12s")
            )
        out[f"{train_user}->{test_user}"] = entry
        print(line, flush=True)  # noqa: T201
    return out


def synthetic(duration: float) -> dict:
    """Synthetic held-out users and stages (6 users x 4 stages x 2 sessions; users 4 and 5 and the last stage
    held out): MAE per generalization group of the defaults, ridge and the mean."""
    config = SynthConfig(
        users=6, stages=4, sessions=2, duration_s=duration, held_out_users=2, held_out_stages=1, seed=3
    )
    with tempfile.TemporaryDirectory(prefix="emgpose-acc-") as tmp:
        work = Path(tmp)
        write_dataset(config, str(work / "data"))
        run_preprocess(str(work / "data"), str(work / "pre"), preprocess_config())
        result = run_train(str(work / "pre"), str(work / "store"), "synth", config=boost_config())
        report = json.loads(Path(result["report"].removeprefix("file://")).read_text())
    groups = report["evaluation"]["test"]["by_generalization"]
    out = {
        group: {model: scores[model]["mae_deg"] for model in ("xgboost", "ridge", "mean")}
        for group, scores in groups.items()
    }
    users = next(v for k, v in out.items() if "user" in k and "stage" not in k)
    stages = next(v for k, v in out.items() if "stage" in k and "user" not in k)
    summary = {
        "groups": out,
        "users_mean_over_model": round(users["mean"] / users["xgboost"], 3),
        "target_users_mean_over_model_at_least": 3.0,
        "stages_model_vs_ridge": round(stages["xgboost"] / stages["ridge"], 3),
        "target_stages_model_vs_ridge_below": 1.0,
    }
    print(  # noqa: T201
        f"synthetic: new users {users['xgboost']:.2f} deg (mean {users['mean']:.2f}, "
        f"{summary['users_mean_over_model']:.2f}x better); new stage {stages['xgboost']:.2f} vs ridge "
        f"{stages['ridge']:.2f}",
        flush=True,
    )
    return summary


def gestures() -> dict:
    """Myo (10000-1) and NinaPro DB1 (S1_A1_E1) across repetitions, as bench/results_real.py splits them."""
    parts = {
        "myo": (import_myo, DATA / "myo_wrist" / "10000-1", {"bandpass": {"low_hz": 10, "high_hz": 90},
                                                              "moving_average": 10}),
        "ninapro": (import_ninapro, DATA / "ninapro_db1" / "S1_A1_E1.mat", {"bandpass": {"enabled": False},
                                                                           "rectify": False, "moving_average": 5}),
    }  # fmt: skip
    out = {}
    for name, (importer, source, settings) in parts.items():
        if not source.exists():
            out[name] = {"skipped": f"{source} not found"}
            continue
        with tempfile.TemporaryDirectory(prefix="emgpose-acc-") as tmp:
            work = Path(tmp)
            importer(source, work / "data")
            run_preprocess(str(work / "data"), str(work / "pre"), preprocess_config(settings))
            result = run_train(
                str(work / "pre"), str(work / "store"), name, task="classification", config=boost_config()
            )
            report = json.loads(Path(result["report"].removeprefix("file://")).read_text())
        overall = report["evaluation"]["test"]["overall"]
        out[name] = {m: {k: overall[m][k] for k in ("accuracy", "macro_f1")} for m in overall}
        print(  # noqa: T201
            f"{name}: accuracy {overall['xgboost']['accuracy']:.3f} (macro F1 {overall['xgboost']['macro_f1']:.3f})"
            + "".join(f", {m} {overall[m]['accuracy']:.3f}" for m in overall if m != "xgboost"),
            flush=True,
        )
    out["target_accuracy_at_least"] = {"myo": 0.88, "ninapro": 0.87}
    return out


def run_parts(parts: set[str], seconds: float, synth_seconds: float, calibration_too: bool) -> dict:
    summary: dict = {}
    if "within" in parts:
        rows = within_recordings(seconds)
        defaults = float(np.median([r["defaults_mae_deg"] for r in rows]))
        reference = float(np.median([r["reference_mae_deg"] for r in rows]))
        summary["within_recording"] = {
            "seconds": seconds,
            "recordings": rows,
            "median_defaults_mae_deg": round(defaults, 3),
            "median_reference_mae_deg": round(reference, 3),
            "median_ratio": round(defaults / reference, 3),
            "target_median_ratio_at_most": 0.85,
            "worst_ratio": max(r["ratio"] for r in rows),
            "target_worst_ratio_at_most": 1.10,
        }
    if "across" in parts:
        summary["across_subjects"] = across_subjects(calibration_too)
        if "within_recording" in summary and calibration_too:
            for direction, entry in summary["across_subjects"].items():
                user = direction.split("->")[1]
                own = [r["defaults_mae_deg"] for r in summary["within_recording"]["recordings"]
                       if r["recording"].startswith(user)]  # fmt: skip
                within = float(np.median(own))
                entry["within_subject_mae_deg"] = round(within, 3)
                for cal in entry["calibration"].values():
                    cal["calibrated_vs_within"] = round(cal["calibrated"] / within, 3)
                entry["target_calibrated_vs_within_at_most"] = 1.5
    if "synth" in parts:
        summary["synthetic"] = synthetic(synth_seconds)
    if "gestures" in parts:
        summary["gestures"] = gestures()
    return summary


def headline(summary: dict) -> dict[str, float | None]:
    """One row of the ablation table: the figure each target is judged on."""
    row: dict[str, float | None] = {}
    w = summary.get("within_recording")
    if w:
        row["within: median MAE"], row["within: reference MAE"] = (
            w["median_defaults_mae_deg"],
            w["median_reference_mae_deg"],
        )
        row["within: median ratio"], row["within: worst ratio"] = w["median_ratio"], w["worst_ratio"]
    for direction, entry in summary.get("across_subjects", {}).items():
        row[f"across {direction}: vs mean"] = entry["uncalibrated_vs_mean"]
    synth = summary.get("synthetic")
    if synth:
        row["synth: users mean/model"] = synth["users_mean_over_model"]
        row["synth: stage model/ridge"] = synth["stages_model_vs_ridge"]
    for name, entry in summary.get("gestures", {}).items():
        if isinstance(entry, dict) and "xgboost" in entry:
            row[f"{name}: accuracy"] = entry["xgboost"]["accuracy"]
    return row


def main() -> None:
    global VARIANT
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="first seconds of each UCI recording")
    parser.add_argument("--synth-seconds", dest="synth_seconds", type=float, default=15.0, help="per session")
    parser.add_argument("--out", default="out/accuracy.json")
    parser.add_argument(
        "--parts", default="within,across,synth,gestures", help="comma-separated: within, across, synth, gestures"
    )
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="defaults", help="options to run with")
    parser.add_argument(
        "--ablation", action="store_true", help="every variant in turn (no calibration), one table of headlines"
    )
    parser.add_argument("--variants", help="with --ablation: only these variants (names separated by ;)")
    args = parser.parse_args()
    if not (DATA / "uci_lower_limb").exists():
        sys.exit(f"no UCI recordings at {DATA / 'uci_lower_limb'} (set EMGPOSE_SHARED_DATA)")
    parts = set(args.parts.split(","))
    unknown = parts - {"within", "across", "synth", "gestures"}
    if unknown:
        sys.exit(f"--parts: unknown {sorted(unknown)}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if args.ablation:
        table = {}
        chosen = args.variants.split(";") if args.variants else list(VARIANTS)
        if set(chosen) - set(VARIANTS):
            sys.exit(f"--variants: unknown {sorted(set(chosen) - set(VARIANTS))}; choose from {sorted(VARIANTS)}")
        for name, variant in ((n, VARIANTS[n]) for n in chosen):
            print(f"== {name}", flush=True)
            VARIANT = variant
            table[name] = headline(run_parts(parts, args.seconds, args.synth_seconds, calibration_too=False))
            Path(args.out).write_text(json.dumps({"ablation": table}, indent=2))
        columns = list(next(iter(table.values())))
        print("| variant | " + " | ".join(columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
        for name, row in table.items():
            print(f"| {name} | " + " | ".join("" if row.get(c) is None else f"{row[c]:.3f}" for c in columns) + " |")
        return
    VARIANT = VARIANTS[args.variant]
    summary = run_parts(parts, args.seconds, args.synth_seconds, calibration_too=True)
    summary["variant"] = args.variant
    Path(args.out).write_text(json.dumps(summary, indent=2))
    print(json.dumps(headline(summary), indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
