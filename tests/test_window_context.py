"""Multi-scale windows (``window.extra_lengths``) and temporal context (``context``) in the window stream.

A row of a stream with extra lengths and context holds, for the window ending at sample ``e``: the
features over each length ending at ``e``, then the same at ``e - stride``, ..., ``e - context * stride``.
The tests cut those windows by hand from the signal and compare, check the names, the chunking, the
drop masks over the whole span, the kernel path (emulation), and a model trained and served end to end.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from emgpose.errors import InvalidInput
from emgpose.preprocess import NormStats, PreprocessConfig, WindowStream, compute_features, feature_names
from emgpose.preprocess.features import FeatureParams
from emgpose.preprocess.kernel_path import KernelWindowStream

FS = 1000.0
C = 2
FEATURES = ("mav", "ar", "wamp", "zc")
# No filters: the filtered signal is the raw input, so windows can be cut from it by hand.
PLAIN = {"bandpass": {"enabled": False}, "rectify": False, "moving_average": 1}


def config(length=40, stride=15, extra=(), context=0, features=FEATURES) -> PreprocessConfig:
    window = {"length": length, "stride": stride, "extra_lengths": list(extra)}
    return PreprocessConfig.from_dict({**PLAIN, "window": window, "context": context, "features": list(features)})


def stream(cfg: PreprocessConfig, targets: int = 0) -> WindowStream:
    return WindowStream(cfg, FS, C, NormStats.identity(C, targets), num_targets=targets)


def by_hand(x: np.ndarray, end: int, lengths: tuple[int, ...], stride: int, context: int) -> np.ndarray:
    """One row computed from hand-cut windows of ``x`` (``compute_features`` on each)."""
    p = FeatureParams(wamp_threshold=0.1, sample_rate=FS)
    parts = []
    for j in range(context + 1):
        e = end - j * stride
        for n in lengths:
            w = x[e - n + 1 : e + 1].T[None]
            parts.append(compute_features({"filtered": w}, FEATURES, p)[0])
    return np.concatenate(parts)


@pytest.mark.parametrize(("extra", "context"), [((), 0), ((90,), 0), ((), 3), ((90, 25), 2)])
def test_rows_equal_hand_cut_windows_and_start_after_the_span(extra, context):
    cfg = config(extra=extra, context=context)
    x = np.random.default_rng(0).normal(size=(600, C))
    batch = stream(cfg).push(x, np.arange(600) / FS)
    span = max((40, *extra)) + context * 15
    np.testing.assert_array_equal(batch.end_index, np.arange(span - 1, 600, 15))
    assert batch.features.shape == (len(batch), len(feature_names(cfg, C)))
    for i, end in enumerate(batch.end_index):
        want = by_hand(x, int(end), (40, *extra), 15, context)
        np.testing.assert_allclose(batch.features[i], want, rtol=1e-5, atol=1e-5, err_msg=f"window ending {end}")


def test_names_are_the_main_row_then_each_extra_length_then_each_earlier_window():
    cfg = config(extra=(90,), context=2, features=("mav", "ar"))
    names = feature_names(cfg, C)
    base = ["f_mav_c00", "f_mav_c01"] + [f"f_ar_k{k}_c{c:02d}" for k in range(1, 5) for c in range(C)]
    row = base + [f"{n}_w1" for n in base]
    assert names == row + [f"{n}_p1" for n in row] + [f"{n}_p2" for n in row]
    assert feature_names(config(), C) == feature_names(FEATURES, C)  # no extras, no context: unchanged


@pytest.mark.parametrize("cuts", [[1, 14, 200, 1, 384], [600], [37] * 17])
def test_chunked_equals_whole(cuts):
    cfg = config(extra=(90,), context=2)
    x = np.random.default_rng(1).normal(size=(600, C))
    t = np.arange(600) / FS
    whole = stream(cfg).push(x, t)
    s = stream(cfg)
    bounds = np.cumsum([0, *cuts])
    parts = [s.push(x[a:b], t[a:b]) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
    np.testing.assert_array_equal(np.concatenate([p.end_index for p in parts]), whole.end_index)
    np.testing.assert_allclose(np.concatenate([p.features for p in parts]), whole.features, rtol=1e-5, atol=1e-5)


def test_invalid_emg_anywhere_in_the_span_drops_the_row():
    cfg = config(context=2)  # span 40 + 30 = 70 samples
    x = np.random.default_rng(2).normal(size=(400, C))
    x[200, 0] = np.nan
    batch = stream(cfg).push(x, np.arange(400) / FS)
    touching = (batch.end_index >= 200) & (batch.end_index - 69 <= 200)
    assert touching.sum() > 3  # the NaN is in the context windows of several rows, not only in the main one
    assert (batch.reason[touching] != 0).all() and (batch.reason[~touching] == 0).all()


def test_kernel_path_on_the_emulation_gives_the_same_rows():
    cfg = config(extra=(90,), context=2, features=("mav", "ar", "zc", "rms", "mav_share"))
    cfg = cfg.model_copy(update={"bandpass": cfg.bandpass.model_copy(update={"enabled": True, "high_hz": 300.0})})
    x = np.random.default_rng(3).normal(size=(900, C)) * 30
    t = np.arange(900) / FS
    stats = NormStats.identity(C, 0)
    cpu, kernels = WindowStream(cfg, FS, C, stats), KernelWindowStream(cfg, FS, C, stats, xp=np)
    for a, b in [(0, 130), (130, 131), (131, 900)]:
        want, got = cpu.push(x[a:b], t[a:b]), kernels.push(x[a:b], t[a:b])
        np.testing.assert_array_equal(got.end_index, want.end_index)
        np.testing.assert_allclose(got.features, want.features, rtol=1e-4, atol=1e-4)


def test_bad_lengths_and_context_are_refused_by_field():
    with pytest.raises(InvalidInput, match=r"window.extra_lengths\[0\]: 40 is 40 samples at 1000 Hz, a length"):
        stream(config(extra=(40,)))
    with pytest.raises(InvalidInput, match=r"window.extra_lengths\[1\]: '0.09s' is 90 samples"):
        stream(config(extra=("90ms", "0.09s")))
    with pytest.raises(InvalidInput, match="window.extra_lengths: Value error, extra window lengths must differ"):
        config(extra=(90, 90))
    with pytest.raises(InvalidInput, match="context: Input should be greater than or equal to 0"):
        config(context=-1)
    with pytest.raises(InvalidInput, match=r"window.extra_lengths\[0\]: expected samples"):
        stream(config(extra=("long",)))


@pytest.mark.slow
def test_a_model_with_rich_features_extra_lengths_and_context_trains_and_predicts_as_offline(tmp_path):
    from emgpose.formats import SessionReader
    from emgpose.preprocess.job import run_preprocess
    from emgpose.synth import SynthConfig, write_dataset
    from emgpose.train import boost
    from emgpose.train.bundle import Registry
    from emgpose.train.data import load_preprocessed
    from emgpose.train.job import run_train
    from emgpose.train.predict import predict

    write_dataset(SynthConfig(users=2, stages=2, sessions=1, duration_s=3.0, channels=4), str(tmp_path / "data"))
    cfg = PreprocessConfig.from_dict(
        {
            "features": ["mav", "ar", "wamp", "mav_share", "m2", "log_rms"],
            "window": {"length": 200, "stride": 100, "extra_lengths": [400]},
            "context": 2,
        }
    )
    summary = run_preprocess(str(tmp_path / "data"), str(tmp_path / "pre"), cfg, workers=1)
    assert summary["feature_names"] == feature_names(cfg, 4)
    # A row reads 400 + 2 * 100 samples: training's validation gaps must cover that span.
    assert summary["window"] == {"length_samples": 200, "stride_samples": 100, "span_samples": 600}
    master = pq.read_table(tmp_path / "pre" / "master.parquet")
    assert [c for c in master.column_names if c.startswith("f_")] == feature_names(cfg, 4)
    store = str(tmp_path / "store")
    run_train(str(tmp_path / "pre"), store, "rich", config=boost.BoostConfig(num_rounds=8, max_depth=3, nthread=1))
    bundle = Registry(store).load("rich")  # validate_meta: the names follow the config
    data = load_preprocessed(str(tmp_path / "pre"))
    assert data.window_length == 600
    session = data.summary["sessions"][0]
    rows = data.table.ids["session"] == session["filename"]
    start, stop = session["range"]
    preroll = max(0, start - round(bundle.config.preroll_ms * bundle.sample_rate / 1000))
    with SessionReader(tmp_path / "data" / f"{session['filename']}.hdf5") as reader:
        chunk = next(reader.iter_chunks(10**7, preroll, stop))
    # The serving stream, built from the bundle as the predictor builds it, gives the table's rows.
    live = WindowStream(bundle.config, bundle.sample_rate, bundle.num_channels, bundle.stats)
    live.warm_up(chunk.emg[: start - preroll])
    batch = live.push(chunk.emg[start - preroll :], chunk.time[start - preroll :])
    both = np.isin(batch.end_index, data.table.window_end[rows] - start)
    assert both.sum() == rows.sum() > 5
    np.testing.assert_allclose(batch.features[both], data.table.features[rows], rtol=1e-5, atol=1e-5)
    online = predict(bundle, chunk.emg, chunk.time, warm_up=start - preroll)
    np.testing.assert_array_equal(online.window_end, batch.end_index)
    assert np.isfinite(online.values).all()
    with pytest.raises(InvalidInput, match=r"599 samples are fewer than one window \(600 samples"):
        predict(bundle, chunk.emg[:599], chunk.time[:599])
