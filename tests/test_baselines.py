"""Baselines: ridge and logistic regression beat the constant answer where they should, agree with a direct
float64 solution of their objective, choose the penalty on validation or blocked cross-validation, and refuse
bad input with errors that name the rule."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize

from emgpose.errors import InvalidInput
from emgpose.train.baselines import LogisticClassifier, MajorityClassifier, MeanRegressor, RidgeRegressor


def linear_data(rng: np.random.Generator, n: int = 400, d: int = 8, j: int = 3) -> tuple[np.ndarray, ...]:
    X = (rng.normal(size=(n, d)) * rng.uniform(0.5, 5, size=d) + rng.normal(size=d) * 3).astype(np.float32)
    W = rng.normal(size=(d, j))
    b = rng.normal(size=j)
    return X, X.astype(np.float64) @ W + b, W, b


def blobs(rng: np.random.Generator, n_per: int, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.concatenate([c + rng.normal(size=(n_per, centres.shape[1])) for c in centres]).astype(np.float32)
    y = np.repeat(np.arange(centres.shape[0]), n_per)
    order = rng.permutation(len(y))
    return X[order], y[order]


def standardise(X: np.ndarray, ref: np.ndarray) -> np.ndarray:
    ref = ref.astype(np.float64)
    return (X.astype(np.float64) - ref.mean(axis=0)) / ref.std(axis=0)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a - b) ** 2))


CENTRES = np.array([[0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0]])

# ---------------------------------------------------------------------------------------------------
# Regression
# ---------------------------------------------------------------------------------------------------


def test_ridge_recovers_noiseless_linear_model() -> None:
    X, Y, W, b = linear_data(np.random.default_rng(0))
    model = RidgeRegressor(alphas=(1e-6,)).fit(X, Y)
    assert model.alpha == 1e-6 and model.selection == "fixed" and model.scores == {}
    np.testing.assert_allclose(model.coef_, W, atol=1e-4)
    np.testing.assert_allclose(model.intercept_, b, atol=1e-3)
    pred = model.predict(X)
    assert pred.dtype == np.float64 and pred.shape == Y.shape
    np.testing.assert_allclose(pred, Y, atol=1e-3)


def test_ridge_matches_the_float64_closed_form_on_standardised_features() -> None:
    """(ZᵀZ + αI) w = Zᵀ(y - ȳ), intercept ȳ: the penalty acts on standardised features, not the intercept."""
    rng = np.random.default_rng(7)
    X, Y, _, _ = linear_data(rng, n=150, d=6, j=2)
    Y = Y + rng.normal(size=Y.shape) * 3.0
    X_new = linear_data(rng, n=20, d=6)[0]
    for alpha in (0.5, 50.0):
        Z = standardise(X, X)
        w = np.linalg.solve(Z.T @ Z + alpha * np.eye(6), Z.T @ (Y - Y.mean(axis=0)))
        expected = standardise(X_new, X) @ w + Y.mean(axis=0)
        pred = RidgeRegressor(alphas=(alpha,)).fit(X, Y).predict(X_new)
        np.testing.assert_allclose(pred, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_ridge_beats_the_mean_on_a_noisy_linear_problem() -> None:
    rng = np.random.default_rng(8)
    X, Y, _, _ = linear_data(rng, n=600, d=10, j=2)
    Y = Y + rng.normal(size=Y.shape) * np.std(Y, axis=0)  # signal-to-noise 1
    train, test = slice(0, 400), slice(400, 600)
    ridge = RidgeRegressor().fit(X[train], Y[train])
    mean = MeanRegressor().fit(X[train], Y[train])
    assert mse(ridge.predict(X[test]), Y[test]) < 0.7 * mse(mean.predict(X[test]), Y[test])


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
    assert set(model.scores) == set(model.alphas)
    assert min(model.scores.values()) == model.scores[0.01] < 1e-3
    # The scores are the validation mean squared error of each α's fit.
    refit = RidgeRegressor(alphas=(10.0,)).fit(X, X @ W)
    assert model.scores[10.0] == pytest.approx(mse(refit.predict(X_val), X_val @ W), rel=1e-4)


def test_cross_validation_without_validation_split() -> None:
    rng = np.random.default_rng(3)
    X, Y, _, _ = linear_data(rng, n=300, d=10)
    model = RidgeRegressor().fit(X, Y + 0.01 * rng.normal(size=Y.shape))
    assert model.selection == "cv" and model.alpha in (0.01, 0.1, 1)
    assert set(model.scores) == set(model.alphas) and all(np.isfinite(list(model.scores.values())))
    noise = rng.normal(size=(40, 1))
    assert RidgeRegressor().fit(X[:40], noise).alpha >= 10


def test_explicit_folds_decide_alpha() -> None:
    """The same rows give opposite choices depending on which rows the folds validate on."""
    rng = np.random.default_rng(9)
    X, Y, _, _ = linear_data(rng, n=200, d=5, j=1)
    Y[100:] = rng.normal(size=(100, 1)) * 10  # the second half is unrelated to X
    first, second = np.arange(0, 60), np.arange(60, 100)
    to_linear = RidgeRegressor(cv=[(first, second)]).fit(X, Y)
    to_noise = RidgeRegressor(cv=[(first, np.arange(100, 200))]).fit(X, Y)
    assert to_linear.selection == to_noise.selection == "cv"
    assert to_linear.alpha == 0.01 and to_noise.alpha >= 100


def test_blocked_folds_are_contiguous_in_row_order() -> None:
    """Rows in time order with a drifting relation: contiguous blocks see the drift, shuffled rows would not.

    The target follows X with a weight that changes block by block, so a block's relation is never learnt
    from the other blocks: blocked cross-validation prefers strong shrinkage, while a fit on interleaved
    rows (the situation of leave-one-out on overlapping windows) would find the weak penalty best.
    """
    rng = np.random.default_rng(10)
    n = 400
    X = rng.normal(size=(n, 3)).astype(np.float32)
    weight = np.repeat(rng.choice([-3.0, 3.0], size=(4, 3)), n // 4, axis=0)
    Y = np.sum(X * weight, axis=1, keepdims=True)
    assert RidgeRegressor(cv=4).fit(X, Y).alpha == 1000
    interleaved = [(np.flatnonzero(np.arange(n) % 4 != k), np.flatnonzero(np.arange(n) % 4 == k)) for k in range(4)]
    assert RidgeRegressor(cv=interleaved).fit(X, Y).alpha < 1000


def test_constant_columns_and_single_target() -> None:
    rng = np.random.default_rng(4)
    X, _, _, _ = linear_data(rng, n=200, d=4)
    X = np.column_stack([X, np.full(200, 0.1, np.float32), np.zeros(200, np.float32)])
    Y = (X[:, :1].astype(np.float64) * 2.0 - 1.0).reshape(-1, 1)
    model = RidgeRegressor(alphas=(1e-6,)).fit(X, Y)
    assert np.all(np.isfinite(model.coef_)) and model.coef_.shape == (6, 1)
    assert np.all(model.coef_[4:] == 0.0)
    pred = model.predict(X[:7])
    assert pred.shape == (7, 1)
    np.testing.assert_allclose(pred, Y[:7], atol=1e-4)


def test_near_duplicate_features_with_tiny_alpha_match_float64() -> None:
    """A Gram matrix too ill-conditioned for float32 Cholesky (SciPy warns) is solved through the SVD instead.

    Cholesky in float32 gets the two near-duplicate columns' weights wrong by about 2 here (and warns,
    which the test run turns into an error); the SVD agrees with the float64 solution.
    """
    rng = np.random.default_rng(11)
    X, Y, _, _ = linear_data(rng, n=300, d=4, j=1)
    twin = X[:, :1] * 3.0 + 1e-4 * rng.normal(size=(300, 1)) * X[:, :1].std()
    X = np.column_stack([X, twin]).astype(np.float32)
    Z = standardise(X, X)
    w = np.linalg.solve(Z.T @ Z + 1e-8 * np.eye(5), Z.T @ (Y - Y.mean(axis=0)))
    model = RidgeRegressor(alphas=(1e-8,)).fit(X, Y)
    np.testing.assert_allclose(model.coef_, w / X.astype(np.float64).std(axis=0)[:, None], rtol=1e-2, atol=1e-3)


def test_no_varying_feature_gives_the_mean() -> None:
    X = np.ones((6, 3), np.float32)
    Y = np.arange(12, dtype=np.float64).reshape(6, 2)
    model = RidgeRegressor().fit(X, Y)
    np.testing.assert_allclose(model.predict(X[:2]), np.tile(Y.mean(axis=0), (2, 1)), atol=1e-5)
    assert np.all(model.coef_ == 0.0)


def test_one_row_cannot_be_cross_validated() -> None:
    model = RidgeRegressor().fit(np.ones((1, 2), np.float32), np.array([[3.0]]))
    assert model.selection == "fixed" and model.alpha == 1000 and model.scores == {}
    np.testing.assert_allclose(model.predict(np.zeros((2, 2))), [[3.0], [3.0]], atol=1e-6)


def test_mean_regressor_gives_training_means() -> None:
    X = np.zeros((4, 3), np.float32)
    Y = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [6.0, 0.0]])
    pred = MeanRegressor().fit(X, Y).predict(np.ones((5, 3), np.float32))
    assert pred.shape == (5, 2) and pred.dtype == np.float64
    np.testing.assert_allclose(pred, np.tile([3.0, 15.0], (5, 1)))


# ---------------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------------


def softmax_objective_fit(Z: np.ndarray, y: np.ndarray, n_classes: int, alpha: float) -> np.ndarray:
    """Minimises mean cross-entropy + α/2 ||W||² (intercept free) in float64 with SciPy; returns (W; b)."""
    n, d = Z.shape
    onehot = np.eye(n_classes)[y]

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W, b = theta[: d * n_classes].reshape(d, n_classes), theta[d * n_classes :]
        logits = Z @ W + b
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        resid = np.exp(logp) - onehot
        loss = -np.sum(onehot * logp) / n + 0.5 * alpha * np.sum(W * W)
        return loss, np.concatenate([(Z.T @ resid / n + alpha * W).ravel(), resid.mean(axis=0)])

    theta = scipy.optimize.minimize(loss_grad, np.zeros((d + 1) * n_classes), jac=True, method="L-BFGS-B").x
    return theta


def test_logistic_matches_the_float64_objective() -> None:
    """The penalty maps to scikit-learn's C as 1 / (α n): both fits give the same probabilities."""
    rng = np.random.default_rng(12)
    X, y = blobs(rng, 80, CENTRES)
    X_new, _ = blobs(rng, 20, CENTRES)
    for alpha in (1e-3, 1e-1):
        theta = softmax_objective_fit(standardise(X, X), y, 3, alpha)
        W, b = theta[:12].reshape(4, 3), theta[12:]
        logits = standardise(X_new, X) @ W + b
        expected = np.exp(logits - logits.max(axis=1, keepdims=True))
        expected /= expected.sum(axis=1, keepdims=True)
        model = LogisticClassifier(3, alphas=(alpha,)).fit(X, y)
        assert model.converged and model.selection == "fixed"
        np.testing.assert_allclose(model.predict_proba(X_new), expected, atol=5e-3)


