"""Slow and idle clients cannot hold the HTTP listener: uvicorn's HTTP/1.1 protocol with two
limits it lacks. A request (headers and body) must arrive whole within `request_timeout_s` of
the connection opening or of the previous response (a client that dribbles its headers or body,
or connects and says nothing, is disconnected); and at most `max_connections` connections are
open at once (more are closed as they come). uvicorn's own keep-alive timeout still closes idle
connections between requests."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.observability import metrics


class GuardedH11Protocol(H11Protocol):
    request_timeout_s: ClassVar[float] = 10.0
    max_connections: ClassVar[int] = 1000
    listener: ClassVar[str] = "http"  # metric label: which listener

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            metrics.CONNECTIONS_REFUSED.labels(self.listener, "too_many").inc()
            transport.abort()
            return
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is h11.DONE:  # the request is in whole: the app has it
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request on this connection gets the same time

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.conn.their_state is not h11.DONE and not self.transport.is_closing():
            metrics.CONNECTIONS_REFUSED.labels(self.listener, "too_slow").inc()
            self.transport.abort()


def guarded(request_timeout_s: float, max_connections: int, listener: str) -> type[Any]:
    """The protocol class for one listener's uvicorn.Config(http=...)."""
    return type(f"Guarded{listener.title()}", (GuardedH11Protocol,),
                {"request_timeout_s": request_timeout_s, "max_connections": max_connections,
                 "listener": listener})
