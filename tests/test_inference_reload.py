"""Hot reload over real HTTP: no model yet, a new version swapped in under load, broken versions refused."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from inference_support import (
    NAME,
    binary_request,
    copy_model,
    parse_metrics,
    publish_broken,
    publish_variant,
    recording,
    serve,
    wait_for,
)
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from emgpose.train.bundle import Registry
from emgpose.train.predict import predict

INTERVAL = 0.2


def test_without_a_model_it_starts_then_serves_the_first_published(train_model, tmp_path: Path) -> None:
    store_uri = (tmp_path / "store").as_uri()
    with serve(store_uri, reload_interval_s=INTERVAL) as server:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert not body["ready"] and body["version"] is None and body["store"]["reachable"]
        assert f"no model '{NAME}' is published yet" in body["detail"]
        response = httpx.post(f"{server.url}/v1/predict", **binary_request(recording(0.3)))
        assert response.status_code == 503 and f"no model '{NAME}' is published yet" in response.json()["detail"]
        infer = httpx.post(f"{server.url}/v2/models/{NAME}/infer", json={"inputs": []})
        assert infer.status_code == 503 and "is published yet" in infer.json()["error"]
        assert httpx.get(f"{server.url}/v2/models/{NAME}/ready").status_code == 503
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 503
        with connect(f"{server.ws_url}/v1/stream?sample_rate=2000") as ws:
            assert json.loads(ws.recv(timeout=10))["status"] == 503
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013

        version = copy_model(train_model, store_uri)
        wait_for(lambda: httpx.get(f"{server.url}/readyz").status_code == 200, what="readiness after publishing")
        response = httpx.post(f"{server.url}/v1/predict", **binary_request(recording(0.3)))
        assert response.status_code == 200 and response.json()["model_version"] == version


def hammer(url: str, emg: np.ndarray, stop: threading.Event, results: list, failures: list) -> None:
    """Predicts in a loop until ``stop``: each answer or failure, in order."""
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            try:
                response = client.post(f"{url}/v1/predict", **binary_request(emg))
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
                continue
            (results if response.status_code == 200 else failures).append(response.json())


def test_a_new_version_is_swapped_in_under_load_without_failures(train_model, tmp_path: Path) -> None:
    store_uri = (tmp_path / "store").as_uri()
    old = copy_model(train_model, store_uri)
    emg = recording(0.5, seed=7)
    with serve(store_uri, reload_interval_s=INTERVAL) as server:
        stop, failures = threading.Event(), []
        per_thread: list[list[dict]] = [[], []]
        threads = [threading.Thread(target=hammer, args=(server.url, emg, stop, r, failures)) for r in per_thread]
        for thread in threads:
            thread.start()
        with connect(f"{server.ws_url}/v1/stream?sample_rate=2000") as ws:  # pinned to the old version
            assert json.loads(ws.recv(timeout=10))["model_version"] == old
            wait_for(lambda: all(per_thread), what="answers from the old version")
            new = publish_variant(store_uri, trees=10)
            wait_for(lambda: all(r and r[-1]["model_version"] == new for r in per_thread), what="the new version")
            seen = [len(r) for r in per_thread]
            wait_for(lambda: all(len(r) > n + 3 for r, n in zip(per_thread, seen, strict=True)), what="more answers")
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            ws.send(emg.tobytes())
            streamed = json.loads(ws.recv(timeout=10))
        metrics = parse_metrics(httpx.get(f"{server.url}/metrics").text)
    registry = Registry(store_uri)
    expected = {v: predict(registry.load(NAME, v), emg).values for v in (old, new)}
    assert not np.allclose(expected[old], expected[new], rtol=1e-3)
    assert failures == []
    for answers in per_thread:
        versions = [a["model_version"] for a in answers]
        assert versions[0] == old and versions[-1] == new
        assert versions == sorted(versions, key=[old, new].index)  # never back to the old one
        for answer in answers:
            np.testing.assert_allclose(answer["radians"], expected[answer["model_version"]], rtol=1e-5, atol=1e-9)
    assert streamed["model_version"] == old
    np.testing.assert_allclose(streamed["radians"], expected[old], rtol=1e-5, atol=1e-9)
    assert metrics['emgpose_inference_reloads_total{result="success"}'] == 2
    assert metrics[f'emgpose_inference_model_info{{model="{NAME}",version="{new}"}}'] == 1
    assert not any(f'version="{old}"' in series for series in metrics)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("digest", "does not match the SHA-256 in bundle.json"),
        ("missing file", "emg_pose_gpu.json is missing"),
        ("bundle.json", "not valid JSON"),
    ],
)
def test_a_broken_version_is_refused_and_the_old_one_keeps_serving(
    train_model, tmp_path: Path, damage: str, message: str
) -> None:
    store_dir = tmp_path / "store"
    old = copy_model(train_model, store_dir.as_uri())
    with serve(store_dir.as_uri(), reload_interval_s=INTERVAL) as server:
        bad = publish_broken(store_dir, base=old, damage=damage)
        ready = wait_for(
            lambda: (r := httpx.get(f"{server.url}/readyz")).json()["last_reload_error"] and r, what="the refusal"
        )
        assert ready.status_code == 200 and ready.json()["version"] == old
        error = ready.json()["last_reload_error"]
        assert error["version"] == bad and message in error["message"] and error["at"]
        response = httpx.post(f"{server.url}/v1/predict", **binary_request(recording(0.3)))
        assert response.status_code == 200 and response.json()["model_version"] == old
        time.sleep(6 * INTERVAL)  # several checks later, the refused version is not retried in a loop
        metrics = parse_metrics(httpx.get(f"{server.url}/metrics").text)
        assert metrics['emgpose_inference_reloads_total{result="failure"}'] == 1

        good = publish_variant(store_dir.as_uri(), trees=10, base=old)  # the pointer moves on
        wait_for(lambda: httpx.get(f"{server.url}/readyz").json()["version"] == good, what="the next good version")
        assert httpx.get(f"{server.url}/readyz").json()["last_reload_error"] is None
