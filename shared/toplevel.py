"""The notebook API behind ``emgpose.load_dataset / preprocess / train / load_model``.

Thin wrappers over what the CLI and the workers run (:func:`emgpose.preprocess.job.run_preprocess`,
:func:`emgpose.train.job.run_train`, :class:`emgpose.train.bundle.Registry`,
:func:`emgpose.train.predict.predict`), so a notebook gets exactly the same outputs as
``emgpose preprocess`` / ``emgpose train`` / ``emgpose predict``. Every heavy import (SciPy, XGBoost,
pyarrow) happens inside the functions: ``import emgpose`` stays fast.

``emgpose.preprocess`` and ``emgpose.train`` are also the names of subpackages, so those two modules are
made callable (:func:`callable_module`): ``emgpose.train(...)`` calls :func:`train` here, while
``emgpose.train.job`` and the rest keep working as modules.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: importing these here would pull in SciPy, XGBoost and pyarrow
    import numpy as np

    from emgpose.preprocess.config import PreprocessConfig
    from emgpose.preprocess.dataset import Dataset
    from emgpose.train.bundle import Bundle
    from emgpose.train.data import PreprocessedDataset
    from emgpose.train.predict import Prediction, Predictor

log = logging.getLogger(__name__)


def load_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Opens and validates a dataset (``metadata.csv`` + one HDF5 file per session) at a folder,
    ``file://`` or ``s3://`` URI.

    Every listed file is checked against the session layout, and all sessions must agree on channels,
    sample rate and joints, before anything is computed. The result is a
    :class:`emgpose.preprocess.dataset.Dataset`: ``.sessions`` (each with ``.row`` from metadata.csv and
    ``.info`` from the file's header), ``.layout`` (sample rate, channels, joint names) and
    ``.split("train")``. It caches S3 downloads in a temporary folder: use it in a ``with`` block, or
    call ``.close()``.
    """
    from emgpose.preprocess.dataset import Dataset

    return Dataset(os.fspath(path))


@dataclass(frozen=True)
class Processed:
    """A finished preprocessing output: where it is and its ``summary.json`` (windows kept and dropped,
    the config, the z-score statistics, feature and joint names). :meth:`load` reads the window table."""

    uri: str
    summary: dict[str, Any] = field(repr=False)

    @property
    def feature_names(self) -> list[str]:
        return list(self.summary["feature_names"])

    @property
    def joint_names(self) -> list[str]:
        return list(self.summary["joint_names"])

    def load(self) -> PreprocessedDataset:
        """The window table in memory: ``.table.features`` (windows x features), ``.table.y`` (radians),
        ``.table.ids`` (session, user, stage, split, generalization per window)."""
        from emgpose.train.data import load_preprocessed

        return load_preprocessed(self.uri)


def preprocess(
    data: Dataset | str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    config: PreprocessConfig | dict[str, Any] | str | os.PathLike[str] | None = None,
    *,
    workers: int | None = None,
) -> Processed:
    """Runs the preprocessing chain over a dataset (as ``emgpose preprocess``) and returns the output.

    ``data``: a :func:`load_dataset` result or its location. ``out``: a folder or store URI (default: a
    new temporary folder, which is kept: its path is in the result's ``uri``). ``config``: a
    :class:`~emgpose.preprocess.config.PreprocessConfig`, a dict of its fields, or a YAML/JSON file;
    default the plan's chain (20-450 Hz band-pass, rectify, 50-sample mean, z-score, 200/50 ms windows).
    """
    from emgpose.preprocess.config import PreprocessConfig
    from emgpose.preprocess.job import run_preprocess

    uri = data if isinstance(data, (str, os.PathLike)) else data.uri
    if out is None:
        out = tempfile.mkdtemp(prefix="emgpose-processed-")
        log.info("preprocessing output in %s", out)
    if isinstance(config, dict):
        config = PreprocessConfig.from_dict(config, source="preprocess(config=...)")
    elif isinstance(config, (str, os.PathLike)):
        config = PreprocessConfig.load(config)
    summary = run_preprocess(os.fspath(uri), os.fspath(out), config, workers=workers)
    return Processed(uri=os.fspath(out), summary=summary)


