"""The inference service over real HTTP: /v1/predict (JSON and float32 bodies), its refusals, the body
limit, health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from inference_support import NAME, Served, binary_request, parse_metrics, recording, serve_copy

from emgpose.train.predict import predict

LIMIT_MB = 2.0


@pytest.fixture(scope="module")
def served(train_model, tmp_path_factory) -> Iterator[Served]:
    with serve_copy(train_model, tmp_path_factory.mktemp("inference"), max_request_mb=LIMIT_MB) as server:
        yield server


def post_json(served: Served, body: object) -> httpx.Response:
    return httpx.post(
        f"{served.url}/v1/predict", content=json.dumps(body), headers={"Content-Type": "application/json"}
    )


def test_json_and_binary_answers_equal_the_library(served: Served) -> None:
    emg = recording(1.5)
    expected = predict(served.bundle, emg)
    by_json = post_json(served, {"emg": emg.tolist(), "sample_rate": 2000})
    by_binary = httpx.post(f"{served.url}/v1/predict", **binary_request(emg))
    for response in (by_json, by_binary):
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["model"], body["model_version"], body["task"]) == (NAME, served.bundle.version, "regression")
        assert body["joints"] == served.bundle.joint_names and "probabilities" not in body
        assert len(body["radians"]) == len(expected) == (len(emg) - 400) // 100 + 1
        np.testing.assert_allclose(body["radians"], expected.values, rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(body["degrees"], expected.degrees, rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(body["window_end_s"], expected.t_end)
        assert body["window_end_sample"] == expected.window_end.tolist() == list(range(399, len(emg), 100))


def test_json_time_is_the_clock_of_window_end_s(served: Served) -> None:
    emg = recording(0.3, seed=1)
    times = 1700000000.0 + np.arange(len(emg)) / 2000
    body = post_json(served, {"emg": emg.tolist(), "sample_rate": 2000.0, "time": times.tolist()}).json()
    np.testing.assert_allclose(body["window_end_s"], times[399::100])


def _json(emg: np.ndarray, **extra: object) -> dict:
    return {"content": json.dumps({"emg": emg.tolist(), "sample_rate": 2000, **extra}), "headers": _JSON}


_JSON = {"Content-Type": "application/json"}
_EMG = recording(0.5, seed=2)
_NAN = _EMG.tolist()
_NAN[10][3] = float("nan")  # json.dumps writes the NaN literal, as Python clients do
_NAN_TEXT = json.dumps({"emg": _NAN, "sample_rate": 2000})
_INF = _EMG.copy()
_INF[123, 7] = np.inf
_RAGGED = _EMG.tolist()
_RAGGED[5] = _RAGGED[5][:15]
_NULL = _EMG.tolist()
_NULL[3][1] = None


def _binary(emg: np.ndarray = _EMG, drop: str | None = None, **headers: str) -> dict:
    request = binary_request(emg)
    request["headers"].update(headers)
    if drop:
        del request["headers"][drop]
    return request


REFUSALS = {
    "json channels": (_json(_EMG[:, :8]), 422, r"emg\[0\] has 8 values, expected 16 \(one per channel"),
    "binary channels": (_binary(_EMG[:, :8]), 422, r"expects EMG of 16 channels per sample, got 8 channels"),
    "json rate": (
        {"content": json.dumps({"emg": _EMG.tolist(), "sample_rate": 1000}), "headers": _JSON},
        422,
        r"sample_rate 1000 Hz does not match the 2000 Hz model hand .* resample the EMG to 2000 Hz",
    ),
    "json no rate": (
        {"content": json.dumps({"emg": _EMG.tolist()}), "headers": _JSON},
        422,
        r"sample_rate is required: .* expects 2000 Hz",
    ),
    "binary rate": (_binary(**{"X-Sample-Rate": "2048"}), 422, r"X-Sample-Rate 2048 Hz does not match the 2000 Hz"),
    "binary no rate": (_binary(drop="X-Sample-Rate"), 422, r"X-Sample-Rate is required"),
    "too short": (_json(_EMG[:399]), 422, r"399 samples are fewer than one window: send at least 400 samples \(200 ms"),
    "json nan": ({"content": _NAN_TEXT, "headers": _JSON}, 422, r"1 NaN/inf values \(first at sample 10, channel 3\)"),
    "binary inf": (_binary(_INF), 422, r"1 NaN/inf values \(first at sample 123, channel 7\)"),
    "malformed": ({"content": '{"emg": [[1, 2]', "headers": _JSON}, 422, r"invalid JSON body: Invalid JSON"),
    "ragged": (
        {"content": json.dumps({"emg": _RAGGED, "sample_rate": 2000}), "headers": _JSON},
        422,
        r"emg\[5\] has 15 values, expected 16",
    ),
    "null": (
        {"content": json.dumps({"emg": _NULL, "sample_rate": 2000}), "headers": _JSON},
        422,
        r"emg\[3\]\[1\]: Input should be a valid number",
    ),
    "size mismatch": (
        _binary(**{"X-EMG-Samples": "1001"}),
        422,
        r"body has 64000 bytes, but .* = 1001 x 16 x 4 = 64064",
    ),
    "no shape": (_binary(drop="X-EMG-Channels"), 422, r"X-EMG-Channels is missing"),
    "bad shape": (_binary(**{"X-EMG-Samples": "ten"}), 422, r"header X-EMG-Samples must be a whole number, got 'ten'"),
    "time length": (_json(_EMG, time=[0.0, 1.0]), 422, r"time has 2 values but emg has 1000 samples"),
    "media type": ({"content": b"1,2,3", "headers": {"Content-Type": "text/csv"}}, 415, r"'text/csv' is not accepted"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_refusals_say_what_was_expected(served: Served, case: str) -> None:
    request, status, message = REFUSALS[case]
    response = httpx.post(f"{served.url}/v1/predict", **request)
    assert response.status_code == status, response.text
    assert re.search(message, response.json()["detail"]), response.json()["detail"]


def test_bodies_over_the_limit_are_413_declared_or_chunked(served: Served) -> None:
    big = bytes(int(LIMIT_MB * 2**20) + 4096)
    declared = httpx.post(f"{served.url}/v1/predict", content=big, headers=_binary()["headers"])
    assert declared.status_code == 413 and "limit is 2097152 bytes" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    chunked = httpx.post(f"{served.url}/v1/predict", content=chunks(), headers=_binary()["headers"])
    assert chunked.status_code == 413 and "request body too large" in chunked.json()["detail"]
    oip = httpx.post(f"{served.url}/v2/models/{NAME}/infer", content=big, headers=_JSON)
    assert oip.status_code == 413 and "request body too large" in oip.json()["error"]


def test_health_readiness_and_metrics(served: Served) -> None:
    assert httpx.get(f"{served.url}/healthz").json() == {"status": "alive"}
    ready = httpx.get(f"{served.url}/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] and body["model"] == NAME and body["version"] == served.bundle.version
    assert body["store"]["reachable"] and body["last_reload_error"] is None
    usual = httpx.post(f"{served.url}/v1/predict", **binary_request(recording(0.25))).json()
    assert len(usual["out_of_range"]) == len(usual["degrees"])
    loud = httpx.post(f"{served.url}/v1/predict", **binary_request(recording(0.25) * 1000)).json()
    assert all(share > 0.1 for share in loud["out_of_range"])  # a gain far beyond the training range
    httpx.post(f"{served.url}/v1/predict", **_binary(drop="X-Sample-Rate"))
    metrics = httpx.get(f"{served.url}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = parse_metrics(metrics.text)
    assert values['emgpose_inference_requests_total{endpoint="/v1/predict",method="POST",status="200"}'] >= 1
    assert values['emgpose_inference_requests_total{endpoint="/v1/predict",method="POST",status="422"}'] >= 1
    assert values['emgpose_inference_windows_predicted_total{endpoint="v1"}'] >= 4
    assert values['emgpose_inference_windows_out_of_range_total{endpoint="v1"}'] >= len(loud["out_of_range"])
    count = values['emgpose_inference_prediction_seconds_count{endpoint="v1"}']
    assert count >= 1 and values['emgpose_inference_prediction_seconds_bucket{endpoint="v1",le="+Inf"}'] == count
    assert values[f'emgpose_inference_model_info{{model="{NAME}",version="{served.bundle.version}"}}'] == 1
    assert values['emgpose_inference_reloads_total{result="success"}'] == 1
    assert values['emgpose_inference_reloads_total{result="failure"}'] == 0
    assert "# TYPE emgpose_inference_prediction_seconds histogram" in metrics.text


def test_openapi_documents_both_bodies_and_the_oip_request(served: Served) -> None:
    schema = httpx.get(f"{served.url}/openapi.json").json()
    predict_body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert set(predict_body) == {"application/json", "application/octet-stream"}
    components = schema["components"]["schemas"]
    assert components["PredictRequest"]["examples"] and "emg" in components["PredictRequest"]["properties"]
    assert {"InferRequest", "InferInput", "PredictResponse", "ModelMetadata", "Readiness"} <= set(components)
    headers = {p["name"] for p in schema["paths"]["/v1/predict"]["post"]["parameters"]}
    assert headers == {"x-emg-samples", "x-emg-channels", "x-sample-rate", "x-request-timeout"}
    infer = schema["paths"]["/v2/models/{name}/infer"]["post"]
    assert infer["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/InferRequest")
