"""EMG in from the wire: JSON rows, float32 bodies and frames, OIP tensors; each checked against the model.

Every refusal is an :class:`~emgpose.errors.InvalidInput` (422) that says what was expected, or a
:class:`~emgpose.errors.TooLarge` (413) for more samples than ``MAX_PREDICT_SAMPLES``. The sample count
is checked before a body is decoded: from the headers of a float32 body (:func:`binary_shape`, before
a byte is read), and for JSON from the body's size (:func:`json_body_limit`) and then from its brackets
(:mod:`emgpose_inference.fastjson`, before a number is parsed). NaN/inf values are found (and located)
by :meth:`emgpose.train.predict.Predictor.check`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import ValidationError

from emgpose.errors import InvalidInput, TooLarge
from emgpose_inference import fastjson
from emgpose_inference.errors import invalid_from_pydantic
from emgpose_inference.schemas import PredictRequest
from emgpose_inference.state import Loaded

FLOAT32 = np.dtype("<f4")
HEADER_SAMPLES, HEADER_CHANNELS, HEADER_RATE = "X-EMG-Samples", "X-EMG-Channels", "X-Sample-Rate"
JSON_VALUE_BYTES = 32  # the most a JSON number and its separator take ("-1.2345678901234567e-100, ")
JSON_SAMPLE_BYTES = 48  # per sample beyond its values: the row's brackets and one `time` value
JSON_SLACK = 64 * 1024  # field names, the sample rate, whitespace


def too_many_samples(samples: int, max_samples: int, loaded: Loaded, where: str) -> TooLarge:
    rate = loaded.bundle.sample_rate
    return TooLarge(
        f"{where}: {samples} samples are more than the {max_samples} one request may carry (MAX_PREDICT_SAMPLES, "
        f"{max_samples / rate:g} s at {rate:g} Hz); send shorter pieces in several requests, or stream them "
        f"over /v1/stream"
    )


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
    except (TypeError, ValueError, OverflowError):
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
    if minimum is not None:
        check_window(len(emg), loaded, minimum)
    return emg


def check_window(samples: int, loaded: Loaded, minimum: int) -> None:
    if samples < minimum:
        rate = loaded.bundle.sample_rate
        raise InvalidInput(
            f"{samples} samples are fewer than one window: send at least {minimum} samples "
            f"({minimum / rate * 1000:g} ms at {rate:g} Hz) for {_model(loaded)}"
        )


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


def _check_time(time: list[float] | np.ndarray | None, samples: int) -> np.ndarray | None:
    if time is None:
        return None
    if isinstance(time, np.ndarray) and time.ndim != 1:
        raise InvalidInput("time must be a flat list of numbers, one per sample")
    if len(time) != samples:
        raise InvalidInput(f"time has {len(time)} values but emg has {samples} samples; send one time per sample")
    out = np.asarray(time, dtype=np.float64)
    if not np.isfinite(out).all():
        raise InvalidInput(f"time has NaN/inf values (first at sample {int(np.argmin(np.isfinite(out)))})")
    return out


def json_body_limit(channels: int, max_samples: int) -> int:
    """The largest JSON body ``max_samples`` samples of ``channels`` channels can need, generously spelled;
    a bigger one is refused (413) before a byte is decoded."""
    return max_samples * (channels * JSON_VALUE_BYTES + JSON_SAMPLE_BYTES) + JSON_SLACK


def json_limits(loaded: Loaded, max_samples: int) -> fastjson.Limits:
    channels = loaded.bundle.num_channels
    why = f"one per channel of {_model(loaded)}"
    return fastjson.Limits(max_rows=max_samples, max_values=max_samples * channels, widths={"emg": (channels, why)})


def from_json(raw: bytes, loaded: Loaded, max_samples: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A ``PredictRequest`` body: EMG (float32) and optional per-sample times (:mod:`.fastjson`)."""
    document = fastjson.decode(raw, json_limits(loaded, max_samples))
    if not isinstance(document, dict):
        raise InvalidInput('invalid JSON body: expected an object {"emg": [[...], ...], "sample_rate": ...}')
    emg, time = document.get("emg"), document.get("time")
    fields = {**document}
    if isinstance(emg, np.ndarray):
        fields["emg"] = []  # validated below as an array; the model checks the rest
    if isinstance(time, np.ndarray):
        fields["time"] = None
    try:
        request = PredictRequest.model_validate(fields)
    except ValidationError as exc:
        if any(e["type"] == "missing" and tuple(e["loc"]) == ("sample_rate",) for e in exc.errors()):
            check_sample_rate(None, loaded)
        raise invalid_from_pydantic(exc, "invalid JSON body") from None
    check_sample_rate(request.sample_rate, loaded)
    if isinstance(emg, np.ndarray):
        if emg.ndim != 2:
            raise InvalidInput("emg must be rows of samples (samples x channels), got a flat list of numbers")
        array = emg.astype(np.float32)
    else:
        if len(request.emg) > max_samples:
            raise too_many_samples(len(request.emg), max_samples, loaded, "emg")
        array = rows_to_array(request.emg, loaded)
    emg = check_emg(array, loaded, loaded.window_length)
    return emg, _check_time(time if isinstance(time, np.ndarray) else request.time, len(emg))


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


def binary_shape(headers: Mapping[str, str | None], loaded: Loaded, max_samples: int) -> tuple[int, int]:
    """``(samples, channels)`` of a float32 body from its headers, checked before the body is read:
    present and whole, the model's rate and channel count, at least one window, at most ``max_samples``."""
    samples, channels = _int_header(headers, HEADER_SAMPLES), _int_header(headers, HEADER_CHANNELS)
    check_sample_rate(headers.get(HEADER_RATE), loaded, where=HEADER_RATE)
    if samples > max_samples:
        raise too_many_samples(samples, max_samples, loaded, HEADER_SAMPLES)
    if channels != loaded.bundle.num_channels:
        raise InvalidInput(
            f"{_model(loaded)} expects EMG of {loaded.bundle.num_channels} channels per sample, got {channels} "
            f"channels ({HEADER_CHANNELS})"
        )
    check_window(samples, loaded, loaded.window_length)
    return samples, channels


def check_binary_length(length: int, samples: int, channels: int) -> None:
    expected = samples * channels * FLOAT32.itemsize
    if length != expected:
        raise InvalidInput(
            f"body has {length} bytes, but X-EMG-Samples x X-EMG-Channels x 4 bytes (float32) = "
            f"{samples} x {channels} x 4 = {expected}"
        )


def from_binary(raw: bytes, headers: Mapping[str, str | None], loaded: Loaded, max_samples: int) -> np.ndarray:
    """Little-endian float32 samples x channels, shape in ``X-EMG-Samples`` / ``X-EMG-Channels``."""
    samples, channels = binary_shape(headers, loaded, max_samples)
    check_binary_length(len(raw), samples, channels)
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
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput(
            f"input {name!r}: data must be numbers, flat or nested in equal-length rows ({exc})"
        ) from None
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input {name!r}: shape {shape} has a negative dimension; send the actual shape")
    if values.size != math.prod(shape):
        raise InvalidInput(f"input {name!r}: shape {shape} needs {math.prod(shape)} values, data has {values.size}")
    return values.reshape(shape)
