"""Baselines: ridge and logistic regression recover what they should, constants are constant, bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest

from emgpose.train.baselines import LogisticClassifier, MajorityClassifier, MeanRegressor, RidgeRegressor


def linear_data(rng: np.random.Generator, n: int = 400, d: int = 8, j: int = 3) -> tuple[np.ndarray, ...]:
    X = (rng.normal(size=(n, d)) * rng.uniform(0.5, 5, size=d) + rng.normal(size=d) * 3).astype(np.float32)
    W = rng.normal(size=(d, j))
    b = rng.normal(size=j)
    return X, X.astype(np.float64) @ W + b, W, b


def blobs(rng: np.random.Generator, n_per: int, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.concatenate([c + rng.normal(size=(n_per, centres.shape[1])) for c in centres]).astype(np.float32)
    y = np.repeat(np.arange(centres.shape[0]), n_per)
    return X, y


CENTRES = np.array([[0.0, 0.0, 0.0, 0.0], [6.0, 0.0, 0.0, 0.0], [0.0, 6.0, 0.0, 0.0]])

# ---------------------------------------------------------------------------------------------------
# Regression
# ---------------------------------------------------------------------------------------------------


def test_ridge_recovers_noiseless_linear_model() -> None:
    X, Y, W, b = linear_data(np.random.default_rng(0))
    model = RidgeRegressor(alphas=(1e-6,)).fit(X, Y)
    assert model.alpha == 1e-6
    np.testing.assert_allclose(model.coef_, W, atol=1e-5)
    np.testing.assert_allclose(model.intercept_, b, atol=1e-4)
    pred = model.predict(X)
    assert pred.dtype == np.float64 and pred.shape == Y.shape
    np.testing.assert_allclose(pred, Y, atol=1e-4)


def test_larger_alpha_shrinks_weights() -> None:
    X, Y, _, _ = linear_data(np.random.default_rng(1), n=100)
    norms = [np.linalg.norm(RidgeRegressor(alphas=(a,)).fit(X, Y).coef_) for a in (0.01, 10.0, 1000.0)]
    assert norms[0] > norms[1] > norms[2]


def test_validation_picks_large_alpha_for_noise_and_small_for_linear_targets() -> None:
    rng = np.random.default_rng(2)
    X, Y, _, _ = linear_data(rng, n=300, d=20)
    X_val, Y_val, _, _ = linear_data(rng, n=300, d=20)
    noise, noise_val = rng.normal(size=(300, 2)), rng.normal(size=(300, 2))
    assert RidgeRegressor().fit(X[:60], noise[:60], X_val, noise_val).alpha == 1000
    # Same features, targets linear in X: the validation split must prefer the least shrinkage.
    W = rng.normal(size=(20, 2))
    model = RidgeRegressor().fit(X, X @ W, X_val, X_val @ W)
    assert model.alpha == 0.01 and model.selection == "validation"
    assert min(model.scores.values()) == model.scores[0.01] < 1e-3


def test_gcv_without_validation() -> None:
    rng = np.random.default_rng(3)
    X, Y, _, _ = linear_data(rng, n=300, d=10)
    model = RidgeRegressor().fit(X, Y + 0.01 * rng.normal(size=Y.shape))
    assert model.selection == "gcv" and model.alpha in (0.01, 0.1, 1)
    assert set(model.scores) == set(model.alphas) and all(np.isfinite(list(model.scores.values())))
    noise = rng.normal(size=(40, 1))
    assert RidgeRegressor().fit(X[:40], noise).alpha >= 10


def test_constant_columns_and_single_target() -> None:
    rng = np.random.default_rng(4)
    X, _, _, _ = linear_data(rng, n=200, d=4)
    X = np.column_stack([X, np.full(200, 0.1, np.float32), np.zeros(200, np.float32)])
    Y = (X[:, :1].astype(np.float64) * 2.0 - 1.0).reshape(-1, 1)
    model = RidgeRegressor(alphas=(1e-6,)).fit(X, Y)
    assert np.all(np.isfinite(model.coef_))
    np.testing.assert_allclose(model.coef_[4:], 0.0, atol=1e-12)
    pred = model.predict(X[:7])
    assert pred.shape == (7, 1)
    np.testing.assert_allclose(pred, Y[:7], atol=1e-5)


def test_mean_regressor_gives_training_means() -> None:
    X = np.zeros((4, 3), np.float32)
    Y = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [6.0, 0.0]])
    pred = MeanRegressor().fit(X, Y).predict(np.ones((5, 3), np.float32))
    assert pred.shape == (5, 2) and pred.dtype == np.float64
    np.testing.assert_allclose(pred, np.tile([3.0, 15.0], (5, 1)))


# ---------------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------------


def test_logistic_separates_blobs() -> None:
    rng = np.random.default_rng(5)
    X, y = blobs(rng, 100, CENTRES)
    X_val, y_val = blobs(rng, 50, CENTRES)
    X_test, y_test = blobs(rng, 100, CENTRES)
    for model in (LogisticClassifier(3).fit(X, y), LogisticClassifier(3).fit(X, y, X_val, y_val)):
        proba = model.predict_proba(X_test)
        assert proba.shape == (300, 3)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
        assert np.mean(proba.argmax(axis=1) == y_test) > 0.95
    assert model.alpha in model.alphas and set(model.scores) == set(model.alphas)


def test_class_absent_from_training_gets_low_probability() -> None:
    rng = np.random.default_rng(6)
    X, y = blobs(rng, 60, CENTRES[:2])
    proba = LogisticClassifier(4, max_iter=200).fit(X, y).predict_proba(X)
    assert np.all(np.isfinite(proba))
    assert proba[:, 2:].max() < 0.01


def test_majority_frequencies() -> None:
    y = np.array([0, 0, 2, 0, 2, 1, 0, 0])
    proba = MajorityClassifier(4).fit(np.zeros((8, 2)), y).predict_proba(np.zeros((3, 2)))
    np.testing.assert_allclose(proba, np.tile([5 / 8, 1 / 8, 2 / 8, 0.0], (3, 1)))


# ---------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------

X_OK = np.zeros((5, 2), np.float32)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: MeanRegressor().fit(np.zeros(5), np.zeros((5, 1))), r"X must be 2-D .*got shape \(5,\)"),
        (lambda: RidgeRegressor().fit(X_OK, np.zeros((4, 1))), r"one row per row of X \(5\); got 4"),
        (lambda: RidgeRegressor().fit(X_OK, np.zeros(5)), r"Y must be 2-D"),
        (lambda: RidgeRegressor().fit(X_OK, np.zeros((5, 1)), X_OK[:, :1], np.zeros((5, 1))), r"2 feature columns"),
        (lambda: RidgeRegressor().fit(X_OK, np.zeros((5, 1)), X_OK), r"given together"),
        (lambda: RidgeRegressor(alphas=(1.0, 0.0)), r"alphas must be .* > 0"),
        (lambda: MajorityClassifier(3).fit(X_OK, np.array([0, 1, 2, 3, 0])), r"in \[0, 3\); got 3"),
        (lambda: LogisticClassifier(3).fit(X_OK, np.array([0, 1, -1, 2, 0])), r"in \[0, 3\); got -1"),
        (lambda: LogisticClassifier(3).fit(X_OK, np.zeros(5)), r"integer class labels"),
        (lambda: MajorityClassifier(3).fit(X_OK, np.zeros(4, int)), r"one label per row of X \(5\); got 4"),
    ],
)
def test_bad_shapes_and_labels_raise(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_non_finite_values_raise() -> None:
    X = np.zeros((5, 2), np.float32)
    X[1, 0], X[3, 1], X[4, 1] = np.nan, np.inf, -np.inf
    with pytest.raises(ValueError, match="X has 3 non-finite values; drop or impute them first"):
        RidgeRegressor().fit(X, np.zeros((5, 1)))
    Y = np.zeros((5, 1))
    Y[2] = np.nan
    with pytest.raises(ValueError, match="Y has 1 non-finite values"):
        MeanRegressor().fit(X_OK, Y)
    model = LogisticClassifier(2).fit(np.arange(10, dtype=np.float32).reshape(5, 2), np.array([0, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match="X has 3 non-finite values"):
        model.predict_proba(X)
