"""The compiled model backend: the booster as generated C through gcc gives XGBoost's own answers."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb
from inference_support import NAME, recording

from emgpose.errors import InvalidInput, Unavailable
from emgpose.settings import get_settings
from emgpose.train.adaptation import FeatureAdaptation
from emgpose.train.bundle import Bundle, Registry
from emgpose.train.compiled import compile_booster, gcc, runner
from emgpose.train.predict import Predictor

pytestmark = pytest.mark.skipif(gcc() is None, reason="gcc is not installed: the compiled backend needs a C compiler")


def _rows(n: int = 300, d: int = 48, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    x[::7, 3] = np.nan  # missing values take each split's default branch
    return x


def _booster(params: dict, y: np.ndarray, rounds: int = 12) -> xgb.Booster:
    base = {"tree_method": "hist", "max_depth": 5, "nthread": 1, "seed": 0}
    return xgb.train({**base, **params}, xgb.DMatrix(_rows(), y), num_boost_round=rounds)


JOINTS = np.random.default_rng(1).standard_normal((300, 20)).astype(np.float32)
CASES = {
    "regression, one output per tree": ({"multi_strategy": "one_output_per_tree"}, JOINTS, 20),
    "regression, multi-output trees": ({"multi_strategy": "multi_output_tree", "max_depth": 3}, JOINTS, 20),
    "regression, pseudo-Huber": ({"objective": "reg:pseudohubererror", "huber_slope": 1.0}, JOINTS, 20),
    "classification": ({"objective": "multi:softprob", "num_class": 4}, np.arange(300) % 4, 4),
}


@pytest.mark.parametrize("case", CASES)
def test_compiled_equals_inplace_predict(case, tmp_path):
    params, y, outputs = CASES[case]
    booster = _booster(params, y)
    compiled = compile_booster(booster, outputs, tmp_path)
    x = _rows(seed=2)
    expected = booster.inplace_predict(x)
    got = compiled.predict(x)
    assert got.shape == expected.shape == (len(x), outputs)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    assert compiled.predict(x[:0]).shape == (0, outputs)


def test_the_library_is_cached_by_booster_hash(tmp_path):
    booster = _booster(*CASES["classification"][:2], rounds=7)  # not built by another test of this process
    first = compile_booster(booster, 4, tmp_path)
    assert compile_booster(booster, 4, tmp_path) is first
    assert [p.name for p in tmp_path.iterdir()] == [first.library.name]
    other = compile_booster(booster[0:4], 4, tmp_path)  # a different booster is a different library
    assert other.library != first.library
    assert not np.allclose(other.predict(_rows()), first.predict(_rows()))


def test_wrong_feature_count_is_refused(tmp_path):
    compiled = compile_booster(_booster(*CASES["classification"][:2]), 4, tmp_path)
    with pytest.raises(InvalidInput, match="rows of 48 features"):
        compiled.predict(np.zeros((2, 47), dtype=np.float32))


def test_backend_names_and_missing_compiler(tmp_path, monkeypatch):
    booster = _booster(*CASES["classification"][:2])
    with pytest.raises(InvalidInput, match="xgboost, compiled or auto"):
        runner(booster, 4, "treelite", tmp_path)
    monkeypatch.setenv("CC", "emgpose-no-such-compiler")
    with pytest.raises(Unavailable, match="needs a C compiler"):
        runner(booster[0:3], 4, "compiled", tmp_path)
    auto = runner(booster[0:3], 4, "auto", tmp_path)  # falls back to XGBoost without a compiler
    np.testing.assert_allclose(auto(_rows()), booster[0:3].inplace_predict(_rows()), atol=1e-7)
    monkeypatch.delenv("CC")
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")  # the cache cannot be created: auto serves through XGBoost instead of failing
    auto = runner(booster[0:2], 4, "auto", blocked)
    np.testing.assert_allclose(auto(_rows()), booster[0:2].inplace_predict(_rows()), atol=1e-7)
    with pytest.raises(Unavailable, match="COMPILED_CACHE_DIR .*not-a-folder"):
        runner(booster[0:2], 4, "compiled", blocked)


def _stateful(bundle: Bundle) -> Bundle:
    """The bundle with smoothing and the per-session feature adaptation switched on (both carry state)."""
    stream = Predictor(bundle, backend="xgboost").prepare(recording(3.0, seed=5))
    meta = {
        **bundle.meta,
        "smoothing": {"kind": "exponential", "alpha": 0.4},
        "adaptation": FeatureAdaptation.fit(stream.features).to_dict(),
    }
    return Bundle(meta=meta, booster=bundle.booster, uri=bundle.uri)


def test_predictor_gives_the_same_stream_either_way(train_model, tmp_path, monkeypatch):
    monkeypatch.setenv("COMPILED_CACHE_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        bundle = _stateful(Registry(train_model[1]).load(NAME))
        emg = recording(4.0, seed=9)
        results = {}
        for backend in ("xgboost", "compiled", "auto"):
            predictor = Predictor(bundle, backend=backend)
            chunks = [predictor.push(emg[i : i + 700]).values for i in range(0, len(emg), 700)]
            results[backend] = np.vstack(chunks)
        assert len(results["xgboost"]) > 20
        np.testing.assert_allclose(results["compiled"], results["xgboost"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(results["auto"], results["xgboost"], rtol=0, atol=1e-5)
        assert [p.suffix for p in tmp_path.iterdir()] == [".so"]  # one build shared by compiled and auto
        monkeypatch.setenv("MODEL_BACKEND", "compiled")
        get_settings.cache_clear()
        assert Predictor(bundle).booster == Predictor(bundle, backend="compiled").booster
    finally:
        get_settings.cache_clear()
