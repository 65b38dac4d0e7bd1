"""EMG in from the wire: JSON rows, float32 bodies and frames, OIP tensors; each checked against the model.

Every refusal is an :class:`~emgpose.errors.InvalidInput` (422) that says what was expected. NaN/inf
values are found (and located) by :meth:`emgpose.train.predict.Predictor.check`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import ValidationError

from emgpose.errors import InvalidInput
from emgpose_inference.errors import invalid_from_pydantic
from emgpose_inference.schemas import PredictRequest
from emgpose_inference.state import Loaded

FLOAT32 = np.dtype("<f4")
HEADER_SAMPLES, HEADER_CHANNELS, HEADER_RATE = "X-EMG-Samples", "X-EMG-Channels", "X-Sample-Rate"


def _model(loaded: Loaded) -> str:
    return f"model {loaded.name} version {loaded.version}"


def check_sample_rate(rate: Any, loaded: Loaded, where: str = "sample_rate") -> float:
    """The rate, if it equals the model's; the service does not resample."""
    expected = loaded.bundle.sample_rate
    if rate is None:
        raise InvalidInput(
            f"{where} is required: give the rate the EMG was recorded at ({_model(loaded)} expects {expected:g} Hz)"
        )
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"{where} must be a number in Hz, got {rate!r}; {_model(loaded)} expects {expected:g} Hz"
        ) from None
    if not math.isfinite(value) or abs(value - expected) > 1e-6 * expected:
        raise InvalidInput(
            f"{where} {value:g} Hz does not match the {expected:g} Hz {_model(loaded)} was trained at; "
            f"resample the EMG to {expected:g} Hz"
        )
    return value


def check_emg(emg: np.ndarray, loaded: Loaded, minimum: int | None = None) -> np.ndarray:
    """``(samples, channels)`` with the model's channel count and at least ``minimum`` samples."""
    channels = loaded.bundle.num_channels
    if emg.ndim != 2 or emg.shape[1] != channels:
        got = f"{emg.shape[1]} channels" if emg.ndim == 2 else f"an array of shape {emg.shape}"
        raise InvalidInput(f"{_model(loaded)} expects EMG of {channels} channels per sample, got {got}")
    if minimum is not None and len(emg) < minimum:
        rate = loaded.bundle.sample_rate
        raise InvalidInput(
            f"{len(emg)} samples are fewer than one window: send at least {minimum} samples "
            f"({minimum / rate * 1000:g} ms at {rate:g} Hz) for {_model(loaded)}"
        )
    return emg


def rows_to_array(rows: list[list[float]], loaded: Loaded, what: str = "emg") -> np.ndarray:
    """JSON rows as float32 ``(samples, channels)``; ragged rows are refused, naming the first."""
    channels = loaded.bundle.num_channels
    for i, row in enumerate(rows):
        if len(row) != channels:
            raise InvalidInput(
                f"{what}[{i}] has {len(row)} values, expected {channels} (one per channel of {_model(loaded)}); "
                f"send samples x channels rows of equal length"
            )
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), channels)


def _check_time(time: list[float] | None, samples: int) -> np.ndarray | None:
    if time is None:
        return None
    if len(time) != samples:
        raise InvalidInput(f"time has {len(time)} values but emg has {samples} samples; send one time per sample")
    out = np.asarray(time, dtype=np.float64)
    if not np.isfinite(out).all():
        raise InvalidInput(f"time has NaN/inf values (first at sample {int(np.argmin(np.isfinite(out)))})")
    return out


def from_json(raw: bytes, loaded: Loaded) -> tuple[np.ndarray, np.ndarray | None]:
    """A ``PredictRequest`` body: EMG (float32) and optional per-sample times."""
    try:
        request = PredictRequest.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "missing" and tuple(e["loc"]) == ("sample_rate",) for e in exc.errors()):
            check_sample_rate(None, loaded)
        raise invalid_from_pydantic(exc, "invalid JSON body") from None
    check_sample_rate(request.sample_rate, loaded)
    emg = check_emg(rows_to_array(request.emg, loaded), loaded, loaded.window_length)
    return emg, _check_time(request.time, len(emg))


def _int_header(headers: Mapping[str, str | None], name: str) -> int:
    value = headers.get(name)
    if value is None:
        raise InvalidInput(
            f"binary EMG needs the headers X-EMG-Samples, X-EMG-Channels and X-Sample-Rate; {name} is missing"
        )
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"header {name} must be a whole number, got {value!r}") from None
    if number < 0:
        raise InvalidInput(f"header {name} must not be negative, got {number}")
    return number


def from_binary(raw: bytes, headers: Mapping[str, str | None], loaded: Loaded) -> np.ndarray:
    """Little-endian float32 samples x channels, shape in ``X-EMG-Samples`` / ``X-EMG-Channels``."""
    samples, channels = _int_header(headers, HEADER_SAMPLES), _int_header(headers, HEADER_CHANNELS)
    check_sample_rate(headers.get(HEADER_RATE), loaded, where=HEADER_RATE)
    expected = samples * channels * FLOAT32.itemsize
    if len(raw) != expected:
        raise InvalidInput(
            f"body has {len(raw)} bytes, but X-EMG-Samples x X-EMG-Channels x 4 bytes (float32) = "
            f"{samples} x {channels} x 4 = {expected}"
        )
    emg = np.frombuffer(raw, dtype=FLOAT32).reshape(samples, channels)
    return check_emg(emg, loaded, loaded.window_length)


def from_frame(raw: bytes, loaded: Loaded) -> np.ndarray:
    """A WebSocket binary frame: whole samples of the model's channel count, float32 little-endian."""
    channels = loaded.bundle.num_channels
    row = channels * FLOAT32.itemsize
    if not raw or len(raw) % row:
        raise InvalidInput(
            f"binary frame has {len(raw)} bytes, not a positive multiple of {row} "
            f"({channels} channels x 4 bytes float32, little-endian, samples x channels)"
        )
    return np.frombuffer(raw, dtype=FLOAT32).reshape(-1, channels)


def flatten_tensor(data: list[Any], shape: list[int], name: str) -> np.ndarray:
    """OIP tensor data (flat or nested, row-major) as a float64 array of ``shape``."""
    try:
        values = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"input {name!r}: data must be numbers, flat or nested in equal-length rows ({exc})"
        ) from None
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input {name!r}: shape {shape} has a negative dimension; send the actual shape")
    if values.size != math.prod(shape):
        raise InvalidInput(f"input {name!r}: shape {shape} needs {math.prod(shape)} values, data has {values.size}")
    return values.reshape(shape)
