"""Calibration for a new user: a short recording (or several) with angles or labels adapts a model.

A model trained on some people transfers poorly to a new person: electrode placement, skin and anatomy
change the EMG that the same movement produces. What transfers depends on the model: a base trained on
many people gives the new user a head start (continued boosting on top of its trees, docs/results.md,
synthetic users), a base trained on one person does not (UCI, where training from scratch on the same
seconds did as well). So calibration does not guess: it tries each way on the user's own data and keeps
the best, by blocked cross-validation in time within each recording:

* ``continue``: more boosting rounds on top of the model's trees (XGBoost continued training);
* ``refit``: a new booster on the user's windows alone, the model's parameters and preprocessing;

each with the user's own EMG z-score statistics or the model's (the target scaling stays the model's,
since the booster predicts in that space). The rounds are chosen by the same cross-validation (the
median of the folds' best rounds), then the chosen way is refitted on all the calibration windows. The
version's ``calibration`` metadata says what was tried, each way's cross-validated error, and the base
model's error on the same windows, so a user can tell whether it helped.
"""

from __future__ import annotations

import logging
import os
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
from emgpose.train import boost, metrics
from emgpose.train.bundle import Bundle, check_name, new_version, parse_model_ref
from emgpose.train.coverage import FeatureRange
from emgpose.train.evaluate import MODEL, Task, draw_plots, session_traces
from emgpose.train.smoothing import Smoother

log = logging.getLogger(__name__)

DEFAULT_ROUNDS = 60  # fixed rounds of the continued-boosting curve of :func:`calibration_curve`
DEFAULT_LEARNING_RATE = 0.05
CV_FOLDS = 4  # blocks in time per calibration recording
MAX_ROUNDS = 300  # at most this many rounds, chosen by cross-validation (early stopping)
CV_LEARNING_RATE = 0.1
STRATEGIES = ("continue", "refit")
STATISTICS = ("own", "model")


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


def user_stats(config: PreprocessConfig, recording: Recording | list[Recording], base: NormStats) -> NormStats:
    """The recordings' own EMG statistics (pooled over all of them); the target scaling stays the model's."""
    if not config.zscore:
        return base
    parts = [recording] if isinstance(recording, Recording) else recording
    channels = parts[0].emg.shape[1]
    filtered, envelope = RunningStats(channels), RunningStats(channels)
    for part in parts:
        out = CausalChain(config, part.sample_rate, channels, part.source).process(part.emg)
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
    return _fit(bundle, windows, rounds, learning_rate, device, init)


def read_calibration(recordings: str | list[str], seconds: float | None) -> list[Recording]:
    """The calibration recordings, each cut to its share of ``seconds`` in total (all of each: ``None``)."""
    sources = [recordings] if isinstance(recordings, str) else list(recordings)
    if not sources:
        raise InvalidInput("calibration needs at least one recording")
    share = None if seconds is None else seconds / len(sources)
    return [read_recording(source).first(share) for source in sources]


@dataclass
class Candidate:
    """One way to calibrate, scored by cross-validation on the user's windows."""

    strategy: str  # continue | refit
    statistics: str  # own | model
    rounds: int
    error: float  # cross-validated: MAE in degrees (regression) or 1 - accuracy (classification)
    folds: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "statistics": self.statistics,
            "rounds": self.rounds,
            "cv_error": round(self.error, 4),
            "folds": self.folds,
        }


@dataclass
class Calibration:
    """The chosen way, refitted on every calibration window."""

    booster: Any
    stats: NormStats
    chosen: Candidate
    candidates: list[Candidate]
    windows: int
    base_error: float  # the base model on the same windows, same measure as ``Candidate.error``


def _per_recording(bundle: Bundle, parts: list[Recording], stats: NormStats) -> list[Windows]:
    return [recording_windows(bundle, part, stats) for part in parts]


def _join(parts: list[Windows]) -> Windows:
    y = None if parts[0].y is None else np.concatenate([p.y for p in parts])
    label = None if parts[0].label is None else np.concatenate([p.label for p in parts])
    return Windows(np.concatenate([p.features for p in parts]), y, label, np.concatenate([p.t_end for p in parts]))


