"""The pseudo-Huber objective and the per-joint MAE: kernels against their NumPy twins, against XGBoost's
built-in ``reg:pseudohubererror``, and training through ``boost.fit`` with ``objective="pseudo_huber"``.

Kernel bodies run with ``xp`` = NumPy (the host emulation of ``kernels/objective.cu``) and, under the
``gpu`` marker, with ``xp`` = CuPy on a device. XGBoost trains with ``nthread=1`` on small data.
"""

from __future__ import annotations

import json
import sys
import warnings
from types import ModuleType

import numpy as np
import pytest
import xgboost as xgb
from kernel_support import BACKENDS, array_module, cupy_or_skip, host

from emgpose.errors import InvalidInput
from emgpose.formats.joints import EMG2POSE_JOINTS
from emgpose.train import boost
from emgpose.train.metrics import regression_metrics
from emgpose.train.objective import (
    JointMAE,
    PseudoHuberObjective,
    mae_per_finger,
    mae_per_joint_twin,
    pseudo_huber_twin,
)
from emgpose_kernels.objective import abs_error_sums, mae_per_joint, pseudo_huber_grad_hess


@pytest.fixture(params=BACKENDS)
def xp(request: pytest.FixtureRequest) -> ModuleType:
    return array_module(request.param)


# float64: the kernel and the twin evaluate the same formula in the same order. float32: the kernel runs
# in float32 against the float64 twin of the same float32 inputs (a few float32 ulps).
TOLERANCE = {np.float64: {"rtol": 1e-12, "atol": 1e-12}, np.float32: {"rtol": 1e-5, "atol": 1e-6}}
MAE_TOLERANCE = {np.float64: {"rtol": 1e-12, "atol": 0}, np.float32: {"rtol": 1e-6, "atol": 0}}
QUICK = {"num_rounds": 6, "max_depth": 3, "learning_rate": 0.3, "subsample": 1.0, "colsample_bytree": 1.0}


