"""Baselines trained and scored beside every XGBoost model, on the same split.

An error figure means little on its own: the joint angles are z-scored, so predicting the training mean
already scores a mean squared error near 1, and a linear map of the window features often explains much
of the variance. Every training run therefore also fits

* :class:`MeanRegressor` / :class:`MajorityClassifier`: the constant answer, which uses no feature at all
  (scikit-learn's ``DummyRegressor`` / ``DummyClassifier``);
* :class:`RidgeRegressor` / :class:`LogisticClassifier`: the best linear answer (scikit-learn's ``Ridge``
  and multinomial ``LogisticRegression`` on standardised features), its penalty chosen on the validation
  split, or, without one, by blocked cross-validation over the training rows.

A model that does not beat them is reported as such, rather than presented as having learnt something.

**Cross-validation without a validation split** uses contiguous blocks of rows (``KFold`` without
shuffling, or the caller's own folds through ``cv``). Training rows come in time order within each
session and neighbouring rows are overlapping windows, so leave-one-out (``RidgeCV``'s efficient
default) or shuffled folds validate every row on near-copies of itself. Measured on 2,000 and 6,000
consecutive windows of a synthetic session: leave-one-out chose the weakest penalty (α = 0.01) both
times, blocked folds α = 10 and 1000, and on the session's later windows blocked folds' choice scored a
mean squared error of 0.89 and 0.19 against leave-one-out's 1.91 and 0.31. ``RidgeCV`` also converts
the data to float64 and builds several ``n x d`` float64 temporaries (2.35 GB above the input and 46 s
for a million rows x 96 features).

**Memory.** The features are standardised once, in row chunks from float64 statistics
(``StandardScaler.partial_fit``), into one float32 copy: ``n x d x 4`` bytes, 385 MB for a million rows
x 96 features. The estimators fit on that copy in place; cross-validation holds one fold's training
rows besides. Predictions are made chunk by chunk. Measured peak above the loaded data for a million
rows x 96 features and 20 targets: 250 MB for ridge with a validation split, 940 MB for ridge by
cross-validation.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import scipy.linalg
from sklearn import config_context
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import log_loss, mean_squared_error
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler

from emgpose.errors import InvalidInput

log = logging.getLogger(__name__)

_CHUNK = 65536  # rows per chunk: bounds the float64 temporaries of standardising to _CHUNK * d * 8 bytes
# Contiguous blocks for choosing the penalty when there is no validation split: as many as the booster's
# small-data cross-validation uses per session (emgpose.train.data.CV_FOLDS).
CV_FOLDS = 4

Folds = list[tuple[np.ndarray, np.ndarray]]


# ---------------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------------


def _row_chunks(n: int) -> Iterator[slice]:
    for start in range(0, n, _CHUNK):
        yield slice(start, min(start + _CHUNK, n))


def _check_finite(a: np.ndarray, name: str) -> None:
    bad = sum(int(np.count_nonzero(~np.isfinite(a[sl]))) for sl in _row_chunks(a.shape[0]))
    if bad:
        raise InvalidInput(f"{name} has {bad} non-finite values; drop or impute them first")


def _check_X(X: np.ndarray, name: str = "X", n_features: int | None = None, min_rows: int = 0) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise InvalidInput(f"{name} must be 2-D (n_rows, n_features); got shape {X.shape}")
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise InvalidInput(f"{name} must hold real numbers; got dtype {X.dtype}")
    if X.shape[0] < min_rows:
        raise InvalidInput(f"{name} must have at least {min_rows} row(s) to fit on; got {X.shape[0]}")
    if n_features is not None and X.shape[1] != n_features:
        raise InvalidInput(f"{name} must have {n_features} feature columns, as in training; got {X.shape[1]}")
    if X.shape[1] == 0:
        raise InvalidInput(f"{name} must have at least one feature column; got shape {X.shape}")
    _check_finite(X, name)
    return X


def _check_Y(Y: np.ndarray, n_rows: int, name: str = "Y", n_targets: int | None = None) -> np.ndarray:
    Y = np.asarray(Y)
    if Y.ndim != 2 or Y.shape[1] == 0:
        raise InvalidInput(f"{name} must be 2-D (n_rows, n_targets) with at least one target; got shape {Y.shape}")
    if not (np.issubdtype(Y.dtype, np.floating) or np.issubdtype(Y.dtype, np.integer)):
        raise InvalidInput(f"{name} must hold real numbers; got dtype {Y.dtype}")
    if Y.shape[0] != n_rows:
        raise InvalidInput(f"{name} must have one row per row of X ({n_rows}); got {Y.shape[0]} rows")
    if n_targets is not None and Y.shape[1] != n_targets:
        raise InvalidInput(f"{name} must have {n_targets} target columns, as in training; got {Y.shape[1]}")
    _check_finite(Y, name)
    return Y


def _check_labels(y: np.ndarray, n_rows: int, num_classes: int, name: str = "y") -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise InvalidInput(f"{name} must be 1-D (n_rows,); got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise InvalidInput(f"{name} must hold integer class labels; got dtype {y.dtype}")
    if y.shape[0] != n_rows:
        raise InvalidInput(f"{name} must have one label per row of X ({n_rows}); got {y.shape[0]}")
    if y.size:
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= num_classes:
            bad = low if low < 0 else high
            raise InvalidInput(f"{name} labels must lie in [0, {num_classes}); got {bad}")
    return y.astype(np.intp, copy=False)


def _check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 1:
        raise InvalidInput(f"num_classes must be an integer >= 1; got {num_classes!r}")
    return int(num_classes)


def _check_alphas(alphas: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(a) for a in alphas)
    if not values or not all(np.isfinite(a) and a > 0 for a in values):
        raise InvalidInput(f"alphas must be a non-empty sequence of finite values > 0; got {tuple(alphas)!r}")
    return values


def _check_val_pair(X_val: np.ndarray | None, Y_val: np.ndarray | None, names: tuple[str, str]) -> bool:
    if (X_val is None) != (Y_val is None):
        raise InvalidInput(f"{names[0]} and {names[1]} must be given together or not at all")
    return X_val is not None


def _check_cv(cv: int | Sequence[tuple[np.ndarray, np.ndarray]]) -> int | Folds:
    """``cv``: a number of contiguous blocks (>= 2), or explicit ``(training rows, validation rows)`` pairs."""
    rule = "cv must be an integer >= 2 or a non-empty sequence of (training rows, validation rows) pairs"
    if isinstance(cv, int | np.integer) and not isinstance(cv, bool):
        if cv < 2:
            raise InvalidInput(f"{rule}; got {cv!r}")
        return int(cv)
    if isinstance(cv, bool | str | bytes) or not isinstance(cv, Sequence) or not cv:
        raise InvalidInput(f"{rule}; got {cv!r}")
    folds: Folds = []
    for k, pair in enumerate(cv):
        if not isinstance(pair, Sequence) or len(pair) != 2:
            raise InvalidInput(f"{rule}; fold {k} is not a pair")
        train, val = (np.asarray(rows) for rows in pair)
        for part, rows in (("training", train), ("validation", val)):
            if rows.ndim != 1 or rows.size == 0 or not np.issubdtype(rows.dtype, np.integer):
                raise InvalidInput(f"cv fold {k}: the {part} rows must be a non-empty 1-D array of row indices")
        folds.append((train, val))
    return folds


def _folds(cv: int | Folds, n: int) -> Folds:
    """The folds to cross-validate on ``n`` rows; none when there are too few rows for two blocks."""
    if isinstance(cv, int):
        if n < 2:
            return []
        return list(KFold(n_splits=min(cv, n), shuffle=False).split(np.empty((n, 0))))
    for k, (train, val) in enumerate(cv):
        for part, rows in (("training", train), ("validation", val)):
            bad = rows[(rows < 0) | (rows >= n)]
            if bad.size:
                raise InvalidInput(f"cv fold {k}: {part} rows must lie in [0, {n}) (rows of X); got {bad[0]}")
    return cv


def _trusted() -> contextlib.AbstractContextManager:
    """scikit-learn without its own finiteness checks, for arrays this module has checked.

    Every fit and prediction would otherwise scan its input again (a fifth of a cross-validated ridge
    fit's time); what reaches scikit-learn here is the checked input or its standardised copy.
    """
    return config_context(assume_finite=True)


def _not_fitted(obj: object) -> InvalidInput:
    return InvalidInput(f"{type(obj).__name__} is not fitted; call fit first")


def _best(scores: dict[float, float], alphas: tuple[float, ...]) -> float:
    """The α with the lowest finite score (the first listed on a tie); the largest α when none is finite."""
    finite = [a for a in alphas if np.isfinite(scores[a])]
    return min(finite, key=scores.__getitem__) if finite else max(alphas)


# ---------------------------------------------------------------------------------------------------
# Standardisation
# ---------------------------------------------------------------------------------------------------


class _Standardiser:
    """Column standardisation fitted on the training rows, written out as float32.

    The means and variances come from ``StandardScaler.partial_fit`` over row chunks (float64
    accumulators, so float32 features lose nothing). Columns that are constant in training are left out
    of the design: they carry nothing to fit, and a column of zeros would only make the penalised system
    more singular. Where no column varies, one column of zeros stands in, so that the estimators fit the
    intercept alone (the training mean, or the class frequencies).
    """

    def __init__(self, X: np.ndarray) -> None:
        d = X.shape[1]
        self.scaler = StandardScaler()
        low, high = np.full(d, np.inf), np.full(d, -np.inf)
        for sl in _row_chunks(X.shape[0]):
            chunk = X[sl]
            self.scaler.partial_fit(chunk)
            low = np.minimum(low, chunk.min(axis=0))
            high = np.maximum(high, chunk.max(axis=0))
        self.keep = np.flatnonzero(low < high)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """``(n, k)`` float32: the varying columns, centred and scaled (a zero column when none varies)."""
        out = np.zeros((X.shape[0], max(self.keep.size, 1)), dtype=np.float32)
        if self.keep.size:
            for sl in _row_chunks(X.shape[0]):
                out[sl] = self.scaler.transform(X[sl].astype(np.float64))[:, self.keep]
        return out


# ---------------------------------------------------------------------------------------------------
# Regression
# ---------------------------------------------------------------------------------------------------


class MeanRegressor:
    """Predicts the training mean of every target, whatever the features (``DummyRegressor``)."""

    def __init__(self) -> None:
        self.model_: DummyRegressor | None = None
        self.n_features_: int | None = None

    @property
    def mean_(self) -> np.ndarray:
        """The training means, (J,) float64."""
        if self.model_ is None:
            raise _not_fitted(self)
        return np.asarray(self.model_.constant_, dtype=np.float64).reshape(-1)

    def fit(self, X: np.ndarray, Y: np.ndarray) -> MeanRegressor:
        """Store the column means of ``Y`` (n, J)."""
        X = _check_X(X, min_rows=1)
        Y = _check_Y(Y, X.shape[0])
        self.model_ = DummyRegressor(strategy="mean").fit(X, Y.astype(np.float64, copy=False))
        self.n_features_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``(n, J)`` float64: the training means on every row."""
        mean = self.mean_
        X = _check_X(X, n_features=self.n_features_)
        return np.tile(mean, (X.shape[0], 1))


def _fit_ridge(Z: np.ndarray, Y: np.ndarray, alpha: float) -> Ridge:
    """``Ridge`` on the float32 design ``Z`` (centred in place by scikit-learn, ``copy_X=False``).

    Cholesky on the Gram matrix is the fast path. Where that matrix is too ill-conditioned for float32
    (near-duplicate features with a small α; SciPy says so with a ``LinAlgWarning``), the fit is redone
    by the SVD of the design, whose condition number is the square root of the Gram matrix's.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", scipy.linalg.LinAlgWarning)
        try:
            return Ridge(alpha=alpha, solver="cholesky", copy_X=False).fit(Z, Y)
        except scipy.linalg.LinAlgWarning:
            pass
    return Ridge(alpha=alpha, solver="svd", copy_X=False).fit(Z, Y)


class RidgeRegressor:
    """Linear least squares with an L2 penalty on standardised features and an unpenalised intercept.

    scikit-learn's ``Ridge`` minimises ``||Y - Zw - b||² + α||w||²`` on the standardised float32 design
    ``Z``. ``α`` is chosen by validation mean squared error when a validation split is given, else by
    blocked cross-validation over the training rows (``cv``: a number of contiguous blocks, or explicit
    ``(training rows, validation rows)`` index pairs), then refitted on every training row; with a single
    ``α``, or fewer than two rows, there is nothing to choose. After ``fit``: ``alpha``; ``scores``, the
    criterion per ``α`` (mean squared error on the validation split or pooled over the folds, lower is
    better; empty when nothing was chosen); ``selection`` (``"validation"``, ``"cv"`` or ``"fixed"``);
    the coefficients in the original feature units, ``coef_`` (d, J) and ``intercept_`` (J,).
    """

    def __init__(
        self,
        alphas: Sequence[float] = (0.01, 0.1, 1, 10, 100, 1000),
        cv: int | Sequence[tuple[np.ndarray, np.ndarray]] = CV_FOLDS,
    ) -> None:
        self.alphas = _check_alphas(alphas)
        self.cv = _check_cv(cv)
        self.alpha: float | None = None
        self.scores: dict[float, float] = {}
        self.selection: str | None = None
        self.model_: Ridge | None = None
        self._std: _Standardiser | None = None
        self._n_features: int | None = None

    def fit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        X_val: np.ndarray | None = None,
        Y_val: np.ndarray | None = None,
    ) -> RidgeRegressor:
        """Fit on ``X`` (n, d) and ``Y`` (n, J); choose ``α`` on (``X_val``, ``Y_val``) when given, else by CV."""
        X = _check_X(X, min_rows=1)
        n, d = X.shape
        Y = _check_Y(Y, n)
        if has_val := _check_val_pair(X_val, Y_val, ("X_val", "Y_val")):
            X_val = _check_X(X_val, "X_val", n_features=d)
            Y_val = _check_Y(Y_val, X_val.shape[0], "Y_val", n_targets=Y.shape[1])
            if X_val.shape[0] == 0:
                raise InvalidInput("X_val must have at least 1 row to choose alpha on; got 0")
        folds = [] if has_val or len(self.alphas) == 1 else _folds(self.cv, n)

        with _trusted():
            std = _Standardiser(X)
            Z = std.transform(X)
            fitted: dict[float, Ridge] = {}
            if has_val:
                Z_val = std.transform(X_val)
                for alpha in self.alphas:
                    fitted[alpha] = _fit_ridge(Z, Y, alpha)
                scores = {a: float(mean_squared_error(Y_val, m.predict(Z_val))) for a, m in fitted.items()}
                self.selection = "validation"
            elif folds:
                scores = self._cv_scores(Z, Y, folds)
                self.selection = "cv"
            else:
                scores = {}
                self.selection = "fixed"
            self.alpha = _best(scores, self.alphas) if scores else max(self.alphas)
            self.scores = scores
            self.model_ = fitted[self.alpha] if has_val else _fit_ridge(Z, Y, self.alpha)
            self._std, self._n_features = std, d
        return self

    def _cv_scores(self, Z: np.ndarray, Y: np.ndarray, folds: Folds) -> dict[float, float]:
        """Mean squared error per ``α``, pooled over the folds' validation rows."""
        sse = dict.fromkeys(self.alphas, 0.0)
        count = 0
        for train, val in folds:
            Z_train, Y_train = Z[train], Y[train]  # copies: the fits centre them in place
            for alpha in self.alphas:
                pred = _fit_ridge(Z_train, Y_train, alpha).predict(Z[val])
                sse[alpha] += float(mean_squared_error(Y[val], pred)) * len(val)
            count += len(val)
        return {a: s / count for a, s in sse.items()}

    def _fitted(self) -> tuple[Ridge, _Standardiser]:
        if self.model_ is None or self._std is None:
            raise _not_fitted(self)
        return self.model_, self._std

    @property
    def coef_(self) -> np.ndarray:
        """Weights in the original feature units, (d, J) float64; 0 for columns constant in training."""
        model, std = self._fitted()
        n_targets = np.atleast_1d(model.intercept_).shape[0]
        coef = np.zeros((self._n_features, n_targets))
        if std.keep.size:
            weights = np.asarray(model.coef_, dtype=np.float64).reshape(n_targets, -1).T
            coef[std.keep] = weights / std.scaler.scale_[std.keep, None]
        return coef

    @property
    def intercept_(self) -> np.ndarray:
        """Intercept in the original units, (J,) float64."""
        model, std = self._fitted()
        return np.atleast_1d(model.intercept_).astype(np.float64) - std.scaler.mean_ @ self.coef_

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``(n, J)`` float64 predictions."""
        model, std = self._fitted()
        X = _check_X(X, n_features=self._n_features)
        n_targets = np.atleast_1d(model.intercept_).shape[0]
        out = np.empty((X.shape[0], n_targets))
        with _trusted():
            for sl in _row_chunks(X.shape[0]):
                out[sl] = model.predict(std.transform(X[sl])).reshape(-1, n_targets)
        return out


# ---------------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------------


def _spread(proba: np.ndarray, classes: np.ndarray, num_classes: int) -> np.ndarray:
    """``(n, num_classes)`` float64 from probabilities over the ``classes`` seen in training (others 0)."""
    out = np.zeros((proba.shape[0], num_classes))
    out[:, classes] = proba
    return out / out.sum(axis=1, keepdims=True)


class MajorityClassifier:
    """Predicts the training class frequencies, whatever the features (``DummyClassifier(strategy="prior")``).

    A class absent from training gets probability 0.
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = _check_num_classes(num_classes)
        self.model_: DummyClassifier | None = None
        self.n_features_: int | None = None

    @property
    def freq_(self) -> np.ndarray:
        """The training class frequencies, (C,) float64."""
        if self.model_ is None:
            raise _not_fitted(self)
        return _spread(self.model_.class_prior_[None, :], self.model_.classes_, self.num_classes)[0]

    def fit(self, X: np.ndarray, y: np.ndarray) -> MajorityClassifier:
        """Count the labels ``y`` (n,) in [0, num_classes)."""
        X = _check_X(X, min_rows=1)
        y = _check_labels(y, X.shape[0], self.num_classes)
        self.model_ = DummyClassifier(strategy="prior").fit(X, y)
        self.n_features_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``(n, C)``: the training class frequencies on every row."""
        freq = self.freq_
        X = _check_X(X, n_features=self.n_features_)
        return np.tile(freq, (X.shape[0], 1))


class _Softmax:
    """One multinomial fit over ``num_classes`` columns; a training set with one class predicts that class.

    ``fit`` continues from the previous fit (``warm_start``), so a path of penalties from strong to weak
    costs little more than the weakest alone. scikit-learn's objective ``C·Σ loss + ½||W||²`` is the mean
    cross-entropy plus ``α/2 ||W||²`` with ``C = 1 / (α n)``; the intercept is not penalised.
    """

    def __init__(self, num_classes: int, max_iter: int) -> None:
        self.num_classes, self.max_iter = num_classes, max_iter
        self.model = LogisticRegression(max_iter=max_iter, warm_start=True)
        self.only_class: int | None = None
        self.converged = True

    def fit(self, Z: np.ndarray, y: np.ndarray, alpha: float) -> _Softmax:
        present = np.flatnonzero(np.bincount(y, minlength=self.num_classes))
        if present.size < 2:  # nothing to separate
            self.only_class = int(present[0])
            return self
        self.model.set_params(C=1.0 / (alpha * Z.shape[0]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # reported through `converged` and the log
            self.model.fit(Z, y)
        self.converged = bool(np.max(self.model.n_iter_) < self.max_iter)
        if not self.converged:
            log.warning("logistic baseline: L-BFGS stopped at max_iter=%d unconverged (α=%g)", self.max_iter, alpha)
        return self

    def predict_proba(self, Z: np.ndarray) -> np.ndarray:
        if self.only_class is not None:
            out = np.zeros((Z.shape[0], self.num_classes))
            out[:, self.only_class] = 1.0
            return out
        return _spread(self.model.predict_proba(Z), self.model.classes_, self.num_classes)


class LogisticClassifier:
    """Multinomial (softmax) logistic regression with an L2 penalty on the weights, on standardised features.

    scikit-learn's ``LogisticRegression`` (L-BFGS) minimises ``mean cross-entropy + α/2 ||W||²``; the
    intercept is not penalised. Where training holds two classes it fits the equivalent binary model,
    whose one weight vector (the difference of the two softmax ones) takes the penalty ``α/2 ||w||²``:
    the softmax's with ``2α``. ``α`` is chosen by validation log loss when a validation split is given,
    else by log loss pooled over blocked cross-validation folds of the training rows (``cv``, as for
    :class:`RidgeRegressor`) followed by a refit on every training row; each path of fits runs from the
    largest ``α`` down, warm-started. A class absent from training gets probability 0; with one class in
    training that class is the answer. After ``fit``: ``alpha`` (``None`` with one class), ``scores``
    (log loss per ``α``; empty when nothing was chosen), ``selection`` (``"validation"``, ``"cv"``,
    ``"fixed"`` or ``"one class"``), and ``converged`` (whether the final fit met L-BFGS's tolerance
    within ``max_iter`` iterations).
    """

    def __init__(
        self,
        num_classes: int,
        alphas: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1),
        max_iter: int = 300,
        cv: int | Sequence[tuple[np.ndarray, np.ndarray]] = CV_FOLDS,
    ) -> None:
        self.num_classes = _check_num_classes(num_classes)
        self.alphas = _check_alphas(alphas)
        if isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer) or max_iter < 1:
            raise InvalidInput(f"max_iter must be an integer >= 1; got {max_iter!r}")
        self.max_iter = int(max_iter)
        self.cv = _check_cv(cv)
        self.alpha: float | None = None
        self.scores: dict[float, float] = {}
        self.selection: str | None = None
        self.converged: bool | None = None
        self._fit: _Softmax | None = None
        self._std: _Standardiser | None = None
        self._n_features: int | None = None

    @property
    def model_(self) -> LogisticRegression | None:
        """The fitted scikit-learn estimator (``None`` after a one-class fit)."""
        if self._fit is None:
            raise _not_fitted(self)
        return None if self._fit.only_class is not None else self._fit.model

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> LogisticClassifier:
        """Fit on ``X`` (n, d) and labels ``y`` (n,); choose ``α`` on (``X_val``, ``y_val``) when given, else by CV."""
        X = _check_X(X, min_rows=1)
        n, d = X.shape
        y = _check_labels(y, n, self.num_classes)
        if has_val := _check_val_pair(X_val, y_val, ("X_val", "y_val")):
            X_val = _check_X(X_val, "X_val", n_features=d)
            y_val = _check_labels(y_val, X_val.shape[0], self.num_classes, "y_val")
            if X_val.shape[0] == 0:
                raise InvalidInput("X_val must have at least 1 row to choose alpha on; got 0")
        one_class = np.unique(y).size < 2
        folds = [] if one_class or has_val or len(self.alphas) == 1 else _folds(self.cv, n)

        with _trusted():
            std = _Standardiser(X)
            Z = std.transform(X)
            best: _Softmax | None = None
            if one_class:
                scores, self.selection = {}, "one class"
            elif has_val:
                scores, best = self._path_scores(Z, y, std.transform(X_val), y_val)
                self.selection = "validation"
            elif folds:
                scores = self._cv_scores(Z, y, folds)
                self.selection = "cv"
            else:
                scores, self.selection = {}, "fixed"
            alpha = _best(scores, self.alphas) if scores else max(self.alphas)
            self.alpha = None if one_class else alpha
            self.scores = scores
            self._fit = best if best is not None else _Softmax(self.num_classes, self.max_iter).fit(Z, y, alpha)
            self.converged = self._fit.converged
            self._std, self._n_features = std, d
        return self

    def _log_loss(self, y: np.ndarray, proba: np.ndarray) -> float:
        return float(log_loss(y, proba, labels=np.arange(self.num_classes)))

    def _path_scores(
        self, Z: np.ndarray, y: np.ndarray, Z_val: np.ndarray, y_val: np.ndarray
    ) -> tuple[dict[float, float], _Softmax]:
        """Validation log loss per ``α`` along a warm-started path from the largest ``α``; and the best fit."""
        path = _Softmax(self.num_classes, self.max_iter)
        scores: dict[float, float] = {}
        best: tuple[float, _Softmax] | None = None
        for alpha in sorted(self.alphas, reverse=True):
            path.fit(Z, y, alpha)
            scores[alpha] = self._log_loss(y_val, path.predict_proba(Z_val))
            if best is None or scores[alpha] < best[0]:
                best = (scores[alpha], copy.deepcopy(path))
        return {a: scores[a] for a in self.alphas}, best[1]

    def _cv_scores(self, Z: np.ndarray, y: np.ndarray, folds: Folds) -> dict[float, float]:
        """Log loss per ``α``, pooled over the folds' validation rows."""
        total = dict.fromkeys(self.alphas, 0.0)
        count = 0
        for train, val in folds:
            path = _Softmax(self.num_classes, self.max_iter)
            Z_train, y_train, Z_val = Z[train], y[train], Z[val]
            for alpha in sorted(self.alphas, reverse=True):
                path.fit(Z_train, y_train, alpha)
                total[alpha] += self._log_loss(y[val], path.predict_proba(Z_val)) * len(val)
            count += len(val)
        return {a: total[a] / count for a in self.alphas}

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``(n, C)`` float64 class probabilities; every row sums to 1."""
        if self._fit is None or self._std is None:
            raise _not_fitted(self)
        X = _check_X(X, n_features=self._n_features)
        out = np.empty((X.shape[0], self.num_classes))
        with _trusted():
            for sl in _row_chunks(X.shape[0]):
                out[sl] = self._fit.predict_proba(self._std.transform(X[sl]))
        return out