def calibration_folds(parts: list[Windows], gap_s: float, k: int = CV_FOLDS) -> list[tuple[np.ndarray, np.ndarray]]:
    """Blocked folds in time within each recording (rows of the joined windows): fold ``i`` validates on
    block ``i`` of every recording and trains on the rest, minus windows within ``gap_s`` of the block
    (they share samples with it). Fewer than two usable folds gives none."""
    offsets = np.cumsum([0] + [len(p.features) for p in parts])
    folds = []
    for i in range(k):
        val, blocked = [], np.zeros(offsets[-1], dtype=bool)
        for part, offset in zip(parts, offsets[:-1], strict=True):
            block = np.array_split(np.arange(len(part.features)), k)[i]
            if len(block) == 0:
                continue
            val.append(block + offset)
            first, last = part.t_end[block].min(), part.t_end[block].max()
            near = (part.t_end >= first - gap_s) & (part.t_end <= last + gap_s)
            blocked[np.flatnonzero(near) + offset] = True
        if val:
            train = np.flatnonzero(~blocked)
            if len(train) >= 2:
                folds.append((train, np.concatenate(val)))
    return folds if len(folds) >= 2 else []


def _fit(
    bundle: Bundle,
    windows: Windows,
    rounds: int,
    learning_rate: float,
    device: str,
    init: bool,
    val: Windows | None = None,
) -> boost.FitResult:
    params = {**bundle.meta.get("training", {}).get("params", {}), "device": device}
    config = boost.BoostConfig.from_dict({**params, "num_rounds": rounds, "learning_rate": learning_rate})
    regression = bundle.task == "regression"

    def targets(w: Windows) -> np.ndarray:
        return bundle.stats.scale_targets(w.y).astype(np.float32) if regression else w.label

    return boost.fit(
        config,
        bundle.task,
        windows.features,
        targets(windows),
        None if val is None else val.features,
        None if val is None else targets(val),
        num_class=len(bundle.class_names) if not regression else 0,
        init_model=bundle.booster if init else None,
    )


def _error(bundle: Bundle, booster: Any, windows: Windows) -> float:
    """MAE in degrees (regression) or the share of wrong classes: lower is better for both."""
    raw = boost.predict(booster, windows.features, bundle.outputs)
    if bundle.task == "regression":
        return float(np.degrees(np.abs(bundle.stats.unscale_targets(raw) - windows.y)).mean())
    return float((raw.argmax(axis=1) != windows.label).mean())


def _take(w: Windows, rows: np.ndarray) -> Windows:
    return Windows(
        w.features[rows],
        None if w.y is None else w.y[rows],
        None if w.label is None else w.label[rows],
        w.t_end[rows],
    )


def fit_calibration(
    bundle: Bundle,
    parts: list[Recording],
    *,
    strategies: tuple[str, ...] = STRATEGIES,
    statistics: tuple[str, ...] = STATISTICS,
    rounds: int | None = None,
    learning_rate: float = CV_LEARNING_RATE,
    device: str = "cpu",
) -> Calibration:
    """Tries each strategy x statistics on the user's windows by blocked cross-validation, refits the best.

    ``rounds``: fixed rounds for every way (no early stopping); ``None`` chooses them by the folds (at most
    :data:`MAX_ROUNDS`). With too little data for two folds, the first strategy and statistics given are
    used without a comparison (the candidates list says so: no ``cv_error``).
    """
    for value, allowed, what in ((strategies, STRATEGIES, "strategy"), (statistics, STATISTICS, "statistics")):
        unknown = sorted(set(value) - set(allowed))
        if not value or unknown:
            raise InvalidInput(f"calibration {what}: {unknown or 'none given'}; choose from {list(allowed)}")
    joined_model = _join(_per_recording(bundle, parts, bundle.stats))
    if len(joined_model.features) < 2:
        raise InvalidInput("the calibration recordings yield fewer than 2 usable windows; record longer")
    own = user_stats(bundle.config, parts, bundle.stats) if "own" in statistics else None
    by_stats = {"model": bundle.stats, "own": own}
    length_s = bundle.config.window.lengths(bundle.sample_rate)
    gap_s = max(length_s) / bundle.sample_rate
    candidates: list[Candidate] = []
    windows_of: dict[str, Windows] = {}
    for stats_name in statistics:
        per = _per_recording(bundle, parts, by_stats[stats_name])
        windows_of[stats_name] = joined = _join(per)
        folds = calibration_folds(per, gap_s)
        for strategy in strategies:
            if not folds:
                candidates.append(Candidate(strategy, stats_name, rounds or DEFAULT_ROUNDS, float("nan"), 0))
                continue
            errors, best = [], []
            for train, val in folds:
                fit = _fit(
                    bundle,
                    _take(joined, train),
                    rounds or MAX_ROUNDS,
                    learning_rate,
                    device,
                    strategy == "continue",
                    None if rounds else _take(joined, val),
                )
                prior = bundle.booster.num_boosted_rounds() if strategy == "continue" else 0
                best.append(fit.best_round - prior)
                errors.append(_error(bundle, fit.booster, _take(joined, val)) * len(val))
            chosen_rounds = rounds or max(1, int(np.median(best)))
            total = sum(len(val) for _, val in folds)
            candidates.append(Candidate(strategy, stats_name, chosen_rounds, float(sum(errors) / total), len(folds)))
    scored = [c for c in candidates if np.isfinite(c.error)]
    chosen = min(scored, key=lambda c: c.error) if scored else candidates[0]
    windows = windows_of[chosen.statistics]
    fit = _fit(bundle, windows, chosen.rounds, learning_rate, device, chosen.strategy == "continue")
    return Calibration(
        booster=fit.booster,
        stats=by_stats[chosen.statistics],
        chosen=chosen,
        candidates=candidates,
        windows=int(len(windows.features)),
        base_error=_error(bundle, bundle.booster, joined_model),
    )


