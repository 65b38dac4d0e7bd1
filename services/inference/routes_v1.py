"""``POST /v1/predict``: a whole recording in, one answer per window out.

The body is JSON (:class:`~emgpose_inference.schemas.PredictRequest`) or raw little-endian float32
(``Content-Type: application/octet-stream``) with the shape in ``X-EMG-Samples`` / ``X-EMG-Channels``
and the rate in ``X-Sample-Rate``. Parsing, preprocessing and the booster run in a worker thread.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from emgpose_inference import codec
from emgpose_inference.deps import ModelDep, RunnerDep
from emgpose_inference.errors import UnsupportedMediaType
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
    413: {"model": ErrorResponse, "description": "body larger than MAX_REQUEST_MB"},
    415: {"model": ErrorResponse, "description": "Content-Type is neither application/json nor octet-stream"},
    422: {"model": ErrorResponse, "description": "the EMG breaks a rule; the message says what was expected"},
    503: {"model": ErrorResponse, "description": "no model loaded yet"},
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


def _answer(kind: str, raw: bytes, headers: dict[str, str | None], loaded: Loaded, runner: Runner) -> bytes:
    if kind == JSON:
        emg, times = codec.from_json(raw, loaded)
    else:
        emg, times = codec.from_binary(raw, headers, loaded), None
    return predict_response_json(runner.predict("v1", loaded, emg, times))


@router.post(
    "/predict",
    response_model=PredictResponse,
    response_model_exclude_none=True,
    summary="Joint angles (or class probabilities) for every window of a recording",
    openapi_extra=REQUEST_BODY,
    responses=ERRORS,
)
async def predict(
    request: Request,
    loaded: ModelDep,
    runner: RunnerDep,
    x_emg_samples: Annotated[str | None, Header(description="binary body: number of samples")] = None,
    x_emg_channels: Annotated[str | None, Header(description="binary body: channels per sample")] = None,
    x_sample_rate: Annotated[str | None, Header(description="binary body: Hz, the model's rate")] = None,
) -> Response:
    kind = media_type(request)
    raw = await request.body()
    headers = {
        codec.HEADER_SAMPLES: x_emg_samples,
        codec.HEADER_CHANNELS: x_emg_channels,
        codec.HEADER_RATE: x_sample_rate,
    }
    body = await runner.call(_answer, kind, raw, headers, loaded, runner)
    return Response(body, media_type=JSON)
