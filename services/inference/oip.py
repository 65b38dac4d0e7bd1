"""Open Inference Protocol tensors: the model's metadata, an infer request to EMG, a prediction to outputs.

Inputs: ``emg`` (FP32, or FP64, shape ``[samples, channels]``, data flat or nested) and the sample rate,
required, either as ``parameters.sample_rate`` of the request or as a one-element input ``sample_rate``.
Outputs, all by default or the subset the request names: regression ``angles_rad`` and ``angles_deg``
(FP32 ``[windows, joints]``), classification ``probabilities`` (FP32 ``[windows, classes]``) and
``class_index`` (INT64 ``[windows]``), and for both ``window_end_s`` (FP64 ``[windows]``, seconds from
the first sample).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from emgpose.errors import InvalidInput
from emgpose.train.predict import Prediction
from emgpose_inference import codec, fastjson
from emgpose_inference.errors import invalid_from_pydantic
from emgpose_inference.schemas import InferOutput, InferRequest, ModelMetadata, TensorMetadata
from emgpose_inference.state import Loaded

PLATFORM = "xgboost"
EMG, RATE = "emg", "sample_rate"
FLOAT_TYPES = ("FP32", "FP64")


def output_specs(loaded: Loaded) -> list[TensorMetadata]:
    k = loaded.bundle.outputs
    if loaded.bundle.task == "regression":
        outs = [TensorMetadata(name="angles_rad", datatype="FP32", shape=[-1, k])]
        outs.append(TensorMetadata(name="angles_deg", datatype="FP32", shape=[-1, k]))
    else:
        outs = [TensorMetadata(name="probabilities", datatype="FP32", shape=[-1, k])]
        outs.append(TensorMetadata(name="class_index", datatype="INT64", shape=[-1]))
    return [*outs, TensorMetadata(name="window_end_s", datatype="FP64", shape=[-1])]


def metadata(loaded: Loaded) -> ModelMetadata:
    bundle = loaded.bundle
    names = {"joint_names": bundle.joint_names} if bundle.task == "regression" else {"class_names": bundle.class_names}
    return ModelMetadata(
        name=bundle.name,
        versions=[bundle.version],
        platform=PLATFORM,
        inputs=[
            TensorMetadata(name=EMG, datatype="FP32", shape=[-1, bundle.num_channels]),
            TensorMetadata(name=RATE, datatype="FP32", shape=[1]),
        ],
        outputs=output_specs(loaded),
        parameters={
            "task": bundle.task,
            "sample_rate": bundle.sample_rate,
            "window_length": loaded.window_length,
            "window_stride": loaded.window_stride,
            **names,
        },
    )


@dataclass(frozen=True)
class ParsedInfer:
    id: str
    emg: np.ndarray  # float32 (samples, channels)
    outputs: list[str]


def _sample_rate(request: InferRequest, loaded: Loaded) -> None:
    from_params = (request.parameters or {}).get(RATE)
    tensors = [t for t in request.inputs if t.name == RATE]
    from_input = None
    if tensors:
        values = codec.flatten_tensor(tensors[0].data, tensors[0].shape, RATE).ravel()
        if values.size != 1:
            raise InvalidInput(f"input {RATE!r} must hold exactly one value (Hz), got {values.size}")
        from_input = float(values[0])
    if from_params is None:
        codec.check_sample_rate(from_input, loaded, where="sample_rate (parameters.sample_rate or input 'sample_rate')")
        return
    rate = codec.check_sample_rate(from_params, loaded, where="parameters.sample_rate")  # a number, the model's
    if from_input is not None and rate != from_input:
        raise InvalidInput(f"parameters.sample_rate ({rate:g}) and input 'sample_rate' ({from_input:g}) disagree")


def _emg(request: InferRequest, loaded: Loaded) -> np.ndarray:
    unknown = sorted({t.name for t in request.inputs} - {EMG, RATE})
    tensors = [t for t in request.inputs if t.name == EMG]
    if unknown or len(tensors) != 1 or len([t for t in request.inputs if t.name == RATE]) > 1:
        names = [t.name for t in request.inputs]
        raise InvalidInput(f"inputs {names}: expected one {EMG!r} tensor and optionally one {RATE!r} tensor")
    tensor = tensors[0]
    if tensor.datatype not in FLOAT_TYPES:
        raise InvalidInput(f"input {EMG!r} has datatype {tensor.datatype!r}; send FP32 (or FP64)")
    channels = loaded.bundle.num_channels
    if len(tensor.shape) != 2 or tensor.shape[1] != channels:
        raise InvalidInput(
            f"input {EMG!r} has shape {tensor.shape}; model {loaded.name} version {loaded.version} expects "
            f"[samples, {channels}]"
        )
    values = codec.flatten_tensor(tensor.data, tensor.shape, EMG).astype(np.float32)
    return codec.check_emg(values, loaded, loaded.window_length)


def parse(raw: bytes, loaded: Loaded, max_samples: int) -> ParsedInfer:
    """An infer request read by :mod:`.fastjson` (tensor data straight into numpy, at most ``max_samples``
    samples of the model's channels), validated against :class:`InferRequest`."""
    channels = loaded.bundle.num_channels
    limits = fastjson.Limits(max_rows=max_samples, max_values=max_samples * channels)
    document = fastjson.decode(raw, limits)
    arrays: dict[int, np.ndarray] = {}
    inputs = document.get("inputs") if isinstance(document, dict) else None
    for i, item in enumerate(inputs if isinstance(inputs, list) else []):
        if isinstance(item, dict) and isinstance(item.get("data"), np.ndarray):
            arrays[i] = item["data"]
            item["data"] = []  # validated as a list below; the array comes back after
    try:
        request = InferRequest.model_validate(document)
    except ValidationError as exc:
        raise invalid_from_pydantic(exc, "invalid inference request") from None
    for i, array in arrays.items():
        request.inputs[i].data = array  # type: ignore[assignment]
    for tensor in request.inputs:
        if tensor.name == EMG and len(tensor.shape) == 2 and tensor.shape[0] > max_samples:
            raise codec.too_many_samples(tensor.shape[0], max_samples, loaded, f"input {EMG!r}")
    emg = _emg(request, loaded)
    _sample_rate(request, loaded)
    available = [spec.name for spec in output_specs(loaded)]
    wanted = [o.name for o in request.outputs] if request.outputs else available
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise InvalidInput(f"requested outputs {unknown} do not exist; this model has {available}")
    return ParsedInfer(id=request.id or uuid.uuid4().hex, emg=emg, outputs=wanted)


def _tensor(name: str, values: np.ndarray, datatype: str) -> InferOutput:
    return InferOutput(name=name, shape=list(values.shape), datatype=datatype, data=values.ravel().tolist())


def outputs(result: Prediction, wanted: list[str]) -> list[InferOutput]:
    if result.task == "regression":
        tensors = {
            "angles_rad": lambda: _tensor("angles_rad", result.values.astype(np.float32), "FP32"),
            "angles_deg": lambda: _tensor("angles_deg", result.degrees.astype(np.float32), "FP32"),
        }
    else:
        tensors = {
            "probabilities": lambda: _tensor("probabilities", result.values.astype(np.float32), "FP32"),
            "class_index": lambda: _tensor("class_index", np.argmax(result.values, axis=1).astype(np.int64), "INT64"),
        }
    tensors["window_end_s"] = lambda: _tensor("window_end_s", result.t_end.astype(np.float64), "FP64")
    return [tensors[name]() for name in wanted]