def test_logistic_separates_blobs_and_beats_majority() -> None:
    rng = np.random.default_rng(5)
    X, y = blobs(rng, 100, CENTRES)
    X_val, y_val = blobs(rng, 50, CENTRES)
    X_test, y_test = blobs(rng, 100, CENTRES)
    majority = MajorityClassifier(3).fit(X, y).predict_proba(X_test)
    for model, selection in (
        (LogisticClassifier(3).fit(X, y), "cv"),
        (LogisticClassifier(3).fit(X, y, X_val, y_val), "validation"),
    ):
        assert model.selection == selection and model.alpha in model.alphas
        assert set(model.scores) == set(model.alphas)
        proba = model.predict_proba(X_test)
        assert proba.shape == (300, 3) and proba.dtype == np.float64
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
        accuracy = np.mean(proba.argmax(axis=1) == y_test)
        assert accuracy > 0.85 and accuracy > np.mean(majority.argmax(axis=1) == y_test) + 0.4
        log_loss = -np.mean(np.log(proba[np.arange(300), y_test]))
        assert log_loss < 0.5 * -np.mean(np.log(majority[np.arange(300), y_test]))


def test_validation_picks_strong_penalty_for_random_labels() -> None:
    rng = np.random.default_rng(13)
    X, X_val = rng.normal(size=(60, 20)).astype(np.float32), rng.normal(size=(300, 20)).astype(np.float32)
    y, y_val = rng.integers(0, 3, 60), rng.integers(0, 3, 300)
    model = LogisticClassifier(3).fit(X, y, X_val, y_val)
    assert model.alpha == 1e-1 and min(model.scores.values()) == model.scores[1e-1]


