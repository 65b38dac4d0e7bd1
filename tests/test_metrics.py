"""Metrics: hand-computed regression and classification answers, agreement with a direct NumPy computation on
random data, exclusions, input rules, grouping, JSON types."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from emgpose.formats.joints import EMG2POSE_JOINTS
from emgpose.train.metrics import classification_metrics, grouped, regression_metrics

RAD = math.pi / 180.0


def _plain_types(value) -> None:
    """Fails on anything json would not write natively (numpy scalars included)."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            _plain_types(item)
    elif isinstance(value, list):
        for item in value:
            _plain_types(item)
    else:
        assert value is None or type(value) in (int, float, str), f"{value!r} is {type(value)}"


def _truth(n=12, joints=3, seed=0):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, joints))


# ---------------------------------------------------------------------------------------------------
# Regression
# ---------------------------------------------------------------------------------------------------


def test_constant_one_degree_error_gives_one_degree():
    truth = _truth()
    out = regression_metrics(truth, truth + RAD, ["a", "b", "c"])
    assert out["windows"] == 12 and out["excluded_windows"] == 0
    assert out["mae_deg"] == pytest.approx(1.0, abs=1e-4)
    assert out["rmse_deg"] == pytest.approx(1.0, abs=1e-4)
    for name in "abc":
        assert out["per_joint"][name]["mae_deg"] == pytest.approx(1.0, abs=1e-4)
    sst = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
    expected_r2 = 1.0 - 12 * RAD**2 / sst
    assert [out["per_joint"][n]["r2"] for n in "abc"] == pytest.approx(expected_r2, abs=1e-6)
    assert out["r2_mean"] == pytest.approx(expected_r2.mean(), abs=1e-6)


def test_mixed_errors_mae_and_rmse_by_hand():
    truth = np.zeros((2, 2))
    pred = np.array([[1.0, -3.0], [-1.0, 3.0]]) * RAD
    out = regression_metrics(truth, pred, ["x", "y"])
    assert out["mae_deg"] == pytest.approx(2.0)  # (1 + 3 + 1 + 3) / 4
    assert out["rmse_deg"] == pytest.approx(math.sqrt(5.0), abs=1e-4)  # sqrt((1 + 9 + 1 + 9) / 4)
    assert out["per_joint"]["x"]["mae_deg"] == pytest.approx(1.0)
    assert out["per_joint"]["y"]["rmse_deg"] == pytest.approx(3.0)
    assert out["per_joint"]["x"]["r2"] is None  # constant truth: SST = 0
    assert out["r2_mean"] is None


def test_r2_perfect_is_one_and_mean_prediction_is_zero():
    truth = _truth()
    perfect = regression_metrics(truth, truth.copy(), ["a", "b", "c"])
    assert perfect["mae_deg"] == 0.0
    assert perfect["r2_mean"] == 1.0
    assert all(v["r2"] == 1.0 for v in perfect["per_joint"].values())

    mean_pred = np.broadcast_to(truth.mean(axis=0), truth.shape)
    baseline = regression_metrics(truth, mean_pred, ["a", "b", "c"])
    assert baseline["r2_mean"] == pytest.approx(0.0, abs=1e-9)
    assert all(v["r2"] == pytest.approx(0.0, abs=1e-9) for v in baseline["per_joint"].values())


def test_r2_mean_skips_constant_joints():
    truth = _truth(joints=2)
    truth[:, 1] = 0.3
    out = regression_metrics(truth, truth.copy(), ["a", "b"])
    assert out["per_joint"]["b"]["r2"] is None
    assert out["per_joint"]["a"]["r2"] == 1.0
    assert out["r2_mean"] == 1.0


def test_non_finite_truth_rows_are_excluded_and_counted():
    truth = np.zeros((5, 2))
    pred = np.full((5, 2), 2.0 * RAD)
    truth[1, 0] = np.nan
    truth[3, 1] = np.inf
    pred[1] = 100.0  # huge error on an excluded row must not count
    pred[3] = np.nan  # a NaN prediction on an excluded row is harmless
    out = regression_metrics(truth, pred, ["a", "b"])
    assert out["windows"] == 3
    assert out["excluded_windows"] == 2
    assert out["mae_deg"] == pytest.approx(2.0)


