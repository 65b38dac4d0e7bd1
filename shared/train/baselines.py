"""Baselines trained and scored beside every XGBoost model, on the same split.

An error figure means little on its own: the joint angles are z-scored, so predicting the training mean
already scores a mean squared error near 1, and a linear map of the window features often explains much
of the variance. Every training run therefore also fits

* :class:`MeanRegressor` / :class:`MajorityClassifier`: the constant answer, which uses no feature at all;
* :class:`RidgeRegressor` / :class:`LogisticClassifier`: the best linear answer, its penalty chosen on the
  validation split (or, for ridge without one, by generalised cross-validation).

A model that does not beat them is reported as such, rather than presented as having learnt something.

The baselines use NumPy and SciPy only, are deterministic, and scale to about a million rows: the data
are read in row chunks, and only ``d x d``, ``d x J`` or ``d x C`` matrices are held in float64.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import scipy.linalg
import scipy.optimize

from emgpose.errors import InvalidInput

_CHUNK = 65536  # rows per chunk: bounds the float64 copies of X to _CHUNK * d * 8 bytes
_CACHE_BYTES = 256 * 2**20  # the logistic fit keeps standardised X in memory up to this size


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


def _not_fitted(obj: object) -> RuntimeError:
    return RuntimeError(f"{type(obj).__name__} is not fitted; call fit first")


# ---------------------------------------------------------------------------------------------------
# Standardisation
# ---------------------------------------------------------------------------------------------------


def _column_mean(X: np.ndarray) -> np.ndarray:
    """Column means in float64; a constant column's mean is its exact value, so it centres to exactly 0."""
    n, d = X.shape
    total = np.zeros(d)
    low = np.full(d, np.inf)
    high = np.full(d, -np.inf)
    for sl in _row_chunks(n):
        chunk = X[sl]
        total += chunk.sum(axis=0, dtype=np.float64)
        low = np.minimum(low, chunk.min(axis=0))
        high = np.maximum(high, chunk.max(axis=0))
    mean = total / n
    constant = low == high
    mean[constant] = low[constant]
    return mean


def _scale_from_sumsq(sumsq: np.ndarray, n: int) -> np.ndarray:
    std = np.sqrt(np.maximum(sumsq, 0.0) / n)
    return np.where(std > 0, std, 1.0)


