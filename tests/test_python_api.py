"""The notebook API (emgpose.load_dataset / preprocess / train / load_model), the scikit-learn
estimators, and the worked example of docs/python-api.md, run as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import SkipTestWarning
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.utils.estimator_checks import check_estimator

import emgpose
from emgpose.errors import InvalidInput, NotFound
from emgpose.estimator import EmgPoseClassifier, EmgPoseRegressor, windows_from_recording
from emgpose.formats.session import SessionReader
from emgpose.synth import SynthConfig, write_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY = SynthConfig(users=3, stages=2, sessions=1, duration_s=3.0, channels=4, seed=5)
QUICK = {"num_rounds": 10, "max_depth": 3, "nthread": 1}


def test_import_emgpose_loads_no_heavy_module() -> None:
    code = (
        "import json, sys, emgpose; emgpose.load_dataset; emgpose.load_model; "
        "print(json.dumps([m for m in ('xgboost', 'scipy', 'matplotlib', 'pyarrow', 'sklearn') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
    assert {"load_dataset", "preprocess", "train", "load_model", "EmgPoseRegressor"} <= set(dir(emgpose))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        emgpose.nope  # noqa: B018


def test_preprocess_and_train_are_callable_packages() -> None:
    assert callable(emgpose.preprocess) and callable(emgpose.train)
    assert "mav" in emgpose.preprocess.FEATURES  # still the package
    from emgpose.train.job import run_train

    assert emgpose.train.job.run_train is run_train


def test_round_trip_load_preprocess_train_predict(tmp_path: Path) -> None:
    write_dataset(TINY, str(tmp_path / "data"))
    with emgpose.load_dataset(tmp_path / "data") as data:
        assert (data.layout.num_channels, len(data.sessions)) == (4, 6)
        processed = emgpose.preprocess(data, out=tmp_path / "pre", config={"features": ["mav", "wl", "log_rms"]})
        session = data.sessions[0].path
    assert processed.uri == str(tmp_path / "pre") and (tmp_path / "pre" / "summary.json").exists()
    assert processed.feature_names == [f"f_{f}_c{c:02d}" for f in ("mav", "wl", "log_rms") for c in range(4)]
    assert processed.load().table.features.shape[1] == 12

    store = tmp_path / "store"
    trained = emgpose.train(processed, name="hand", store=store, **QUICK)
    assert trained.result is not None and trained.result["version"] == trained.version
    assert (store / "models" / "hand" / trained.version / "bundle.json").exists()

    by_name = emgpose.load_model("hand", store=store)
    by_path = emgpose.load_model(store / "models" / "hand" / trained.version)
    assert by_name.version == by_path.version == trained.version
    assert by_name.names == processed.joint_names

    with SessionReader(session) as reader:
        emg = reader.read().emg
    pred = by_name.predict(emg)
    length, stride = 400, 100  # 200 ms and 50 ms at 2 kHz, the default windows
    assert len(pred) == (len(emg) - length) // stride + 1
    assert pred.values.shape == (len(pred), 20) and np.isfinite(pred.values).all()
    assert np.all(np.diff(pred.t_end) > 0) and pred.window_end[0] == length - 1
    np.testing.assert_array_equal(pred.values, by_path.predict(emg).values)

    chunked = by_name.stream()  # the same windows, fed in two chunks
    parts = [chunked.push(emg[:1000]), chunked.push(emg[1000:])]
    np.testing.assert_allclose(np.concatenate([p.values for p in parts]), pred.values, rtol=1e-6, atol=1e-9)


def test_api_refusals_name_what_was_wrong(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="model 'ghost' not found"):
        emgpose.load_model("ghost", store=tmp_path)
    with pytest.raises(InvalidInput, match="num_roundz"):
        emgpose.train(tmp_path, name="x", store=tmp_path, num_roundz=3)
    with pytest.raises(InvalidInput, match="features"):
        emgpose.preprocess(tmp_path, out=tmp_path / "o", config={"features": ["nope"]})
    with pytest.raises(NotFound, match="metadata.csv"):
        emgpose.load_dataset(tmp_path)


def _amplitude_windows(n: int, channels: int = 2, length: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise windows whose amplitude is the target: what EMG features exist to pick up."""
    rng = np.random.default_rng(seed)
    amplitude = rng.uniform(0.5, 3.0, n)
    return rng.normal(size=(n, channels, length)) * amplitude[:, None, None], amplitude


