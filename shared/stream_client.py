"""Replays a recording through ``WS /v1/stream`` in real time: what ``emgpose stream FILE`` runs.

The protocol is the inference service's (:mod:`emgpose_inference.stream`; the gateway relays it unchanged):
connect with ``?sample_rate=``, read ``ready``, send float32 chunks, read one ``prediction`` message per
chunk that completed windows. A message's latency is measured from the moment the chunk that completed
its last window was sent (each window belongs to exactly one chunk: the one holding its last sample).
"""

from __future__ import annotations

import bisect
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection, connect

from emgpose.client import API_KEY_ENV
from emgpose.errors import EmgPoseError, InvalidInput, Unavailable

DRAIN_TIMEOUT_S = 10.0  # after the last chunk: the longest wait for the last windows' answer


def ws_url(base_url: str, sample_rate: float) -> str:
    """``ws(s)://host/v1/stream?sample_rate=...`` from a service's ``http(s)://`` URL."""
    scheme, sep, rest = base_url.rstrip("/").partition("://")
    if not sep or scheme.lower() not in ("http", "https", "ws", "wss"):
        raise InvalidInput(f"--url: expected http://host:port or https://..., got {base_url!r}")
    ws_scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme.lower())
    return f"{ws_scheme}://{rest}/v1/stream?sample_rate={sample_rate!r}"


@dataclass
class Replay:
    """What a replay received: the ``ready`` message, every prediction message and its latency (s)."""

    ready: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    interrupted: bool = False  # Ctrl-C before the end of the recording

    @property
    def windows(self) -> int:
        return sum(len(m["window_end_sample"]) for m in self.messages)

    def joined(self) -> dict[str, Any]:
        """The messages as one ``/v1/predict``-shaped answer (for the predictions CSV)."""
        keys = ("window_end_s", "window_end_sample", "radians", "degrees", "probabilities", "predicted", "out_of_range")
        answer: dict[str, Any] = {k: v for k, v in self.ready.items() if k in ("task", "joints", "classes")}
        for key in keys:
            if self.messages and key in self.messages[0]:
                answer[key] = [item for m in self.messages for item in m[key]]
        return answer


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def _server_error(message: dict[str, Any]) -> EmgPoseError:
    return EmgPoseError(f"the stream answered {message.get('status')}: {message.get('detail')}")


def replay(
    base_url: str,
    emg: np.ndarray,
    sample_rate: float,
    *,
    api_key: str | None = None,
    chunk_s: float = 0.05,
    speed: float = 1.0,
    on_message: Callable[[dict[str, Any], float], None] | None = None,
) -> Replay:
    """Sends ``emg`` (samples x channels) in chunks of ``chunk_s`` seconds, paced at ``speed`` times real
    time (0: as fast as the server answers), and collects the predictions."""
    if chunk_s <= 0 or speed < 0:
        raise InvalidInput(f"--chunk-ms must be > 0 and --speed >= 0, got {chunk_s * 1000:g} ms and {speed:g}")
    key = api_key or os.environ.get(API_KEY_ENV, "").strip() or None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = ws_url(base_url, sample_rate)
    try:
        ws = connect(url, additional_headers=headers, open_timeout=10, max_size=64 * 1024 * 1024)
    except InvalidStatus as exc:
        raise Unavailable(f"{url}: the server refused the WebSocket ({exc.response.status_code})") from None
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
        raise Unavailable(f"{url}: {exc}") from None
    with ws:
        try:
            return _run(ws, emg, sample_rate, chunk_s, speed, on_message)
        except ConnectionClosed as exc:
            reason = exc.rcvd.reason if exc.rcvd else ""
            raise EmgPoseError(
                f"the stream closed ({exc.rcvd.code if exc.rcvd else 'no close frame'}) {reason}"
            ) from None


def _receive(ws: ClientConnection, timeout: float | None) -> dict[str, Any] | None:
    try:
        message = json.loads(ws.recv(timeout=timeout))
    except TimeoutError:
        return None
    if message.get("type") == "error":
        raise _server_error(message)
    return message


def _run(
    ws: ClientConnection,
    emg: np.ndarray,
    rate: float,
    chunk_s: float,
    speed: float,
    on_message: Callable[[dict[str, Any], float], None] | None,
) -> Replay:
    ready = _receive(ws, 10.0)
    if ready is None or ready.get("type") != "ready":
        raise Unavailable(f"the stream sent no 'ready' message (got {ready})")
    result = Replay(ready)
    size = max(1, round(chunk_s * rate))
    ends: list[int] = []  # exclusive end sample of each chunk sent
    sent_at: list[float] = []
    length, stride = int(ready["window_length"]), int(ready["window_stride"])
    expected = 0 if len(emg) < length else (len(emg) - length) // stride + 1
    data = np.ascontiguousarray(emg, dtype="<f4")

    def take(message: dict[str, Any]) -> None:
        received = time.monotonic()
        chunk = bisect.bisect_right(ends, int(message["window_end_sample"][-1]))
        latency = received - sent_at[min(chunk, len(sent_at) - 1)]
        result.messages.append(message)
        result.latencies_s.append(latency)
        if on_message:
            on_message(message, latency)

    try:
        _send_all(ws, data, rate, size, speed, ends, sent_at, take)
    except KeyboardInterrupt:  # Ctrl-C: what arrived so far is the result
        result.interrupted = True
        return result
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while result.windows < expected and (left := deadline - time.monotonic()) > 0:
        if (message := _receive(ws, left)) is not None:
            take(message)
    return result


def _send_all(
    ws: ClientConnection,
    data: np.ndarray,
    rate: float,
    size: int,
    speed: float,
    ends: list[int],
    sent_at: list[float],
    take: Callable[[dict[str, Any]], None],
) -> None:
    """Sends the chunks on their real-time schedule, taking the answers that arrive in between."""
    start_clock = time.monotonic()
    for start, stop in _chunks(len(data), size):
        due = start_clock + (stop / rate) / speed if speed else time.monotonic()
        while (wait := due - time.monotonic()) > 0:
            if (message := _receive(ws, wait)) is not None:
                take(message)
        ends.append(stop)
        sent_at.append(time.monotonic())
        ws.send(data[start:stop].tobytes())
        while (message := _receive(ws, 0)) is not None:
            take(message)
