"""Open Inference Protocol v2 (KServe / Triton): health, server and model metadata, readiness, infer.

Errors below ``/v2`` are ``{"error": "<message>", "detail": "<message>"}``. The server serves one model,
``MODEL_NAME``, in the version ``latest`` named when it was loaded; the ``/versions/{version}`` forms
accept only that one.
Where AUTH_ENABLED is on, the health routes are open, metadata and model readiness need a ``read`` API
key and inference a ``submit`` key.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from emgpose.auth_http import require
from emgpose.errors import NotFound, TooLarge
from emgpose_inference import __version__, codec, oip
from emgpose_inference.admission import MIB, Deadline, Work, bounded, content_length, json_cost
from emgpose_inference.deps import HolderDep, RunnerDep
from emgpose_inference.errors import PayloadTooLarge, auth_responses
from emgpose_inference.infer import Runner
from emgpose_inference.schemas import InferRequest, InferResponse, ModelMetadata, OipError, ServerMetadata
from emgpose_inference.state import Loaded, ModelHolder

router = APIRouter(prefix="/v2", tags=["v2 (Open Inference Protocol)"])

ERRORS = {
    404: {"model": OipError, "description": "unknown model name or version"},
    413: {"model": OipError, "description": "body larger than MAX_REQUEST_MB, or over MAX_PREDICT_SAMPLES"},
    422: {"model": OipError, "description": "the request breaks a rule; the message says what was expected"},
    503: {"model": OipError, "description": "no model loaded yet, or no room in PREDICT_MEMORY_MB in time"},
    504: {"model": OipError, "description": "the inference was stopped at its deadline"},
} | auth_responses(OipError)
READ, SUBMIT = [require("read")], [require("submit")]
READY = {"type": "object", "properties": {"ready": {"type": "boolean"}}, "required": ["ready"]}
MODEL_READY = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
    "required": ["name", "ready"],
}
READY_ERRORS = ERRORS | {  # the readiness routes answer 503 with their own body, not an error
    503: {"description": "no model loaded yet", "content": {"application/json": {"schema": MODEL_READY}}}
}
INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{InferRequest.__name__}"}}},
    }
}


def served(holder: ModelHolder, name: str, version: str | None = None) -> Loaded:
    """The loaded model if ``name`` (and ``version``) name it; 404 for others, 503 before a model loads."""
    if name != holder.name:
        raise NotFound(f"unknown model {name!r}: this server serves {holder.name!r}")
    loaded = holder.require()
    if version is not None and version != loaded.version:
        raise NotFound(f"model {name!r} has no loaded version {version!r}: this server serves {loaded.version!r}")
    return loaded


@router.get(
    "", response_model=ServerMetadata, summary="Server metadata", responses=auth_responses(OipError), dependencies=READ
)
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name="emgpose-inference", version=__version__, extensions=[])


@router.get("/health/live", summary="Liveness")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get(
    "/health/ready",
    summary="Readiness (200 or 503)",
    responses={503: {"description": "not ready", "content": {"application/json": {"schema": READY}}}},
)
async def ready(holder: HolderDep) -> JSONResponse:
    return JSONResponse({"ready": holder.ready}, status_code=200 if holder.ready else 503)


@router.get(
    "/models/{name}", response_model=ModelMetadata, responses=ERRORS, summary="Model metadata", dependencies=READ
)
async def model_metadata(name: str, holder: HolderDep) -> ModelMetadata:
    return oip.metadata(served(holder, name))


@router.get("/models/{name}/versions/{version}", response_model=ModelMetadata, responses=ERRORS, dependencies=READ)
async def model_version_metadata(name: str, version: str, holder: HolderDep) -> ModelMetadata:
    return oip.metadata(served(holder, name, version))


def _readiness(holder: ModelHolder, name: str, version: str | None) -> JSONResponse:
    if name != holder.name:
        raise NotFound(f"unknown model {name!r}: this server serves {holder.name!r}")
    loaded = holder.current
    if version is not None and loaded is not None and version != loaded.version:
        raise NotFound(f"model {name!r} has no loaded version {version!r}: this server serves {loaded.version!r}")
    return JSONResponse({"name": name, "ready": loaded is not None}, status_code=200 if loaded else 503)


@router.get("/models/{name}/ready", responses=READY_ERRORS, summary="Model readiness (200 or 503)", dependencies=READ)
async def model_ready(name: str, holder: HolderDep) -> JSONResponse:
    return _readiness(holder, name, None)


@router.get(
    "/models/{name}/versions/{version}/ready",
    responses=READY_ERRORS,
    summary="Model version readiness",
    dependencies=READ,
)
async def model_version_ready(name: str, version: str, holder: HolderDep) -> JSONResponse:
    return _readiness(holder, name, version)


def _infer(raw: bytes, loaded: Loaded, runner: Runner, work: Work, max_samples: int) -> bytes:
    request = oip.parse(raw, loaded, max_samples)
    result = runner.predict("v2", loaded, request.emg, None, work)
    response = InferResponse(
        model_name=loaded.name,
        model_version=loaded.version,
        id=request.id,
        outputs=oip.outputs(result, request.outputs),
    )
    return response.model_dump_json(exclude_none=True).encode()


async def _answer(loaded: Loaded, request: Request, runner: Runner) -> Response:
    """Bounded like ``/v1/predict`` (:mod:`emgpose_inference.admission`): the body's size against what
    ``MAX_PREDICT_SAMPLES`` samples can need, room in the memory budget before it is read, the deadline
    and the client's disconnect while it is computed."""
    settings, budget = request.app.state.settings, request.app.state.budget
    work = Work(Deadline.for_request(request.headers, settings), "the inference")
    max_samples, length = settings.max_predict_samples, content_length(request)
    max_body = int(settings.max_request_mb * MIB)
    if length is not None and length > max_body:
        raise PayloadTooLarge(max_body, length)
    limit = min(codec.json_body_limit(loaded.bundle.num_channels, max_samples), max_body)

    def too_large(seen: int) -> TooLarge:
        return TooLarge(
            f"request body too large: {seen} bytes of JSON, more than the {limit} bytes {max_samples} samples "
            f"(MAX_PREDICT_SAMPLES) of {loaded.bundle.num_channels} channels can need; send shorter pieces"
        )

    if length is not None and length > limit:
        raise too_large(length)
    cost = json_cost(length or limit, max_samples, loaded.bundle.num_channels)

    async def compute(raw: bytes) -> bytes:
        return await runner.call(_infer, raw, loaded, runner, work, max_samples)

    body = await bounded(request, budget, work, cost, limit, too_large, compute)
    return Response(body, media_type="application/json")


@router.post(
    "/models/{name}/infer",
    response_model=InferResponse,
    responses=ERRORS,
    openapi_extra=INFER_BODY,
    summary="Inference; sample_rate is required (parameters.sample_rate or input 'sample_rate')",
    dependencies=SUBMIT,
)
async def infer(name: str, request: Request, holder: HolderDep, runner: RunnerDep) -> Response:
    return await _answer(served(holder, name), request, runner)  # the model is read once per request


@router.post(
    "/models/{name}/versions/{version}/infer",
    response_model=InferResponse,
    responses=ERRORS,
    openapi_extra=INFER_BODY,
    summary="Inference on a named version (only the loaded one exists)",
    dependencies=SUBMIT,
)
async def infer_version(name: str, version: str, request: Request, holder: HolderDep, runner: RunnerDep) -> Response:
    return await _answer(served(holder, name, version), request, runner)