def test_class_absent_from_training_gets_zero_probability() -> None:
    rng = np.random.default_rng(6)
    X, y = blobs(rng, 60, CENTRES[:2])
    proba = LogisticClassifier(4, max_iter=200).fit(X, y).predict_proba(X)
    assert np.all(np.isfinite(proba)) and np.all(proba[:, 2:] == 0.0)
    assert np.mean(proba.argmax(axis=1) == y) > 0.9


def test_one_class_in_training_is_the_answer() -> None:
    X = np.random.default_rng(14).normal(size=(10, 3)).astype(np.float32)
    model = LogisticClassifier(3).fit(X, np.full(10, 2), X[:4], np.array([2, 2, 0, 1]))
    assert model.selection == "one class" and model.alpha is None and model.model_ is None
    np.testing.assert_array_equal(model.predict_proba(X[:2]), [[0.0, 0.0, 1.0]] * 2)


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
        (lambda: MeanRegressor().fit(np.zeros((5, 0)), np.zeros((5, 1))), r"X must have at least one feature"),
        (lambda: RidgeRegressor().fit(X_OK, np.zeros((4, 1))), r"one row per row of X \(5\); got 4"),
        (lambda: RidgeRegressor().fit(X_OK, np.zeros(5)), r"Y must be 2-D"),
        (lambda: RidgeRegressor().fit(X_OK, np.zeros((5, 1)), X_OK[:, :1], np.zeros((5, 1))), r"2 feature columns"),
        (lambda: RidgeRegressor().fit(X_OK, np.zeros((5, 1)), X_OK), r"given together"),
        (lambda: RidgeRegressor().fit(X_OK, np.zeros((5, 1)), X_OK[:0], np.zeros((0, 1))), r"X_val must have at"),
        (lambda: RidgeRegressor(alphas=(1.0, 0.0)), r"alphas must be .* > 0"),
        (lambda: RidgeRegressor(cv=1), r"cv must be an integer >= 2"),
        (lambda: RidgeRegressor(cv=[(np.arange(3),)]), r"fold 0 is not a pair"),
        (lambda: RidgeRegressor(cv=[(np.arange(3), np.array([], int))]), r"fold 0: the validation rows"),
        (lambda: RidgeRegressor(cv=[(np.arange(3), np.array([9]))]).fit(X_OK, np.zeros((5, 1))), r"\[0, 5\).*got 9"),
        (lambda: LogisticClassifier(2, cv=[(np.array([-1, 0]), np.arange(2))]).fit(X_OK, np.arange(5) % 2), r"got -1"),
        (lambda: MajorityClassifier(3).fit(X_OK, np.array([0, 1, 2, 3, 0])), r"in \[0, 3\); got 3"),
        (lambda: LogisticClassifier(3).fit(X_OK, np.array([0, 1, -1, 2, 0])), r"in \[0, 3\); got -1"),
        (lambda: LogisticClassifier(3).fit(X_OK, np.zeros(5)), r"integer class labels"),
        (lambda: LogisticClassifier(3, max_iter=0), r"max_iter must be an integer >= 1"),
        (lambda: LogisticClassifier(0), r"num_classes must be an integer >= 1"),
        (lambda: MajorityClassifier(3).fit(X_OK, np.zeros(4, int)), r"one label per row of X \(5\); got 4"),
    ],
)
def test_bad_shapes_and_labels_raise(call, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        call()


@pytest.mark.parametrize(
    "model", [MeanRegressor(), RidgeRegressor(), MajorityClassifier(2), LogisticClassifier(2)], ids=type
)
def test_unfitted_models_raise(model) -> None:
    predict = model.predict if hasattr(model, "predict") else model.predict_proba
    with pytest.raises(InvalidInput, match=f"{type(model).__name__} is not fitted; call fit first"):
        predict(X_OK)


def test_non_finite_values_raise() -> None:
    X = np.zeros((5, 2), np.float32)
    X[1, 0], X[3, 1], X[4, 1] = np.nan, np.inf, -np.inf
    with pytest.raises(InvalidInput, match="X has 3 non-finite values; drop or impute them first"):
        RidgeRegressor().fit(X, np.zeros((5, 1)))
    Y = np.zeros((5, 1))
    Y[2] = np.nan
    with pytest.raises(InvalidInput, match="Y has 1 non-finite values"):
        MeanRegressor().fit(X_OK, Y)
    model = LogisticClassifier(2).fit(np.arange(10, dtype=np.float32).reshape(5, 2), np.array([0, 0, 1, 1, 1]))
    with pytest.raises(InvalidInput, match="X has 3 non-finite values"):
        model.predict_proba(X)
    with pytest.raises(InvalidInput, match="X_val has 3 non-finite values"):
        LogisticClassifier(2).fit(X_OK, np.array([0, 1, 0, 1, 0]), X, np.zeros(5, int))
