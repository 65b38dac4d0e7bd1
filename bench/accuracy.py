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
from emgpose.importers import import_uci
from emgpose.preprocess.job import run_preprocess
from emgpose.train import boost
from emgpose.train.bundle import Registry
from emgpose.train.data import load_preprocessed
from emgpose.train.job import run_train

DATA = Path(os.environ.get("EMGPOSE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
TRAIN_SHARE = 0.7


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
            run_preprocess(str(raw), str(pre))
            config = boost.BoostConfig(nthread=cores())
            result = run_train(str(pre), str(Path(tmp) / "store"), "acc", config=config)
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


def across_subjects() -> dict:
    """UCI 3 to 5 and 5 to 3: uncalibrated against the mean, and calibration against training from scratch on
    the same seconds of the new subject (6 s and 12 s, a third from the start of each of their recordings;
    tested on the rest), as ``bench/results_real.py`` draws them."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from results_real import TEST_FROM_S, _concat, _part  # noqa: PLC0415

    from emgpose.train.calibrate import Recording, calibration_curve, read_recording  # noqa: PLC0415

    files = sorted((DATA / "uci_lower_limb").glob("*.txt"))
    out = {}
    for train_user, test_user in (("3", "5"), ("5", "3")):
        with tempfile.TemporaryDirectory(prefix="emgpose-acc-") as tmp:
            work = Path(tmp)
            import_uci(files, work / "data", test_users=[test_user])
            run_preprocess(str(work / "data"), str(work / "pre"))
            result = run_train(
                str(work / "pre"), str(work / "store"), "knee", config=boost.BoostConfig(nthread=cores())
            )
            report = json.loads(Path(result["report"].removeprefix("file://")).read_text())
            test = report["evaluation"]["test"]["overall"]
            bundle = Registry(str(work / "store")).load("knee")
            recordings = [read_recording(str(p)) for p in sorted((work / "data").glob(f"{test_user}*.hdf5"))]
            tests = [_part(r, TEST_FROM_S, None) for r in recordings]

            def calibration(seconds: float, recordings: list = recordings) -> Recording:
                return _concat([_part(r, 0.0, seconds / len(recordings)) for r in recordings])

            curve = calibration_curve(bundle, calibration, tests, [6.0, 12.0])
        entry = {
            "uncalibrated_mae_deg": test["xgboost"]["mae_deg"],
            "mean_mae_deg": test["mean"]["mae_deg"],
            "uncalibrated_vs_mean": round(test["xgboost"]["mae_deg"] / test["mean"]["mae_deg"], 3),
            "target_uncalibrated_vs_mean_at_most": 0.7,
            "calibration": {
                f"{s:g}s": {
                    "calibrated": curve["calibrated"][i],
                    "scratch": curve["scratch"][i],
                    "calibrated_vs_scratch": None
                    if not curve["scratch"][i]
                    else round(curve["calibrated"][i] / curve["scratch"][i], 3),
                }
                for i, s in enumerate(curve["seconds"])
            },
            "target_calibrated_vs_scratch_at_most": 0.8,
        }
        out[f"{train_user}->{test_user}"] = entry
        cal = entry["calibration"]
        print(  # noqa: T201
            f"UCI {train_user}->{test_user}: uncalibrated {entry['uncalibrated_mae_deg']:.2f} vs mean "
            f"{entry['mean_mae_deg']:.2f} deg; 6 s calibrated {cal['6s']['calibrated']:.2f} vs scratch "
            f"{cal['6s']['scratch']:.2f}; 12 s {cal['12s']['calibrated']:.2f} vs {cal['12s']['scratch']:.2f}",
            flush=True,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="first seconds of each recording")
    parser.add_argument("--out", default="out/accuracy.json")
    parser.add_argument("--skip-across", action="store_true", help="only the within-recording comparison")
    args = parser.parse_args()
    if not (DATA / "uci_lower_limb").exists():
        sys.exit(f"no UCI recordings at {DATA / 'uci_lower_limb'} (set EMGPOSE_SHARED_DATA)")
    rows = within_recordings(args.seconds)
    defaults = float(np.median([r["defaults_mae_deg"] for r in rows]))
    reference = float(np.median([r["reference_mae_deg"] for r in rows]))
    summary = {
        "within_recording": {
            "seconds": args.seconds,
            "recordings": rows,
            "median_defaults_mae_deg": round(defaults, 3),
            "median_reference_mae_deg": round(reference, 3),
            "median_ratio": round(defaults / reference, 3),
            "target_median_ratio_at_most": 0.85,
            "worst_ratio": max(r["ratio"] for r in rows),
            "target_worst_ratio_at_most": 1.10,
        }
    }
    if not args.skip_across:
        summary["across_subjects"] = across_subjects()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    w = summary["within_recording"]
    print(  # noqa: T201
        f"median MAE: defaults {w['median_defaults_mae_deg']} deg, reference {w['median_reference_mae_deg']} deg "
        f"(ratio {w['median_ratio']}, target <= 0.85); worst ratio {w['worst_ratio']} (target <= 1.10); "
        f"wrote {args.out}"
    )


if __name__ == "__main__":
    main()
