"""The gateway's HTTP server: uvicorn, held to limits a public endpoint needs.

uvicorn closes an idle keep-alive connection, but waits for ever on a client
that sends half its headers; its h11 protocol is given a deadline here
(``CARTFLOW_GATEWAY_HEADER_TIMEOUT_SECONDS``) from the moment a connection
opens, or its last response ends, until a request's headers are complete. The
body's deadline and size are the guard's (``services.gateway.guard``).
``CARTFLOW_GATEWAY_MAX_CONNECTIONS`` bounds what one process holds (uvicorn's
``limit_concurrency``: beyond it, 503).
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from services.runtime.settings import Settings


class H11WithHeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request headers do not
    arrive within ``header_timeout`` seconds."""

    header_timeout: float = 10.0
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _waiting_for_a_request(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        if self.transport.is_closing() or not self._waiting_for_a_request():
            return  # a pipelined request is already being answered
        cycle = self.cycle

        def expire() -> None:
            # Still the same request (none since), and none begun: the headers never came.
            if self.cycle is cycle and self._waiting_for_a_request() and not self.transport.is_closing():
                self.transport.close()

        self._header_deadline = self.loop.call_later(self.header_timeout, expire)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None


def config(settings: Settings, app: Any) -> uvicorn.Config:
    """How the gateway serves ``app``."""
    protocol = type("GatewayH11Protocol", (H11WithHeaderDeadline,), {"header_timeout": settings.gateway_header_timeout_seconds})
    return uvicorn.Config(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        http=protocol,
        limit_concurrency=settings.gateway_max_connections,
        timeout_keep_alive=5,
        log_config=None,  # uvicorn logs through cartflow's handler
        access_log=False,
    )


def serve(settings: Settings) -> None:
    from services.gateway.app import create_app

    uvicorn.Server(config(settings, create_app(settings))).run()
