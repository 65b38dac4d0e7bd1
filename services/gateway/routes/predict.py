"""``POST /v1/predict``: forwarded to the inference service, unchanged both ways.

The request body streams through (never more than one chunk held, at most ``MAX_REQUEST_MB`` in all)
with its ``Content-Type``, ``Content-Length``, ``Accept``, ``Accept-Encoding`` (``identity`` when the
client sent none), ``X-EMG-*``, ``X-Sample-Rate`` and ``X-Request-ID`` headers, and, where
``AUTH_ENABLED`` is on, the caller's ``Authorization`` (the inference service checks the same API keys);
other headers (cookies, and ``Authorization`` with auth off) stay at the gateway. The answer's status,
body and headers come back as the inference service sent them, less hop-by-hop headers. The pooled
client lives in the lifespan state. An inference service that cannot be reached answers 503, one that
does not answer within ``INFERENCE_TIMEOUT_S`` 504.

Bounded like inference itself: a float32 body announcing more than ``MAX_PREDICT_SAMPLES`` samples is
refused here (413); inference gets ``X-Request-Timeout`` (``INFERENCE_TIMEOUT_S`` less a margin, or the
client's shorter value) and stops computing when it passes; a client that disconnects while inference
works closes the upstream connection too, so inference stops as well (answered 499, which nobody reads).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import APIRouter, Request, Response

from emgpose.api import ClientGone
from emgpose.api_examples import EXAMPLE_EMG, EXAMPLE_SAMPLE_RATE
from emgpose.errors import EmgPoseError, TooLarge, Unavailable
from emgpose.settings import Settings
from emgpose_gateway.deps import InferenceDep, SettingsDep
from emgpose_gateway.schemas import ErrorResponse

router = APIRouter(tags=["predict"])

MIB = 1024 * 1024
FORWARDED = {"content-type", "content-length", "accept", "accept-encoding", "x-sample-rate", "x-request-id"}
FORWARDED_PREFIX = "x-emg-"
TIMEOUT_HEADER = "x-request-timeout"  # seconds the answer is still wanted; inference stops computing after it
TIMEOUT_MARGIN_S = 0.5  # inference gives up this long before the gateway's own INFERENCE_TIMEOUT_S
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
                "example": {"emg": EXAMPLE_EMG, "sample_rate": EXAMPLE_SAMPLE_RATE},  # one window
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The inference service's answer, unchanged", "content": {"application/json": {}}},
    413: {"model": ErrorResponse, "description": "body larger than MAX_REQUEST_MB, or over MAX_PREDICT_SAMPLES"},
    415: {"model": ErrorResponse, "description": "Content-Type is neither application/json nor octet-stream"},
    422: {"model": ErrorResponse, "description": "the EMG breaks a rule (the inference service's message)"},
    503: {"model": ErrorResponse, "description": "the inference service is not reachable, or busy"},
    504: {"model": ErrorResponse, "description": "no answer within INFERENCE_TIMEOUT_S (inference stopped the work)"},
}


def _too_large(limit: int) -> TooLarge:
    return TooLarge(
        f"request body over {limit} bytes ({limit / MIB:g} MiB, MAX_REQUEST_MB); send shorter recordings "
        f"in several requests"
    )


async def _capped(stream: AsyncIterator[bytes], limit: int, ended: asyncio.Event) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise _too_large(limit)
        if chunk:
            yield chunk
    ended.set()


def check_samples(request: Request, settings: Settings) -> None:
    """A float32 body that announces more than ``MAX_PREDICT_SAMPLES`` samples is refused before it is sent on."""
    samples = request.headers.get("x-emg-samples", "")
    if samples.isdigit() and int(samples) > settings.max_predict_samples:
        raise TooLarge(
            f"X-EMG-Samples {int(samples)} is more than the {settings.max_predict_samples} samples one request may "
            f"carry (MAX_PREDICT_SAMPLES); send shorter pieces in several requests"
        )


def forwarded_timeout(request: Request, settings: Settings) -> str:
    """What inference gets as ``X-Request-Timeout``: the gateway's own wait less a margin, or the client's
    (shorter) value, so that inference stops computing when nobody waits for the answer any more."""
    seconds = max(0.1, settings.inference_timeout_s - TIMEOUT_MARGIN_S)
    try:
        asked = float(request.headers.get(TIMEOUT_HEADER, "nan"))
    except ValueError:
        asked = math.nan
    if math.isfinite(asked) and asked > 0:
        seconds = min(seconds, asked)
    return f"{seconds:.3f}"


async def _watch_client(request: Request, body_sent: asyncio.Event, exchange: asyncio.Future[Any]) -> bool:
    """Once the body has gone upstream, waits for the client's disconnect and then cancels the exchange
    (closing the upstream connection, which makes inference stop computing). True if it did."""
    await body_sent.wait()
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            exchange.cancel()
            return True


def forwarded_headers(request: Request) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if k in FORWARDED or k.startswith(FORWARDED_PREFIX)}
    if request.app.state.settings.auth_enabled and "authorization" in request.headers:
        headers["authorization"] = request.headers["authorization"]  # the caller's key, checked again upstream
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
    check_samples(request, settings)
    body_sent = asyncio.Event()
    headers = forwarded_headers(request)
    headers[TIMEOUT_HEADER] = forwarded_timeout(request, settings)
    upstream_request = client.build_request(
        "POST",
        "/v1/predict",
        params=request.query_params,
        headers=headers,
        content=_capped(request.stream(), limit, body_sent),
    )
    exchange = asyncio.ensure_future(_exchange(client, upstream_request, settings))
    watcher = asyncio.ensure_future(_watch_client(request, body_sent, exchange))
    try:
        status, upstream_headers, body = await exchange
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled() and watcher.result():
            raise ClientGone("the client closed the connection; the request to inference was cancelled") from None
        exchange.cancel()
        raise
    finally:
        watcher.cancel()
    response = Response(body, status_code=status)
    for key, value in upstream_headers.multi_items():
        if key.lower() not in HOP_BY_HOP:
            response.headers.append(key, value)
    return response


async def _exchange(
    client: httpx.AsyncClient, upstream_request: httpx.Request, settings: Settings
) -> tuple[int, httpx.Headers, bytes]:
    """Sends the request on and reads the whole answer; transport failures become 503 or 504."""
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
    return upstream.status_code, upstream.headers, body
