"""Calibration for a new user: their own normalisation, then continued boosting on a short recording.

A model trained on some people transfers poorly to a new person: electrode placement, skin and anatomy
change the EMG that the same movement produces. A short recording of the new user with its angles (or
labels) gives two fixes, both kept in the new version: the user's own EMG z-score statistics (the
target scaling stays the model's, since the booster predicts in that space), and extra boosting rounds
fitted to the user's windows on top of the existing trees (XGBoost continued training).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from emgpose.errors import InvalidInput
from emgpose.formats.session import SessionReader
from emgpose.preprocess.config import PreprocessConfig
from emgpose.preprocess.normalize import NormStats, RunningStats
from emgpose.preprocess.signal import CausalChain
from emgpose.preprocess.windows import WindowStream
from emgpose.store import open_store
from emgpose.train import boost
from emgpose.train.bundle import Bundle, check_name, new_version, parse_model_ref
from emgpose.train.coverage import FeatureRange
from emgpose.train.evaluate import Task

log = logging.getLogger(__name__)

DEFAULT_ROUNDS = 60
DEFAULT_LEARNING_RATE = 0.05


@dataclass
class Recording:
    """One session file read whole (calibration recordings are short)."""

    source: str
    sample_rate: float
    time: np.ndarray
    emg: np.ndarray
    angles: np.ndarray | None
    label: np.ndarray | None

    def first(self, seconds: float | None) -> Recording:
        if seconds is None:
            return self
        n = int(round(seconds * self.sample_rate))
        if n > len(self.emg):
            raise InvalidInput(
                f"{self.source}: asked for {seconds:g} s of calibration data, the recording has "
                f"{len(self.emg) / self.sample_rate:.1f} s"
            )
        cut = slice(0, n)
        return Recording(
            self.source,
            self.sample_rate,
            self.time[cut],
            self.emg[cut],
            None if self.angles is None else self.angles[cut],
            None if self.label is None else self.label[cut],
        )


def read_recording(location: str) -> Recording:
    """A session file (HDF5, emg2pose layout) from a path or store URI."""
    if "://" in location and not location.startswith("file://"):
        parent, _, key = location.rpartition("/")
        with tempfile.TemporaryDirectory(prefix="emgpose-cal-") as tmp:
            path = str(Path(tmp) / key)
            open_store(parent).get_file(key, path)
            return _read(path, location)
    return _read(location.removeprefix("file://"), location)


def _read(path: str, source: str) -> Recording:
    if not Path(path).exists():
        raise InvalidInput(f"{source}: recording not found")
    with SessionReader(path) as reader:
        parts = list(reader.iter_chunks(1 << 20))
        rate = reader.info.sample_rate
    if not parts:
        raise InvalidInput(f"{source}: the recording has no samples")

    def join(field: str) -> np.ndarray | None:
        values = [getattr(p, field) for p in parts]
        return None if values[0] is None else np.concatenate(values)

    return Recording(source, rate, join("time"), join("emg"), join("joint_angles"), join("label"))


def user_stats(config: PreprocessConfig, recording: Recording, base: NormStats) -> NormStats:
    """The recording's own EMG statistics; the target scaling stays the model's."""
    if not config.zscore:
        return base
    channels = recording.emg.shape[1]
    filtered, envelope = RunningStats(channels), RunningStats(channels)
    out = CausalChain(config, recording.sample_rate, channels, recording.source).process(recording.emg)
    filtered.update(out.filtered, ~out.invalid)
    envelope.update(out.envelope, ~out.invalid)
    own = NormStats.from_running(filtered, envelope, RunningStats(0))
    return NormStats(
        filtered_mean=own.filtered_mean,
        filtered_std=own.filtered_std,
        envelope_mean=own.envelope_mean,
        envelope_std=own.envelope_std,
        target_mean=base.target_mean,
        target_std=base.target_std,
        samples=own.samples,
    )


@dataclass
class Windows:
    features: np.ndarray
    y: np.ndarray | None  # radians
    label: np.ndarray | None
    t_end: np.ndarray


def recording_windows(bundle: Bundle, recording: Recording, stats: NormStats) -> Windows:
    """The recording's usable windows, preprocessed exactly as training did, with ``stats``."""
    if abs(recording.sample_rate - bundle.sample_rate) > 1e-6 or recording.emg.shape[1] != bundle.num_channels:
        raise InvalidInput(
            f"{recording.source}: {recording.emg.shape[1]} channels at {recording.sample_rate:g} Hz, but model "
            f"{bundle.name} expects {bundle.num_channels} channels at {bundle.sample_rate:g} Hz"
        )
    regression = bundle.task == "regression"
    if regression and recording.angles is None:
        raise InvalidInput(f"{recording.source}: calibrating a regression model needs joint angles in the recording")
    if not regression and recording.label is None:
        raise InvalidInput(f"{recording.source}: calibrating a classifier needs gesture labels in the recording")
    stream = WindowStream(
        bundle.config,
        recording.sample_rate,
        bundle.num_channels,
        stats,
        num_targets=len(bundle.joint_names) if regression else 0,
        with_label=not regression,
        source=recording.source,
    )
    batch = stream.push(recording.emg, recording.time, recording.angles if regression else None, recording.label)
    keep = batch.kept
    features = batch.features  # adapted as a stream would be, when the model was trained so
    if bundle.adaptation is not None:
        features = bundle.adaptation.stream()(features)
    return Windows(
        features=features[keep],
        y=None if batch.targets is None else batch.targets[keep],
        label=None if batch.label is None else batch.label[keep],
        t_end=batch.end_time[keep],
    )