def test_regressor_learns_amplitude_and_tunes_in_grid_search() -> None:
    X, y = _amplitude_windows(240)
    reg = EmgPoseRegressor(num_rounds=30, max_depth=3, nthread=1)
    scores = cross_val_score(reg, X, y, cv=KFold(3), scoring="neg_mean_absolute_error")
    baseline = np.mean(np.abs(y - y.mean()))
    assert np.all(-scores < 0.3 * baseline), (scores, baseline)

    search = GridSearchCV(reg, {"num_rounds": [1, 30]}, cv=KFold(3), scoring="neg_mean_absolute_error")
    search.fit(X, y)
    assert search.best_params_ == {"num_rounds": 30}
    assert search.best_estimator_.predict(X[:5]).shape == (5,)

    two = EmgPoseRegressor(**QUICK).fit(X, np.stack([y, -y], axis=1))
    assert two.predict(X[:4]).shape == (4, 2)


def test_classifier_separates_quiet_from_active() -> None:
    X, amplitude = _amplitude_windows(160, seed=1)
    labels = np.where(amplitude > 1.75, "grip", "rest")
    clf = EmgPoseClassifier(**QUICK).fit(X[:120], labels[:120])
    assert list(clf.classes_) == ["grip", "rest"]
    assert np.mean(clf.predict(X[120:]) == labels[120:]) > 0.9
    np.testing.assert_allclose(clf.predict_proba(X[120:]).sum(axis=1), 1.0, rtol=1e-5)


def test_estimator_params_and_refusals() -> None:
    reg = EmgPoseRegressor(sample_rate=1000.0, preprocess={"features": ["rms", "zc"]}, num_rounds=5)
    assert reg.get_params()["preprocess"] == {"features": ["rms", "zc"]}
    assert clone(reg).set_params(max_depth=2).get_params()["max_depth"] == 2
    X, y = _amplitude_windows(20, length=100)
    with pytest.raises(InvalidInput, match="context"):
        EmgPoseRegressor(preprocess={"context": 2}).fit(X, y)
    with pytest.raises(InvalidInput, match="learning_rate"):
        EmgPoseRegressor(learning_rate=5.0).fit(X, y)
    fitted = EmgPoseRegressor(**QUICK).fit(X, y)
    with pytest.raises(ValueError, match=r"fitted on \(2, 100\)"):
        fitted.predict(X[:, :, :50])
    with pytest.raises(InvalidInput, match="stride"):
        windows_from_recording(np.zeros((10, 2)), None, length=20, stride=5)
    windows, targets = windows_from_recording(np.arange(24.0).reshape(12, 2), np.arange(12.0), length=4, stride=3)
    assert windows.shape == (3, 2, 4) and list(targets) == [3.0, 6.0, 9.0]
    np.testing.assert_array_equal(windows[1, 0], [6.0, 8.0, 10.0, 12.0])


@pytest.mark.parametrize("estimator", [EmgPoseRegressor, EmgPoseClassifier], ids=lambda e: e.__name__)
def test_scikit_learn_check_estimator(estimator: type) -> None:
    """Every check that applies passes; the only skips are the environment's (array API, pandas)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkipTestWarning)
        results = check_estimator(estimator(num_rounds=5, nthread=1), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert failed == []
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    environment = {"check_array_api_input", "check_regressor_data_not_an_array", "check_classifier_data_not_an_array"}
    assert skipped <= environment
    assert sum(r["status"] == "passed" for r in results) >= 45


def test_docs_python_api_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "docs" / "python-api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/python-api.md block {i + 1}", "exec"), namespace)  # noqa: S102
    assert namespace["pred"].degrees.shape[1] == 20
    assert namespace["search"].best_params_["max_depth"] in (2, 3)
    assert (tmp_path / "runs" / "store" / "models" / "hand" / "latest").exists()


DOC_PAGES = ("architecture.md", "api.md", "python-api.md", "formats.md", "preprocessing.md")


@pytest.mark.parametrize("page", DOC_PAGES)
def test_docs_pages_link_to_files_that_exist(page: str) -> None:
    path = ROOT / "docs" / page
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text())
    local = [link for link in links if "://" not in link]
    assert local, f"{page} links to no other page"
    missing = [link for link in local if not (path.parent / link).exists()]
    assert missing == []
    readme = (ROOT / "README.md").read_text()
    assert f"(docs/{page})" in readme, f"the README's Documentation list does not link docs/{page}"
