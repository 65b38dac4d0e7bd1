"""The production command (``uvicorn emgpose_inference.main:app``) in a child process, configured by the
environment only, loading from S3 (a moto server) and picking up a new version there."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
from inference_support import NAME, binary_request, copy_model, publish_variant, recording, wait_for
from servers import UvicornProcess

from emgpose.train.bundle import Registry
from emgpose.train.predict import predict


def test_the_run_command_serves_from_s3_and_reloads(train_model, s3_server: str, s3_store_uri: str, tmp_path: Path):
    old = copy_model(train_model, s3_store_uri)
    env = {
        "STORE_URI": s3_store_uri,
        "S3_ENDPOINT_URL": s3_server,
        "MODEL_NAME": NAME,
        "RELOAD_INTERVAL_S": "0.2",
        "LOG_LEVEL": "INFO",
    }
    emg = recording(0.6, seed=8)
    with UvicornProcess("emgpose_inference.main:app", env, tmp_path / "inference.log") as server:
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["version"] == old and ready.json()["store"]["uri"] == s3_store_uri
        answer = httpx.post(f"{server.url}/v1/predict", **binary_request(emg)).json()
        expected = predict(Registry(s3_store_uri).load(NAME, old), emg)
        np.testing.assert_allclose(answer["radians"], expected.values, rtol=1e-5, atol=1e-9)

        new = publish_variant(s3_store_uri, trees=10)
        wait_for(lambda: httpx.get(f"{server.url}/readyz").json()["version"] == new, what="the new S3 version")
        answer = httpx.post(f"{server.url}/v1/predict", **binary_request(emg)).json()
        assert answer["model_version"] == new
        expected = predict(Registry(s3_store_uri).load(NAME, new), emg)
        np.testing.assert_allclose(answer["radians"], expected.values, rtol=1e-5, atol=1e-9)
    log = server.log()
    assert f"serving model {NAME} version {new}" in log and f"replacing {old}" in log, log