def test_all_rows_excluded_gives_none_values():
    truth = np.full((3, 2), np.nan)
    out = regression_metrics(truth, np.zeros((3, 2)), ["a", "b"])
    assert out == {
        "windows": 0,
        "excluded_windows": 3,
        "mae_deg": None,
        "rmse_deg": None,
        "r2_mean": None,
        "per_joint": {},
        "per_finger": {},
    }
    empty = regression_metrics(np.zeros((0, 2)), np.zeros((0, 2)), ["a", "b"])
    assert empty["windows"] == 0 and empty["excluded_windows"] == 0 and empty["mae_deg"] is None


def test_per_finger_groups_emg2pose_joints():
    joints = list(EMG2POSE_JOINTS)
    truth = np.zeros((4, len(joints)))
    pred = np.tile(np.arange(len(joints), dtype=np.float64) * RAD, (4, 1))  # joint j is off by j degrees
    out = regression_metrics(truth, pred, joints)
    # thumb = joints 0..3, index 4..7, middle 8..11, ring 12..15, pinky 16..19
    assert out["per_finger"] == pytest.approx(
        {"thumb": 1.5, "index": 5.5, "middle": 9.5, "ring": 13.5, "pinky": 17.5}, abs=1e-4
    )
    assert out["per_joint"]["RING_PIP_FE"]["mae_deg"] == pytest.approx(14.0, abs=1e-4)


def test_per_finger_omits_unmapped_joints_and_may_be_empty():
    truth = np.zeros((2, 3))
    pred = np.array([[1.0, 5.0, 9.0]] * 2) * RAD
    mixed = regression_metrics(truth, pred, ["WRIST_FE", "INDEX_MCP_FE", "elbow"])
    assert mixed["per_finger"] == pytest.approx({"index": 5.0}, abs=1e-4)
    none = regression_metrics(truth, pred, ["a", "b", "c"])
    assert none["per_finger"] == {}
    assert none["mae_deg"] == pytest.approx(5.0, abs=1e-4)


def test_regression_output_is_json_ready():
    truth = _truth(joints=len(EMG2POSE_JOINTS))
    truth[0, 0] = np.nan
    out = regression_metrics(truth, truth * 0.9, EMG2POSE_JOINTS)
    _plain_types(out)
    assert json.loads(json.dumps(out, allow_nan=False)) == out


def test_regression_agrees_with_numpy_on_random_data():
    rng = np.random.default_rng(3)
    joints = list(EMG2POSE_JOINTS)
    for n in (2, 7, 500):
        truth = rng.normal(size=(n, len(joints)))
        pred = truth * rng.uniform(0.2, 1.5) + rng.normal(size=truth.shape) * rng.uniform(0.01, 1.0)
        out = regression_metrics(truth, pred, joints)
        err = np.degrees(pred - truth)
        r2 = 1.0 - ((pred - truth) ** 2).sum(axis=0) / ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
        assert out["mae_deg"] == pytest.approx(np.abs(err).mean(), abs=1e-4)
        assert out["rmse_deg"] == pytest.approx(np.sqrt((err**2).mean()), abs=1e-4)
        assert out["r2_mean"] == pytest.approx(r2.mean(), abs=1e-6)
        for j, name in enumerate(joints):
            assert out["per_joint"][name] == pytest.approx(
                {"mae_deg": np.abs(err[:, j]).mean(), "rmse_deg": np.sqrt((err[:, j] ** 2).mean()), "r2": r2[j]},
                abs=1e-4,
            )
        assert out["per_finger"]["ring"] == pytest.approx(np.abs(err[:, 12:16]).mean(), abs=1e-4)


@pytest.mark.parametrize(
    ("truth", "pred", "names", "match"),
    [
        (np.zeros((3, 2)), np.zeros((3, 3)), ["a", "b"], "shape"),
        (np.zeros((3, 2)), np.zeros((2, 2)), ["a", "b"], "shape"),
        (np.zeros(3), np.zeros(3), ["a"], "2-D"),
        (np.zeros((3, 2)), np.zeros((3, 2)), ["a", "b", "c"], "joint_names has 3"),
        (np.zeros((3, 2)), np.zeros((3, 2)), ["a", "a"], "unique"),
    ],
)
def test_regression_rejects_mismatches(truth, pred, names, match):
    with pytest.raises(ValueError, match=match):
        regression_metrics(truth, pred, names)


