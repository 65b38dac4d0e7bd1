"""``WS /v1/stream``: live EMG in chunks, one message per chunk that completes windows.

Protocol (also in the service README):

1. The client connects, optionally with ``?sample_rate=2000``. The connection is pinned to the model
   version loaded at that moment, with its own causal filter and window state (a
   :class:`~emgpose.train.predict.Predictor`). No model loaded: an error message, then close 1013.
2. Without the query parameter the first message must be the text ``{"sample_rate": 2000}``. Once the
   rate is known (and equals the model's) the server sends ``{"type": "ready", ...}`` with the model,
   version, channel count and window size.
3. The client sends chunks of any length: binary frames of float32 little-endian samples x channels
   (row-major), or text ``{"emg": [[...], ...]}``. After each chunk that completes at least one window
   the server sends ONE message ``{"type": "prediction", ...}`` holding all the new windows, with the
   fields of a ``/v1/predict`` answer (``window_end_s`` and ``window_end_sample`` count from the
   first sample of the stream). A chunk that completes no window gets no answer.
4. A bad message gets ``{"type": "error", "status": ..., "detail": "..."}``, then the server closes:
   1007 for invalid data (channel count, NaN/inf, byte count, ragged rows, wrong sample rate), 1003 for
   a message of a kind it does not read, 1008 for EMG before the sample rate, 1011 for a server fault.
5. Where AUTH_ENABLED is on, the handshake carries ``Authorization: Bearer <key>`` (scope ``submit``);
   without a valid key the server accepts, sends the error (status 401 or 403) and closes with 1008.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from starlette.types import Message

from emgpose.auth_http import authorize
from emgpose.errors import EmgPoseError, InvalidInput
from emgpose.train.predict import Prediction, Predictor, Prepared
from emgpose_inference import codec
from emgpose_inference.errors import invalid_from_pydantic
from emgpose_inference.infer import Runner, prediction_fields
from emgpose_inference.schemas import StreamChunk, StreamConfig
from emgpose_inference.state import Loaded

log = logging.getLogger(__name__)
router = APIRouter()

UNSUPPORTED, POLICY, INVALID_DATA, SERVER_ERROR, TRY_LATER = 1003, 1008, 1007, 1011, 1013


class StreamError(Exception):
    def __init__(self, code: int, status: int, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


def _decode(text: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StreamError(UNSUPPORTED, 400, f"text message is not JSON ({exc}); send {{'emg': [[...]]}}") from None
    if not isinstance(message, dict):
        raise StreamError(UNSUPPORTED, 400, "text message must be a JSON object: {'sample_rate': ...} or {'emg': ...}")
    return message


class StreamSession:
    """One connection: the pinned model, its predictor, and what each message asks for."""

    def __init__(self, loaded: Loaded, runner: Runner) -> None:
        self.loaded = loaded
        self.runner = runner
        self.predictor = Predictor(loaded.bundle, source="stream chunk")
        self.rate: float | None = None

    def configure(self, rate: Any, where: str) -> dict[str, Any]:
        """Accepts the sample rate (it must be the model's) and returns the ``ready`` message."""
        try:
            self.rate = codec.check_sample_rate(rate, self.loaded, where=where)
        except InvalidInput as exc:
            raise StreamError(INVALID_DATA, 422, exc.message) from None
        bundle = self.loaded.bundle
        regression = bundle.task == "regression"
        return {
            "type": "ready",
            "model": bundle.name,
            "model_version": bundle.version,
            "task": bundle.task,
            "sample_rate": bundle.sample_rate,
            "num_channels": bundle.num_channels,
            "window_length": self.loaded.window_length,
            "window_stride": self.loaded.window_stride,
            "joints" if regression else "classes": bundle.joint_names if regression else bundle.class_names,
        }

    def reply(self, message: Message) -> str | None:
        """The JSON answer to one received message (None when a chunk completes no window). CPU work
        (parsing, predicting, serialising): the caller runs it in a worker thread."""
        if message.get("bytes") is not None:
            emg = self._data(lambda: codec.from_frame(message["bytes"], self.loaded))
        else:
            body = _decode(message.get("text") or "")
            if "emg" not in body:
                return json.dumps(self._config(body))
            emg = self._data(lambda: codec.rows_to_array(self._rows(body), self.loaded))
        result = self.runner.push("stream", self.predictor, emg)
        return json.dumps({"type": "prediction", **prediction_fields(result)}) if len(result) else None

    def prepare(self, message: Message) -> Callable[[], tuple[Predictor, Prepared]]:
        """A binary chunk as a batch job's ``prepare`` (parse, check, filters and windows; in the batch thread)."""

        def run() -> tuple[Predictor, Prepared]:
            emg = self._data(lambda: codec.from_frame(message["bytes"], self.loaded))
            return self.predictor, self.predictor.prepare(emg)

        return run

    @staticmethod
    def respond(result: Prediction) -> str | None:
        """The prediction message of a chunk (None when it completed no window)."""
        return json.dumps({"type": "prediction", **prediction_fields(result)}) if len(result) else None

    def _config(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.rate is not None or set(body) != {"sample_rate"}:
            raise StreamError(UNSUPPORTED, 400, f"unexpected message with keys {sorted(body)}; send {{'emg': ...}}")
        try:
            config = StreamConfig.model_validate(body)
        except ValidationError as exc:
            raise StreamError(INVALID_DATA, 422, invalid_from_pydantic(exc, "config").message) from None
        return self.configure(config.sample_rate, where="sample_rate")

    @staticmethod
    def _rows(body: dict[str, Any]) -> list[list[float]]:
        try:
            return StreamChunk.model_validate(body).emg
        except ValidationError as exc:
            raise invalid_from_pydantic(exc, "chunk") from None

    def _data(self, parse: Callable[[], np.ndarray]) -> np.ndarray:
        if self.rate is None:
            raise StreamError(POLICY, 400, "send the sample rate first: ?sample_rate=... or {'sample_rate': ...}")
        try:
            return self.predictor.check(parse())
        except InvalidInput as exc:
            raise StreamError(INVALID_DATA, 422, exc.message) from None


async def _close(websocket: WebSocket, error: StreamError) -> None:
    reason = error.message.encode()[:120].decode(errors="ignore")  # a close reason holds at most 123 bytes
    try:
        await websocket.send_json({"type": "error", "status": error.status, "detail": error.message})
        await websocket.close(code=error.code, reason=reason)
    except (WebSocketDisconnect, RuntimeError, OSError):
        log.debug("stream client left before the error could be sent: %s", error.message)


async def _serve(websocket: WebSocket, session: StreamSession) -> None:
    query_rate = websocket.query_params.get("sample_rate")
    if query_rate is not None:
        await websocket.send_json(session.configure(query_rate, where="sample_rate query parameter"))
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:  # a binary chunk: predicted in a batch with other requests
            answer = await session.runner.batcher.submit("stream", session.prepare(message), session.respond)
        else:
            answer = await session.runner.call(session.reply, message)
        if answer is not None:
            await websocket.send_text(answer)


@router.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    holder, runner, metrics = websocket.state.holder, websocket.state.runner, websocket.app.state.metrics
    await websocket.accept()
    try:
        await authorize(websocket, "submit")  # the handshake's Authorization header; no-op with auth off
    except EmgPoseError as exc:  # 401 or 403; 503 while keys cannot be checked
        metrics.stream_sessions.inc(outcome="refused")
        await _close(websocket, StreamError(POLICY if exc.status < 500 else TRY_LATER, exc.status, exc.message))
        return
    loaded = holder.current  # pinned for the whole connection
    outcome = "closed"
    try:
        if loaded is None:
            raise StreamError(TRY_LATER, 503, holder.unavailable_reason())
        await _serve(websocket, StreamSession(loaded, runner))
    except WebSocketDisconnect:
        pass
    except StreamError as exc:
        outcome = "refused" if exc.code == TRY_LATER else "invalid"
        await _close(websocket, exc)
    except EmgPoseError as exc:
        outcome = "error"
        await _close(websocket, StreamError(SERVER_ERROR, exc.status, exc.message))
    except Exception:
        outcome = "error"
        log.exception("stream on model %s failed", loaded.version if loaded else None)
        await _close(websocket, StreamError(SERVER_ERROR, 500, "internal error; see the service log"))
    finally:
        metrics.stream_sessions.inc(outcome=outcome)
