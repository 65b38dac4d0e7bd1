"""scikit-learn estimators over raw EMG windows: the project's chain and features, then XGBoost.

``X`` is a stack of raw EMG windows in the project's one windows convention (STYLE.md, habit 7):
``(n_windows, n_channels, n_samples)``; a 2-D ``X`` is ``(n_windows, n_samples)`` of one channel.
Windows, not recordings, because scikit-learn's model selection splits ``X`` along its first axis: a
recording is cut into windows with :func:`windows_from_recording`, and ``GroupKFold`` with one group per
recording (or per user) keeps windows of one recording out of both sides of a split.

Each window goes through :class:`emgpose.preprocess.signal.CausalChain` (band-pass, rectify, moving
average) from rest, as the first window of a stream does; the z-score statistics come from the training
windows (:class:`emgpose.preprocess.normalize.RunningStats`), the features from
:func:`emgpose.preprocess.features.compute_features` with the config's feature list and thresholds,
and the booster from :func:`emgpose.train.boost.fit` with a :class:`emgpose.train.boost.BoostConfig`
built from the estimator's parameters (the same fields and defaults). Without validation data there is
no early stopping: ``num_rounds`` rounds are boosted; choose it with ``GridSearchCV``.

Config fields that need a continuous stream (``window.extra_lengths``, ``context``) are refused; the
window length is the one of ``X``, so ``window.length``/``stride`` are not used.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from emgpose.errors import InvalidInput
from emgpose.preprocess.config import PreprocessConfig
from emgpose.preprocess.features import FeatureParams, compute_features
from emgpose.preprocess.normalize import NormStats, RunningStats
from emgpose.preprocess.signal import CausalChain
from emgpose.train import boost


def windows_from_recording(
    emg: np.ndarray, targets: np.ndarray | None, length: int, stride: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Cuts one recording ``(samples, channels)`` into windows ``(n_windows, channels, length)``, one per
    ``stride`` samples, with ``targets`` ``(samples, k)`` (or ``(samples,)``) taken at each window's last
    sample, as the preprocessing pairs a window with the angles at its end."""
    emg = np.asarray(emg)
    if emg.ndim != 2:
        raise InvalidInput(f"recording: expected EMG of shape (samples, channels), got {emg.shape}")
    if length < 1 or stride < 1 or len(emg) < length:
        raise InvalidInput(f"recording: {len(emg)} samples cannot hold a window of {length} (stride {stride})")
    starts = np.arange(0, len(emg) - length + 1, stride)
    view = np.lib.stride_tricks.sliding_window_view(emg, length, axis=0)  # (n, channels, length)
    windows = np.ascontiguousarray(view[starts])
    if targets is None:
        return windows, None
    targets = np.asarray(targets)
    if len(targets) != len(emg):
        raise InvalidInput(f"recording: {len(targets)} target rows for {len(emg)} EMG samples")
    return windows, targets[starts + length - 1]