def calibrate(
    model: str,
    recording: str | list[str],
    store_uri: str,
    *,
    seconds: float | None = None,
    rounds: int | None = None,
    learning_rate: float = CV_LEARNING_RATE,
    name: str | None = None,
    promote: bool = False,
    device: str = "cpu",
    strategies: tuple[str, ...] = STRATEGIES,
    statistics: tuple[str, ...] = STATISTICS,
) -> dict[str, Any]:
    """Publishes a calibrated version of ``model`` for the user of ``recording`` (one or several session
    files; ``seconds`` in total, shared equally between them); returns where, and what was chosen."""
    ref = parse_model_ref(model, store_uri)
    bundle = ref.registry.load(ref.name, ref.version)
    sources = [recording] if isinstance(recording, str) else list(recording)
    parts = read_calibration(sources, seconds)
    cal = fit_calibration(
        bundle, parts, strategies=strategies, statistics=statistics, rounds=rounds,
        learning_rate=learning_rate, device=device,
    )  # fmt: skip
    target = check_name(name or bundle.name)
    meta = {k: v for k, v in bundle.meta.items() if k not in ("version", "files", "latest", "format", "metrics")}
    meta.update(name=target, stats=cal.stats.to_dict(), created=datetime.now(UTC).isoformat(timespec="seconds"))
    measure = "mae_deg" if bundle.task == "regression" else "error_rate"
    meta["calibration"] = {
        "base": {"name": bundle.name, "version": bundle.version},
        "recordings": sources,
        "seconds": round(sum(len(p.emg) / p.sample_rate for p in parts), 3),
        "windows": cal.windows,
        "chosen": cal.chosen.to_dict(),
        "candidates": [c.to_dict() for c in cal.candidates],
        "learning_rate": learning_rate,
        "measure": measure,
        "base_error": round(cal.base_error, 4),
        "rule": f"blocked cross-validation in time, {CV_FOLDS} blocks per recording; the lowest {measure} wins",
    }
    own = _per_recording(bundle, parts, cal.stats)
    if bundle.feature_range is not None:  # the trees have now seen the user's windows too
        user_range = FeatureRange.fit(_join(own).features)
        meta["feature_range"] = (
            user_range if cal.chosen.strategy == "refit" else bundle.feature_range.union(user_range)
        ).to_dict()
    version = new_version()
    meta["version"] = version
    with tempfile.TemporaryDirectory(prefix="emgpose-calibration-plots-") as tmp:
        files = calibration_plots(tmp, bundle, parts, cal, own)
        meta["calibration"]["plots"] = sorted(files)
        ref.registry.publish(meta, cal.booster, files, promote=promote)
    log.info(
        "calibrated %s %s on %s -> %s %s (%s, %s statistics, %d rounds)", bundle.name, bundle.version, sources,
        target, version, cal.chosen.strategy, cal.chosen.statistics, cal.chosen.rounds,
    )  # fmt: skip
    return {
        "name": target,
        "version": version,
        "base_version": bundle.version,
        "uri": ref.registry.store.url(f"models/{target}/{version}"),
        "windows": cal.windows,
        "seconds": meta["calibration"]["seconds"],
        "promoted": promote,
        "chosen": cal.chosen.to_dict(),
        "candidates": [c.to_dict() for c in cal.candidates],
        "measure": measure,
        "base_error": round(cal.base_error, 4),
    }


