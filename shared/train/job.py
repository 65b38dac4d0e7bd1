"""``run_train`` and ``run_evaluate``: the trainer's work as plain functions (the Celery task wraps them).

Training reads a preprocessed dataset, splits it (metadata first, see :mod:`emgpose.train.data`), fits
the baselines and the booster on the same rows, scores all of them on the held-out splits, and publishes
a model version (booster, ``bundle.json``, ``report.json``, plots). Evaluation scores an existing version
on a preprocessed dataset and writes its report next to the model.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import xgboost as xgb

import emgpose
from emgpose.errors import DataFormatError, InvalidInput
from emgpose.train import boost
from emgpose.train.adaptation import FeatureAdaptation
from emgpose.train.bundle import Bundle, Registry, check_name, new_version, parse_model_ref
from emgpose.train.coverage import FeatureRange, coverage_report
from emgpose.train.data import PreprocessedDataset, Split, WindowTable, assign_splits, load_preprocessed
from emgpose.train.evaluate import (
    MODEL,
    SmoothedPredictor,
    Task,
    evaluate,
    fit_baselines,
    headline,
    report,
    write_plots,
)
from emgpose.train.smoothing import Smoothing, choose
from emgpose.train.validation import CrossValidation, rounds_by_cv

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]
REPORT_FILE = "report.json"


def _no_progress(done: int, total: int, stage: str) -> None:
    return None


def choose_task(data: PreprocessedDataset, requested: str | None) -> Task:
    """Regression where the dataset has joint angles, classification where it has labels."""
    kind = requested or ("regression" if data.joint_names else "classification")
    if kind == "regression" and not data.joint_names:
        raise InvalidInput(f"{data.uri}: task 'regression' needs joint angles, and this dataset has none")
    if kind == "classification" and not data.has_label:
        raise InvalidInput(f"{data.uri}: task 'classification' needs gesture labels, and this dataset has none")
    if kind not in ("regression", "classification"):
        raise InvalidInput(f"task must be 'regression' or 'classification', got {kind!r}")
    names = data.joint_names if kind == "regression" else data.label_names
    if kind == "classification" and not names and data.table.label is not None:
        names = [str(i) for i in range(int(data.table.label.max()) + 1)]
    return Task(kind, names, data.stats)


def _lineage(data: PreprocessedDataset) -> dict[str, Any]:
    return {
        "dataset_uri": data.uri,
        "summary_sha256": data.digest,
        "metadata_sha256": data.summary["input"]["metadata_sha256"],
        "raw_uri": data.summary["input"]["uri"],
    }


def _versions() -> dict[str, str]:
    return {"emgpose": emgpose.__version__, "xgboost": xgb.__version__, "numpy": np.__version__}


def bundle_meta(name: str, task: Task, data: PreprocessedDataset, boost_config: boost.BoostConfig) -> dict[str, Any]:
    """``bundle.json`` content (metrics and files are added by the caller and the registry)."""
    summary = data.summary
    return {
        "name": name,
        "task": task.kind,
        "joint_names": task.names if task.kind == "regression" else [],
        "class_names": task.names if task.kind == "classification" else [],
        "num_channels": summary["num_channels"],
        "channel_names": summary["channel_names"],
        "sample_rate": summary["sample_rate"],
        "window": summary["window"],
        "preprocess": summary["config"],
        "stats": summary["stats"],
        "feature_names": data.feature_names,
        "training": {"params": boost_config.model_dump(mode="json")},
        "lineage": _lineage(data),
        "versions": _versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run_train(
    dataset_uri: str,
    store_uri: str,
    name: str,
    *,
    task: Literal["regression", "classification"] | None = None,
    config: boost.BoostConfig | None = None,
    resume: str | None = None,
    checkpoint_key: str | None = None,
    promote: bool = True,
    progress: Progress = _no_progress,
    cancelled: Callable[[], bool] | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    """Trains, scores and publishes ``models/<name>/<version>``; returns where and how well.

    ``resume`` continues boosting from an existing model (a reference as in :func:`parse_model_ref`);
    ``checkpoint_key`` (a key in the store) saves the booster every 25 rounds and, when a checkpoint
    is already there, continues from it: an interrupted job re-run with the same key loses little.
    ``version`` (default: a new one) names the version; where that version is already complete (a job
    re-run after it published), nothing is trained again and the existing version is returned.
    """
    check_name(name)
    if version is not None:
        registry = Registry(store_uri)
        done = _published(registry, name, version)
        if done is not None:
            if promote:  # the earlier run may have stopped between bundle.json and the pointer
                registry.promote(name, version)
            return done
    config = config or boost.BoostConfig()
    started = time.perf_counter()
    progress(0, 1, "loading")
    data = load_preprocessed(dataset_uri)
    task_ = choose_task(data, task)
    split = assign_splits(data.table, data.window_length)
    raw_table = data.table  # coverage compares raw features, as inference does, whatever the adaptation
    feature_range = FeatureRange.fit(raw_table.features[split.rows("train")])
    adaptation = None
    if config.adaptation == "session":  # asked for: everything below sees the adapted features
        adaptation = FeatureAdaptation.fit(data.table.features[split.rows("train")])
        data.table = adaptation.apply_table(data.table)
    train, val = data.table.take(split.rows("train")), data.table.take(split.rows("val"))
    log.info("training %s on %s: %s", task_.kind, dataset_uri, split.counts())
    registry = Registry(store_uri)
    init = _initial_booster(registry, store_uri, resume, checkpoint_key, data)

    progress(0, 1, "baselines")
    models = fit_baselines(task_, train, val)
    store = registry.store

    def save_checkpoint(booster: xgb.Booster) -> None:
        store.put_bytes(checkpoint_key, bytes(booster.save_raw("json")))

    num_class = len(task_.names) if task_.kind == "classification" else 0
    cv = None
    if split.folds:  # small data: rounds by blocked cross-validation, then a refit on every training window
        cv = rounds_by_cv(
            config,
            task_.kind,
            data.table.features,
            lambda rows: task_.targets(data.table.take(rows)),
            split.folds,
            num_class=num_class,
            outputs=len(task_.names),
            cancelled=cancelled,
            progress=progress,
        )
        log.info("cross-validation chose %d rounds: %s", cv.rounds, cv.folds)
    fit_config = config if cv is None else config.model_copy(update={"num_rounds": cv.rounds})
    fit = boost.fit(
        fit_config,
        task_.kind,
        train.features,
        task_.targets(train),
        val.features if len(val) else None,
        task_.targets(val) if len(val) else None,
        num_class=num_class,
        init_model=init,
        progress=progress,
        cancelled=cancelled,
        checkpoint=save_checkpoint if checkpoint_key else None,
    )
    if config.adaptation == "session":
        choice: dict[str, Any] = {"mode": "session", "used": True, "rule": "on (adaptation: session)"}
    else:
        adaptation, choice = choose_adaptation(config, task_, data.table, split, fit, fit_config, num_class, cancelled)
    if adaptation is not None and "fit" in choice:  # auto, and the adapted variant won: score it on its features
        data.table = adaptation.apply_table(data.table)
        train, val = data.table.take(split.rows("train")), data.table.take(split.rows("val"))
        fit = choice.pop("fit")
        models = fit_baselines(task_, train, val)
    smoothing = choose_smoothing(task_, data.table, val, fit.booster, cv)
    models = {MODEL: SmoothedPredictor(task_.booster_predictor(fit.booster), smoothing.alpha), **models}
    progress(0, 1, "evaluating")
    evaluation = evaluate(task_, data.table, split, models)
    meta = bundle_meta(name, task_, data, config)
    meta["training"].update(
        rounds_run=fit.rounds_run,
        best_round=fit.best_round,
        seconds=fit.seconds,
        metric=fit.metric,
        resumed_from=resume or (checkpoint_key if init is not None else None),
        windows=split.counts(),
    )
    if cv is not None:
        meta["training"]["cross_validation"] = cv.to_dict()
    meta["smoothing"] = smoothing.to_dict()
    meta["training"]["adaptation"] = choice
    if adaptation is not None:
        meta["adaptation"] = adaptation.to_dict()
    meta["metrics"] = _metric_digest(evaluation)
    meta["feature_range"] = feature_range.to_dict()
    version = meta["version"] = version or new_version()
    rep = report(
        task=task_,
        model={"name": name, "version": version},
        dataset={"uri": dataset_uri, "summary_sha256": data.digest},
        split=split,
        evaluation=evaluation,
        training={**meta["training"], "history": fit.history},
    )
    rep["coverage"] = coverage_report(feature_range, raw_table, split)
    progress(0, 1, "publishing")
    with tempfile.TemporaryDirectory(prefix="emgpose-report-") as tmp:
        files = _report_files(tmp, rep, task_, data, split, models, evaluation)
        registry.publish(meta, fit.booster, files, promote=promote)
    if checkpoint_key and store.exists(checkpoint_key):
        store.delete(checkpoint_key)
    result = {
        "name": name,
        "version": version,
        "uri": store.url(f"models/{name}/{version}"),
        "report": store.url(f"models/{name}/{version}/{REPORT_FILE}"),
        "task": task_.kind,
        "metrics": meta["metrics"],
        "seconds": round(time.perf_counter() - started, 3),
    }
    log.info("model %s %s: %s", name, version, json.dumps(meta["metrics"].get("verdict", {})))
    return result


def choose_adaptation(
    config: boost.BoostConfig,
    task: Task,
    table: WindowTable,
    split: Split,
    fit: boost.FitResult,
    fit_config: boost.BoostConfig,
    num_class: int,
    cancelled: Callable[[], bool] | None,
) -> tuple[FeatureAdaptation | None, dict[str, Any]]:
    """Whether the per-session adaptation is used (``none``: never; ``auto``: where it scores better on
    validation windows of users the training never saw); returns it (or None) and the record of the choice.
    (``session`` is decided before anything is fitted, in :func:`run_train`.)

    In ``auto`` the plain model is already fitted (``fit``); the adapted one is fitted on the same rows and
    kept when its best validation score is lower. The winning fit travels in the record under ``fit``.
    """
    train_rows, val_rows = split.rows("train"), split.rows("val")
    new_users = set(table.ids["user"][val_rows]) - set(table.ids["user"][train_rows])
    if config.adaptation == "none" or (config.adaptation == "auto" and not new_users):
        reason = "off: no validation windows of held-out users"
        if config.adaptation == "none":
            reason = "off (adaptation: none)"
        return None, {"mode": config.adaptation, "used": False, "rule": reason}
    adaptation = FeatureAdaptation.fit(table.features[train_rows])
    adapted = adaptation.apply_table(table)
    train, val = adapted.take(train_rows), adapted.take(val_rows)
    has_val = len(val) > 0
    other = boost.fit(
        fit_config,
        task.kind,
        train.features,
        task.targets(train),
        val.features if has_val else None,
        task.targets(val) if has_val else None,
        num_class=num_class,
        cancelled=cancelled,
    )
    plain, mine = _best_val(fit), _best_val(other)
    record = {"mode": "auto", "val_users": sorted(map(str, new_users)), "val_" + fit.metric: {"none": plain,
              "session": mine}}  # fmt: skip
    if mine < plain:
        return adaptation, {**record, "used": True, "rule": "on: better on held-out users' validation", "fit": other}
    return None, {**record, "used": False, "rule": "off: not better on held-out users' validation"}


def _best_val(fit: boost.FitResult) -> float:
    history = fit.history.get("val", [])
    return float(history[fit.best_round - 1]) if history else float("inf")


def choose_smoothing(
    task: Task, table: WindowTable, val: WindowTable, booster: xgb.Booster, cv: CrossValidation | None
) -> Smoothing:
    """The smoothing factor that scores best on the validation windows, or on the out-of-fold windows of
    the cross-validation (each fold's block its own sequence); none without either."""
    outputs = len(task.names)
    if len(val):
        raw, truth = boost.predict(booster, val.features, outputs), task.targets(val)
        groups, order, chosen_on = val.ids["session"].astype(str), val.window_end, "validation windows"
    elif cv is not None and len(cv.rows):
        part = table.take(cv.rows)
        raw, truth = cv.predictions, task.targets(part)
        groups = np.char.add(part.ids["session"].astype(str), np.char.add("#", cv.fold_of.astype(str)))
        order, chosen_on = part.window_end, "out-of-fold cross-validation windows"
    else:
        return Smoothing()
    if task.kind == "regression":
        return choose(raw, groups, order, lambda v: float(np.abs(v - truth).mean()), chosen_on)
    return choose(raw, groups, order, lambda p: float((np.argmax(p, axis=1) != truth).mean()), chosen_on)


def _published(registry: Registry, name: str, version: str) -> dict[str, Any] | None:
    """The result of a version that is already complete, or None."""
    if version not in registry.versions(name):
        return None
    meta = registry.meta(name, version)
    if meta.get("task") and meta.get("version") == version:
        log.info("model %s %s is already published: not training again", name, version)
        store = registry.store
        return {
            "name": name,
            "version": version,
            "uri": store.url(f"models/{name}/{version}"),
            "report": store.url(f"models/{name}/{version}/{REPORT_FILE}"),
            "task": meta["task"],
            "metrics": meta.get("metrics", {}),
            "seconds": 0.0,
        }
    return None


def _initial_booster(
    registry: Registry, store_uri: str, resume: str | None, checkpoint_key: str | None, data: PreprocessedDataset
) -> xgb.Booster | None:
    if checkpoint_key and registry.store.exists(checkpoint_key):
        booster = xgb.Booster()
        booster.load_model(bytearray(registry.store.get_bytes(checkpoint_key)))
        log.info("continuing from checkpoint %s (%d rounds)", checkpoint_key, booster.num_boosted_rounds())
        return booster
    if resume is None:
        return None
    ref = parse_model_ref(resume, store_uri)
    bundle = ref.registry.load(ref.name, ref.version)
    if bundle.feature_names != data.feature_names:
        raise InvalidInput(
            f"cannot resume from {bundle.name} {bundle.version}: its {len(bundle.feature_names)} features differ "
            f"from the dataset's {len(data.feature_names)} (preprocess with the model's config)"
        )
    return bundle.booster


def _metric_digest(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The few numbers a model list shows: the headline split's key figures and verdicts."""
    chosen = headline(evaluation)
    if chosen is None:
        return {}
    name, scores = chosen
    digest: dict[str, Any] = {"split": name}
    for label, figures in scores["overall"].items():
        digest[label] = {
            k: figures.get(k) for k in ("mae_deg", "rmse_deg", "r2_mean", "accuracy", "macro_f1") if k in figures
        }
    digest["verdict"] = scores["verdict"]
    return digest


def _report_files(
    tmp: str, rep: dict[str, Any], task: Task, data: PreprocessedDataset, split: Any, models: dict, evaluation: dict
) -> dict[str, str]:
    """Writes the report and plots into ``tmp``; returns store key (relative) -> local path."""
    pngs = write_plots(os.path.join(tmp, "plots"), task, data.table, split, models, evaluation)
    rep["plots"] = [f"plots/{os.path.basename(p)}" for p in pngs]
    path = os.path.join(tmp, REPORT_FILE)
    with open(path, "w") as fh:
        json.dump(rep, fh, indent=2)
    return {REPORT_FILE: path, **{f"plots/{os.path.basename(p)}": p for p in pngs}}


def run_evaluate(
    model: str, dataset_uri: str, store_uri: str, progress: Progress = _no_progress, eval_id: str | None = None
) -> dict[str, Any]:
    """Scores a model version (and baselines fitted on the dataset's training split) on a dataset.

    The report goes to ``models/<name>/<version>/evaluations/<id>/`` beside the model; the version's
    own files are not touched.
    """
    ref = parse_model_ref(model, store_uri)
    bundle = ref.registry.load(ref.name, ref.version)
    progress(0, 1, "loading")
    data = load_preprocessed(dataset_uri)
    _check_compatible(bundle, data)
    task_ = Task(bundle.task, bundle.joint_names or bundle.class_names, bundle.stats)
    split = assign_splits(data.table, data.window_length)
    raw_table = data.table
    if bundle.adaptation is not None:  # scored as deployed: the model's adaptation and smoothing applied
        data.table = bundle.adaptation.apply_table(data.table)
    train, val = data.table.take(split.rows("train")), data.table.take(split.rows("val"))
    progress(0, 1, "baselines")
    model = SmoothedPredictor(task_.booster_predictor(bundle.booster), bundle.smoothing.alpha)
    models = {MODEL: model, **fit_baselines(task_, train, val)}
    progress(0, 1, "evaluating")
    evaluation = evaluate(task_, data.table, split, models)
    eval_id = eval_id or f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"
    rep = report(
        task=task_,
        model={"name": bundle.name, "version": bundle.version},
        dataset={"uri": dataset_uri, "summary_sha256": data.digest},
        split=split,
        evaluation=evaluation,
    )
    if bundle.feature_range is not None:
        rep["coverage"] = coverage_report(bundle.feature_range, raw_table, split)
    rep["normalisation"] = (
        "the model's statistics" if data.summary["stats"] == bundle.meta["stats"] else "the dataset's own statistics"
    )
    store = ref.registry.store
    prefix = f"models/{bundle.name}/{bundle.version}/evaluations/{eval_id}"
    with tempfile.TemporaryDirectory(prefix="emgpose-report-") as tmp:
        files = _report_files(tmp, rep, task_, data, split, models, evaluation)
        for key, path in sorted(files.items(), key=lambda kv: kv[0] == REPORT_FILE):  # report last
            store.put_file(f"{prefix}/{key}", path)
    return {
        "name": bundle.name,
        "version": bundle.version,
        "report": store.url(f"{prefix}/{REPORT_FILE}"),
        "metrics": _metric_digest(evaluation),
    }


def _check_compatible(bundle: Bundle, data: PreprocessedDataset) -> None:
    problems = []
    if bundle.num_channels != data.summary["num_channels"]:
        problems.append(f"{data.summary['num_channels']} channels, the model needs {bundle.num_channels}")
    if abs(bundle.sample_rate - float(data.summary["sample_rate"])) > 1e-6:
        problems.append(f"sample rate {data.summary['sample_rate']} Hz, the model needs {bundle.sample_rate:g} Hz")
    if bundle.feature_names != data.feature_names:
        problems.append("different features (preprocess it with the model's config)")
    if bundle.task == "regression" and bundle.joint_names != data.joint_names:
        problems.append(f"joints {data.joint_names[:3]}..., the model predicts {bundle.joint_names[:3]}...")
    if problems:
        raise DataFormatError(f"{data.uri} does not fit model {bundle.name} {bundle.version}: " + "; ".join(problems))
