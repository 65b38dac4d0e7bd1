"""Bounded work per prediction request, over real HTTP (and real sockets where a client must misbehave):
the sample count checked before a body is read or decoded, the numeric JSON reader, steps that stop for
a client that left (499, never a 500) or a deadline (504), the memory budget (503 when full), the slow-body
timeout (408), and the one error shape in answers and in the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from http_raw import read_response, send_head
from inference_support import NAME, Served, binary_request, parse_metrics, recording, serve_copy, wait_for

from emgpose.errors import InvalidInput, TooLarge
from emgpose.train.predict import predict
from emgpose_inference import admission, codec, fastjson
from emgpose_inference.admission import CHUNK_SAMPLES

MAX_SAMPLES = 20_000  # 10 s at 2 kHz: small enough to build over-limit requests quickly
IDLE_S = 1.0
JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def served(train_model, tmp_path_factory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("bounded")
    with serve_copy(train_model, folder, max_predict_samples=MAX_SAMPLES, body_idle_timeout_s=IDLE_S) as server:
        yield server


def metrics(served: Served) -> dict[str, float]:
    return parse_metrics(httpx.get(f"{served.url}/metrics").text)


def series(status: int) -> str:
    return f'emgpose_inference_requests_total{{endpoint="/v1/predict",method="POST",status="{status}"}}'


# --- the numeric JSON reader --------------------------------------------------------------------------


LIMITS = fastjson.Limits(max_rows=10_000, max_values=1_000_000)


def test_fastjson_reads_long_numeric_arrays_into_numpy_and_equals_json() -> None:
    rng = np.random.default_rng(0)
    rows = (rng.standard_normal((1000, 16)) * 10.0 ** rng.integers(-8, 8, (1000, 16))).tolist()
    doc = {
        "emg": rows,
        "sample_rate": 2000,
        "time": (1.7e9 + np.arange(1000) / 2000).tolist(),
        "note": '"emg": [' + "1, " * 2000 + "1]",  # looks like an array, but inside a string
        "extra": {"x": [1, 2], "y": None},
    }
    decoded = fastjson.decode(json.dumps(doc).encode(), LIMITS)
    assert isinstance(decoded["emg"], np.ndarray) and decoded["emg"].shape == (1000, 16)
    np.testing.assert_array_equal(decoded["emg"], np.array(rows))  # the same float64 values, bit for bit
    assert isinstance(decoded["time"], np.ndarray) and decoded["time"].tolist() == doc["time"]
    for key in ("sample_rate", "note", "extra"):
        assert decoded[key] == doc[key]
    flat = fastjson.decode(json.dumps({"data": [float("nan"), float("-inf")] + [0.5] * 2000}).encode(), LIMITS)
    assert np.isnan(flat["data"][0]) and flat["data"][1] == -np.inf and flat["data"].shape == (2002,)


def test_fastjson_checks_rows_before_it_parses_a_number() -> None:
    garbage_rows = '{"emg": [' + ",".join(["[1e, 1e]"] * 10_001) + "]}"  # well-bracketed, not numbers
    with pytest.raises(TooLarge, match=r"emg has 10001 rows \(samples\), more than the 10000 .*MAX_PREDICT_SAMPLES"):
        fastjson.decode(garbage_rows.encode(), LIMITS)
    with pytest.raises(InvalidInput, match=r"emg: every value must be a number"):
        fastjson.decode(garbage_rows.replace("[1e, 1e],", "", 1).encode(), LIMITS)
    with pytest.raises(TooLarge, match=r"data has 1000001 values"):
        fastjson.decode(('{"data": [' + ",".join(["0"] * 1_000_001) + "]}").encode(), LIMITS)


def test_fastjson_refusals_name_the_field() -> None:
    ragged = [[0.25] * 16 for _ in range(300)]
    ragged[7] = ragged[7][:15]
    with pytest.raises(InvalidInput, match=r"emg\[7\] has 15 values, expected 16 \(rows of equal length\)"):
        fastjson.decode(json.dumps({"emg": ragged}).encode(), LIMITS)
    empty_item = '{"emg": [' + ", ".join(["[1, 2]"] * 500) + ", [1, , 2]]}"  # numpy alone would read -1 there
    with pytest.raises(InvalidInput, match=r"invalid JSON body: Invalid JSON"):
        fastjson.decode(empty_item.encode(), LIMITS)
    many = '{"emg": [' + ",".join(["[]"] * (fastjson.MAX_VALUES + 1)) + "]}"
    with pytest.raises(InvalidInput, match=r"over 500000 values outside plain arrays of numbers"):
        fastjson.decode(many.encode(), LIMITS)
    forged = fastjson.decode(json.dumps({"emg": "\x00deadbeefdeadbeef:0", "pad": [0.5] * 2000}).encode(), LIMITS)
    assert forged["emg"] == "\x00deadbeefdeadbeef:0"  # a placeholder cannot be forged from outside


# --- the service ------------------------------------------------------------------------------------


def test_long_recordings_are_computed_in_steps_with_the_same_answers(served: Served) -> None:
    emg = recording(2.2 * CHUNK_SAMPLES / 2000, seed=7)  # three steps, the last one partial
    expected = predict(served.bundle, emg)
    by_json = httpx.post(
        f"{served.url}/v1/predict", content=json.dumps({"emg": emg.tolist(), "sample_rate": 2000}), headers=JSON_HEADERS
    )
    by_binary = httpx.post(f"{served.url}/v1/predict", **binary_request(emg))
    for response in (by_json, by_binary):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["window_end_sample"] == expected.window_end.tolist()
        np.testing.assert_allclose(body["radians"], expected.values, rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(body["out_of_range"], expected.out_of_range.round(4))


def test_too_many_samples_are_refused_before_the_body_is_read(served: Served) -> None:
    samples = MAX_SAMPLES + 1
    headers = {**binary_request(recording(0.01))["headers"], "X-EMG-Samples": str(samples)}
    sock = send_head(served.url, "POST", "/v1/predict", {**headers, "Content-Length": str(samples * 64)})
    with sock:  # not one byte of the body is sent: the answer cannot have waited for it
        refused = read_response(sock, timeout=5)
    assert refused.status == 413
    assert "X-EMG-Samples: 20001 samples are more than the 20000 one request may carry" in refused.json()["detail"]
    limit = codec.json_body_limit(served.bundle.num_channels, MAX_SAMPLES)
    sock = send_head(served.url, "POST", "/v1/predict", {**JSON_HEADERS, "Content-Length": str(limit + 1)})
    with sock:
        refused = read_response(sock, timeout=5)
    assert refused.status == 413 and f"more than the {limit} bytes 20000 samples" in refused.json()["detail"]
    short_numbers = json.dumps({"emg": [[0] * 16] * samples, "sample_rate": 2000})  # under the byte limit
    response = httpx.post(f"{served.url}/v1/predict", content=short_numbers, headers=JSON_HEADERS)
    assert response.status_code == 413 and "emg has 20001 rows (samples)" in response.json()["detail"], response.text


def test_a_passed_deadline_stops_the_work_with_504(served: Served) -> None:
    before = metrics(served)['emgpose_inference_windows_predicted_total{endpoint="v1"}']
    request = binary_request(recording(MAX_SAMPLES / 2000, seed=3))
    request["headers"]["X-Request-Timeout"] = "0.000001"
    response = httpx.post(f"{served.url}/v1/predict", **request)
    assert response.status_code == 504, response.text
    assert "did not finish within its deadline of 1e-06 s (X-Request-Timeout)" in response.json()["detail"]
    assert metrics(served)['emgpose_inference_windows_predicted_total{endpoint="v1"}'] == before  # nothing computed
    request["headers"]["X-Request-Timeout"] = "soon"
    bad = httpx.post(f"{served.url}/v1/predict", **request)
    assert bad.status_code == 422 and "header X-Request-Timeout must be a positive number" in bad.json()["detail"]


def test_a_client_that_leaves_is_499_not_500_and_stops_the_work(served: Served, caplog) -> None:
    caplog.set_level(logging.INFO)
    emg = recording(MAX_SAMPLES / 2000, seed=5)
    body = json.dumps({"emg": emg.tolist(), "sample_rate": 2000}).encode()
    before = metrics(served)
    headers = {**JSON_HEADERS, "Content-Length": str(len(body))}
    send_head(served.url, "POST", "/v1/predict", headers, body).close()  # the whole body, then gone
    send_head(served.url, "POST", "/v1/predict", headers, body[: len(body) // 2]).close()  # gone mid-body
    wait_for(lambda: metrics(served).get(series(499), 0) >= before.get(series(499), 0) + 2, what="two 499s")
    after = metrics(served)
    assert after.get(series(500), 0) == before.get(series(500), 0) == 0
    windows = 'emgpose_inference_windows_predicted_total{endpoint="v1"}'
    assert after[windows] == before[windows]  # the computation stopped before its first step
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text
    assert "closed the connection before the answer" in caplog.text


def test_a_silent_body_is_cut_after_the_idle_timeout(served: Served) -> None:
    request = binary_request(recording(1.0))
    head = {**request["headers"], "Content-Length": str(len(request["content"]))}
    started = time.monotonic()
    with send_head(served.url, "POST", "/v1/predict", head, request["content"][:1000]) as sock:
        response = read_response(sock, timeout=10)
    assert response.status == 408 and IDLE_S <= time.monotonic() - started < IDLE_S + 5
    assert "nothing for 1 s (BODY_IDLE_TIMEOUT_S)" in response.json()["detail"]
    assert response.headers["connection"] == "close"


def test_the_memory_budget_makes_requests_wait_unread_then_503(train_model, tmp_path) -> None:
    with serve_copy(train_model, tmp_path, predict_memory_mb=1, body_idle_timeout_s=10) as server:
        request = binary_request(recording(1.0))
        head = {**request["headers"], "Content-Length": str(len(request["content"]))}
        holder = send_head(server.url, "POST", "/v1/predict", head, request["content"][:1000])
        with holder:
            time.sleep(0.3)  # the first request holds the whole budget while its body trickles in
            second = httpx.post(
                f"{server.url}/v1/predict",
                content=request["content"],
                headers={**request["headers"], "X-Request-Timeout": "0.5"},
            )
            assert second.status_code == 503 and second.headers["retry-after"] == "1"
            assert (
                "the service is busy" in second.json()["detail"] and "PREDICT_MEMORY_MB = 1" in second.json()["detail"]
            )
            holder.sendall(request["content"][1000:])
            assert read_response(holder).status == 200
        again = httpx.post(f"{server.url}/v1/predict", **request)
        assert again.status_code == 200


def test_memory_budget_is_first_come_first_served() -> None:
    asyncio.run(_first_come_first_served())


async def _first_come_first_served() -> None:
    budget = admission.MemoryBudget(capacity=100)
    deadline = admission.Deadline(time.monotonic() + 5, 5.0, "test")
    order: list[str] = []

    async def take(name: str, size: int, hold: float) -> None:
        async with budget.reserve(size, deadline):
            order.append(name)
            await asyncio.sleep(hold)

    first = asyncio.ensure_future(take("big-1", 80, 0.2))
    await asyncio.sleep(0.01)
    big = asyncio.ensure_future(take("big-2", 80, 0))
    await asyncio.sleep(0.01)
    small = asyncio.ensure_future(take("small", 10, 0))  # would fit now, but waits behind big-2
    await asyncio.gather(first, big, small)
    assert order == ["big-1", "big-2", "small"] and budget.used == 0
    short = admission.Deadline(time.monotonic() + 0.05, 0.05, "test")
    async with budget.reserve(100, deadline):
        with pytest.raises(admission.Busy):
            async with budget.reserve(1, short):
                pass
    assert budget.used == 0 and not budget._waiters


def test_errors_have_one_shape_and_405_names_every_method(served: Served) -> None:
    wrong = httpx.get(f"{served.url}/v1/predict")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json() == {"detail": "method GET is not allowed on /v1/predict; it takes POST"}
    oip = httpx.get(f"{served.url}/v2/models/{NAME}/infer")
    assert oip.status_code == 405 and oip.json()["error"] == oip.json()["detail"]
    nowhere = httpx.get(f"{served.url}/v1/nothing")
    assert nowhere.status_code == 404 and nowhere.json()["detail"].startswith("no route GET /v1/nothing")
    not_utf8 = httpx.post(f"{served.url}/v1/predict", content=b'{"emg": "\xff"}', headers=JSON_HEADERS)
    assert not_utf8.status_code == 422 and "invalid JSON body" in not_utf8.json()["detail"]


def test_openapi_documents_every_error_in_the_one_shape(served: Served) -> None:
    schema = httpx.get(f"{served.url}/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert "errors" in schema["components"]["schemas"]["ErrorResponse"]["properties"]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            codes = {int(code) for code in operation["responses"] if code.isdigit()}
            assert 500 in codes, (method, path)
            if "requestBody" in operation:
                assert {408, 422} <= codes, (method, path)
            model = "OipError" if path.startswith("/v2") else "ErrorResponse"
            for code, response in operation["responses"].items():
                if code.isdigit() and int(code) >= 400 and "application/json" in response.get("content", {}):
                    ref = response["content"]["application/json"]["schema"].get("$ref", "")
                    readiness = path.endswith("ready") or path == "/readyz"  # 503 with their own body
                    assert ref.endswith(f"/{model}") or (readiness and code == "503"), (method, path, code, ref)
    predict_codes = set(schema["paths"]["/v1/predict"]["post"]["responses"])
    assert {"413", "415", "422", "503", "504"} <= predict_codes
