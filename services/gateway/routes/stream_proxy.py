"""``WS /v1/stream`` on the gateway: the inference service's stream, relayed both ways.

Browsers reach only the gateway (the inference service usually sits on a private network), and a
browser's ``WebSocket`` cannot set an ``Authorization`` header. So the gateway relays the stream, with the
protocol of :mod:`emgpose_inference.stream` unchanged, and takes the API key in one of two ways:

* ``Authorization: Bearer <key>`` on the handshake, as inference itself (scripts, the CLI);
* from a browser, as WebSocket subprotocols: ``new WebSocket(url, ["emgpose.stream", "emgpose.key." + key])``.
  The gateway answers with the subprotocol ``emgpose.stream`` (never the key) and sends the key on to
  inference in the header. A subprotocol, unlike a query parameter, does not end up in access logs.

Where ``AUTH_ENABLED`` is on, a missing or invalid key is refused here the way inference refuses it (the
error message, then close 1008); inference checks the key again. Every message goes through unchanged,
text or binary, and inference's close code and reason come back to the client. An inference service that
cannot be reached gets ``{"type": "error", "status": 503, ...}`` and close 1013 (try again later).
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from emgpose.auth_http import authorize
from emgpose.errors import EmgPoseError

log = logging.getLogger(__name__)
router = APIRouter()

PROTOCOL = "emgpose.stream"
KEY_PROTOCOL = "emgpose.key."  # followed by the key
POLICY, TRY_LATER, SERVER_ERROR = 1008, 1013, 1011
MAX_MESSAGE = 64 * 1024 * 1024  # inference's own limits decide; this only stops a runaway message
OPEN_TIMEOUT_S = 10.0


def key_from_subprotocols(offered: list[str]) -> str | None:
    """The API key a browser offered as ``emgpose.key.<key>``, if any."""
    return next((p[len(KEY_PROTOCOL) :] for p in offered if p.startswith(KEY_PROTOCOL)), None)


def upstream_url(inference_url: str, query: str) -> str:
    """``ws(s)://<inference>/v1/stream?<query>`` from ``INFERENCE_URL`` (``http(s)://...``)."""
    base = inference_url.rstrip("/")
    scheme, sep, rest = base.partition("://")
    ws_scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme)
    return f"{ws_scheme}{sep}{rest}/v1/stream" + (f"?{query}" if query else "")


async def _refuse(websocket: WebSocket, code: int, status: int, detail: str) -> None:
    try:
        await websocket.send_json({"type": "error", "status": status, "detail": detail})
        await websocket.close(code=code, reason=detail.encode()[:120].decode(errors="ignore"))
    except (WebSocketDisconnect, RuntimeError, OSError):
        log.debug("stream client left before the refusal could be sent: %s", detail)


@router.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    offered: list[str] = list(websocket.scope.get("subprotocols") or [])
    authorization = websocket.headers.get("authorization")
    key = key_from_subprotocols(offered)
    if key is not None and authorization is None:
        authorization = f"Bearer {key}"
        websocket.scope["headers"] = [*websocket.scope["headers"], (b"authorization", authorization.encode())]
    await websocket.accept(subprotocol=PROTOCOL if PROTOCOL in offered else None)
    try:
        await authorize(websocket, "submit")  # no-op with auth off
    except EmgPoseError as exc:  # 401 or 403; 503 while keys cannot be checked
        await _refuse(websocket, POLICY if exc.status < 500 else TRY_LATER, exc.status, exc.message)
        return
    settings = websocket.app.state.settings
    headers = {"Authorization": authorization} if settings.auth_enabled and authorization else {}
    url = upstream_url(settings.inference_url, websocket.url.query)
    try:
        upstream = await connect(
            url, additional_headers=headers, open_timeout=OPEN_TIMEOUT_S, max_size=MAX_MESSAGE, compression=None
        )
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
        detail = f"the inference service at {settings.inference_url} is not reachable: {type(exc).__name__}: {exc}"
        log.warning("stream: %s", detail)
        await _refuse(websocket, TRY_LATER, 503, detail)
        return
    async with upstream:
        await _relay(websocket, upstream)


async def _relay(websocket: WebSocket, upstream: ClientConnection) -> None:
    """Both directions until either side ends; then the other side is closed with the same code."""
    async with anyio.create_task_group() as group:

        async def to_upstream() -> None:
            try:
                while True:
                    message: dict[str, Any] = await websocket.receive()
                    if message["type"] == "websocket.disconnect":
                        break
                    data = message.get("bytes")
                    await upstream.send(data if data is not None else (message.get("text") or ""))
            except ConnectionClosed:
                return  # inference closed; to_client forwards its close
            await upstream.close()
            group.cancel_scope.cancel()

        async def to_client() -> None:
            try:
                async for data in upstream:
                    if isinstance(data, bytes):
                        await websocket.send_bytes(data)
                    else:
                        await websocket.send_text(data)
            except ConnectionClosed:
                pass
            except (WebSocketDisconnect, RuntimeError, OSError):
                group.cancel_scope.cancel()  # the client left
                return
            code = upstream.close_code or 1000
            code = code if code not in (1005, 1006) else SERVER_ERROR  # reserved codes cannot be sent
            try:
                await websocket.close(code=code, reason=upstream.close_reason or "")
            except (WebSocketDisconnect, RuntimeError, OSError):
                pass
            group.cancel_scope.cancel()

        group.start_soon(to_upstream)
        group.start_soon(to_client)
