"""The Open Inference Protocol v2 endpoints of the inference service, over real HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from inference_support import NAME, Served, recording, serve_copy

from emgpose.train.predict import predict


@pytest.fixture(scope="module")
def served(train_model, tmp_path_factory) -> Iterator[Served]:
    with serve_copy(train_model, tmp_path_factory.mktemp("oip")) as server:
        yield server


def infer(served: Served, body: dict, path: str = f"/v2/models/{NAME}/infer") -> httpx.Response:
    return httpx.post(served.url + path, json=body)


def emg_input(emg: np.ndarray, nested: bool = False) -> dict:
    data = emg.tolist() if nested else emg.ravel().tolist()
    return {"name": "emg", "shape": list(emg.shape), "datatype": "FP32", "data": data}


def test_health_server_and_model_metadata(served: Served) -> None:
    assert httpx.get(f"{served.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{served.url}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{served.url}/v2").json()["name"] == "emgpose-inference"
    meta = httpx.get(f"{served.url}/v2/models/{NAME}").json()
    assert meta["name"] == NAME and meta["versions"] == [served.bundle.version] and meta["platform"] == "xgboost"
    assert meta["inputs"][0] == {"name": "emg", "datatype": "FP32", "shape": [-1, 16]}
    assert [o["name"] for o in meta["outputs"]] == ["angles_rad", "angles_deg", "window_end_s"]
    assert meta["outputs"][0]["shape"] == [-1, 20]
    assert meta["parameters"]["joint_names"] == served.bundle.joint_names
    assert meta["parameters"]["sample_rate"] == 2000 and meta["parameters"]["window_length"] == 400
    versioned = httpx.get(f"{served.url}/v2/models/{NAME}/versions/{served.bundle.version}")
    assert versioned.json() == meta
    ready = httpx.get(f"{served.url}/v2/models/{NAME}/ready")
    assert ready.status_code == 200 and ready.json() == {"name": NAME, "ready": True}


def test_infer_equals_the_library_flat_or_nested(served: Served) -> None:
    emg = recording(0.8, seed=3)
    expected = predict(served.bundle, emg)
    flat = infer(served, {"id": "r1", "inputs": [emg_input(emg)], "parameters": {"sample_rate": 2000}})
    rate_tensor = {"name": "sample_rate", "shape": [1], "datatype": "FP32", "data": [2000.0]}
    nested = infer(served, {"inputs": [emg_input(emg, nested=True), rate_tensor]})
    for response in (flat, nested):
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["model_name"], body["model_version"]) == (NAME, served.bundle.version)
        outputs = {o["name"]: o for o in body["outputs"]}
        assert list(outputs) == ["angles_rad", "angles_deg", "window_end_s"]
        rad = outputs["angles_rad"]
        assert rad["datatype"] == "FP32" and rad["shape"] == [len(expected), 20]
        np.testing.assert_allclose(np.reshape(rad["data"], rad["shape"]), expected.values, rtol=1e-5, atol=1e-6)
        deg = np.reshape(outputs["angles_deg"]["data"], outputs["angles_deg"]["shape"])
        np.testing.assert_allclose(deg, expected.degrees, rtol=1e-5, atol=1e-4)
        assert outputs["window_end_s"]["datatype"] == "FP64"
        np.testing.assert_allclose(outputs["window_end_s"]["data"], expected.t_end)
    assert flat.json()["id"] == "r1" and re.fullmatch(r"[0-9a-f]{32}", nested.json()["id"])
    picked = infer(
        served,
        {"inputs": [emg_input(emg)], "parameters": {"sample_rate": 2000}, "outputs": [{"name": "window_end_s"}]},
    )
    assert [o["name"] for o in picked.json()["outputs"]] == ["window_end_s"]


EMG = recording(0.5, seed=4)
RATE_INPUT = {"name": "sample_rate", "shape": [1], "datatype": "FP32", "data": [2000.0]}
GOOD = {"inputs": [emg_input(EMG)], "parameters": {"sample_rate": 2000}}
REFUSALS = {
    "no rate": ({"inputs": [emg_input(EMG)]}, 422, r"sample_rate .* is required.*expects 2000 Hz"),
    "wrong rate": ({**GOOD, "parameters": {"sample_rate": 1000}}, 422, r"1000 Hz does not match the 2000 Hz"),
    "channels": (
        {**GOOD, "inputs": [emg_input(EMG[:, :8])]},
        422,
        r"input 'emg' has shape \[1000, 8\]; .* expects \[samples, 16\]",
    ),
    "count": (
        {**GOOD, "inputs": [{**emg_input(EMG), "shape": [999, 16]}]},
        422,
        r"shape \[999, 16\] needs 15984 values, data has 16000",
    ),
    "datatype": ({**GOOD, "inputs": [{**emg_input(EMG), "datatype": "INT8"}]}, 422, r"datatype 'INT8'; send FP32"),
    "input name": ({**GOOD, "inputs": [{**emg_input(EMG), "name": "x"}]}, 422, r"expected one 'emg' tensor"),
    "short": ({**GOOD, "inputs": [emg_input(EMG[:100])]}, 422, r"send at least 400 samples"),
    "output": ({**GOOD, "outputs": [{"name": "joints"}]}, 422, r"requested outputs \['joints'\] do not exist"),
    "no inputs": ({"inputs": []}, 422, r"inputs: List should have at least 1 item"),
    # found by schemathesis (500s before): a rate that is not a number, alone or beside a rate tensor
    "rate text": ({**GOOD, "parameters": {"sample_rate": "abc"}}, 422, r"parameters.sample_rate must be a number"),
    "rate list": ({**GOOD, "parameters": {"sample_rate": [1, 2]}}, 422, r"must be a number in Hz, got \[1, 2\]"),
    "rate text and tensor": (
        {**GOOD, "inputs": [emg_input(EMG), RATE_INPUT], "parameters": {"sample_rate": "abc"}},
        422,
        r"parameters.sample_rate must be a number in Hz, got 'abc'",
    ),
    "rate beyond float": ({**GOOD, "parameters": {"sample_rate": 10**400}}, 422, r"must be a number in Hz"),
    "data beyond float": (
        {**GOOD, "inputs": [{**emg_input(EMG), "data": [10**400] * EMG.size}]},
        422,
        r"input 'emg': data must be numbers|NaN/inf values \(first at sample 0, channel 0\)",
    ),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_infer_refusals_in_the_oip_error_format(served: Served, case: str) -> None:
    body, status, message = REFUSALS[case]
    response = infer(served, body)
    assert response.status_code == status, response.text
    body = response.json()  # the protocol's `error`, and the project's one error shape
    assert set(body) == {"error", "detail"} and body["error"] == body["detail"], response.text
    assert re.search(message, body["error"]), response.text


def test_unknown_model_or_version_is_404(served: Served) -> None:
    for path in ("/v2/models/other", "/v2/models/other/ready", f"/v2/models/{NAME}/versions/nope"):
        response = httpx.get(served.url + path)
        assert response.status_code == 404 and "error" in response.json(), path
    response = infer(served, GOOD, path="/v2/models/other/infer")
    message = f"unknown model 'other': this server serves '{NAME}'"
    assert response.status_code == 404 and response.json() == {"error": message, "detail": message}
    response = infer(served, GOOD, path=f"/v2/models/{NAME}/versions/{served.bundle.version}/infer")
    assert response.status_code == 200
