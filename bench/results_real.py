"""Real-recording results for docs/results.md (needs ../shared/data or EMGPOSE_SHARED_DATA).

    .venv/bin/python bench/results_real.py --workdir runs/results-real --out docs/figures

UCI knee angle: train on one subject, test on the other (both directions), plus a calibration curve
on the test subject. Myo and NinaPro gestures: classification across repetitions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np

from emgpose.importers import import_myo, import_ninapro, import_uci
from emgpose.preprocess import PreprocessConfig
from emgpose.preprocess.job import run_preprocess
from emgpose.train import plots
from emgpose.train.bundle import Registry
from emgpose.train.calibrate import Recording, calibration_curve, read_recording
from emgpose.train.job import run_train

DATA = Path(os.environ.get("EMGPOSE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SECONDS = [1.5, 3.0, 6.0, 9.0, 12.0]  # in total, a third from the start of each of the three recordings
TEST_FROM_S = 5.0  # the test part of each recording starts here (the shortest, 5Nmar, lasts 6.6 s)


def _scores(report: dict, keys: tuple[str, ...]) -> dict:
    split = "test" if "test" in report["evaluation"] else "val"
    overall = report["evaluation"][split]["overall"]
    return {"split": split, **{m: {k: s.get(k) for k in keys} for m, s in overall.items()}}


def _train(work: Path, name: str, config: PreprocessConfig | None = None) -> tuple[dict, dict]:
    run_preprocess(str(work / "data"), str(work / "pre"), config)
    result = run_train(str(work / "pre"), str(work / "store"), name)
    report = json.loads((work / "store" / "models" / name / result["version"] / "report.json").read_text())
    return result, report


def _part(rec: Recording, start_s: float, stop_s: float | None) -> Recording:
    a = int(start_s * rec.sample_rate)
    b = len(rec.emg) if stop_s is None else int(stop_s * rec.sample_rate)
    return Recording(rec.source, rec.sample_rate, rec.time[a:b], rec.emg[a:b], rec.angles[a:b], None)


def _concat(parts: list[Recording]) -> Recording:
    """Recordings back to back (windows that span a seam are few and only in calibration data)."""
    rate = parts[0].sample_rate
    n = sum(len(p.emg) for p in parts)
    return Recording(
        "+".join(p.source.rsplit("/", 1)[-1] for p in parts),
        rate,
        np.arange(n) / rate,
        np.concatenate([p.emg for p in parts]),
        np.concatenate([p.angles for p in parts]),
        None,
    )


def uci(root: Path, out: Path) -> dict:
    files = sorted((DATA / "uci_lower_limb").glob("*.txt"))
    results = {}
    for train_user, test_user in (("3", "5"), ("5", "3")):
        work = root / f"uci_{train_user}to{test_user}"
        import_uci(files, work / "data", test_users=[test_user])
        result, report = _train(work, "knee")
        entry = {"scores": _scores(report, ("mae_deg", "rmse_deg", "r2_mean")), "split": report["split"]}
        entry["coverage"] = {
            k: report["coverage"][k]["overall"] for k in ("train", "val", "test") if k in report["coverage"]
        }
        bundle = Registry(str(work / "store")).load("knee")
        sessions = sorted((work / "data").glob(f"{test_user}*.hdf5"))
        recordings = [read_recording(str(p)) for p in sessions]  # gait, standing, sitting
        tests = [_part(r, TEST_FROM_S, None) for r in recordings]

        def calibration(seconds: float, recordings: list = recordings) -> Recording:
            return _concat([_part(r, 0.0, seconds / len(recordings)) for r in recordings])

        entry["calibration"] = calibration_curve(bundle, calibration, tests, SECONDS)
        results[f"{train_user}->{test_user}"] = entry
        for png in (work / "store" / "models" / "knee" / result["version"] / "plots").glob("*.png"):
            shutil.copy(png, out / f"uci_{train_user}to{test_user}_{png.name}")
    first = results["3->5"]["calibration"]
    plots.plot_curve(
        out / "uci_calibration.png",
        {
            f"{label} ({direction})": (SECONDS, results[direction]["calibration"][label])
            for direction in results
            for label in ("calibrated", "boosting_only", "scratch")
        }
        | {"uncalibrated (3->5)": (SECONDS, first["uncalibrated"])},
        "seconds of the new subject's data (a third from each activity)",
        "knee MAE on the rest of their recordings (deg)",
        "UCI knee angle: calibration on a new subject",
    )
    return results


def gestures(root: Path, out: Path) -> dict:
    results = {}
    myo = root / "myo"
    import_myo(DATA / "myo_wrist" / "10000-1", myo / "data")
    config = PreprocessConfig.from_dict({"bandpass": {"low_hz": 10, "high_hz": 90}, "moving_average": 10})
    _, report = _train(myo, "myo", config)
    results["myo"] = {"scores": _scores(report, ("accuracy", "macro_f1")), "split": report["split"]}
    results["myo"]["coverage"] = {k: v["overall"] for k, v in report["coverage"].items() if isinstance(v, dict)}
    nina = root / "ninapro"
    import_ninapro(DATA / "ninapro_db1" / "S1_A1_E1.mat", nina / "data")
    config = PreprocessConfig.from_dict({"bandpass": {"enabled": False}, "rectify": False, "moving_average": 5})
    run_preprocess(str(nina / "data"), str(nina / "pre"), config)
    result = run_train(str(nina / "pre"), str(nina / "store"), "nina", task="classification")
    report = json.loads((nina / "store" / "models" / "nina" / result["version"] / "report.json").read_text())
    results["ninapro"] = {"scores": _scores(report, ("accuracy", "macro_f1")), "split": report["split"]}
    results["ninapro"]["coverage"] = {k: v["overall"] for k, v in report["coverage"].items() if isinstance(v, dict)}
    for name, store in (("myo", myo / "store"), ("nina", nina / "store")):
        for png in store.rglob("confusion.png"):
            shutil.copy(png, out / f"{name}_confusion.png")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default="runs/results-real")
    parser.add_argument("--out", default="docs/figures")
    args = parser.parse_args()
    root, out = Path(args.workdir).resolve(), Path(args.out)
    shutil.rmtree(root, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    results = {"uci": uci(root, out), **gestures(root, out)}
    (out / "real.json").write_text(json.dumps(results, indent=2, default=lambda x: np.asarray(x).tolist()))
    print(json.dumps(results, indent=2, default=lambda x: np.asarray(x).tolist()))


if __name__ == "__main__":
    main()
