"""Per-session adaptation from unlabelled EMG: causal, the same offline and per stream, chosen on held-out users."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from emgpose.formats.metadata import METADATA_FILE, read_metadata, write_metadata
from emgpose.formats.session import SessionReader
from emgpose.preprocess.job import run_preprocess
from emgpose.synth import SynthConfig, write_dataset
from emgpose.train import boost
from emgpose.train.adaptation import FeatureAdaptation
from emgpose.train.bundle import Registry
from emgpose.train.data import WindowTable
from emgpose.train.job import run_train
from emgpose.train.predict import Predictor, predict


def test_running_normalisation_is_causal_chunk_free_and_takes_over_from_the_prior():
    rng = np.random.default_rng(0)
    population = rng.normal(size=(5000, 3))
    adaptation = FeatureAdaptation.fit(population)
    session = rng.normal(size=(800, 3)) * [3.0, 0.5, 1.0] + [4.0, 0.0, -2.0]  # another person's gains and offsets
    whole = adaptation.stream()(session)
    stream = adaptation.stream()
    parts = [stream(session[lo:hi]) for lo, hi in ((0, 1), (1, 57), (57, 800))]
    np.testing.assert_allclose(np.vstack(parts), whole, rtol=1e-5, atol=1e-5)
    # causal: changing a later window changes nothing before it
    later = session.copy()
    later[500:] += 100.0
    np.testing.assert_array_equal(adaptation.stream()(later)[:500], whole[:500])
    # the first window is scaled mostly like the population; the last ones like the session itself
    first_pop = (session[0] - adaptation.mean) / adaptation.std
    assert np.abs(whole[0] - first_pop).max() < np.abs(first_pop).max()
    tail = whole[400:]
    np.testing.assert_allclose(tail.mean(axis=0), 0.0, atol=0.25)
    np.testing.assert_allclose(tail.std(axis=0), 1.0, atol=0.25)
    assert FeatureAdaptation.from_dict(adaptation.to_dict()).prior_windows == adaptation.prior_windows
    assert FeatureAdaptation.from_dict(None) is None


def test_a_table_is_adapted_per_session_in_time_order():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(40, 2)).astype(np.float32)
    ends = np.concatenate([np.arange(20)[::-1], np.arange(20)])
    ids = {"session": np.array(["a"] * 20 + ["b"] * 20, dtype=object)}
    table = WindowTable(features, None, None, ends, ends / 10.0, ids)
    adaptation = FeatureAdaptation.fit(features)
    adapted = adaptation.apply_table(table)
    np.testing.assert_allclose(adapted.features[20:], adaptation.stream()(features[20:]), rtol=1e-6)
    np.testing.assert_allclose(adapted.features[:20][::-1], adaptation.stream()(features[:20][::-1]), rtol=1e-6)


@pytest.fixture(scope="module")
def held_out_val(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic sessions whose metadata puts one training user entirely in val (a held-out user)."""
    tmp = tmp_path_factory.mktemp("adapt")
    raw = tmp / "raw"
    write_dataset(SynthConfig(users=4, stages=2, sessions=1, duration_s=8.0, channels=4, seed=8), str(raw))
    rows = read_metadata((raw / METADATA_FILE).read_text())
    rows = [dataclasses.replace(r, split="val") if r.user == "user01" and r.split == "train" else r for r in rows]
    (raw / METADATA_FILE).write_text(write_metadata(rows))
    run_preprocess(str(raw), str(tmp / "pre"))
    return tmp


@pytest.mark.parametrize("mode", ["auto", "session", "none"])
def test_training_chooses_records_and_deploys_the_adaptation(held_out_val: Path, mode: str):
    store = held_out_val / f"store-{mode}"
    config = boost.BoostConfig(num_rounds=25, nthread=1, adaptation=mode)
    result = run_train(str(held_out_val / "pre"), str(store), "adapt", config=config)
    report = json.loads(Path(result["report"].removeprefix("file://")).read_text())
    choice = report["training"]["adaptation"]
    bundle = Registry(str(store)).load("adapt")
    assert choice["mode"] == mode
    if mode == "auto":
        assert choice["val_users"] == ["user01"]
        scores = choice[f"val_{report['training']['metric']}"]
        assert choice["used"] == (scores["session"] < scores["none"])
    assert choice["used"] == (mode == "session" or (mode == "auto" and choice["used"]))
    assert (bundle.adaptation is not None) == choice["used"]
    session = sorted((held_out_val / "raw").glob("*.hdf5"))[0]
    with SessionReader(session) as reader:
        emg = reader.read(0, 6000).emg
    whole = predict(bundle, emg).values
    stream = Predictor(bundle)
    parts = [stream.push(emg[lo:hi]).values for lo, hi in ((0, 900), (900, 3100), (3100, 6000))]
    np.testing.assert_allclose(np.vstack(parts), whole, rtol=1e-5, atol=1e-6)


def test_evaluating_an_adapted_model_scores_it_as_training_did(held_out_val: Path):
    from emgpose.train.job import run_evaluate

    store = held_out_val / "store-evaluate"
    config = boost.BoostConfig(num_rounds=25, nthread=1, adaptation="session")
    result = run_train(str(held_out_val / "pre"), str(store), "adapt", config=config)
    trained = json.loads(Path(result["report"].removeprefix("file://")).read_text())
    out = run_evaluate(f"adapt@{result['version']}", str(held_out_val / "pre"), str(store))
    evaluated = json.loads(Path(out["report"].removeprefix("file://")).read_text())
    want = trained["evaluation"]["test"]["overall"]["xgboost"]["mae_deg"]
    assert evaluated["evaluation"]["test"]["overall"]["xgboost"]["mae_deg"] == pytest.approx(want, rel=1e-9)
    assert evaluated["coverage"] == trained["coverage"]  # both on the raw features inference checks