def _standardise(X: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (X.astype(np.float64) - mean) / scale


# ---------------------------------------------------------------------------------------------------
# Regression
# ---------------------------------------------------------------------------------------------------


class MeanRegressor:
    """Predicts the training mean of every target, whatever the features."""

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.n_features_: int | None = None

    def fit(self, X: np.ndarray, Y: np.ndarray) -> MeanRegressor:
        """Store the column means of ``Y`` (n, J)."""
        X = _check_X(X, min_rows=1)
        Y = _check_Y(Y, X.shape[0])
        self.mean_ = Y.mean(axis=0, dtype=np.float64)
        self.n_features_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``(n, J)`` float64: the training means on every row."""
        if self.mean_ is None:
            raise _not_fitted(self)
        X = _check_X(X, n_features=self.n_features_)
        return np.tile(self.mean_, (X.shape[0], 1))


class RidgeRegressor:
    """Linear least squares with an L2 penalty, on standardised features, with an unpenalised intercept.

    Solves ``(ZᵀZ + αI) W = ZᵀY`` for centred, standardised ``Z`` and centred ``Y``, through one
    eigen-decomposition of the ``d x d`` Gram matrix (accumulated in row chunks), which makes every
    ``α`` cheap. ``α`` is chosen by validation mean squared error, or by generalised cross-validation
    on the training data when no validation split is given. After ``fit``: ``alpha``, ``scores``
    (criterion per ``α``, lower is better), ``selection`` (``"validation"`` or ``"gcv"``), and the
    coefficients in the original feature units, ``coef_`` (d, J) and ``intercept_`` (J,).
    """

    def __init__(self, alphas: Sequence[float] = (0.01, 0.1, 1, 10, 100, 1000)) -> None:
        self.alphas = _check_alphas(alphas)
        self.alpha: float | None = None
        self.scores: dict[float, float] = {}
        self.selection: str | None = None
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.weights_: np.ndarray | None = None  # (d, J), standardised units
        self.y_mean_: np.ndarray | None = None

    def fit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        X_val: np.ndarray | None = None,
        Y_val: np.ndarray | None = None,
    ) -> RidgeRegressor:
        """Fit on ``X`` (n, d) and ``Y`` (n, J); choose ``α`` on (``X_val``, ``Y_val``) when given, else by GCV."""
        X = _check_X(X, min_rows=1)
        n, d = X.shape
        Y = _check_Y(Y, n)
        n_targets = Y.shape[1]
        if has_val := _check_val_pair(X_val, Y_val, ("X_val", "Y_val")):
            X_val = _check_X(X_val, "X_val", n_features=d)
            Y_val = _check_Y(Y_val, X_val.shape[0], "Y_val", n_targets=n_targets)

        mean = _column_mean(X)
        y_mean = Y.mean(axis=0, dtype=np.float64)
        gram = np.zeros((d, d))
        xty = np.zeros((d, n_targets))
        yy = 0.0
        for sl in _row_chunks(n):
            xc = X[sl].astype(np.float64) - mean
            yc = Y[sl].astype(np.float64) - y_mean
            gram += xc.T @ xc
            xty += xc.T @ yc
            yy += float(np.sum(yc * yc))
        scale = _scale_from_sumsq(np.diag(gram).copy(), n)
        gram /= np.outer(scale, scale)
        xty /= scale[:, None]

        lam, vecs = scipy.linalg.eigh(gram)
        lam = np.maximum(lam, 0.0)
        proj = vecs.T @ xty  # (d, J): Zᵀy in the eigenbasis
        alphas = np.asarray(self.alphas)
        weights = [vecs @ (proj / (lam + a)[:, None]) for a in alphas]

        self.mean_, self.scale_, self.y_mean_ = mean, scale, y_mean
        if has_val:
            scores = self._validation_mse(weights, X_val, Y_val)
            self.selection = "validation"
        else:
            scores = _gcv_scores(lam, proj, yy, n, alphas) / n_targets
            self.selection = "gcv"
        finite = np.isfinite(scores)
        best = int(np.argmin(np.where(finite, scores, np.inf))) if finite.any() else int(np.argmax(alphas))
        self.alpha = float(alphas[best])
        self.scores = {float(a): float(s) for a, s in zip(alphas, scores, strict=True)}
        self.weights_ = weights[best]
        return self

    def _validation_mse(self, weights: list[np.ndarray], X_val: np.ndarray, Y_val: np.ndarray) -> np.ndarray:
        n_val, n_targets = Y_val.shape
        if n_val == 0:
            raise InvalidInput("X_val must have at least 1 row to choose alpha on; got 0")
        stacked = np.concatenate(weights, axis=1)  # (d, A * J)
        sse = np.zeros(len(weights))
        for sl in _row_chunks(n_val):
            pred = _standardise(X_val[sl], self.mean_, self.scale_) @ stacked
            err = pred.reshape(-1, len(weights), n_targets) + self.y_mean_ - Y_val[sl, None, :]
            sse += np.einsum("naj,naj->a", err, err)
        return sse / (n_val * n_targets)

    @property
    def coef_(self) -> np.ndarray:
        """Weights in the original feature units, (d, J)."""
        if self.weights_ is None:
            raise _not_fitted(self)
        return self.weights_ / self.scale_[:, None]

    @property
    def intercept_(self) -> np.ndarray:
        """Intercept in the original units, (J,)."""
        return self.y_mean_ - self.mean_ @ self.coef_

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``(n, J)`` float64 predictions."""
        if self.weights_ is None:
            raise _not_fitted(self)
        X = _check_X(X, n_features=self.mean_.shape[0])
        out = np.empty((X.shape[0], self.weights_.shape[1]))
        for sl in _row_chunks(X.shape[0]):
            out[sl] = _standardise(X[sl], self.mean_, self.scale_) @ self.weights_ + self.y_mean_
        return out


def _gcv_scores(lam: np.ndarray, proj: np.ndarray, yy: float, n: int, alphas: np.ndarray) -> np.ndarray:
    """Generalised cross-validation ``n * RSS(α) / (n - df(α))²`` for every ``α``, from the eigen-decomposition.

    With ``c = VᵀZᵀy``, ``RSS(α) = yᵀy - Σ c²(λ+2α)/(λ+α)²``. Over the well-conditioned directions the
    term is rewritten as ``-c²/λ + c²α²/(λ(λ+α)²)``, so the part that differs between alphas carries no
    cancellation. ``df(α) = 1 + Σ λ/(λ+α)``, the 1 for the intercept.
    """
    c2 = np.sum(proj * proj, axis=1)  # (d,)
    big = lam > lam.max(initial=0.0) * lam.shape[0] * np.finfo(np.float64).eps
    lam_big, c2_big = lam[big], c2[big]
    lam_small, c2_small = lam[~big], c2[~big]
    rss0 = max(yy - float(np.sum(c2_big / lam_big)), 0.0)
    scores = np.empty(alphas.shape[0])
    for k, a in enumerate(alphas):
        rss = rss0 + float(np.sum(c2_big * a * a / (lam_big * (lam_big + a) ** 2)))
        rss -= float(np.sum(c2_small * (lam_small + 2 * a) / (lam_small + a) ** 2))
        resid_df = n - 1.0 - float(np.sum(lam / (lam + a)))
        scores[k] = n * max(rss, 0.0) / resid_df**2 if resid_df > 0 else np.inf
    return scores


# ---------------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------------


class MajorityClassifier:
    """Predicts the training class frequencies, whatever the features (a class absent from training gets 0)."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = _check_num_classes(num_classes)
        self.freq_: np.ndarray | None = None
        self.n_features_: int | None = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> MajorityClassifier:
        """Count the labels ``y`` (n,) in [0, num_classes)."""
        X = _check_X(X, min_rows=1)
        y = _check_labels(y, X.shape[0], self.num_classes)
        self.freq_ = np.bincount(y, minlength=self.num_classes) / y.shape[0]
        self.n_features_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``(n, C)``: the training class frequencies on every row."""
        if self.freq_ is None:
            raise _not_fitted(self)
        X = _check_X(X, n_features=self.n_features_)
        return np.tile(self.freq_, (X.shape[0], 1))


class _Design:
    """Standardised rows of X, held in memory when small enough, else standardised chunk by chunk."""

    def __init__(self, X: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> None:
        self.X, self.mean, self.scale = X, mean, scale
        self.cache: list[np.ndarray] | None = None
        if X.shape[0] * X.shape[1] * 8 <= _CACHE_BYTES:
            self.cache = [_standardise(X[sl], mean, scale) for sl in _row_chunks(X.shape[0])]

    def __iter__(self) -> Iterator[tuple[slice, np.ndarray]]:
        for k, sl in enumerate(_row_chunks(self.X.shape[0])):
            yield sl, self.cache[k] if self.cache is not None else _standardise(self.X[sl], self.mean, self.scale)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


class LogisticClassifier:
    """Multinomial (softmax) logistic regression with an L2 penalty on the weights, on standardised features.

    Minimises ``mean cross-entropy + α/2 ||W||²`` (the intercept is not penalised) with L-BFGS-B. With a
    validation split ``α`` is chosen by validation log loss, fitting from the largest ``α`` down, each fit
    warm-started from the previous; without one ``α = alphas[1]``. After ``fit``: ``alpha``, ``scores``
    (validation log loss per ``α``; empty without validation), ``coef_`` (d, C) and ``intercept_`` (C,)
    in standardised units.
    """

    def __init__(
        self,
        num_classes: int,
        alphas: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1),
        max_iter: int = 300,
    ) -> None:
        self.num_classes = _check_num_classes(num_classes)
        self.alphas = _check_alphas(alphas)
        if isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer) or max_iter < 1:
            raise InvalidInput(f"max_iter must be an integer >= 1; got {max_iter!r}")
        self.max_iter = int(max_iter)
        self.alpha: float | None = None
        self.scores: dict[float, float] = {}
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.coef_: np.ndarray | None = None
        self.intercept_: np.ndarray | None = None

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
    ) -> LogisticClassifier:
        """Fit on ``X`` (n, d) and labels ``y`` (n,); choose ``α`` on (``X_val``, ``y_val``) when given."""
        X = _check_X(X, min_rows=1)
        n, d = X.shape
        y = _check_labels(y, n, self.num_classes)
        if has_val := _check_val_pair(X_val, y_val, ("X_val", "y_val")):
            X_val = _check_X(X_val, "X_val", n_features=d)
            y_val = _check_labels(y_val, X_val.shape[0], self.num_classes, "y_val")
            if X_val.shape[0] == 0:
                raise InvalidInput("X_val must have at least 1 row to choose alpha on; got 0")

        mean = _column_mean(X)
        sumsq = np.zeros(d)
        for sl in _row_chunks(n):
            xc = X[sl].astype(np.float64) - mean
            sumsq += np.einsum("ij,ij->j", xc, xc)
        self.mean_, self.scale_ = mean, _scale_from_sumsq(sumsq, n)
        design = _Design(X, self.mean_, self.scale_)

        theta = np.zeros((d + 1) * self.num_classes)
        if not has_val:
            self.alpha = self.alphas[min(1, len(self.alphas) - 1)]
            self.scores = {}
            self._set_params(self._minimise(design, y, self.alpha, theta))
            return self

        best: tuple[float, float, np.ndarray] | None = None
        scores: dict[float, float] = {}
        for alpha in sorted(self.alphas, reverse=True):
            theta = self._minimise(design, y, alpha, theta)
            self._set_params(theta)
            scores[alpha] = self._log_loss(X_val, y_val)
            if best is None or scores[alpha] < best[0]:
                best = (scores[alpha], alpha, theta)
        self.scores = {a: scores[a] for a in self.alphas}
        self.alpha = best[1]
        self._set_params(best[2])
        return self

    def _minimise(self, design: _Design, y: np.ndarray, alpha: float, theta0: np.ndarray) -> np.ndarray:
        d, n_classes, n = design.X.shape[1], self.num_classes, design.X.shape[0]

        def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            W = theta[: d * n_classes].reshape(d, n_classes)
            b = theta[d * n_classes :]
            loss = 0.0
            grad_W = np.zeros((d, n_classes))
            grad_b = np.zeros(n_classes)
            for sl, Z in design:
                logp = _log_softmax(Z @ W + b)
                rows = np.arange(logp.shape[0])
                labels = y[sl]
                loss -= float(logp[rows, labels].sum())
                resid = np.exp(logp)
                resid[rows, labels] -= 1.0
                grad_W += Z.T @ resid
                grad_b += resid.sum(axis=0)
            loss = loss / n + 0.5 * alpha * float(np.sum(W * W))
            grad = np.concatenate([(grad_W / n + alpha * W).ravel(), grad_b / n])
            return loss, grad

        result = scipy.optimize.minimize(
            loss_grad, theta0, method="L-BFGS-B", jac=True, options={"maxiter": self.max_iter}
        )
        return np.asarray(result.x, dtype=np.float64)

    def _set_params(self, theta: np.ndarray) -> None:
        d = self.mean_.shape[0]
        self.coef_ = theta[: d * self.num_classes].reshape(d, self.num_classes).copy()
        self.intercept_ = theta[d * self.num_classes :].copy()

    def _log_proba(self, X: np.ndarray) -> np.ndarray:
        out = np.empty((X.shape[0], self.num_classes))
        for sl in _row_chunks(X.shape[0]):
            out[sl] = _log_softmax(_standardise(X[sl], self.mean_, self.scale_) @ self.coef_ + self.intercept_)
        return out

    def _log_loss(self, X: np.ndarray, y: np.ndarray) -> float:
        logp = self._log_proba(X)
        return float(-logp[np.arange(y.shape[0]), y].mean())

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``(n, C)`` class probabilities; every row sums to 1."""
        if self.coef_ is None:
            raise _not_fitted(self)
        X = _check_X(X, n_features=self.mean_.shape[0])
        proba = np.exp(self._log_proba(X))
        return proba / proba.sum(axis=1, keepdims=True)
