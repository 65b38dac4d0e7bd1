"""Gesture classification end to end on labelled sessions, and splits carved where metadata has none."""

import json

import numpy as np
import pytest

from emgpose.formats import MetadataRow, SessionWriter, write_metadata
from emgpose.preprocess.job import run_preprocess
from emgpose.train import boost
from emgpose.train.bundle import Registry
from emgpose.train.data import WindowTable, assign_splits
from emgpose.train.job import run_train
from emgpose.train.predict import predict

RATE, CHANNELS, CLASSES = 1000.0, 4, ("rest", "fist", "open")


def _gesture_session(path, seed: int, seconds: float = 12.0):
    """Class blocks of 1 s; each class drives its own channel pattern (rest: baseline only)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    label = np.repeat(np.arange(n // 1000) % 3, 1000)
    gains = np.array([[0.1, 0.1, 0.1, 0.1], [1.0, 0.8, 0.1, 0.1], [0.1, 0.2, 1.0, 0.9]])
    emg = (rng.normal(size=(n, CHANNELS)) * gains[label] * rng.uniform(0.8, 1.2)).astype(np.float32)
    with SessionWriter(
        path, sample_rate=RATE, num_channels=CHANNELS, joint_names=(), with_label=True, label_names=CLASSES
    ) as writer:
        writer.append(1000.0 * seed + np.arange(n) / RATE, emg, None, label)


@pytest.fixture(scope="module")
def gestures(tmp_path_factory):
    root = tmp_path_factory.mktemp("gestures")
    rows = []
    (root / "data").mkdir()
    for i, split in enumerate(["train", "train", "train", "val", "test"]):
        name = f"s{i}"
        _gesture_session(root / "data" / f"{name}.hdf5", i)
        rows.append(MetadataRow(filename=name, split=split, user="u1", session=name))
    (root / "data" / "metadata.csv").write_text(write_metadata(rows))
    run_preprocess(str(root / "data"), str(root / "pre"))
    return root


def test_classifier_learns_gestures_and_reports_a_confusion_matrix(gestures):
    config = boost.BoostConfig(num_rounds=20, max_depth=3, nthread=2)
    result = run_train(str(gestures / "pre"), str(gestures / "store"), "grip", config=config)
    assert result["task"] == "classification"
    folder = gestures / "store" / "models" / "grip" / result["version"]
    report = json.loads((folder / "report.json").read_text())
    test = report["evaluation"]["test"]["overall"]
    assert set(test) == {"xgboost", "logistic", "majority"}
    assert test["xgboost"]["accuracy"] > 0.9 > test["majority"]["accuracy"]
    assert np.array(test["xgboost"]["confusion"]).shape == (3, 3)
    assert report["evaluation"]["test"]["verdict"]["overall"]["metric"] == "macro_f1"
    assert (folder / "plots" / "confusion.png").exists()
    bundle = Registry(str(gestures / "store")).load("grip")
    assert bundle.class_names == list(CLASSES)
    rng = np.random.default_rng(0)
    fist = (rng.normal(size=(3000, CHANNELS)) * [1.0, 0.8, 0.1, 0.1]).astype(np.float32)
    out = predict(bundle, fist)
    np.testing.assert_allclose(out.values.sum(axis=1), 1.0, rtol=1e-5)
    assert out.classes[-1] == "fist"
    assert "p_rest,p_fist,p_open,class" in out.to_csv().splitlines()[0]


def _table(users, sessions, ends, split="train"):
    n = len(ends)
    return WindowTable(
        features=np.zeros((n, 1), np.float32),
        y=None,
        label=None,
        window_end=np.asarray(ends),
        t_end=np.asarray(ends, float),
        ids={
            "user": np.asarray(users, dtype=object),
            "session": np.asarray(sessions, dtype=object),
            "stage": np.full(n, "", dtype=object),
            "split": np.full(n, split, dtype=object),
            "generalization": np.full(n, "", dtype=object),
        },
    )


def test_without_metadata_splits_users_are_held_out_first():
    users = [f"u{i}" for i in range(10) for _ in range(3)]
    split = assign_splits(_table(users, users, list(range(30))), window_length=5, small_windows=0)
    held = {u for u, s in zip(users, split.assignment, strict=True) if s != "train"}
    assert split.rules["test"].startswith("users u8, u9") and split.rules["val"].startswith("users u6, u7")
    assert held == {"u6", "u7", "u8", "u9"}


def test_one_user_is_split_by_session():
    sessions = ["a"] * 4 + ["b"] * 4 + ["c"] * 4 + ["d"] * 4 + ["e"] * 4
    split = assign_splits(_table(["u"] * 20, sessions, list(range(20))), window_length=5, small_windows=0)
    assert split.rules["test"].startswith("sessions e") and split.rules["val"].startswith("sessions d")
    assert list(split.assignment[-8:]) == ["val"] * 4 + ["test"] * 4


def test_one_session_is_split_in_time_with_a_gap_of_one_window():
    ends = np.arange(99, 10_000, 50)  # windows of 100 samples every 50
    split = assign_splits(_table(["u"] * len(ends), ["s"] * len(ends), ends), window_length=100, small_windows=0)
    a = split.assignment
    assert split.rules["test"].startswith("chronological")
    first_test = ends[a == "test"].min()
    last_train_before = ends[(a == "train") & (ends < first_test)].max()
    # the last training window ends a whole window before the first test window starts
    assert last_train_before < (first_test - 100 + 1) - 100
    assert (a == "gap").sum() >= 2
    order = [s for s in a if s != "gap"]
    assert order == sorted(order, key=["train", "val", "test"].index)  # never interleaved


def test_metadata_splits_are_kept_as_given():
    table = _table(["u1", "u2", "u3"], ["a", "b", "c"], [1, 2, 3])
    table.ids["split"] = np.asarray(["train", "val", "test"], dtype=object)
    split = assign_splits(table, 1)
    assert list(split.assignment) == ["train", "val", "test"] and split.rules == {"test": "metadata", "val": "metadata"}


def test_three_users_or_fewer_never_lose_a_whole_user_to_a_held_out_split():
    users = ["u1"] * 40 + ["u2"] * 40 + ["u3"] * 40
    ends = list(range(99, 99 + 50 * 40, 50)) * 3
    split = assign_splits(_table(users, users, ends), window_length=100, small_windows=0)  # one session each
    assert split.rules["test"].startswith("chronological: last 20% of each session")
    assert split.rules["val"].startswith("chronological")
    for user in ("u1", "u2", "u3"):
        mine = split.assignment[np.asarray(users) == user]
        assert {"train", "val", "test"} <= set(mine)  # each user is in every part
    two_sessions = [f"{u}-{k}" for u in ("u1", "u2") for k in (1, 2) for _ in range(20)]
    split = assign_splits(_table([s[:2] for s in two_sessions], two_sessions, ends[:80]), 100, small_windows=0)
    assert split.rules["test"] == "sessions u2-2 (the metadata has no test split)"  # u2 keeps u2-1


def test_small_data_is_validated_by_blocked_folds_with_a_gap_and_no_val_part():
    ends = np.arange(99, 99 + 25 * 60, 25)  # 60 windows of 100 samples every 25, in each of two sessions
    table = _table(["u"] * 120, ["a"] * 60 + ["b"] * 60, np.concatenate([ends, ends]))
    table.ids["split"][100:] = "test"
    split = assign_splits(table, window_length=100)
    assert split.rules["test"] == "metadata" and split.rules["val"].startswith("cross-validation: 100 training")
    assert not split.rows("val").any() and split.rows("train").sum() == 100  # every training window is used
    assert len(split.folds) == 4
    seen = np.concatenate([val for _, val in split.folds])
    assert sorted(seen.tolist()) == np.flatnonzero(split.rows("train")).tolist()  # each once
    for train, val in split.folds:
        assert not set(train) & set(val)
        for session in ("a", "b"):
            v = val[table.ids["session"][val] == session]
            t = train[table.ids["session"][train] == session]
            first_val_sample, last_val_sample = table.window_end[v].min() - 99, table.window_end[v].max()
            starts, stops = table.window_end[t] - 99, table.window_end[t]
            assert ((stops < first_val_sample) | (starts > last_val_sample)).all()  # no shared sample
