"""``POST /v1/predict``: forwarded to the inference service, unchanged both ways.

The request body streams through (never more than one chunk held, at most ``MAX_REQUEST_MB`` in all)
with its ``Content-Type``, ``Content-Length``, ``Accept``, ``Accept-Encoding`` (``identity`` when the
client sent none), ``X-EMG-*``, ``X-Sample-Rate`` and ``X-Request-ID`` headers; other headers
(``Authorization``, cookies) stay at the gateway. The answer's status, body and headers come back as
the inference service sent them, less hop-by-hop headers. The pooled client lives in the lifespan
state. An inference service that cannot be reached answers 503, one that does not answer within
``INFERENCE_TIMEOUT_S`` 504.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import APIRouter, Request, Response

from emgpose.errors import EmgPoseError, TooLarge, Unavailable
from emgpose_gateway.deps import InferenceDep, SettingsDep
from emgpose_gateway.schemas import ErrorResponse

router = APIRouter(tags=["predict"])

MIB = 1024 * 1024
FORWARDED = {"content-type", "content-length", "accept", "accept-encoding", "x-sample-rate", "x-request-id"}
FORWARDED_PREFIX = "x-emg-"
# Not passed back: hop-by-hop headers, and those the gateway's own server sets for its answer.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer"}
HOP_BY_HOP |= {"transfer-encoding", "upgrade", "content-length", "date", "server"}


class GatewayTimeout(EmgPoseError):
    """The upstream service did not answer in time (HTTP 504)."""

    status = 504


REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "description": "Passed to the inference service as it is: JSON (PredictRequest) or raw float32 "
        "(application/octet-stream with X-EMG-Samples, X-EMG-Channels, X-Sample-Rate); see its /docs.",
        "content": {
            "application/json": {
                "schema": {"type": "object"},
                "example": {"emg": [[0.0] * 16] * 2, "sample_rate": 2000.0},
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The inference service's answer, unchanged", "content": {"application/json": {}}},
    413: {"model": ErrorResponse, "description": "body larger than MAX_REQUEST_MB"},
    503: {"model": ErrorResponse, "description": "the inference service is not reachable"},
    504: {"model": ErrorResponse, "description": "the inference service did not answer within INFERENCE_TIMEOUT_S"},
}


def _too_large(limit: int) -> TooLarge:
    return TooLarge(
        f"request body over {limit} bytes ({limit / MIB:g} MiB, MAX_REQUEST_MB); send shorter recordings "
        f"in several requests"
    )


async def _capped(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise _too_large(limit)
        if chunk:
            yield chunk


def forwarded_headers(request: Request) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if k in FORWARDED or k.startswith(FORWARDED_PREFIX)}
    headers.setdefault("accept-encoding", "identity")  # the body comes back as sent: only compress on request
    return headers


@router.post(
    "/v1/predict",
    summary="Joint angles (or class probabilities) from EMG, answered by the inference service",
    openapi_extra=REQUEST_BODY,
    responses=RESPONSES,
    response_class=Response,
)
async def predict(request: Request, client: InferenceDep, settings: SettingsDep) -> Response:
    limit = int(settings.max_request_mb * MIB)
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise _too_large(limit)
    upstream_request = client.build_request(
        "POST",
        "/v1/predict",
        params=request.query_params,
        headers=forwarded_headers(request),
        content=_capped(request.stream(), limit),
    )
    where = f"inference service at {settings.inference_url}"
    try:
        upstream = await client.send(upstream_request, stream=True)
        try:
            body = b"".join([chunk async for chunk in upstream.aiter_raw()])
        finally:
            await upstream.aclose()
    except httpx.ConnectTimeout as exc:
        raise Unavailable(f"{where} is not reachable: connection timed out ({exc})") from exc
    except httpx.TimeoutException as exc:
        raise GatewayTimeout(
            f"{where} did not answer within {settings.inference_timeout_s:g} s (INFERENCE_TIMEOUT_S)"
        ) from exc
    except httpx.TransportError as exc:
        raise Unavailable(f"{where} is not reachable: {type(exc).__name__}: {exc}") from exc
    response = Response(body, status_code=upstream.status_code)
    for key, value in upstream.headers.multi_items():
        if key.lower() not in HOP_BY_HOP:
            response.headers.append(key, value)
    return response
