"""Model bundles and the registry: ``models/<name>/<version>/`` in an object store, plus ``latest``.

A version folder holds ``emg_pose_gpu.json`` (the booster in XGBoost's JSON format, whatever device
trained it: the name the plan asks for), ``bundle.json`` (everything needed to use the booster and
to trust it) and the training report with its plots. ``bundle.json`` is written after every other
file of the version and lists their SHA-256 digests, so a version without it is incomplete and never
listed. Versions are immutable; ``models/<name>/latest`` is a small JSON pointer written last and
moved by :meth:`Registry.promote` (rollback is promoting an older version).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import xgboost as xgb

from emgpose.errors import DataFormatError, InvalidInput, NotFound
from emgpose.names import LATEST, MODELS, check_model_name, check_version, is_location, split_model_ref
from emgpose.preprocess.config import PreprocessConfig
from emgpose.preprocess.normalize import NormStats
from emgpose.store import ObjectStore, open_store
from emgpose.train.adaptation import FeatureAdaptation
from emgpose.train.coverage import FeatureRange
from emgpose.train.smoothing import Smoothing

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "emgpose.bundle/1"
MODEL_FILE = "emg_pose_gpu.json"
META_FILE = "bundle.json"
REQUIRED = (
    "format",
    "name",
    "version",
    "task",
    "num_channels",
    "sample_rate",
    "feature_names",
    "preprocess",
    "stats",
    "files",
)


def check_name(name: str) -> str:
    """``name`` if it is a valid model name (the rule is :func:`emgpose.names.check_model_name`)."""
    return check_model_name(name)


def new_version() -> str:
    """Sortable and unique without coordination: UTC time to the second plus a random suffix."""
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Bundle:
    """A loaded, validated model version."""

    meta: dict[str, Any]
    booster: xgb.Booster
    uri: str  # where the version folder lives

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def version(self) -> str:
        return str(self.meta["version"])

    @property
    def task(self) -> str:
        return str(self.meta["task"])

    @property
    def num_channels(self) -> int:
        return int(self.meta["num_channels"])

    @property
    def sample_rate(self) -> float:
        return float(self.meta["sample_rate"])

    @property
    def feature_names(self) -> list[str]:
        return list(self.meta["feature_names"])

    @property
    def joint_names(self) -> list[str]:
        return list(self.meta.get("joint_names", []))

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.get("class_names", []))

    @property
    def outputs(self) -> int:
        return len(self.joint_names) if self.task == "regression" else len(self.class_names)

    @cached_property
    def config(self) -> PreprocessConfig:
        return PreprocessConfig.from_dict(self.meta["preprocess"], source=f"{self.uri}/{META_FILE} preprocess")

    @cached_property
    def stats(self) -> NormStats:
        return NormStats.from_dict(self.meta["stats"])

    @cached_property
    def adaptation(self) -> FeatureAdaptation | None:
        """The per-session feature adaptation the model was trained with (None: plain features)."""
        return FeatureAdaptation.from_dict(self.meta.get("adaptation"))

    @cached_property
    def smoothing(self) -> Smoothing:
        """The causal smoothing of successive answers chosen at training (none for older bundles)."""
        return Smoothing.from_dict(self.meta.get("smoothing"))

    @cached_property
    def feature_range(self) -> FeatureRange | None:
        """The training range of each feature (None for bundles written before it was recorded)."""
        data = self.meta.get("feature_range")
        return None if data is None else FeatureRange.from_dict(data, len(self.feature_names), self.uri)


def validate_meta(meta: dict[str, Any], where: str) -> None:
    """Checks ``bundle.json`` before the booster is trusted; errors say what is wrong."""
    if meta.get("format") != BUNDLE_FORMAT:
        raise DataFormatError(f"{where}: bundle format {meta.get('format')!r} is not {BUNDLE_FORMAT!r}")
    missing = [key for key in REQUIRED if key not in meta]
    if missing:
        raise DataFormatError(f"{where}: bundle.json lacks {missing}")
    if meta["task"] not in ("regression", "classification"):
        raise DataFormatError(f"{where}: task {meta['task']!r} is neither 'regression' nor 'classification'")
    names = meta.get("joint_names") if meta["task"] == "regression" else meta.get("class_names")
    if not names:
        raise DataFormatError(f"{where}: a {meta['task']} bundle needs non-empty output names")
    try:
        config = PreprocessConfig.from_dict(meta["preprocess"], source=f"{where} preprocess")
        stats = NormStats.from_dict(meta["stats"])
    except (TypeError, InvalidInput) as exc:
        raise DataFormatError(f"{where}: preprocessing config or statistics are not usable: {exc}") from None
    from emgpose.preprocess.features import feature_names

    expected = feature_names(config, int(meta["num_channels"]))
    if list(meta["feature_names"]) != expected:
        raise DataFormatError(
            f"{where}: feature_names do not match the preprocessing config for {meta['num_channels']} channels "
            f"(expected {len(expected)} features starting {expected[:3]}, bundle lists {len(meta['feature_names'])})"
        )
    if len(stats.filtered_mean) != int(meta["num_channels"]):
        raise DataFormatError(
            f"{where}: statistics cover {len(stats.filtered_mean)} channels, the bundle says {meta['num_channels']}"
        )
    if meta.get("feature_range") is not None:
        FeatureRange.from_dict(meta["feature_range"], len(expected), where)


def check_booster(booster: xgb.Booster, meta: dict[str, Any], where: str) -> None:
    if booster.num_features() != len(meta["feature_names"]):
        raise DataFormatError(
            f"{where}: the booster expects {booster.num_features()} features, bundle.json lists "
            f"{len(meta['feature_names'])}"
        )


class Registry:
    """Model names and versions under ``models/`` of one object store."""

    def __init__(self, store: ObjectStore | str) -> None:
        self.store = open_store(store) if isinstance(store, str) else store

    def _key(self, name: str, *parts: str) -> str:
        return "/".join((MODELS, check_name(name), *parts))

    def names(self) -> list[str]:
        keys = self.store.list(MODELS)
        return sorted({k.split("/")[1] for k in keys if k.count("/") >= 2 and not k.split("/")[1].startswith(".")})

    def versions(self, name: str) -> list[str]:
        """Complete versions (those with ``bundle.json``), oldest first."""
        keys = self.store.list(self._key(name))
        prefix = f"{MODELS}/{name}/"
        return sorted(k[len(prefix) :].split("/")[0] for k in keys if k.endswith(f"/{META_FILE}") and k.count("/") == 3)

    def latest(self, name: str) -> str | None:
        key = self._key(name, LATEST)
        if not self.store.exists(key):
            return None
        return str(json.loads(self.store.get_bytes(key))["version"])

    def resolve(self, name: str, version: str | None = None) -> str:
        """``version`` itself, or what ``latest`` points at; :class:`NotFound` when there is none."""
        if version and version != LATEST:
            check_version(version)
            if not self.store.exists(self._key(name, version, META_FILE)):
                known = self.versions(name)
                raise NotFound(f"model {name!r} has no version {version!r} (versions: {known[-5:] or 'none'})")
            return version
        current = self.latest(name)
        if current is None:
            versions = self.versions(name)
            if versions:  # published without promotion (`calibrate --name X`, `train --no-promote`)
                raise NotFound(
                    f"model {name!r} has {len(versions)} version(s) but no 'latest' yet (it was published without "
                    f"--promote): name one as {name}@{versions[-1]}, or point latest at it with "
                    f"`emgpose models promote {name}@{versions[-1]}`"
                )
            raise NotFound(f"model {name!r} not found in {self.store.url(MODELS)} (models: {self.names() or 'none'})")
        return current

    def meta(self, name: str, version: str | None = None) -> dict[str, Any]:
        version = self.resolve(name, version)
        key = self._key(name, version, META_FILE)
        try:
            meta = json.loads(self.store.get_bytes(key))
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{self.store.url(key)}: not valid JSON ({exc})") from None
        meta["latest"] = version == self.latest(name)
        return meta

    def load(self, name: str, version: str | None = None) -> Bundle:
        """Reads and validates a version; refuses an incomplete, corrupt or inconsistent one."""
        version = self.resolve(name, version)
        where = self.store.url(self._key(name, version))
        meta = self.meta(name, version)
        validate_meta(meta, where)
        model_key = self._key(name, version, MODEL_FILE)
        if not self.store.exists(model_key):
            raise DataFormatError(f"{where}: {MODEL_FILE} is missing: the version is incomplete")
        raw = self.store.get_bytes(model_key)
        expected = meta["files"].get(MODEL_FILE)
        if expected != sha256(raw):
            raise DataFormatError(f"{where}: {MODEL_FILE} does not match the SHA-256 in bundle.json (corrupt copy)")
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(raw))
        except xgb.core.XGBoostError as exc:
            raise DataFormatError(f"{where}: {MODEL_FILE} is not a loadable XGBoost model: {exc}") from None
        check_booster(booster, meta, where)
        booster.set_param({"device": "cpu"})  # a CUDA-trained model predicts anywhere; workers may move it
        return Bundle(meta=meta, booster=booster, uri=where)

    def publish(self, meta: dict[str, Any], booster: xgb.Booster, files: dict[str, str], promote: bool = True) -> str:
        """Writes a new version: ``files`` (key -> local path) and the model, then ``bundle.json``, then
        (with ``promote``) the ``latest`` pointer. Returns the version."""
        name = meta["name"]
        version = meta.get("version") or new_version()
        meta = {**meta, "version": version, "format": BUNDLE_FORMAT}
        raw = bytes(booster.save_raw("json"))
        digests = {MODEL_FILE: sha256(raw)}
        self.store.put_bytes(self._key(name, version, MODEL_FILE), raw)
        for key, path in files.items():
            with open(path, "rb") as fh:
                digests[key] = sha256(fh.read())
            self.store.put_file(self._key(name, version, key), path)
        meta["files"] = digests
        validate_meta(meta, self.store.url(self._key(name, version)))
        self.store.put_bytes(self._key(name, version, META_FILE), json.dumps(meta, indent=2).encode())
        if promote:
            self.promote(name, version)
        log.info("published model %s version %s to %s", name, version, self.store.url(self._key(name, version)))
        return version

    def promote(self, name: str, version: str) -> None:
        """Points ``latest`` at an existing, complete version (also the rollback)."""
        version = self.resolve(name, version)  # "latest" itself resolves to the version it points at
        pointer = {"version": version, "updated": datetime.now(UTC).isoformat(timespec="seconds")}
        self.store.put_bytes(self._key(name, LATEST), json.dumps(pointer).encode())


@dataclass(frozen=True)
class ModelRef:
    """Where a model reference points: a registry and a name, optionally a version."""

    registry: Registry
    name: str
    version: str | None


def parse_model_ref(ref: str, default_store: str) -> ModelRef:
    """``NAME``, ``NAME@VERSION``, or a store URI / folder of a model (``.../models/NAME``) or of one
    version (``.../models/NAME/VERSION``); the text rules are :func:`emgpose.names.split_model_ref`.

    A local path is made absolute here. Nothing is confined: a service checks the location against
    ALLOWED_DATA_ROOTS first (:func:`emgpose.access.confine_model_ref`); the CLI reads what its user names.
    """
    if is_location(ref) and "://" not in ref:
        ref = os.path.abspath(ref)
    location, name, version = split_model_ref(ref)
    return ModelRef(Registry(location or default_store), name, version)
