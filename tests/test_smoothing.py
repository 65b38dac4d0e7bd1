"""Causal smoothing of successive answers: one filter offline, per stream and in chunks, chosen on validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emgpose.preprocess.job import run_preprocess
from emgpose.synth import SynthConfig, write_dataset
from emgpose.train import boost
from emgpose.train.bundle import Registry
from emgpose.train.job import run_train
from emgpose.train.predict import Predictor, predict
from emgpose.train.smoothing import Smoother, Smoothing, choose, smooth_rows


def test_a_stream_in_chunks_equals_the_offline_filter_per_session():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(60, 3))
    groups = np.array(["a"] * 30 + ["b"] * 30)
    order = np.concatenate([np.arange(30)[::-1], np.arange(30)])  # session a's rows stored backwards
    offline = smooth_rows(values, groups, order, 0.3)
    stream = Smoother(0.3)
    rows_b = np.flatnonzero(groups == "b")
    chunks = [stream(values[rows_b[lo:hi]]) for lo, hi in ((0, 1), (1, 13), (13, 30))]
    np.testing.assert_allclose(np.vstack(chunks), offline[rows_b])
    first_a = np.flatnonzero(groups == "a")[-1]  # the earliest window of session a: unsmoothed
    np.testing.assert_array_equal(offline[first_a], values[first_a])
    np.testing.assert_array_equal(smooth_rows(values, groups, order, 1.0), values)
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        Smoother(0.0)


def test_the_factor_is_chosen_by_the_validation_score():
    rng = np.random.default_rng(1)
    t = np.arange(400)
    slow = np.sin(t / 40.0)[:, None]
    noisy = slow + rng.normal(scale=0.5, size=slow.shape)
    groups, order = np.zeros(400, dtype=int), t
    chosen = choose(noisy, groups, order, lambda v: float(np.abs(v - slow).mean()), "test windows")
    assert chosen.alpha < 0.5 and chosen.chosen_on == "test windows"
    assert chosen.scores[f"{chosen.alpha:g}"] < chosen.scores["1"]
    fast = np.sign(np.sin(t / 1.5))[:, None]  # flips every window or two: smoothing only adds lag
    exact = choose(fast, groups, order, lambda v: float(np.abs(v - fast).mean()), "test windows")
    assert exact.alpha == 1.0
    assert Smoothing.from_dict(chosen.to_dict()) == chosen and Smoothing.from_dict(None).alpha == 1.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("smooth")
    write_dataset(SynthConfig(users=3, stages=2, sessions=2, duration_s=8.0, channels=4, seed=6), str(tmp / "raw"))
    run_preprocess(str(tmp / "raw"), str(tmp / "pre"))
    config = boost.BoostConfig(num_rounds=30, nthread=1)
    result = run_train(str(tmp / "pre"), str(tmp / "store"), "smooth", config=config)
    return result, tmp


def test_training_records_the_factor_and_every_path_applies_it(trained):
    result, tmp = trained
    report = json.loads(Path(result["report"].removeprefix("file://")).read_text())
    bundle = Registry(str(tmp / "store")).load("smooth")
    smoothing = bundle.smoothing
    assert smoothing.chosen_on == "validation windows" and set(smoothing.scores) == {"1", "0.8", "0.6", "0.45",
                                                                                    "0.3", "0.2", "0.12"}  # fmt: skip
    assert bundle.meta["smoothing"]["alpha"] == smoothing.alpha
    assert report["split"]["rules"]["val"] == "metadata"
    from emgpose.formats.session import SessionReader

    session = sorted((tmp / "raw").glob("*.hdf5"))[0]
    with SessionReader(session) as reader:
        emg = reader.read(0, 6000).emg
    whole = predict(bundle, emg).values
    stream = Predictor(bundle)
    parts = [stream.push(emg[lo:hi]).values for lo, hi in ((0, 700), (700, 2500), (2500, 6000))]
    np.testing.assert_allclose(np.vstack(parts), whole, rtol=1e-10, atol=1e-12)
    raw = Predictor(bundle)
    raw.smoother = Smoother(1.0)
    unsmoothed = raw.push(emg).values
    if smoothing.alpha < 1.0:
        assert not np.allclose(unsmoothed, whole)
        np.testing.assert_allclose(whole, smooth_rows(unsmoothed, np.zeros(len(whole)), np.arange(len(whole)),
                                                      smoothing.alpha))  # fmt: skip
