"""WS /v1/stream over a real connection: uneven chunks give the numbers of one /v1/predict on the whole
recording; bad messages get an error message and the documented close code."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from inference_support import Served, binary_request, recording, serve_copy
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect


@pytest.fixture(scope="module")
def served(train_model, tmp_path_factory) -> Iterator[Served]:
    with serve_copy(train_model, tmp_path_factory.mktemp("stream")) as server:
        yield server


def receive(ws: ClientConnection) -> dict:
    return json.loads(ws.recv(timeout=10))


def collect_windows(ws: ClientConnection, expected: int) -> list[dict]:
    messages, windows = [], 0
    while windows < expected:
        message = receive(ws)
        assert message["type"] == "prediction", message
        messages.append(message)
        windows += len(message["window_end_s"])
    return messages


def test_uneven_chunks_give_the_numbers_of_one_predict(served: Served) -> None:
    emg = recording(2.0, seed=5)
    whole = httpx.post(f"{served.url}/v1/predict", **binary_request(emg)).json()
    pieces = np.array_split(emg, [7, 399, 400, 523, 1234, 1235, 3001])
    with connect(f"{served.ws_url}/v1/stream?sample_rate=2000") as ws:
        ready = receive(ws)
        assert ready["type"] == "ready" and ready["model_version"] == served.bundle.version
        assert (ready["num_channels"], ready["window_length"], ready["window_stride"]) == (16, 400, 100)
        for i, piece in enumerate(pieces):
            if i % 2:
                ws.send(json.dumps({"emg": piece.tolist()}))
            else:
                ws.send(piece.astype("<f4").tobytes())
        messages = collect_windows(ws, len(whole["window_end_s"]))
    assert all(m["model_version"] == served.bundle.version and m["joints"] == whole["joints"] for m in messages)
    assert len(messages) < len(pieces)  # chunks that complete no window get no answer
    np.testing.assert_allclose(np.concatenate([m["radians"] for m in messages]), whole["radians"], rtol=1e-5)
    np.testing.assert_allclose(np.concatenate([m["degrees"] for m in messages]), whole["degrees"], rtol=1e-5)
    np.testing.assert_allclose(np.concatenate([m["window_end_s"] for m in messages]), whole["window_end_s"])
    assert sum((m["window_end_sample"] for m in messages), []) == whole["window_end_sample"]


def test_the_sample_rate_may_come_as_the_first_message(served: Served) -> None:
    emg = recording(0.3, seed=6)
    with connect(f"{served.ws_url}/v1/stream") as ws:
        ws.send(json.dumps({"sample_rate": 2000}))
        assert receive(ws)["type"] == "ready"
        ws.send(emg.astype("<f4").tobytes())
        (message,) = collect_windows(ws, 3)
    assert message["window_end_sample"] == [399, 499, 599]


NAN_FRAME = np.zeros((50, 16), dtype="<f4")
NAN_FRAME[2, 5] = np.nan
REFUSALS = {
    "frame size": (
        "?sample_rate=2000",
        [b"\x00" * 10],
        1007,
        r"binary frame has 10 bytes, not a positive multiple of 64",
    ),
    "channels": (
        "?sample_rate=2000",
        [json.dumps({"emg": [[0.0] * 8] * 3})],
        1007,
        r"emg\[0\] has 8 values, expected 16",
    ),
    "nan": ("?sample_rate=2000", [NAN_FRAME.tobytes()], 1007, r"NaN/inf values \(first at sample 2, channel 5\)"),
    "not json": ("?sample_rate=2000", ["hello"], 1003, r"text message is not JSON"),
    "unknown": (
        "?sample_rate=2000",
        [json.dumps({"samples": []})],
        1003,
        r"unexpected message with keys \['samples'\]",
    ),
    "no rate": ("", [NAN_FRAME.tobytes()], 1008, r"send the sample rate first"),
    "wrong rate": ("?sample_rate=1000", [], 1007, r"sample_rate query parameter 1000 Hz does not match the 2000 Hz"),
    "bad config": ("", [json.dumps({"sample_rate": -5})], 1007, r"config: sample_rate: Input should be greater than 0"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_bad_messages_get_an_error_and_a_close_code(served: Served, case: str) -> None:
    query, messages, code, pattern = REFUSALS[case]
    replies = []
    with connect(f"{served.ws_url}/v1/stream{query}") as ws:
        for message in messages:
            ws.send(message)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                replies.append(receive(ws))
    *before, error = replies
    assert all(reply["type"] == "ready" for reply in before)
    assert error["type"] == "error" and error["status"] == (422 if code == 1007 else 400)
    assert re.search(pattern, error["detail"]), error["detail"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code
    assert closed.value.rcvd.reason and error["detail"].startswith(closed.value.rcvd.reason)
