"""``POST /v1/predict``: a whole recording in, one answer per window out.

The body is JSON (:class:`~emgpose_inference.schemas.PredictRequest`) or raw little-endian float32
(``Content-Type: application/octet-stream``) with the shape in ``X-EMG-Samples`` / ``X-EMG-Channels``
and the rate in ``X-Sample-Rate``. Parsing, preprocessing and the booster run in a worker thread, within
the bounds of :mod:`emgpose_inference.admission` (samples, memory, deadline, a client that left).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Header, Request, Response

from emgpose.errors import TooLarge
from emgpose.train.predict import Predictor, Prepared
from emgpose_inference import admission, codec
from emgpose_inference.admission import CHUNK_SAMPLES, MIB, Work
from emgpose_inference.batching import Fresh
from emgpose_inference.deps import BudgetDep, ModelDep, RunnerDep, SettingsDep
from emgpose_inference.errors import PayloadTooLarge, UnsupportedMediaType
from emgpose_inference.infer import Runner, predict_response_json
from emgpose_inference.schemas import ErrorResponse, PredictRequest, PredictResponse
from emgpose_inference.state import Loaded

router = APIRouter(prefix="/v1", tags=["v1"])

JSON, BINARY = "application/json", "application/octet-stream"

REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {"schema": {"$ref": f"#/components/schemas/{PredictRequest.__name__}"}},
            BINARY: {
                "schema": {"type": "string", "format": "binary"},
                "description": "float32 little-endian, samples x channels row-major; shape and rate in headers",
            },
        },
    }
}
ERRORS = {
    413: {"model": ErrorResponse, "description": "body larger than MAX_REQUEST_MB, or over MAX_PREDICT_SAMPLES"},
    415: {"model": ErrorResponse, "description": "Content-Type is neither application/json nor octet-stream"},
    422: {"model": ErrorResponse, "description": "the EMG breaks a rule; the message says what was expected"},
    499: {"model": ErrorResponse, "description": "the client closed the connection first (no one reads this)"},
    503: {"model": ErrorResponse, "description": "no model loaded yet, or no room in PREDICT_MEMORY_MB in time"},
    504: {"model": ErrorResponse, "description": "the prediction was stopped at its deadline"},
}


def media_type(request: Request) -> str:
    value = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if value == JSON or (value.startswith("application/") and value.endswith("+json")):
        return JSON
    if value == BINARY:
        return BINARY
    raise UnsupportedMediaType(
        f"Content-Type {value or '(none)'!r} is not accepted: send {JSON} (PredictRequest) or {BINARY} "
        f"(float32 little-endian with X-EMG-Samples, X-EMG-Channels and X-Sample-Rate headers)"
    )


def _decode(
    kind: str, raw: bytes, headers: dict[str, str | None], loaded: Loaded, max_samples: int
) -> tuple[np.ndarray, np.ndarray | None]:
    if kind == JSON:
        return codec.from_json(raw, loaded, max_samples)
    return codec.from_binary(raw, headers, loaded, max_samples), None


def _answer(
    kind: str, raw: bytes, headers: dict[str, str | None], loaded: Loaded, runner: Runner, work: Work, max_samples: int
) -> bytes:
    emg, times = _decode(kind, raw, headers, loaded, max_samples)
    return predict_response_json(runner.predict("v1", loaded, emg, times, work))


def _batchable(kind: str, raw: bytes, loaded: Loaded) -> bool:
    """At most one preprocessing step of samples (:data:`~emgpose_inference.admission.CHUNK_SAMPLES`): the
    batcher prepares it in one go. Longer recordings keep their own thread and are prepared step by
    step, checking for a client that left between steps. A JSON number takes at least 2 bytes ("0,")."""
    per_sample = loaded.bundle.num_channels * (codec.FLOAT32.itemsize if kind == BINARY else 2)
    return len(raw) <= CHUNK_SAMPLES * per_sample


@router.post(
    "/predict",
    response_model=PredictResponse,
    response_model_exclude_none=True,
    summary="Joint angles (or class probabilities) for every window of a recording",
    description="At most `MAX_PREDICT_SAMPLES` samples per request (checked before the body is read: "
    "from the headers of a float32 body, from the size of a JSON one). Requests wait for room in "
    "`PREDICT_MEMORY_MB` with their body unread; the work stops when the client disconnects or the "
    "deadline passes (`PREDICT_TIMEOUT_S`, or the `X-Request-Timeout` header when shorter).",
    openapi_extra=REQUEST_BODY,
    responses=ERRORS,
)
async def predict(
    request: Request,
    loaded: ModelDep,
    runner: RunnerDep,
    budget: BudgetDep,
    settings: SettingsDep,
    x_emg_samples: Annotated[str | None, Header(description="binary body: number of samples")] = None,
    x_emg_channels: Annotated[str | None, Header(description="binary body: channels per sample")] = None,
    x_sample_rate: Annotated[str | None, Header(description="binary body: Hz, the model's rate")] = None,
    x_request_timeout: Annotated[
        str | None, Header(description="seconds this answer is still wanted (shortens PREDICT_TIMEOUT_S)")
    ] = None,
) -> Response:
    kind = media_type(request)
    work = Work(admission.Deadline.for_request(request.headers, settings), "the prediction")
    max_samples, length = settings.max_predict_samples, admission.content_length(request)
    max_body = int(settings.max_request_mb * MIB)
    if length is not None and length > max_body:
        raise PayloadTooLarge(max_body, length)
    headers = {
        codec.HEADER_SAMPLES: x_emg_samples,
        codec.HEADER_CHANNELS: x_emg_channels,
        codec.HEADER_RATE: x_sample_rate,
    }
    if kind == BINARY:
        samples, channels = codec.binary_shape(headers, loaded, max_samples)  # before a byte is read
        limit = samples * channels * codec.FLOAT32.itemsize
        if length is not None:
            codec.check_binary_length(length, samples, channels)
        cost = admission.binary_cost(limit)
    else:
        limit = min(codec.json_body_limit(loaded.bundle.num_channels, max_samples), max_body)
        if length is not None and length > limit:
            raise _json_too_large(length, limit, loaded, max_samples)
        cost = admission.json_cost(length or limit, max_samples, loaded.bundle.num_channels)

    def too_large(seen: int) -> Exception:
        if kind == BINARY:
            return TooLarge(f"request body too large: over the {limit} bytes X-EMG-Samples x X-EMG-Channels x 4 give")
        return _json_too_large(seen, limit, loaded, max_samples)

    async with budget.reserve(cost, work.deadline):  # admission.bounded, with the batcher told of the request
        with runner.batcher.expect() as arrival:
            raw = await admission.read_body(request, limit, too_large, work)

            def prepare() -> tuple[Predictor, Prepared] | Fresh:  # in the batch thread
                emg, times = _decode(kind, raw, headers, loaded, max_samples)
                return runner.prepare_request(loaded, emg, times, work)

            async def compute() -> bytes:
                if _batchable(kind, raw, loaded):
                    return await runner.batcher.submit("v1", prepare, predict_response_json, arrival)
                arrival.here()  # a long recording: its own thread, step by step
                return await runner.call(_answer, kind, raw, headers, loaded, runner, work, max_samples)

            return Response(await admission.watched(request, work, compute), media_type=JSON)


def _json_too_large(size: int, limit: int, loaded: Loaded, max_samples: int) -> TooLarge:
    return TooLarge(
        f"request body too large: {size} bytes of JSON, more than the {limit} bytes {max_samples} samples "
        f"(MAX_PREDICT_SAMPLES) of {loaded.bundle.num_channels} channels can need; send shorter pieces, or "
        f"float32 (application/octet-stream), which takes 4 bytes a value"
    )
