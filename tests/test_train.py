"""Training end to end on synthetic data: bundle contents, registry, resume, checkpoints, prediction."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from emgpose.errors import DataFormatError, InvalidInput, NotFound
from emgpose.formats import SessionReader
from emgpose.preprocess.job import run_preprocess
from emgpose.synth import SynthConfig, write_dataset
from emgpose.train import boost
from emgpose.train.bundle import MODEL_FILE, Registry, parse_model_ref
from emgpose.train.data import load_preprocessed
from emgpose.train.job import run_evaluate, run_train
from emgpose.train.predict import Predictor, predict

FAST = boost.BoostConfig(num_rounds=30, max_depth=4, learning_rate=0.3, nthread=2)


def test_bundle_holds_model_meta_report_and_plots(train_model, train_synth):
    result, store = train_model
    folder = train_synth / "store" / "models" / "hand" / result["version"]
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert names == ["bundle.json", MODEL_FILE, "plots/joint_errors.png", "plots/traces.png", "report.json"]
    meta = json.loads((folder / "bundle.json").read_text())
    summary = json.loads((train_synth / "pre" / "summary.json").read_text())
    assert meta["task"] == "regression" and meta["joint_names"] == summary["joint_names"]
    assert meta["feature_names"] == summary["feature_names"] and meta["num_channels"] == 16
    assert meta["preprocess"] == summary["config"] and meta["stats"] == summary["stats"]
    assert meta["versions"]["xgboost"] and meta["lineage"]["metadata_sha256"] == summary["input"]["metadata_sha256"]
    assert set(meta["files"]) == set(names) - {"bundle.json"}
    assert (
        json.loads((train_synth / "store" / "models" / "hand" / "latest").read_text())["version"] == result["version"]
    )
    report = json.loads((folder / "report.json").read_text())
    assert report["split"]["rules"] == {"test": "metadata", "val": "metadata"}
    test = report["evaluation"]["test"]
    assert set(test["overall"]) == {"xgboost", "ridge", "mean"}
    assert set(test["by_generalization"]) == {"user", "stage", "user_stage"}
    figures = test["overall"]["xgboost"]
    assert (
        figures["mae_deg"] > 0
        and len(figures["per_joint"]) == 20
        and set(figures["per_finger"])
        == {
            "thumb",
            "index",
            "middle",
            "ring",
            "pinky",
        }
    )
    assert test["verdict"]["overall"]["metric"] == "mae_deg"
    assert isinstance(test["verdict"]["overall"]["beats_baselines"], bool)
    # Even on this tiny set the booster must beat the constant answer on validation.
    val = report["evaluation"]["val"]["overall"]
    assert val["xgboost"]["mae_deg"] < val["mean"]["mae_deg"]
    assert (folder / "plots" / "traces.png").read_bytes()[:4] == b"\x89PNG"


def test_predict_matches_the_offline_pipeline_on_a_held_out_session(train_model, train_synth):
    result, store = train_model
    bundle = Registry(store).load("hand")
    data = load_preprocessed(str(train_synth / "pre"))
    session = next(s for s in data.summary["sessions"] if s["split"] == "test")
    rows = data.table.ids["session"] == session["filename"]
    offline = bundle.stats.unscale_targets(boost.predict(bundle.booster, data.table.features[rows], 20))
    start, stop = session["range"]
    preroll = max(0, start - round(bundle.config.preroll_ms * bundle.sample_rate / 1000))
    with SessionReader(train_synth / "data" / f"{session['filename']}.hdf5") as reader:
        chunk = next(reader.iter_chunks(10**7, preroll, stop))
    online = predict(bundle, chunk.emg, chunk.time, warm_up=start - preroll)
    # IK-failure windows are dropped offline, so compare on the windows both have.
    ends = data.table.window_end[rows] - start
    both = np.isin(online.window_end, ends)
    assert both.sum() == len(ends) > 10
    np.testing.assert_allclose(online.values[both], offline, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(online.t_end[both], data.table.t_end[rows])
    np.testing.assert_allclose(online.degrees, np.degrees(online.values))
    # Fed in uneven chunks, the stateful predictor gives the same answers.
    streamer = Predictor(bundle)
    streamer.warm_up(chunk.emg[: start - preroll])
    parts = [streamer.push(piece) for piece in np.array_split(chunk.emg[start - preroll :], [7, 500, 501, 3000])]
    streamed = np.concatenate([p.values for p in parts])
    np.testing.assert_allclose(streamed, online.values, rtol=1e-5, atol=1e-6)


def test_predict_refuses_bad_input_with_the_rule(train_model):
    bundle = Registry(train_model[1]).load("hand")
    with pytest.raises(InvalidInput, match=r"expected EMG of shape \(samples, 16\).*got \(1000, 8\)"):
        predict(bundle, np.zeros((1000, 8)))
    with pytest.raises(InvalidInput, match=r"fewer than one window \(400 samples = 200 ms at 2000 Hz\)"):
        predict(bundle, np.zeros((399, 16)))
    emg = np.zeros((1000, 16), dtype=np.float32)
    emg[10, 3] = np.nan
    with pytest.raises(InvalidInput, match=r"1 NaN/inf values \(first at sample 10, channel 3\)"):
        predict(bundle, emg)


def test_registry_versions_promote_rollback_and_refusals(train_model, train_synth):
    result, store = train_model
    registry = Registry(store)
    second = run_train(str(train_synth / "pre"), store, "hand", config=FAST.model_copy(update={"num_rounds": 5}))
    versions = registry.versions("hand")  # other tests may have added (calibrated) versions too
    assert versions[-1] == second["version"] and result["version"] in versions[:-1]
    assert registry.latest("hand") == second["version"]
    registry.promote("hand", result["version"])  # rollback
    assert registry.load("hand").version == result["version"]
    assert registry.meta("hand", result["version"])["latest"] is True
    with pytest.raises(NotFound, match="has no version 'nope'"):
        registry.promote("hand", "nope")
    with pytest.raises(NotFound, match="model 'ghost' not found"):
        registry.load("ghost")
    # A half-written version (no bundle.json yet) is invisible and cannot be promoted.
    half = train_synth / "store" / "models" / "hand" / "29990101T000000Z-000000"
    half.mkdir()
    (half / MODEL_FILE).write_bytes(b"{}")
    assert half.name not in registry.versions("hand")
    with pytest.raises(NotFound):
        registry.promote("hand", half.name)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda meta, model: (meta.update(format="other/9"), model)[1], "bundle format 'other/9'"),
        (lambda meta, model: (meta.update(num_channels=8), model)[1], "feature_names do not match"),
        (lambda meta, model: (meta["feature_names"].pop(), model)[1], "feature_names do not match"),
        (lambda meta, model: model[:-10] + b"          ", "does not match the SHA-256"),
        (lambda meta, model: (meta.pop("stats"), model)[1], "lacks \\['stats'\\]"),
        (lambda meta, model: (meta["feature_range"]["low"].pop(), model)[1], "feature_range covers 95 and 96"),
        (
            lambda meta, model: (
                meta["feature_range"].update(low=meta["feature_range"]["high"], high=meta["feature_range"]["low"]),
                model,
            )[1],
            "low <= high",
        ),
    ],
)
def test_loading_refuses_a_damaged_bundle(train_model, train_synth, tmp_path, damage, message):
    result, _ = train_model
    store = tmp_path / "store"
    shutil.copytree(train_synth / "store" / "models" / "hand" / result["version"], store / "models" / "hand" / "v1")
    folder = store / "models" / "hand" / "v1"
    meta = json.loads((folder / "bundle.json").read_text())
    model = damage(meta, (folder / MODEL_FILE).read_bytes())
    (folder / "bundle.json").write_text(json.dumps(meta))
    (folder / MODEL_FILE).write_bytes(model)
    with pytest.raises(DataFormatError, match=message):
        Registry(str(store)).load("hand", "v1")


def test_resume_continues_boosting_from_a_saved_model(train_model, train_synth, tmp_path):
    result, store = train_model
    first = Registry(store).load("hand", result["version"])
    more = run_train(
        str(train_synth / "pre"),
        str(tmp_path / "store"),
        "hand2",
        config=FAST.model_copy(update={"num_rounds": 5, "early_stopping_rounds": 100}),
        resume=f"{store}/models/hand/{result['version']}",
    )
    meta = Registry(str(tmp_path / "store")).meta("hand2")
    assert meta["training"]["rounds_run"] == first.booster.num_boosted_rounds() + 5
    assert meta["training"]["resumed_from"].endswith(result["version"])
    assert more["version"] != result["version"]


def test_cancel_keeps_a_checkpoint_and_a_rerun_continues_from_it(train_synth, tmp_path):
    store = str(tmp_path / "store")
    calls = {"n": 0}

    def cancelled():
        calls["n"] += 1
        return calls["n"] >= 27

    config = FAST.model_copy(update={"num_rounds": 40, "early_stopping_rounds": 100})
    key = "checkpoints/job-1.json"
    with pytest.raises(boost.Cancelled, match="cancelled after 27 rounds"):
        run_train(str(train_synth / "pre"), store, "ck", config=config, checkpoint_key=key, cancelled=cancelled)
    assert Registry(store).names() == [] and (tmp_path / "store" / key).exists()
    result = run_train(str(train_synth / "pre"), store, "ck", config=config, checkpoint_key=key)
    meta = Registry(store).meta("ck", result["version"])
    assert meta["training"]["rounds_run"] == 25 + 40  # the checkpoint after round 25, then 40 more
    assert not (tmp_path / "store" / key).exists()


def test_progress_reports_every_round(train_synth, tmp_path):
    seen = []
    run_train(
        str(train_synth / "pre"),
        str(tmp_path / "store"),
        "p",
        config=FAST.model_copy(update={"num_rounds": 6, "early_stopping_rounds": 100}),
        progress=lambda done, total, stage: seen.append((done, total, stage)),
    )
    rounds = [(d, t) for d, t, s in seen if s == "boosting"]
    assert rounds == [(i, 6) for i in range(1, 7)]
    assert [s for _, _, s in seen if s != "boosting"] == ["loading", "baselines", "evaluating", "publishing"]


def test_evaluate_writes_a_report_beside_the_model_and_refuses_a_mismatch(train_model, train_synth, tmp_path):
    result, store = train_model
    out = run_evaluate(f"hand@{result['version']}", str(train_synth / "pre"), store)
    assert f"models/hand/{result['version']}/evaluations/" in out["report"]
    report = json.loads(Path(out["report"].removeprefix("file://")).read_text())
    assert report["normalisation"] == "the model's statistics"
    assert report["evaluation"]["test"]["overall"]["xgboost"]["mae_deg"] == pytest.approx(
        result["metrics"]["xgboost"]["mae_deg"]
    )
    other = SynthConfig(users=2, stages=2, sessions=1, duration_s=3.0, channels=8, held_out_stages=1)
    write_dataset(other, str(tmp_path / "d8"))
    run_preprocess(str(tmp_path / "d8"), str(tmp_path / "p8"))
    with pytest.raises(DataFormatError, match="8 channels, the model needs 16"):
        run_evaluate(f"hand@{result['version']}", str(tmp_path / "p8"), store)


def test_wrong_task_and_missing_dataset_are_refused(train_synth, tmp_path):
    with pytest.raises(InvalidInput, match="classification' needs gesture labels"):
        run_train(str(train_synth / "pre"), str(tmp_path / "s"), "x", task="classification", config=FAST)
    with pytest.raises(DataFormatError, match="is not a preprocessed dataset"):
        run_train(str(train_synth / "data"), str(tmp_path / "s"), "x", config=FAST)
    with pytest.raises(InvalidInput, match="model name 'bad name'"):
        run_train(str(train_synth / "pre"), str(tmp_path / "s"), "bad name", config=FAST)
    with pytest.raises(InvalidInput, match="num_rounds"):
        boost.BoostConfig.from_dict({"num_rounds": 0})
    with pytest.raises(InvalidInput, match="colsample"):
        boost.BoostConfig.from_dict({"colsample": 0.5})


def test_model_references(tmp_path):
    ref = parse_model_ref("hand@v1", str(tmp_path))
    assert (ref.name, ref.version) == ("hand", "v1")
    ref = parse_model_ref(f"{tmp_path}/models/hand/v2", "unused")
    assert (ref.name, ref.version, ref.registry.store.url("x")) == ("hand", "v2", (tmp_path / "x").as_uri())
    ref = parse_model_ref("s3://bucket/pre/models/hand", "unused")
    assert (ref.name, ref.version) == ("hand", None)
    with pytest.raises(InvalidInput, match="not a model reference"):
        parse_model_ref("s3://bucket/elsewhere/hand", "unused")


def test_train_and_load_through_s3(train_synth, s3_store_uri):
    """Dataset and models both in S3 (moto's server over HTTP): the path the services take."""
    from emgpose.store import open_store

    pre = f"{s3_store_uri}/pre"
    local = open_store(str(train_synth / "pre"))
    remote = open_store(pre)
    for key in ("summary.json", "master.parquet"):
        remote.put_bytes(key, local.get_bytes(key))
    result = run_train(pre, s3_store_uri, "cloud", config=FAST.model_copy(update={"num_rounds": 5}))
    assert result["uri"] == f"{s3_store_uri}/models/cloud/{result['version']}"
    registry = Registry(s3_store_uri)
    assert registry.versions("cloud") == [result["version"]] and registry.latest("cloud") == result["version"]
    bundle = parse_model_ref(f"{s3_store_uri}/models/cloud", "unused").registry.load("cloud")
    assert bundle.booster.num_boosted_rounds() == 5
    assert sorted(open_store(f"{s3_store_uri}/models/cloud/{result['version']}").list()) == [
        "bundle.json",
        MODEL_FILE,
        "plots/joint_errors.png",
        "plots/traces.png",
        "report.json",
    ]


def test_small_data_chooses_rounds_by_cross_validation_and_refits_on_every_training_window(tmp_path):
    write_dataset(SynthConfig(users=2, stages=2, sessions=1, duration_s=8.0, channels=4, seed=4), str(tmp_path / "r"))
    run_preprocess(str(tmp_path / "r"), str(tmp_path / "p"))
    config = boost.BoostConfig(num_rounds=40, nthread=1, early_stopping_rounds=5)
    result = run_train(str(tmp_path / "p"), str(tmp_path / "store"), "small", config=config)
    report = json.loads(Path(result["report"].removeprefix("file://")).read_text())
    assert report["split"]["rules"]["val"].startswith("cross-validation")
    assert "val" not in report["split"]["windows"]
    cv = report["training"]["cross_validation"]
    assert len(cv["folds"]) == 4 and 1 <= cv["rounds"] <= 40
    assert cv["rounds"] == int(np.median([f["best_round"] for f in cv["folds"]]))
    assert report["training"]["rounds_run"] == cv["rounds"]  # the refit boosts exactly the chosen rounds
    assert all(f["train_windows"] < report["split"]["windows"]["train"] for f in cv["folds"])