def continue_training(
    bundle: Bundle,
    windows: Windows,
    rounds: int = DEFAULT_ROUNDS,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    device: str = "cpu",
    init: bool = True,
) -> boost.FitResult:
    """Boosts ``rounds`` more rounds on the user's windows (``init=False``: from scratch, to compare)."""
    if len(windows.features) < 2:
        raise InvalidInput("the calibration recording yields fewer than 2 usable windows; record longer")
    params = {**bundle.meta.get("training", {}).get("params", {}), "device": device}
    config = boost.BoostConfig.from_dict({**params, "num_rounds": rounds, "learning_rate": learning_rate})
    task = Task(bundle.task, bundle.joint_names or bundle.class_names, bundle.stats)
    y = task.stats.scale_targets(windows.y).astype(np.float32) if bundle.task == "regression" else windows.label
    return boost.fit(
        config,
        bundle.task,
        windows.features,
        y,
        num_class=len(bundle.class_names) if bundle.task == "classification" else 0,
        init_model=bundle.booster if init else None,
    )


def calibrate(
    model: str,
    recording: str,
    store_uri: str,
    *,
    seconds: float | None = None,
    rounds: int = DEFAULT_ROUNDS,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    name: str | None = None,
    promote: bool = False,
    device: str = "cpu",
    own_stats: bool = True,
) -> dict[str, Any]:
    """Publishes a calibrated version of ``model`` for the user of ``recording``; returns where.

    ``own_stats=False`` keeps the model's normalisation and only continues boosting (better when the
    recording covers fewer movements than training did, see docs/results.md).
    """
    ref = parse_model_ref(model, store_uri)
    bundle = ref.registry.load(ref.name, ref.version)
    data = read_recording(recording).first(seconds)
    stats = user_stats(bundle.config, data, bundle.stats) if own_stats else bundle.stats
    windows = recording_windows(bundle, data, stats)
    fit = continue_training(bundle, windows, rounds, learning_rate, device)
    target = check_name(name or bundle.name)
    meta = {k: v for k, v in bundle.meta.items() if k not in ("version", "files", "latest", "format", "metrics")}
    meta.update(name=target, stats=stats.to_dict(), created=datetime.now(UTC).isoformat(timespec="seconds"))
    meta["calibration"] = {
        "base": {"name": bundle.name, "version": bundle.version},
        "recording": recording,
        "seconds": round(len(data.emg) / data.sample_rate, 3),
        "windows": int(len(windows.features)),
        "rounds": rounds,
        "learning_rate": learning_rate,
        "statistics": "the user's own" if own_stats else "the base model's",
    }
    if bundle.feature_range is not None:  # the trees have now seen the user's windows too
        meta["feature_range"] = bundle.feature_range.union(FeatureRange.fit(windows.features)).to_dict()
    version = new_version()
    meta["version"] = version
    ref.registry.publish(meta, fit.booster, {}, promote=promote)
    log.info("calibrated %s %s on %s -> %s %s", bundle.name, bundle.version, recording, target, version)
    return {
        "name": target,
        "version": version,
        "base_version": bundle.version,
        "uri": ref.registry.store.url(f"models/{target}/{version}"),
        "windows": int(len(windows.features)),
        "seconds": meta["calibration"]["seconds"],
        "promoted": promote,
    }


