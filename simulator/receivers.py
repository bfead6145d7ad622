"""A recording webhook receiver, standing in for huvudman nodes in tests and the demo.

One FastAPI app serves any number of endpoints (`POST /hook/{name}`), each with its own
secret. It checks the signature and timestamp (gateway.delivery.wire), decodes the NDJSON
batch, records what it stored, and answers per item: `stored`, or `duplicate` for an event id
it already has. Each endpoint can be told to misbehave: answer some status (503) for the next
N requests or always, hang past the sender's timeout, reject given event ids, or answer slowly
for one lane. It records every request's time and outcome, and how many requests held the same
event at once (`max_concurrent`), so tests can check retries, the breaker and exactly-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import msgspec
from fastapi import FastAPI, Request, Response

from gateway.delivery import wire
from simulator.local_http import LocalHttp


@dataclass
class Endpoint:
    name: str
    secret: bytes
    stored: dict[uuid.UUID, wire.Item] = field(default_factory=dict)
    # Format 2: the sealed subject references received, by assignment, and how often each came.
    subjects: dict[uuid.UUID, wire.SubjectLine] = field(default_factory=dict)
    subject_lines: Counter[uuid.UUID] = field(default_factory=Counter)
    accepted: Counter[uuid.UUID] = field(default_factory=Counter)  # stored or duplicate
    requests: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, status)
    fail_next: int = 0
    fail_status: int = 503
    fail_headers: dict[str, str] = field(default_factory=dict)  # e.g. Retry-After
    fail_always: bool = False
    hang_next: int = 0
    hang_s: float = 30.0
    reject: set[uuid.UUID] = field(default_factory=set)
    reject_if: Callable[[wire.Item], bool] | None = None
    slow_lane: str | None = None
    slow_s: float = 0.0
    delay_s: float = 0.0
    in_flight: Counter[uuid.UUID] = field(default_factory=Counter)
    max_concurrent: int = 0
    # Called with each authentic batch as soon as it is decoded (e.g. to time receipt).
    on_items: Callable[[list[wire.Item]], None] | None = None

    def answered(self, status: int) -> int:
        return sum(1 for _, s in self.requests if s == status)


class RecordingReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.endpoints: dict[str, Endpoint] = {}
        self.app = FastAPI(title="recording webhook receiver")
        self.app.add_api_route("/hook/{name}", self._receive, methods=["POST"])
        self._http = LocalHttp(self.app, "recording-receiver")

    def endpoint(self, name: str, secret: bytes) -> Endpoint:
        self.endpoints[name] = Endpoint(name, secret)
        return self.endpoints[name]

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.port}/hook/{name}"

    async def start(self) -> None:
        self.port = await self._http.start(self.host, self.port)

    async def stop(self) -> None:
        """Down: the port refuses connections until `start()` again (same port)."""
        await self._http.stop()

    async def _receive(self, name: str, request: Request) -> Response:
        ep = self.endpoints.get(name)
        if ep is None:
            return Response(status_code=404)
        body = await request.body()
        if ep.fail_always or ep.fail_next > 0:
            ep.fail_next = max(ep.fail_next - 1, 0)
            return self._answer(ep, Response(status_code=ep.fail_status,
                                             headers=ep.fail_headers))
        if ep.hang_next > 0:
            ep.hang_next -= 1
            await asyncio.sleep(ep.hang_s)
            return self._answer(ep, Response(status_code=504))
        problem = wire.verify(ep.secret, request.headers.get(wire.TIMESTAMP_HEADER),
                              request.headers.get(wire.SIGNATURE_HEADER), body, time.time())
        if problem is not None:
            return self._answer(ep, Response(problem, status_code=401))
        lines = [i for i in wire.decode_batch(body) if not isinstance(i, msgspec.DecodeError)]
        for line in lines:
            if isinstance(line, wire.SubjectLine):
                ep.subjects[line.assignment_id] = line
                ep.subject_lines[line.assignment_id] += 1
        items = [i for i in lines if isinstance(i, wire.Item)]
        if ep.on_items is not None:
            ep.on_items(items)
        with self._holding(ep, items):
            delay = ep.delay_s + (ep.slow_s if items and items[0].lane == ep.slow_lane else 0.0)
            if delay:
                await asyncio.sleep(delay)
            results = [self._store(ep, i) for i in items]
        return self._answer(ep, Response(wire.encode_answer(results),
                                         media_type="application/json"))

    @staticmethod
    def _store(ep: Endpoint, item: wire.Item) -> wire.ItemStatus:
        key = str(item.event_id)
        if item.event_id in ep.reject or (ep.reject_if is not None and ep.reject_if(item)):
            return wire.ItemStatus(key, "rejected", "test receiver refuses this item")
        ep.accepted[item.event_id] += 1
        if item.event_id in ep.stored:
            return wire.ItemStatus(key, "duplicate")
        ep.stored[item.event_id] = item
        return wire.ItemStatus(key, "stored")

    @staticmethod
    @contextlib.contextmanager
    def _holding(ep: Endpoint, items: list[wire.Item]) -> Iterator[None]:
        for i in items:
            ep.in_flight[i.event_id] += 1
            ep.max_concurrent = max(ep.max_concurrent, ep.in_flight[i.event_id])
        try:
            yield
        finally:
            for i in items:
                ep.in_flight[i.event_id] -= 1

    @staticmethod
    def _answer(ep: Endpoint, response: Response) -> Response:
        ep.requests.append((time.monotonic(), response.status_code))
        return response