def pair(rows: int, joints: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and labels with residuals from tiny to many deltas (both sides of the Huber bend)."""
    rng = np.random.default_rng(seed)
    label = rng.standard_normal((rows, joints))
    return label + rng.standard_normal((rows, joints)) * rng.choice([0.01, 0.5, 5.0], (rows, joints)), label


def regression(rows: int, joints: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features and z-scored targets (what training learns) with a few outliers (what pseudo-Huber is for)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 4))
    y = np.stack([np.sin(x[:, j % 4]) * (j + 1) + 0.1 * rng.standard_normal(rows) for j in range(joints)], axis=1)
    y[rng.random(rows) < 0.05] += 4.0 * y.std(axis=0)
    return x, (y - y.mean(axis=0)) / y.std(axis=0)


def base_score(booster: xgb.Booster) -> np.ndarray:
    """The per-target intercept a booster starts from (XGBoost writes it as a JSON list of float32)."""
    return np.asarray(json.loads(json.loads(booster.save_config())["learner"]["learner_model_param"]["base_score"]))


# --- kernels against the twins ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rows, joints", [(37, 20), (1, 1), (65, 3)])
@pytest.mark.parametrize("with_sample_weight", [False, True])
def test_pseudo_huber_kernel_equals_twin(xp: ModuleType, dtype: type, rows: int, joints: int, with_sample_weight):
    pred, label = (a.astype(dtype) for a in pair(rows, joints, seed=rows))
    rng = np.random.default_rng(1)
    weights = rng.uniform(0.0, 2.0, joints)
    sample = rng.uniform(0.0, 3.0, rows).astype(dtype) if with_sample_weight else None
    grad, hess = pseudo_huber_grad_hess(
        xp.asarray(pred), xp.asarray(label), 0.7, xp.asarray(weights), None if sample is None else xp.asarray(sample)
    )
    assert grad.dtype == dtype and grad.shape == (rows, joints) and hess.shape == (rows, joints)
    want_grad, want_hess = pseudo_huber_twin(pred, label, 0.7, weights.astype(dtype), sample)
    np.testing.assert_allclose(host(grad), want_grad, **TOLERANCE[dtype])
    np.testing.assert_allclose(host(hess), want_hess, **TOLERANCE[dtype])


def test_pseudo_huber_with_unit_weights_is_xgboost_formula(xp: ModuleType):
    """XGBoost 3.2's reg:pseudohubererror: grad = z / sqrt(1 + z²/d²), hess = d² / ((d² + z²) sqrt(1 + z²/d²))."""
    pred, label = pair(40, 2, seed=5)
    d = 0.3
    grad, hess = pseudo_huber_grad_hess(xp.asarray(pred), xp.asarray(label), d, [1.0, 1.0])
    z = pred - label
    scale_sqrt = np.sqrt(1 + z**2 / d**2)
    np.testing.assert_allclose(host(grad), z / scale_sqrt, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(hess), d**2 / ((d**2 + z**2) * scale_sqrt), rtol=1e-12, atol=1e-12)


def test_kernel_as_objective_trains_like_builtin_pseudo_huber():
    """The emulated kernel as xgb.train's obj on one output: the same trees as reg:pseudohubererror."""
    x, y = regression(80, 1, seed=2)
    label = y.astype(np.float32)  # what XGBoost keeps and its built-in objective sees
    dtrain = xgb.DMatrix(x.astype(np.float32), label=label)
    params = {"tree_method": "hist", "nthread": 1, "max_depth": 3, "base_score": 0.2, "huber_slope": 0.8}

    def kernel_objective(predt: np.ndarray, _: xgb.DMatrix):
        return pseudo_huber_grad_hess(predt.reshape(-1, 1).astype(np.float64), label.astype(np.float64), 0.8, [1.0])

    builtin = xgb.train({**params, "objective": "reg:pseudohubererror"}, dtrain, 3)
    ours = xgb.train({**params, "objective": "reg:pseudohubererror"}, dtrain, 3, obj=kernel_objective)
    np.testing.assert_allclose(ours.predict(dtrain), builtin.predict(dtrain), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rows, joints, block", [(300, 20, None), (1, 1, None), (33, 3, 64), (130, 5, 96)])
def test_mae_per_joint_equals_numpy(xp: ModuleType, dtype: type, rows: int, joints: int, block: int | None):
    pred, label = (a.astype(dtype) for a in pair(rows, joints, seed=3))
    sums, count = abs_error_sums(xp.asarray(pred), xp.asarray(label), block=block)
    mae = mae_per_joint(xp.asarray(pred), xp.asarray(label))
    assert mae.dtype == np.float64 and mae.shape == (joints,) and int(host(count)[0]) == rows
    want = np.abs(pred.astype(np.float64) - label.astype(np.float64)).mean(axis=0)
    np.testing.assert_allclose(host(mae), want, **MAE_TOLERANCE[dtype])
    np.testing.assert_allclose(host(sums), want * rows, **MAE_TOLERANCE[dtype])


def test_mae_skips_rows_with_a_non_finite_label(xp: ModuleType):
    pred, label = pair(70, 4, seed=4)
    label[3, 1], label[40, 0], label[41, 3] = np.nan, np.inf, -np.inf
    pred[5, 2] = 1e30  # a huge but finite prediction still counts
    _, count = abs_error_sums(xp.asarray(pred), xp.asarray(label))
    assert int(host(count)[0]) == 67
    np.testing.assert_allclose(
        host(mae_per_joint(xp.asarray(pred), xp.asarray(label))), mae_per_joint_twin(pred, label)
    )
    nothing = mae_per_joint(xp.asarray(pred[:2]), xp.asarray(np.full((2, 4), np.nan)))
    assert np.isnan(host(nothing)).all()


def test_mae_per_finger_from_joint_numbers_equals_regression_metrics(xp: ModuleType):
    rng = np.random.default_rng(6)
    truth = rng.uniform(-1.0, 1.0, (40, 20))  # radians
    pred = truth + rng.normal(0.0, 0.1, truth.shape)
    truth[7, 4] = np.nan  # regression_metrics leaves the row out, and so does the kernel
    per_joint_deg = np.rad2deg(host(mae_per_joint(xp.asarray(pred), xp.asarray(truth))))
    metrics = regression_metrics(truth, pred, EMG2POSE_JOINTS)
    fingers = mae_per_finger(per_joint_deg, EMG2POSE_JOINTS)
    assert fingers.keys() == metrics["per_finger"].keys()
    for finger, value in metrics["per_finger"].items():
        assert fingers[finger] == pytest.approx(value, abs=1e-4)  # regression_metrics rounds to 1e-4 deg
    for j, name in enumerate(EMG2POSE_JOINTS):
        assert per_joint_deg[j] == pytest.approx(metrics["per_joint"][name]["mae_deg"], abs=1e-4)


def test_loaders_refuse_what_does_not_fit(xp: ModuleType):
    pred, label = (xp.asarray(a) for a in pair(10, 3))
    with pytest.raises(ValueError, match=r"pred must be \(rows, joints\)"):
        pseudo_huber_grad_hess(pred[:, 0], label[:, 0], 1.0, [1.0])
    with pytest.raises(ValueError, match=r"label must have the shape of pred \(10, 3\)"):
        pseudo_huber_grad_hess(pred, label[:, :2], 1.0, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"joint_weights must be \(3,\)"):
        pseudo_huber_grad_hess(pred, label, 1.0, [1.0, 1.0])
    with pytest.raises(ValueError, match=r"sample_weight must be \(10,\)"):
        pseudo_huber_grad_hess(pred, label, 1.0, [1.0] * 3, xp.ones(9))
    with pytest.raises(ValueError, match="delta must be a finite number > 0"):
        pseudo_huber_grad_hess(pred, label, 0.0, [1.0] * 3)
    with pytest.raises(ValueError, match="label must be a"):
        pseudo_huber_grad_hess(pred, host(label).tolist(), 1.0, [1.0] * 3)
    with pytest.raises(ValueError, match="at most 32 joints"):
        mae_per_joint(xp.zeros((2, 33)), xp.zeros((2, 33)))
    with pytest.raises(ValueError, match="multiple of 32"):
        abs_error_sums(pred, label, block=48)


# --- the objective and the metric XGBoost calls --------------------------------------------------------


def test_objective_and_metric_on_cpu_are_the_twins():
    pred, label = pair(50, 3, seed=8)
    sample = np.random.default_rng(0).uniform(0.5, 2.0, 50).astype(np.float32)  # as XGBoost keeps weights
    objective = PseudoHuberObjective(label, 0.5, [1.0, 2.0, 0.0], sample_weight=sample)
    grad, hess = objective(pred.astype(np.float32), xgb.DMatrix(np.zeros((50, 1))))
    want = pseudo_huber_twin(pred.astype(np.float32), label.astype(np.float32), 0.5, [1.0, 2.0, 0.0], sample)
    np.testing.assert_allclose(grad, want[0], rtol=1e-12)
    np.testing.assert_allclose(hess, want[1], rtol=1e-12)
    assert not grad[:, 2].any() and not hess[:, 2].any()  # a joint of weight 0 does not train

    single = PseudoHuberObjective(label[:, :1], 0.5)
    assert single(pred[:, 0].astype(np.float32), None)[0].shape == (50, 1)  # XGBoost's (n,) for one output
    with pytest.raises(ValueError, match="joint_weights must have 3 values"):
        PseudoHuberObjective(label, 0.5, [1.0])

    dmatrix = xgb.DMatrix(np.zeros((50, 1)), label=label)
    mae = np.abs(pred.astype(np.float32).astype(np.float64) - label.astype(np.float32)).mean(axis=0)
    assert JointMAE()(pred.astype(np.float32), dmatrix) == ("mae", pytest.approx(mae.mean(), rel=1e-12))
    std = [0.1, 0.2, 0.4]  # radians per z-unit
    degrees = JointMAE(target_std=std)
    degrees.add(dmatrix, label)
    name, value = degrees(pred.astype(np.float32), dmatrix)
    assert name == "mae_deg" and value == pytest.approx(np.mean(np.rad2deg(mae * std)), rel=1e-12)


# --- training through boost.fit ------------------------------------------------------------------------


def test_default_regression_parameters_are_unchanged():
    assert boost.BoostConfig(nthread=2).xgb_params("regression") == {
        "tree_method": "hist",
        "device": "cpu",
        "learning_rate": 0.1,
        "max_depth": 6,
        "min_child_weight": 1.0,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "reg_lambda": 1.0,
        "max_bin": 256,
        "seed": 0,
        "nthread": 2,
        "objective": "reg:squarederror",
        "eval_metric": "rmse",
        "multi_strategy": "one_output_per_tree",
    }


@pytest.mark.parametrize("joints, strategy", [(1, "one_output_per_tree"), (3, "one_output_per_tree"),
                                              (3, "multi_output_tree")])  # fmt: skip
def test_fit_pseudo_huber_on_cpu_equals_builtin_and_improves(joints: int, strategy: str):
    x, y = regression(240, joints, seed=joints)
    config = boost.BoostConfig(objective="pseudo_huber", huber_delta=0.8, multi_strategy=strategy, nthread=1, **QUICK)
    result = boost.fit(config, "regression", x, y)
    assert result.metric == "mae" and result.rounds_run == QUICK["num_rounds"]
    history = result.history["train"]
    assert history[-1] < history[0]

    # XGBoost's own pseudo-Huber on the same matrix: the same intercept (one Newton step from 0) and,
    # with every weight 1, the same trees up to float32 rounding of the gradients.
    params = {k: v for k, v in config.xgb_params("regression").items() if k != "disable_default_eval_metric"}
    builtin = xgb.train(params, boost.matrix(x, y), QUICK["num_rounds"])
    np.testing.assert_allclose(base_score(result.booster), base_score(builtin), rtol=1e-6, atol=1e-7)
    ours, theirs = boost.predict(result.booster, x, joints), boost.predict(builtin, x, joints)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)
    round_zero = np.abs(base_score(builtin) - y).mean()
    assert np.abs(ours - y).mean() < round_zero


def test_fit_pseudo_huber_early_stops_on_validation_mae_and_continues_from_a_model():
    x, y = regression(200, 3, seed=9)
    config = boost.BoostConfig(objective="pseudo_huber", nthread=1, early_stopping_rounds=2, **QUICK)
    first = boost.fit(config, "regression", x[:150], y[:150], x[150:], y[150:])
    assert set(first.history) == {"train", "val"} and len(first.history["val"]) == first.rounds_run
    best = int(np.argmin(first.history["val"])) + 1
    assert first.best_round == best and first.booster.num_boosted_rounds() == best
    more = boost.fit(config, "regression", x, y, init_model=first.booster)  # keeps the model's intercept
    assert more.rounds_run == best + QUICK["num_rounds"]
    np.testing.assert_array_equal(base_score(more.booster), base_score(first.booster))


def test_joint_weight_zero_leaves_that_joint_at_its_intercept():
    x, y = regression(150, 3, seed=10)
    config = boost.BoostConfig(objective="pseudo_huber", joint_weights=[1.0, 0.0, 2.0], nthread=1, **QUICK)
    result = boost.fit(config, "regression", x, y)
    pred = boost.predict(result.booster, x, 3)
    intercept = base_score(result.booster)  # 0 for the weight-0 joint: its gradient is 0 everywhere
    np.testing.assert_allclose(pred[:, 1], intercept[1], rtol=0, atol=1e-7)
    assert np.ptp(pred[:, 0]) > 0 and np.ptp(pred[:, 2]) > 0


def test_pseudo_huber_settings_that_cannot_work_are_refused():
    x, y = regression(30, 3)
    with pytest.raises(InvalidInput, match="joint_weights has 2 values but the targets have 3 joints"):
        boost.fit(boost.BoostConfig(objective="pseudo_huber", joint_weights=[1.0, 2.0], nthread=1), "regression", x, y)
    with pytest.raises(InvalidInput, match="objective=pseudo_huber is for regression only"):
        boost.fit(boost.BoostConfig(objective="pseudo_huber", nthread=1), "classification", x, y[:, 0] > 0,
                  num_class=2)  # fmt: skip
    with pytest.raises(InvalidInput, match="joint_weights applies to objective=pseudo_huber only"):
        boost.BoostConfig.from_dict({"joint_weights": [1.0, 1.0, 1.0]})
    with pytest.raises(InvalidInput, match="joint_weights must hold at least one weight > 0"):
        boost.BoostConfig.from_dict({"objective": "pseudo_huber", "joint_weights": [0.0, 0.0]})
    with pytest.raises(InvalidInput, match="joint_weights"):
        boost.BoostConfig.from_dict({"objective": "pseudo_huber", "joint_weights": [1.0, -1.0]})
    with pytest.raises(InvalidInput, match="huber_delta"):
        boost.BoostConfig.from_dict({"objective": "pseudo_huber", "huber_delta": 0})


def test_saved_model_carries_no_device_and_loads_on_a_cpu():
    """The model JSON the bundle writes (save_raw) holds trees, model parameters and the objective, never
    the device: a model trained on ``cuda`` loads and predicts on a CPU as it is. (Without a GPU, XGBoost
    falls back to the CPU with a warning; on a GPU machine this trains on the device.)"""
    x, y = regression(60, 2, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "No visible GPU is found" where there is none
        trained = boost.fit(boost.BoostConfig(device="cuda", nthread=1, **QUICK), "regression", x, y).booster
        raw = bytes(trained.save_raw("json"))
        trained.set_param({"device": "cpu"})
        want = boost.predict(trained, x, 2)
    model = json.loads(raw)
    assert "cuda" not in raw.decode() and "device" not in raw.decode()
    assert set(model["learner"]) == {
        "attributes", "feature_names", "feature_types", "gradient_booster", "learner_model_param", "objective"
    }  # fmt: skip
    loaded = xgb.Booster({"device": "cpu", "nthread": 1})
    loaded.load_model(bytearray(raw))
    np.testing.assert_array_equal(boost.predict(loaded, x, 2), want)


def test_device_branch_with_numpy_standing_in_for_cupy(monkeypatch: pytest.MonkeyPatch):
    """The ``cuda`` branch of the objective and the metric, run without a GPU: with NumPy in CuPy's place
    the kernels run on the emulation, and training must equal the CPU twin's."""
    monkeypatch.setitem(sys.modules, "cupy", np)
    x, y = regression(120, 3, seed=13)
    config = boost.BoostConfig(objective="pseudo_huber", huber_delta=0.8, joint_weights=[1.0, 0.5, 2.0], nthread=1,
                               **QUICK)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # XGBoost finds no GPU and trains on the CPU
        device = boost.fit(config.model_copy(update={"device": "cuda"}), "regression", x[:90], y[:90], x[90:], y[90:])
    cpu = boost.fit(config, "regression", x[:90], y[:90], x[90:], y[90:])
    np.testing.assert_allclose(base_score(device.booster), base_score(cpu.booster), rtol=1e-6, atol=1e-7)
    for split in ("train", "val"):
        np.testing.assert_allclose(device.history[split], cpu.history[split], rtol=1e-5)
    np.testing.assert_allclose(boost.predict(device.booster, x, 3), boost.predict(cpu.booster, x, 3), atol=1e-5)


# --- the device path (GPU machine only) ----------------------------------------------------------------


@pytest.mark.gpu
def test_fit_on_device_arrays_equals_builtin_and_predicts_from_cupy():
    cupy = cupy_or_skip()
    x, y = regression(400, 3, seed=12)
    config = boost.BoostConfig(objective="pseudo_huber", huber_delta=0.8, device="cuda", **QUICK)
    result = boost.fit(config, "regression", cupy.asarray(x), cupy.asarray(y), cupy.asarray(x[:100]),
                       cupy.asarray(y[:100]))  # fmt: skip
    params = {k: v for k, v in config.xgb_params("regression").items() if k != "disable_default_eval_metric"}
    builtin = xgb.train(params, boost.matrix(cupy.asarray(x), cupy.asarray(y)), QUICK["num_rounds"])
    np.testing.assert_allclose(base_score(result.booster), base_score(builtin), rtol=1e-6, atol=1e-7)
    ours = boost.predict(result.booster, cupy.asarray(x), 3)
    assert isinstance(ours, np.ndarray) and ours.dtype == np.float64 and ours.shape == (400, 3)
    np.testing.assert_allclose(ours, boost.predict(builtin, cupy.asarray(x), 3), rtol=0, atol=1e-4)
    history = result.history["train"]  # our MAE, computed by the kernel on the device each round
    assert history[-1] < history[0]
    np.testing.assert_allclose(history[result.best_round - 1], np.abs(ours - y).mean(), rtol=1e-4)