class _EmgWindowsEstimator(BaseEstimator):
    """Shared parameters, validation and features of the regressor and the classifier."""

    _task: boost.Task

    def __init__(
        self,
        sample_rate: float = 2000.0,
        preprocess: PreprocessConfig | dict[str, Any] | None = None,
        num_rounds: int = 400,
        learning_rate: float = 0.1,
        max_depth: int = 6,
        min_child_weight: float = 1.0,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        max_bin: int = 256,
        seed: int = 0,
        nthread: int | None = None,
        device: str = "cpu",
    ) -> None:
        self.sample_rate = sample_rate
        self.preprocess = preprocess
        self.num_rounds = num_rounds
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.max_bin = max_bin
        self.seed = seed
        self.nthread = nthread
        self.device = device

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.non_deterministic = self.device != "cpu"
        return tags

    # --- configuration ------------------------------------------------------------------------------

    def _preprocess_config(self) -> PreprocessConfig:
        config = self.preprocess
        if config is None:
            config = PreprocessConfig()
        elif isinstance(config, dict):
            config = PreprocessConfig.from_dict(config, source="preprocess")
        elif not isinstance(config, PreprocessConfig):
            raise InvalidInput(f"preprocess: expected a PreprocessConfig, a dict or None, got {type(config).__name__}")
        if config.window.extra_lengths or config.context:
            raise InvalidInput(
                "preprocess: window.extra_lengths and context need a continuous stream; the estimator sees "
                "separate windows (use emgpose.preprocess and emgpose.train for those)"
            )
        return config

    def _boost_config(self) -> boost.BoostConfig:
        names = ("num_rounds", "learning_rate", "max_depth", "min_child_weight", "subsample", "colsample_bytree")
        names += ("reg_lambda", "max_bin", "seed", "nthread", "device")
        return boost.BoostConfig.from_dict({n: getattr(self, n) for n in names}, source=type(self).__name__)

    # --- windows to features ------------------------------------------------------------------------

    def _windows(self, X: Any, y: Any = "no_validation", *, reset: bool) -> tuple[np.ndarray, Any]:
        """``X`` as float64 ``(n, channels, samples)`` (and ``y`` checked beside it when given: ``fit``
        passes it always, so a missing ``y`` is refused); finite values and the fitted shape enforced."""
        if isinstance(y, str) and y == "no_validation":
            X = validate_data(self, X, reset=reset, allow_nd=True, dtype=np.float64)
        else:
            X, y = validate_data(self, X, y, reset=reset, allow_nd=True, dtype=np.float64, multi_output=True)
        if X.ndim == 2:
            X = X[:, None, :]
        if X.ndim != 3:
            raise ValueError(f"X: expected windows (n_windows, n_channels, n_samples), got {X.ndim} dimensions")
        if reset:
            self.window_shape_ = X.shape[1:]
        elif X.shape[1:] != self.window_shape_:
            raise ValueError(f"X: windows of shape {X.shape[1:]}, but the model was fitted on {self.window_shape_}")
        return X, y

    def _signals(self, X: np.ndarray, config: PreprocessConfig) -> dict[str, np.ndarray]:
        """Every window through its own causal chain at once: windows side by side as channels."""
        n, channels, length = X.shape
        chain = CausalChain(config, float(self.sample_rate), n * channels, source="X")
        out = chain.process(X.transpose(2, 0, 1).reshape(length, n * channels))
        return {
            "filtered": out.filtered.reshape(length, n, channels),
            "envelope": out.envelope.reshape(length, n, channels),
        }

    def _features(self, X: np.ndarray, *, fit: bool) -> np.ndarray:
        config = self._preprocess_config()
        signals = self._signals(X, config)
        channels = X.shape[1]
        if fit:
            if config.zscore:
                filtered, envelope = RunningStats(channels), RunningStats(channels)
                filtered.update(signals["filtered"].reshape(-1, channels))
                envelope.update(signals["envelope"].reshape(-1, channels))
                self.stats_ = NormStats.from_running(filtered, envelope, RunningStats(0))
            else:
                self.stats_ = NormStats.identity(channels, 0)
        flat = {k: v.reshape(-1, channels) for k, v in signals.items()}
        scaled = {
            "filtered": self.stats_.scale_filtered(flat["filtered"], np.float32),
            "envelope": self.stats_.scale_envelope(flat["envelope"], np.float32),
        }
        length = X.shape[2]
        windows = {k: v.reshape(length, -1, channels).transpose(1, 2, 0) for k, v in scaled.items()}
        return compute_features(windows, config.features, FeatureParams.from_config(config, float(self.sample_rate)))

    def _fit_booster(self, X: Any, targets: np.ndarray, num_class: int = 0) -> None:
        features = self._features(X, fit=True)
        self.booster_ = boost.fit(self._boost_config(), self._task, features, targets, num_class=num_class).booster

    def _raw(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "booster_")
        X, _ = self._windows(X, reset=False)
        return boost.predict(self.booster_, self._features(X, fit=False), self.n_outputs_)


class EmgPoseRegressor(RegressorMixin, _EmgWindowsEstimator):
    """Joint angles (any units; the preprocessing's are radians) from raw EMG windows.

    ``fit(X, y)``: ``X`` ``(n_windows, n_channels, n_samples)`` (or ``(n_windows, n_samples)``, one
    channel), ``y`` ``(n_windows,)`` or ``(n_windows, n_joints)``, the angles at each window's end.
    ``predict(X)`` has ``y``'s shape. Parameters: ``sample_rate`` (Hz), ``preprocess`` (a
    :class:`~emgpose.preprocess.config.PreprocessConfig` or a dict of its fields: band-pass, notch,
    envelope, z-score, ``features``), then the :class:`~emgpose.train.boost.BoostConfig` fields.
    """

    _task = "regression"

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.regressor_tags.poor_score = True  # features summarise a window: check data with no EMG structure
        return tags

    def fit(self, X: Any, y: Any) -> EmgPoseRegressor:
        X, y = self._windows(X, y, reset=True)
        y = np.asarray(y, dtype=np.float64)
        self._single_output = y.ndim == 1
        targets = y[:, None] if self._single_output else y
        self.n_outputs_ = targets.shape[1]
        self._fit_booster(X, targets)
        return self

    def predict(self, X: Any) -> np.ndarray:
        out = self._raw(X)
        return out[:, 0] if self._single_output else out


class EmgPoseClassifier(ClassifierMixin, _EmgWindowsEstimator):
    """Gestures (any labels) from raw EMG windows: ``X`` as :class:`EmgPoseRegressor`'s, ``y`` one label
    per window; ``predict_proba`` gives one column per ``classes_`` entry."""

    _task = "classification"

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.poor_score = True  # as the regressor's: check data has no EMG structure
        return tags

    def fit(self, X: Any, y: Any) -> EmgPoseClassifier:
        X, y = self._windows(X, y, reset=True)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y: a classifier needs at least 2 classes, got 1 class ({self.classes_[0]!r})")
        self.n_outputs_ = len(self.classes_)
        self._fit_booster(X, codes.astype(np.float64), num_class=len(self.classes_))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self._raw(X)

    def predict(self, X: Any) -> np.ndarray:
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]
