"""What every request passes before the application reads it.

In order: the security headers are put on whatever is answered; a path under
``/api/`` that needs a bearer token is answered 401 from its headers alone,
before a byte of its body is read; the body is then read whole, up to
``CARTFLOW_GATEWAY_MAX_BODY_BYTES`` (413, whether or not it announced its
length) and within ``CARTFLOW_GATEWAY_BODY_TIMEOUT_SECONDS`` (408), and handed
on. The server discards the rest of a refused request's body without keeping
it, within the deadline of the next request's headers; a body too slow is
answered 408 and its connection closed. How long a client may take over its
headers, and how many connections one process holds, are the server's
(``services.gateway.server``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.auth import NotAuthenticated
from services.gateway.original_api import problem

log = logging.getLogger(__name__)

TOO_LARGE = problem("REQUEST_TOO_LARGE", "The request body is too large", "Send a smaller request")
BAD_LENGTH = problem("INVALID_MESSAGE", "Content-Length is not a length", "Send a valid Content-Length")
TOO_SLOW = problem("REQUEST_TIMEOUT", "The request body did not arrive in time", "Send the request again")
FAILED = problem("INTERNAL_ERROR", "The request could not be processed", "Retry later")

#: Requests under /api/ that need no bearer token: they prove who asks otherwise
#: (every other method on these paths still needs one).
PUBLIC_API_REQUESTS = frozenset({("POST", "/api/dev/login/"), ("POST", "/api/payments/webhook/")})

#: The storefront's pages and API: scripts, styles and requests from the gateway itself only,
#: never inside a frame, no plugins, forms posted nowhere else.
STRICT_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: FastAPI's interactive documentation loads Swagger UI and ReDoc from their CDN and starts them
#: with an inline script: allowed on those two pages only.
DOCUMENTATION_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
DOCUMENTATION_PATHS = frozenset({"/docs", "/redoc"})


def security_headers(path: str) -> list[tuple[bytes, bytes]]:
    """The headers every response of ``path`` carries."""
    policy = DOCUMENTATION_POLICY if path in DOCUMENTATION_PATHS else STRICT_POLICY
    headers = [
        (b"content-security-policy", policy.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]
    if path.startswith("/api/"):
        # Answers name a user's cart, and the development login a token: never kept by a cache.
        headers.append((b"cache-control", b"no-store"))
    return headers


class Guard:
    """The ASGI middleware in front of the gateway's application.

    ``user_of`` turns an ``Authorization`` header into the user it proves (or
    raises ``NotAuthenticated``); the user goes into the request's state.
    ``unauthenticated`` is the response to a refused token."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        user_of: Callable[[str | None], str],
        unauthenticated: Callable[[NotAuthenticated], dict[str, Any]],
        max_bytes: int,
        body_timeout: float,
    ) -> None:
        self.app = app
        self.user_of = user_of
        self.unauthenticated = unauthenticated
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        send = _with_headers(send, security_headers(path))
        headers = dict(scope.get("headers") or [])
        if path.startswith("/api/") and (scope.get("method"), path) not in PUBLIC_API_REQUESTS:
            authorization = headers.get(b"authorization")
            try:
                user_id = self.user_of(authorization.decode("latin-1") if authorization is not None else None)
            except NotAuthenticated as error:
                await _answer(send, 401, self.unauthenticated(error), [(b"www-authenticate", b"Bearer")])
                return
            scope.setdefault("state", {})["user_id"] = user_id
        declared = headers.get(b"content-length")
        if declared is not None and not declared.isdigit():
            await _answer(send, 400, BAD_LENGTH, close=True)
            return
        if declared is not None and int(declared) > self.max_bytes:
            await _answer(send, 413, TOO_LARGE)
            return
        try:
            async with asyncio.timeout(self.body_timeout):
                body, other = await self._read_body(receive)
        except TimeoutError:
            await _answer(send, 408, TOO_SLOW, close=True)
            return
        except _TooLarge:
            await _answer(send, 413, TOO_LARGE)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, _replay(body, other, receive), sending)
        except Exception:
            # Answered here, inside the headers: the error handler outside would send none of them.
            log.exception("gateway request failed")
            if started:
                raise
            await _answer(send, 500, FAILED)

    async def _read_body(self, receive: Receive) -> tuple[Message | None, Message | None]:
        """The whole body as one message, or the first message that is not body
        (a disconnect) to hand on as it came."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None, message
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                raise _TooLarge()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}, None


class _TooLarge(Exception):
    pass


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            headers = [*message.get("headers", []), *((n, v) for n, v in extra if n not in present)]
            message = {**message, "headers": headers}
        await send(message)

    return sending


def _replay(body: Message | None, other: Message | None, receive: Receive) -> Receive:
    pending = [message for message in (body, other) if message is not None]

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _answer(
    send: Send, status: int, payload: dict[str, Any], extra: list[tuple[bytes, bytes]] = (), *, close: bool = False
) -> None:
    body = json.dumps(payload).encode()
    headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
