"""Accuracy on a new user's short recordings: the project's defaults beside a plain reference, in one command.

    python bench/accuracy.py                      # every UCI recording in ../shared/data, first 15 s, 70/30
    python bench/accuracy.py --seconds 15 --out out/accuracy.json

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="first seconds of each recording")
    parser.add_argument("--out", default="out/accuracy.json")
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