def calibration_curve(
    bundle: Bundle,
    calibration: Recording | Callable[[float], Recording],
    tests: list[Recording],
    seconds: list[float],
    rounds: int = DEFAULT_ROUNDS,
    scratch_rounds: int = 200,
) -> dict[str, list[float | None]]:
    """Error on ``tests`` (the same user's other recordings) against seconds of calibration data.

    Curves: the model as trained (``uncalibrated``), with only the user's statistics
    (``statistics_only``), continued boosting with the model's statistics (``boosting_only``),
    calibrated (the user's statistics + continued boosting), and a model trained from scratch on the
    same seconds. Regression: MAE in degrees; classification: accuracy.
    ``calibration`` is a recording whose first seconds are used, or a function giving the
    calibration data for a number of seconds (to draw them from several recordings).
    """
    regression = bundle.task == "regression"

    def test_windows(stats: NormStats) -> Windows:
        """The test recordings' windows under ``stats``, computed once per statistics."""
        parts = [recording_windows(bundle, t, stats) for t in tests]
        y = np.concatenate([p.y for p in parts]) if regression else None
        label = None if regression else np.concatenate([p.label for p in parts])
        return Windows(np.concatenate([p.features for p in parts]), y, label, np.concatenate([p.t_end for p in parts]))

    def score(booster: Any, windows: Windows) -> float:
        raw = boost.predict(booster, windows.features, bundle.outputs)
        if regression:
            return float(np.degrees(np.abs(bundle.stats.unscale_targets(raw) - windows.y)).mean())
        return float((raw.argmax(axis=1) == windows.label).mean())

    model_tests = test_windows(bundle.stats)
    base = score(bundle.booster, model_tests)
    curves: dict[str, list[float | None]] = {
        "seconds": list(seconds),
        "uncalibrated": [],
        "statistics_only": [],
        "boosting_only": [],
        "calibrated": [],
        "scratch": [],
    }
    for s in seconds:
        part = calibration(s) if callable(calibration) else calibration.first(s)
        stats = user_stats(bundle.config, part, bundle.stats)
        windows = recording_windows(bundle, part, stats)
        user_tests = test_windows(stats)
        curves["uncalibrated"].append(base)
        curves["statistics_only"].append(score(bundle.booster, user_tests))
        if len(windows.features) < 2:
            for key in ("boosting_only", "calibrated", "scratch"):
                curves[key].append(None)
            continue
        same = recording_windows(bundle, part, bundle.stats)
        curves["boosting_only"].append(score(continue_training(bundle, same, rounds).booster, model_tests))
        curves["calibrated"].append(score(continue_training(bundle, windows, rounds).booster, user_tests))
        scratch = continue_training(bundle, windows, scratch_rounds, learning_rate=0.1, init=False)
        curves["scratch"].append(score(scratch.booster, user_tests))
    return curves