@dataclass
class Model:
    """A loaded model version: :meth:`predict` on raw EMG, :meth:`stream` for chunks, the bundle's
    metadata (``.meta``: preprocessing, statistics, metrics, lineage) and, after :func:`train`, the
    training result (``.result``: where the version and its report are, and its metrics)."""

    bundle: Bundle
    result: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.bundle.name

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def meta(self) -> dict[str, Any]:
        return self.bundle.meta

    @property
    def names(self) -> list[str]:
        """Joint names (regression) or class names (classification), the columns of a prediction."""
        return self.bundle.joint_names if self.bundle.task == "regression" else self.bundle.class_names

    def predict(self, emg: np.ndarray, time: np.ndarray | None = None, *, warm_up: int = 0) -> Prediction:
        """Raw EMG ``(samples, channels)`` at the model's sample rate -> one row per window.

        The result's ``t_end`` (seconds) and ``window_end`` (sample index) say where each window ends;
        ``values`` are radians per joint (``degrees`` for degrees) or class probabilities; ``to_csv()``
        writes what ``emgpose predict --out`` writes. The first ``warm_up`` samples only settle the
        filters. The input must hold at least one window.
        """
        from emgpose.train.predict import predict

        return predict(self.bundle, emg, time, warm_up=warm_up)

    def stream(self) -> Predictor:
        """A stateful predictor: ``push(chunk)`` answers every window that ends in the chunk, with the
        filter state carried between chunks (what the inference service's WebSocket does)."""
        from emgpose.train.predict import Predictor

        return Predictor(self.bundle)


def _store(store: str | os.PathLike[str] | None) -> str:
    if store is not None:
        return os.fspath(store)
    from emgpose.settings import get_settings

    return get_settings().store_uri


def train(
    processed: Processed | PreprocessedDataset | str | os.PathLike[str],
    *,
    name: str,
    store: str | os.PathLike[str] | None = None,
    task: str | None = None,
    promote: bool = True,
    **params: Any,
) -> Model:
    """Trains, scores and publishes ``models/<name>/<version>`` in ``store`` (as ``emgpose train``).

    ``processed``: a :func:`preprocess` result or a preprocessing output's location. ``store``: a folder
    or store URI (default ``STORE_URI``, as the CLI). ``task``: ``regression`` or ``classification``
    (default: regression where the data has joint angles). ``params``: fields of
    :class:`emgpose.train.boost.BoostConfig` (``num_rounds``, ``learning_rate``, ``max_depth``,
    ``nthread``, ``device``, ...); unknown ones are refused naming the field. Returns the new version,
    loaded, with the training result in ``.result``.
    """
    from emgpose.train.boost import BoostConfig
    from emgpose.train.bundle import Registry
    from emgpose.train.job import run_train

    uri = processed if isinstance(processed, (str, os.PathLike)) else processed.uri
    store_uri = _store(store)
    config = BoostConfig.from_dict(params, source="train(**params)")
    result = run_train(os.fspath(uri), store_uri, name, task=task, config=config, promote=promote)  # type: ignore[arg-type]
    bundle = Registry(store_uri).load(name, result["version"])
    return Model(bundle=bundle, result=result)


def load_model(name_or_path: str | os.PathLike[str], store: str | os.PathLike[str] | None = None) -> Model:
    """Loads a model version, validated as the services do (digest, feature list, preprocessing).

    ``name_or_path``: ``NAME`` (its ``latest``), ``NAME@VERSION``, or the folder / URI of a model
    (``.../models/NAME``) or of one version (``.../models/NAME/VERSION``). ``store`` (default
    ``STORE_URI``) is where a bare name is looked up.
    """
    from emgpose.train.bundle import parse_model_ref

    ref = parse_model_ref(os.fspath(name_or_path), _store(store))
    return Model(bundle=ref.registry.load(ref.name, ref.version))


class _CallableModule(types.ModuleType):
    """A package module that can also be called, for a subpackage sharing its name with a function."""

    _call: Callable[..., Any]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(*args, **kwargs)


def callable_module(module_name: str, function: Callable[..., Any]) -> None:
    """Makes ``sys.modules[module_name]`` call ``function`` when called (``emgpose.train(...)``).

    A module's class may be swapped for a :class:`types.ModuleType` subclass (Python's documented way
    to customise a module's attribute behaviour); the module's contents stay as they are.
    """
    module = sys.modules[module_name]
    module.__class__ = _CallableModule
    module._call = function  # type: ignore[attr-defined]
