"""Dynamic batching (emgpose_inference.batching) with the real predictor, and several serving processes.

The batcher is driven in-process where its decisions must be counted exactly (batch sizes, holds,
errors, two versions in one batch): jobs queued in one event-loop turn are all waiting when the
dispatcher first runs. Over HTTP: concurrent requests and streams get exactly the answers they get
alone, and two uvicorn workers swap the model under load with no failed request.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from anyio import CapacityLimiter
from inference_support import NAME, binary_request, copy_model, publish_variant, recording, serve_copy, wait_for
from scipy import signal
from websockets.sync.client import connect

from emgpose.devices import usable_cpus
from emgpose.errors import InvalidInput
from emgpose.preprocess.signal import CausalChain, design_sos
from emgpose.settings import Settings
from emgpose.train.bundle import Bundle, Registry
from emgpose.train.predict import Prediction, Predictor, predict
from emgpose.train.stacked import prepare_together, stackable
from emgpose_inference import serve as serve_module
from emgpose_inference.batching import Batcher, Fresh
from emgpose_inference.infer import predict_response_json
from emgpose_inference.metrics import Metrics

PORTS = range(18200, 18250)  # this module's share of the ports of the batching work (bench/serve.py: 18250+)


def _batcher(max_windows: int = 64, max_wait_s: float = 0.0) -> tuple[Batcher, Metrics, list[str]]:
    metrics, recorded = Metrics(), []
    batcher = Batcher(
        lambda endpoint, *_: recorded.append(endpoint), metrics, CapacityLimiter(1), max_windows, max_wait_s
    )
    return batcher, metrics, recorded


def _job(bundle: Bundle, emg: np.ndarray):  # noqa: ANN202
    def prepare():  # noqa: ANN202
        predictor = Predictor(bundle)
        return predictor, predictor.prepare(emg)

    return prepare


def _values(result: Prediction) -> np.ndarray:
    return result.values


def _batches(metrics: Metrics) -> tuple[int, float]:
    """(booster calls, rows) the batcher recorded."""
    return metrics.batch_size.count(), metrics.batch_size.sum()


@pytest.fixture
def bundle(train_model) -> Bundle:
    return Registry(train_model[1]).load(NAME, train_model[0]["version"])


def test_concurrent_jobs_share_booster_calls_of_at_most_max_windows_with_the_answers_of_one_call(bundle) -> None:
    recordings = [recording(0.2 + 0.05 * (i % 3), seed=i) for i in range(10)]  # 1 to 3 windows each
    alone = [predict(bundle, emg).values for emg in recordings]
    batcher, metrics, recorded = _batcher(max_windows=4)

    async def run() -> list[np.ndarray]:
        jobs = [batcher.submit("v1", _job(bundle, emg), _values) for emg in recordings]
        try:
            return await asyncio.gather(*jobs)
        finally:
            await batcher.close()

    together = asyncio.run(run())
    for mine, reference in zip(together, alone, strict=True):
        np.testing.assert_array_equal(mine, reference)
    calls, rows = _batches(metrics)
    assert rows == sum(len(v) for v in alone) and calls >= -(-rows // 4) and calls < len(recordings)
    assert metrics.batch_size.bucket(4) == calls, "every booster call had at most 4 rows (bucket le=4)"
    assert recorded == ["v1"] * len(recordings)


def test_errors_stay_with_their_job(bundle) -> None:
    good = recording(0.2, seed=1)
    bad = good.copy()
    bad[5, 3] = np.nan
    batcher, metrics, _ = _batcher()

    def broken_answer(result: Prediction) -> bytes:
        raise ValueError("this answer cannot be written")

    async def run() -> list[object]:
        jobs = [
            batcher.submit("v1", _job(bundle, good), predict_response_json),
            batcher.submit("v1", _job(bundle, bad), predict_response_json),
            batcher.submit("v1", _job(bundle, good), broken_answer),
            batcher.submit("v1", _job(bundle, good[:10]), predict_response_json),  # no window: an empty answer
            batcher.submit("v1", _job(bundle, good), predict_response_json),
        ]
        try:
            return await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            await batcher.close()

    first, nan, unwritable, short, last = asyncio.run(run())
    assert isinstance(nan, InvalidInput) and "NaN/inf" in nan.message and "sample 5, channel 3" in nan.message
    assert isinstance(unwritable, ValueError)
    expected = predict(bundle, good).values.tolist()
    assert json.loads(first)["radians"] == json.loads(last)["radians"] == expected
    assert json.loads(short)["radians"] == []
    assert _batches(metrics) == (1, 3.0)  # the three good jobs with a window: one booster call


def test_a_batch_waits_for_arriving_requests_at_most_max_wait(bundle) -> None:
    emg = recording(0.2, seed=3)

    async def arrivals(max_wait_s: float) -> tuple[int, float]:
        batcher, metrics, _ = _batcher(max_wait_s=max_wait_s)
        with batcher.expect() as late:  # a request whose body is still being read
            first = asyncio.ensure_future(batcher.submit("v1", _job(bundle, emg), _values))
            await asyncio.sleep(0.05)
            if max_wait_s > 10:
                assert not first.done(), "the batch waits for the arriving request"
            second = batcher.submit("v1", _job(bundle, emg), _values, late)
            await asyncio.gather(first, second)
        await batcher.close()
        return _batches(metrics)

    assert asyncio.run(arrivals(60.0)) == (1, 2.0)  # held: both in one booster call
    assert asyncio.run(arrivals(0.0)) == (2, 2.0)  # no wait allowed: the first went alone

    async def never_arrives() -> None:
        batcher, _, _ = _batcher(max_wait_s=0.01)
        with batcher.expect():  # announced, never submitted: the queued job goes after max wait
            await asyncio.wait_for(batcher.submit("v1", _job(bundle, emg), _values), 30)
        await batcher.close()

    asyncio.run(never_arrives())


def test_two_versions_in_one_batch_each_answer_with_its_own(train_model, tmp_path: Path) -> None:
    store_uri = (tmp_path / "store").as_uri()
    old = copy_model(train_model, store_uri)
    new = publish_variant(store_uri, trees=5)
    registry = Registry(store_uri)
    bundles = {v: registry.load(NAME, v) for v in (old, new)}
    emg = recording(0.3, seed=4)
    batcher, metrics, _ = _batcher()

    async def run() -> list[np.ndarray]:
        jobs = [batcher.submit("v1", _job(bundles[v], emg), _values) for v in (old, new, old, new)]
        try:
            return await asyncio.gather(*jobs)
        finally:
            await batcher.close()

    answers = asyncio.run(run())
    for version, answer in zip((old, new, old, new), answers, strict=True):
        np.testing.assert_array_equal(answer, predict(bundles[version], emg).values)
    assert not np.allclose(answers[0], answers[1])
    assert _batches(metrics) == (2, 4 * len(answers[0]))  # one booster call per version


def test_concurrent_requests_and_streams_get_what_they_get_alone(train_model, tmp_path: Path) -> None:
    recordings = [recording(0.2 + 0.1 * (i % 4), seed=10 + i) for i in range(12)]
    stream_emg = recording(1.0, seed=99)
    with serve_copy(train_model, tmp_path, batch_max_windows=8, batch_max_wait_ms=2.0) as served:
        alone = [predict(served.bundle, emg).values.tolist() for emg in recordings]
        streamed_alone = _stream(served.ws_url, stream_emg, served.bundle)
        answers: list[object] = [None] * len(recordings)
        streams: list[object] = [None] * 3

        def post(i: int) -> None:
            with httpx.Client(timeout=30) as client:
                answers[i] = client.post(f"{served.url}/v1/predict", **binary_request(recordings[i])).json()

        def stream(i: int) -> None:
            streams[i] = _stream(served.ws_url, stream_emg, served.bundle)

        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(recordings))]
        threads += [threading.Thread(target=stream, args=(i,)) for i in range(len(streams))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        metrics = httpx.get(f"{served.url}/metrics").text
    assert [a["radians"] for a in answers] == alone  # type: ignore[index]
    assert streamed_alone and streams == [streamed_alone] * 3
    assert 'emgpose_inference_batch_windows_bucket{le="8.0"}' in metrics
    count = float(metrics.split("emgpose_inference_batch_windows_count ")[1].split()[0])
    within = float(metrics.split('emgpose_inference_batch_windows_bucket{le="8.0"} ')[1].split()[0])
    assert count > 0 and within == count, "no booster call had more than BATCH_MAX_WINDOWS rows"


def _stream(ws_url: str, emg: np.ndarray, bundle: Bundle, chunk: int = 150) -> list[list[list[float]]]:
    """The radians of every prediction message of one stream fed ``chunk`` samples at a time."""
    predictor = Predictor(bundle)
    first, stride = predictor.window_length - 1, predictor.stream.stride

    def windows_before(sample: int) -> int:  # windows ending before ``sample``
        return 0 if sample <= first else (sample - first - 1) // stride + 1

    out = []
    with connect(f"{ws_url}/v1/stream?sample_rate=2000") as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        for start in range(0, len(emg), chunk):
            ws.send(np.ascontiguousarray(emg[start : start + chunk], dtype="<f4").tobytes())
            if windows_before(min(start + chunk, len(emg))) > windows_before(start):
                message = json.loads(ws.recv(timeout=10))
                assert message["type"] == "prediction", message
                out.append(message["radians"])
    return out


def test_the_worker_count_follows_the_setting_or_the_usable_cpus() -> None:
    assert serve_module.workers(Settings(inference_workers=3)) == 3
    assert serve_module.workers(Settings(inference_workers=None)) == usable_cpus()
    args = serve_module.uvicorn_args("127.0.0.1", 8001, Settings(inference_workers=2))
    assert args == ["emgpose_inference.main:app", "--host", "127.0.0.1", "--port", "8001", "--workers", "2"]


def _free_port() -> int:
    import socket

    for port in PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS}")


def test_two_workers_swap_the_model_under_load_without_a_failed_request(train_model, tmp_path: Path) -> None:
    store_uri = (tmp_path / "store").as_uri()
    old = copy_model(train_model, store_uri)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "STORE_URI": store_uri, "MODEL_NAME": NAME, "RELOAD_INTERVAL_S": "0.2",
           "INFERENCE_WORKERS": "2", "AUTH_ENABLED": "false", "LOG_LEVEL": "WARNING"}  # fmt: skip
    command = [sys.executable, "-m", "emgpose_inference.serve", "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _get(f"{url}/readyz") == 200, timeout=60, what=f"two workers ready ({log.read_text()})")
        emg = recording(0.25, seed=5)
        stop, failures = threading.Event(), []
        per_client: list[list[str]] = [[] for _ in range(4)]

        def hammer(seen: list[str]) -> None:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    try:
                        response = client.post(f"{url}/v1/predict", **binary_request(emg))
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))
                        continue
                    if response.status_code == 200:
                        seen.append(response.json()["model_version"])
                    else:
                        failures.append(response.text)

        threads = [threading.Thread(target=hammer, args=(seen,)) for seen in per_client]
        for thread in threads:
            thread.start()
        wait_for(lambda: all(per_client), timeout=30, what="answers from the old version")
        new = publish_variant(store_uri, trees=10)
        wait_for(lambda: all(s[-1] == new for s in per_client), timeout=30, what="the new version on every client")
        # Each fresh connection goes to either worker: 24 in a row answering the new version means both
        # swapped (a worker left on the old one would answer about half of them).
        wait_for(lambda: all(_version(url) == new for _ in range(24)), timeout=30, what="both workers on the new one")
        stop.set()
        for thread in threads:
            thread.join(30)
    finally:
        server.terminate()
        server.wait(30)
    assert failures == []
    for seen in per_client:
        assert seen[0] == old and seen[-1] == new


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def _version(url: str) -> str | None:
    with httpx.Client(timeout=5) as client:  # a new connection each time
        return client.get(f"{url}/readyz").json().get("version")


def test_chains_share_one_filter_design_and_filter_as_a_fresh_design_does(bundle) -> None:
    """The per-request chain reuses the cached design; its output is the one of a design made anew."""
    emg = recording(0.5, seed=8).astype(np.float64)
    first = CausalChain(bundle.config, bundle.sample_rate, bundle.num_channels)
    second = CausalChain(bundle.config, bundle.sample_rate, bundle.num_channels)
    assert second.sos is first.sos, "the second chain reused the first one's design"
    sos = design_sos(bundle.config, bundle.sample_rate)
    assert sos is not None and sos is not first.sos
    expected, _ = signal.sosfilt(sos, emg, axis=0, zi=signal.sosfilt_zi(sos)[:, :, None] * emg[0][None, None, :])
    for chain in (first, second):
        np.testing.assert_array_equal(chain.process(emg[:300]).filtered, expected[:300])
        np.testing.assert_array_equal(chain.process(emg[300:]).filtered, expected[300:])


def test_recordings_of_one_length_are_preprocessed_together_with_the_answers_they_get_alone(bundle) -> None:
    lengths = [400, 400, 650, 400, 650, 1200, 400]
    recordings = [recording(n / 2000, seed=20 + i) for i, n in enumerate(lengths)]
    assert stackable(bundle)
    for emg, (_, prepared) in zip(recordings[:2], prepare_together(bundle, recordings[:2]), strict=True):
        alone = Predictor(bundle).prepare(emg)
        np.testing.assert_array_equal(prepared.features, alone.features)
        np.testing.assert_array_equal(prepared.batch.end_time, alone.batch.end_time)
    with pytest.raises(ValueError, match="must all be"):
        prepare_together(bundle, recordings[1:3])
    batcher, metrics, _ = _batcher(max_windows=64)
    window = Predictor(bundle)

    def fresh(emg: np.ndarray):  # noqa: ANN202
        return lambda: Fresh(bundle, emg, (len(emg) - window.window_length) // window.stream.stride + 1)

    async def run() -> list[np.ndarray]:
        try:
            return await asyncio.gather(*(batcher.submit("v1", fresh(emg), _values) for emg in recordings))
        finally:
            await batcher.close()

    for emg, answer in zip(recordings, asyncio.run(run()), strict=True):
        np.testing.assert_array_equal(answer, predict(bundle, emg).values)
    assert _batches(metrics)[0] == 1  # three lengths, one booster call


def test_compose_caps_the_workers_cpus_and_runs_several_inference_processes() -> None:
    """A training or preprocessing job cannot take every core from inference (their threads follow the
    quota: emgpose.devices.usable_cpus), and inference runs INFERENCE_WORKERS processes."""
    compose = yaml.safe_load((Path(__file__).parents[1] / "docker-compose.yml").read_text())["services"]
    assert compose["trainer"]["cpus"] == "${TRAINER_CPUS:-2}"
    assert compose["preprocessor"]["cpus"] == "${PREPROCESS_CPUS:-2}"
    assert "cpus" not in compose["inference"]
    command = compose["inference"]["command"]
    assert command[command.index("--workers") + 1] == "${INFERENCE_WORKERS:-2}"