def test_regression_rejects_non_finite_predictions_on_used_rows():
    pred = np.zeros((3, 2))
    pred[2, 1] = np.nan
    with pytest.raises(ValueError, match="y_pred must be finite"):
        regression_metrics(np.zeros((3, 2)), pred, ["a", "b"])


# ---------------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------------


def _proba_for(predicted, n_classes, top=0.7):
    """Rows with ``top`` on the predicted class and the rest shared evenly."""
    rest = (1.0 - top) / (n_classes - 1)
    proba = np.full((len(predicted), n_classes), rest)
    proba[np.arange(len(predicted)), predicted] = top
    return proba


def test_three_class_example_by_hand():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2])
    out = classification_metrics(y_true, _proba_for(predicted, 3), ["a", "b", "c"])
    # rows = true, columns = predicted; the lone a->b error sits at [0][1], not [1][0]
    assert out["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert out["windows"] == 6
    assert out["accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    pc = out["per_class"]
    # a: tp 2 of 2 called, 3 true; b: 1 of 2 called, 2 true; c: 1 of 2 called, 1 true
    assert pc["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}, abs=1e-6)
    assert pc["b"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}, abs=1e-6)
    assert pc["c"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1}, abs=1e-6)
    assert out["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3, abs=1e-6)
    # four rows give the true class 0.7, two give it 0.15
    assert out["log_loss"] == pytest.approx(-(4 * math.log(0.7) + 2 * math.log(0.15)) / 6, abs=1e-6)
    assert out["class_names"] == ["a", "b", "c"]
    _plain_types(out)
    assert json.loads(json.dumps(out, allow_nan=False)) == out


def test_zero_division_classes_and_macro_f1_over_present_classes():
    y_true = np.array([0, 0, 1])
    predicted = np.array([0, 2, 1])  # class c is predicted but never true; class d never appears
    out = classification_metrics(y_true, _proba_for(predicted, 4), ["a", "b", "c", "d"])
    pc = out["per_class"]
    assert pc["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert pc["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert pc["a"]["f1"] == pytest.approx(2 / 3, abs=1e-6)
    # d takes no part in the mean, c (predicted once) does: (2/3 + 1 + 0) / 3
    assert out["macro_f1"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3, abs=1e-6)


def test_log_loss_floors_zero_probability():
    out = classification_metrics(np.array([1]), np.array([[1.0, 0.0]]), ["a", "b"])
    assert out["log_loss"] == pytest.approx(-math.log(1e-15), abs=1e-6)
    assert out["accuracy"] == 0.0


def test_classification_with_no_windows():
    out = classification_metrics(np.zeros(0, dtype=int), np.zeros((0, 2)), ["a", "b"])
    assert out["windows"] == 0
    assert out["accuracy"] is None and out["macro_f1"] is None and out["log_loss"] is None
    assert out["confusion"] == [[0, 0], [0, 0]]


def test_classification_agrees_with_numpy_on_random_data():
    rng = np.random.default_rng(4)
    names = [f"g{c}" for c in range(6)]
    for n in (1, 9, 400):
        y_true = rng.integers(0, 5, size=n)  # class g5 is never true
        logits = rng.normal(size=(n, 6)) * 3.0
        logits[np.arange(n), y_true] += 2.0
        proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        out = classification_metrics(y_true, proba, names)
        predicted = proba.argmax(axis=1)
        confusion = np.zeros((6, 6), dtype=int)
        for t, p in zip(y_true, predicted, strict=True):
            confusion[t, p] += 1
        assert out["confusion"] == confusion.tolist()
        assert out["accuracy"] == pytest.approx(np.mean(predicted == y_true), abs=1e-6)
        assert out["log_loss"] == pytest.approx(-np.log(proba[np.arange(n), y_true]).mean(), abs=1e-6)
        f1s = []
        for c, name in enumerate(names):
            tp, called, true = confusion[c, c], confusion[:, c].sum(), confusion[c].sum()
            precision, recall = (tp / called if called else 0.0), (tp / true if true else 0.0)
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            assert out["per_class"][name] == pytest.approx(
                {"precision": precision, "recall": recall, "f1": f1, "support": int(true)}, abs=1e-6
            )
            if called or true:
                f1s.append(f1)
        assert out["macro_f1"] == pytest.approx(np.mean(f1s), abs=1e-6)


def test_float32_probabilities_are_accepted():
    """A float32 softmax sums to 1 only within ~1e-7; the figures are those of the exact rows."""
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(50, 7)).astype(np.float32) * 4
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert proba.dtype == np.float32 and np.abs(proba.astype(np.float64).sum(axis=1) - 1).max() > 1e-8
    y_true = rng.integers(0, 7, size=50)
    out = classification_metrics(y_true, proba, list("abcdefg"))
    exact = proba.astype(np.float64) / proba.astype(np.float64).sum(axis=1, keepdims=True)
    assert out["log_loss"] == pytest.approx(-np.log(exact[np.arange(50), y_true]).mean(), abs=1e-6)


def test_single_class_scores_perfectly():
    out = classification_metrics(np.zeros(3, dtype=int), np.ones((3, 1)), ["only"])
    assert out["accuracy"] == 1.0 and out["macro_f1"] == 1.0 and out["log_loss"] == 0.0
    assert out["confusion"] == [[3]]


@pytest.mark.parametrize(
    ("y_true", "proba", "match"),
    [
        (np.array([0, 1]), np.full((2, 2), 0.5), r"shape \(n, C\)"),
        (np.array([0, 1, 0]), np.full((2, 3), 0.3), r"shape \(n, C\)"),
        (np.array([0, 3]), np.full((2, 3), 0.3), r"\[0, 3\)"),
        (np.array([0, -1]), np.full((2, 3), 0.3), r"\[0, 3\)"),
        (np.array([[0, 1]]), np.full((2, 3), 0.3), "1-D"),
        (np.array([0.5, 1.0]), np.full((2, 3), 1 / 3), "integer"),
        (np.array([0, 1]), np.array([[1.2, -0.2, 0.0], [0.0, 1.0, 0.0]]), r"proba must lie in \[0, 1\]"),
        (np.array([0, 1]), np.array([[0.5, 0.3, 0.0], [0.0, 1.0, 0.0]]), "proba rows must sum to 1 .*0.8"),
        (np.array([0, 1]), np.array([[np.nan, 0.5, 0.5], [0.0, 1.0, 0.0]]), "finite"),
    ],
)
def test_classification_rejects_bad_input(y_true, proba, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(y_true, proba, ["a", "b", "c"])


# ---------------------------------------------------------------------------------------------------
# Grouping
# ---------------------------------------------------------------------------------------------------


def test_grouped_calls_fn_per_non_empty_group_with_sorted_keys():
    groups = np.array(["u2", "u1", "", "u2", "u1", "u2"])
    seen = {}

    def fn(mask):
        seen[len(seen)] = mask
        return {"rows": np.flatnonzero(mask).tolist()}

    out = grouped(groups, fn)
    assert list(out) == ["u1", "u2"]
    assert out == {"u1": {"rows": [1, 4]}, "u2": {"rows": [0, 3, 5]}}
    assert all(m.dtype == bool and m.shape == groups.shape for m in seen.values())


def test_grouped_skips_missing_values_in_object_arrays_and_feeds_metrics():
    groups = np.array(["s1", None, "s0", "s1"], dtype=object)
    truth = np.zeros((4, 1))
    pred = np.array([[1.0], [50.0], [3.0], [1.0]]) * RAD
    out = grouped(groups, lambda m: regression_metrics(truth[m], pred[m], ["INDEX_PIP_FE"]))
    assert list(out) == ["s0", "s1"]
    assert out["s0"]["mae_deg"] == pytest.approx(3.0, abs=1e-4)
    assert out["s1"]["mae_deg"] == pytest.approx(1.0, abs=1e-4)
    assert out["s1"]["windows"] == 2
    assert grouped(np.array(["", ""]), lambda m: {}) == {}