def calibration_plots(
    outdir: str, bundle: Bundle, parts: list[Recording], cal: Calibration, own: list[Windows]
) -> dict[str, str]:
    """The plots a trained version gets (:func:`emgpose.train.evaluate.draw_plots`), drawn on the
    calibration windows: the calibrated model (``own``: windows under its statistics) against the base
    model (under the base's). These are the windows it was fitted on, so they show the fit and what
    calibration changed, not held-out accuracy (that is ``calibration.chosen.cv_error``). Answers are
    smoothed per recording as deployed. Returns store key (relative) -> local path."""
    task = Task(bundle.task, bundle.joint_names or bundle.class_names, bundle.stats)
    alpha = bundle.smoothing.alpha
    labels = {MODEL: (cal.booster, own), "base": (bundle.booster, _per_recording(bundle, parts, bundle.stats))}
    answers = {
        label: [Smoother(alpha)(task.booster_predictor(booster)(w.features)) for w in windows]
        for label, (booster, windows) in labels.items()
    }
    truth = _join(own)
    if task.kind == "regression":
        overall = {k: metrics.regression_metrics(truth.y, np.concatenate(v), task.names) for k, v in answers.items()}
    else:
        overall = {
            k: metrics.classification_metrics(truth.label, np.concatenate(v), task.names) for k, v in answers.items()
        }
    traces = []
    if task.kind == "regression":
        sessions = [
            (Path(part.source).stem, w.t_end, w.y, pred)
            for part, w, pred in zip(parts, own, answers[MODEL], strict=True)
        ]
        traces = session_traces(sessions, task.names)
    pngs = draw_plots(os.path.join(outdir, "plots"), task, overall, traces, "calibration windows")
    return {f"plots/{os.path.basename(p)}": p for p in pngs}


def calibration_curve(
    bundle: Bundle,
    calibration: Recording | Callable[[float], Recording | list[Recording]],
    tests: list[Recording],
    seconds: list[float],
    rounds: int = DEFAULT_ROUNDS,
    scratch_rounds: int = 200,
) -> dict[str, list[Any]]:
    """Error on ``tests`` (the same user's other recordings) against seconds of calibration data.

    Curves: the model as trained (``uncalibrated``), with only the user's statistics
    (``statistics_only``), continued boosting (``rounds`` at 0.05) with the model's statistics
    (``boosting_only``) or the user's (``continued``), a model trained from scratch on the same seconds
    (``scratch``: ``scratch_rounds`` at 0.1), and ``calibrated``: what ``emgpose calibrate`` publishes (the
    way chosen by cross-validation, :func:`fit_calibration`; ``chosen`` says which). Regression: MAE in
    degrees; classification: accuracy. ``calibration`` is a recording whose first seconds are used, or a
    function giving the calibration data (one recording or several) for a number of seconds.
    """
    regression = bundle.task == "regression"

    def test_windows(stats: NormStats) -> Windows:
        """The test recordings' windows under ``stats``, computed once per statistics."""
        return _join(_per_recording(bundle, tests, stats))

    def score(booster: Any, windows: Windows) -> float:
        raw = boost.predict(booster, windows.features, bundle.outputs)
        if regression:
            return float(np.degrees(np.abs(bundle.stats.unscale_targets(raw) - windows.y)).mean())
        return float((raw.argmax(axis=1) == windows.label).mean())

    model_tests = test_windows(bundle.stats)
    base = score(bundle.booster, model_tests)
    keys = ("uncalibrated", "statistics_only", "boosting_only", "continued", "calibrated", "scratch", "chosen")
    curves: dict[str, list[Any]] = {"seconds": list(seconds), **{key: [] for key in keys}}
    for s in seconds:
        drawn = calibration(s) if callable(calibration) else calibration.first(s)
        parts = drawn if isinstance(drawn, list) else [drawn]
        stats = user_stats(bundle.config, parts, bundle.stats)
        windows = _join(_per_recording(bundle, parts, stats))
        user_tests = test_windows(stats)
        curves["uncalibrated"].append(base)
        curves["statistics_only"].append(score(bundle.booster, user_tests))
        if len(windows.features) < 2:
            for key in keys[2:]:
                curves[key].append(None)
            continue
        same = _join(_per_recording(bundle, parts, bundle.stats))
        curves["boosting_only"].append(score(continue_training(bundle, same, rounds).booster, model_tests))
        curves["continued"].append(score(continue_training(bundle, windows, rounds).booster, user_tests))
        scratch = continue_training(bundle, windows, scratch_rounds, learning_rate=0.1, init=False)
        curves["scratch"].append(score(scratch.booster, user_tests))
        cal = fit_calibration(bundle, parts)
        chosen_tests = user_tests if cal.chosen.statistics == "own" else model_tests
        curves["calibrated"].append(score(cal.booster, chosen_tests))
        curves["chosen"].append(cal.chosen.to_dict())
    return curves
