"""The request-body limit (``MAX_REQUEST_MB``): 413 before a byte is read when ``Content-Length`` is too
big, and 413 as soon as a chunked body (no ``Content-Length``) passes the limit while it is read.

The check happens when the route first reads its body, so the metrics see the route of a refused request.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emgpose_inference.errors import PayloadTooLarge


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None  # the server itself refuses a malformed Content-Length


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            if declared is not None and declared > self.max_bytes:
                raise PayloadTooLarge(self.max_bytes, declared)
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)
