"""Request and response models of the inference service, with examples so the OpenAPI page is complete.

``/v1`` is this project's API, ``/v2`` the Open Inference Protocol (KServe / Triton), ``/v1/stream``
a WebSocket whose messages are described here too (FastAPI does not document WebSocket routes).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from emgpose.api import ErrorResponse
from emgpose.api_examples import EXAMPLE_CHANNELS, EXAMPLE_EMG, EXAMPLE_SAMPLE_RATE, EXAMPLE_SAMPLES

_EMG_EXAMPLE = EXAMPLE_EMG  # one window of 16 channels at 2 kHz: the example succeeds when tried


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(examples)})


# --- /v1 -----------------------------------------------------------------------------------------


class PredictRequest(BaseModel):
    """EMG as JSON: one row per sample, one value per channel (the model's channel count and order)."""

    model_config = _examples({"emg": _EMG_EXAMPLE, "sample_rate": EXAMPLE_SAMPLE_RATE})

    emg: list[list[float]] = Field(description="samples x channels, at least one window of samples")
    sample_rate: float = Field(gt=0, description="Hz; must equal the model's sample rate (no resampling)")
    time: list[float] | None = Field(
        None, description="optional per-sample timestamps in seconds; window_end_s then uses this clock"
    )


class PredictResponse(BaseModel):
    """One entry per window that ends inside the input, oldest first."""

    model_config = _examples(
        {
            "model": "emgpose",
            "model_version": "20261121T133904Z-a11a4b",
            "task": "regression",
            "window_end_s": [0.1995, 0.2495],
            "window_end_sample": [399, 499],
            "joints": ["THUMB_CMC_FE", "THUMB_CMC_AA"],
            "radians": [[0.31, -0.12], [0.33, -0.10]],
            "degrees": [[17.76, -6.88], [18.91, -5.73]],
            "out_of_range": [0.0, 0.03],
        },
        {
            "model": "gestures",
            "model_version": "20261121T140000Z-0b1c2d",
            "task": "classification",
            "window_end_s": [0.1995],
            "window_end_sample": [399],
            "classes": ["rest", "fist"],
            "probabilities": [[0.2, 0.8]],
            "predicted": ["fist"],
        },
    )

    model: str
    model_version: str
    task: Literal["regression", "classification"]
    window_end_s: list[float] = Field(
        description="end time of each window: the request's `time` clock, else seconds from the first sample"
    )
    window_end_sample: list[int] = Field(description="index of each window's last sample in the input")
    joints: list[str] | None = Field(None, description="regression: joint names, the columns of radians/degrees")
    radians: list[list[float]] | None = Field(None, description="regression: windows x joints")
    degrees: list[list[float]] | None = Field(None, description="regression: windows x joints")
    classes: list[str] | None = Field(None, description="classification: class names, the probability columns")
    probabilities: list[list[float]] | None = Field(None, description="classification: windows x classes")
    predicted: list[str] | None = Field(None, description="classification: the most probable class per window")
    out_of_range: list[float] | None = Field(
        None,
        description="share of each window's features outside the model's training range (0-1); above 0.1 the "
        "answer is an extrapolation. Absent for models trained before the range was recorded",
    )


class Health(BaseModel):
    status: Literal["alive"] = "alive"


class StoreState(BaseModel):
    uri: str
    reachable: bool
    checked_at: str | None
    error: str | None


class ReloadError(BaseModel):
    version: str
    message: str
    at: str


class Readiness(BaseModel):
    """Always returned by ``/readyz``, with status 200 when ``ready`` and 503 otherwise."""

    model_config = _examples(
        {
            "ready": True,
            "model": "emgpose",
            "version": "20261121T133904Z-a11a4b",
            "task": "regression",
            "loaded_at": "2026-11-21T13:40:02.118+00:00",
            "reload_interval_s": 5.0,
            "store": {
                "uri": "s3://emgpose",
                "reachable": True,
                "checked_at": "2026-11-21T13:41:00+00:00",
                "error": None,
            },
            "last_reload_error": None,
            "detail": None,
        }
    )

    ready: bool
    model: str
    version: str | None
    task: str | None
    loaded_at: str | None
    reload_interval_s: float
    store: StoreState
    last_reload_error: ReloadError | None
    detail: str | None = Field(None, description="why the service is not ready")


# --- /v2: Open Inference Protocol ----------------------------------------------------------------


class OipError(ErrorResponse):
    """Errors below ``/v2``: the one error shape, plus the message again as ``error`` (the Open Inference
    Protocol's field, which its clients read)."""

    model_config = _examples(
        {
            "error": "unknown model 'other': this server serves 'emgpose'",
            "detail": "unknown model 'other': this server serves 'emgpose'",
        }
    )

    error: str


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    model_config = _examples(
        {
            "name": "emgpose",
            "versions": ["20261121T133904Z-a11a4b"],
            "platform": "xgboost",
            "inputs": [
                {"name": "emg", "datatype": "FP32", "shape": [-1, 16]},
                {"name": "sample_rate", "datatype": "FP32", "shape": [1]},
            ],
            "outputs": [
                {"name": "angles_rad", "datatype": "FP32", "shape": [-1, 20]},
                {"name": "angles_deg", "datatype": "FP32", "shape": [-1, 20]},
                {"name": "window_end_s", "datatype": "FP64", "shape": [-1]},
            ],
            "parameters": {"sample_rate": 2000.0, "window_length": 400, "window_stride": 100},
        }
    )

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="not part of the protocol: output names, sample rate, window size"
    )


class InferInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any] = Field(description="row-major, flat or nested")
    parameters: dict[str, Any] | None = None


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """``sample_rate`` is required: in ``parameters`` or as a one-element input tensor ``sample_rate``."""

    model_config = _examples(
        {
            "id": "req-1",
            "parameters": {"sample_rate": EXAMPLE_SAMPLE_RATE},
            "inputs": [
                {
                    "name": "emg",
                    "shape": [EXAMPLE_SAMPLES, EXAMPLE_CHANNELS],
                    "datatype": "FP32",
                    "data": [v for r in _EMG_EXAMPLE for v in r],
                }
            ],
        }
    )

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferInput] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = Field(None, description="a subset of the outputs (default: all)")


class InferOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]
    parameters: dict[str, Any] | None = None


class InferResponse(BaseModel):
    model_config = _examples(
        {
            "model_name": "emgpose",
            "model_version": "20261121T133904Z-a11a4b",
            "id": "req-1",
            "outputs": [
                {"name": "angles_rad", "shape": [1, 2], "datatype": "FP32", "data": [0.31, -0.12]},
                {"name": "window_end_s", "shape": [1], "datatype": "FP64", "data": [0.1995]},
            ],
        }
    )

    model_name: str
    model_version: str
    id: str
    parameters: dict[str, Any] | None = None
    outputs: list[InferOutput]


# --- /v1/stream (WebSocket) ----------------------------------------------------------------------


class StreamConfig(BaseModel):
    """Optional first text message (or ``?sample_rate=`` in the URL)."""

    model_config = ConfigDict(extra="forbid")

    sample_rate: float = Field(gt=0)


class StreamChunk(BaseModel):
    """A chunk as JSON text; binary frames carry float32 little-endian samples x channels instead."""

    model_config = ConfigDict(extra="forbid")

    emg: list[list[float]]
