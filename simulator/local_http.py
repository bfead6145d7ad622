"""An ASGI app served by uvicorn inside the caller's event loop: the simulated receivers
(webhook, FHIR server) start it, stop it (the port then refuses connections, as a receiver that
is down does) and start it again on the same port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers (it runs inside someone else's process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class LocalHttp:
    def __init__(self, app: Any, name: str) -> None:
        self._app = app
        self._name = name
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> int:
        """Serve on `port` (0: a free one); returns the port once it accepts connections."""
        if port == 0:
            from gateway.demo.embedded import free_port
            port = free_port()
        self._server = _Server(uvicorn.Config(self._app, host=host, port=port,
                                              log_level="warning", access_log=False,
                                              lifespan="off"))
        self._task = asyncio.create_task(self._server.serve(), name=self._name)
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        return port

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        self._server = self._task = None
