"""Request bodies larger than ``CARTFLOW_GATEWAY_MAX_BODY_BYTES`` are refused
with 413 before the application sees them, whether or not they announce a
length: the body is read up to the limit first, then handed on."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.original_api import problem

TOO_LARGE = problem("REQUEST_TOO_LARGE", "The request body is too large", "Send a smaller request")
BAD_LENGTH = problem("INVALID_MESSAGE", "Content-Length is not a length", "Send a valid Content-Length")


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and not declared.isdigit():
            await _answer(send, 400, BAD_LENGTH)
            return
        if declared is not None and int(declared) > self.max_bytes:
            await _answer(send, 413, TOO_LARGE)
            return
        # Small by construction: read it whole (up to the limit), then replay it.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await _answer(send, 413, TOO_LARGE)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _answer(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
