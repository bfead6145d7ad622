"""The node's HTTP API: `POST /v1/deliveries` (the webhook of docs/delivery.md), `/healthz`,
`/readyz`, `/metrics`.

A batch is authenticated as a whole (signature and timestamp, 401 with the reason otherwise),
then each line on its own: an item for another huvudman, or one that does not open, is
`rejected`; what opens is stored in one transaction for the whole batch, `stored` or
`duplicate` (its event id is already there), with the subject references the batch's `subject`
lines brought (format 2). An item whose subject the node has never been sent is answered
`retry` ("subject unknown"): the gateway sends it again with the subject line. 503 when storage
fails: the sender retries, and the event ids make that harmless. Logs carry ids, counts and
fixed reasons only.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any

import msgspec
from fastapi import FastAPI, Header, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.delivery import wire
from gateway.node import metrics
from gateway.node.opening import SUBJECT_UNKNOWN, ItemOpener, OpenedItem, Refused, SubjectUnknown
from gateway.observability import logs
from gateway.store.errors import DB_ERRORS
from gateway.store.node import KnownSubject, NodeStore, OpenedCopy
from gateway.transports.http.body import read_limited

log = logs.get("gateway.node")
KNOWN_SUBJECTS = 100_000  # kept in memory; the rest are read from the node's database


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json")


class Receiver:
    """Authenticates, opens and stores one batch; the app's route calls `receive`."""

    def __init__(self, store: NodeStore, opener: ItemOpener, secret: bytes) -> None:
        self.store = store
        self.opener = opener
        self._secret = secret
        self._opening = asyncio.Lock()  # the Opener's key cache: one batch at a time
        self._known: dict[uuid.UUID, KnownSubject] = {}
        self.on_stored: Callable[[], None] | None = None  # e.g. wake the FHIR forwarder

    def authenticate(self, timestamp: str | None, signature: str | None,
                     body: bytes) -> str | None:
        return wire.verify(self._secret, timestamp, signature, body, time.time())

    async def receive(self, body: bytes) -> list[wire.ItemStatus]:
        items: list[wire.Item] = []
        lines: list[wire.SubjectLine] = []
        for line in wire.decode_batch(body):
            if isinstance(line, wire.Item):
                items.append(line)
            elif isinstance(line, wire.SubjectLine):
                lines.append(line)
            else:  # no event id to answer for: the sender retries it as unanswered
                metrics.ITEMS.labels("undecodable").inc()
        async with self._opening:
            opened, learned, refused = await asyncio.to_thread(self._open_all, items, lines)
            known = await self._subjects_for(opened, learned)
            outcomes = [self._finish(o, known, refused) for o in opened]
        to_store: list[OpenedCopy] = []
        seen: set[uuid.UUID] = set()
        for item, outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, OpenedCopy) and item.event_id not in seen:
                seen.add(item.event_id)
                to_store.append(outcome)
        started = time.monotonic()
        new = await self.store.store(to_store, list(learned.values()))
        metrics.STORE_SECONDS.observe(time.monotonic() - started)
        self._remember(learned.values())
        if new and self.on_stored is not None:
            self.on_stored()
        results: list[wire.ItemStatus] = []
        answered_new: set[uuid.UUID] = set()
        for item, outcome in zip(items, outcomes, strict=True):
            key = str(item.event_id)
            if outcome == SUBJECT_UNKNOWN:
                results.append(wire.ItemStatus(key, "retry", SUBJECT_UNKNOWN))
            elif isinstance(outcome, str):
                results.append(wire.ItemStatus(key, "rejected", outcome))
                metrics.REJECTED.labels(outcome).inc()
                log.warning("delivery_item_rejected", event_id=key, reason=outcome)
            elif item.event_id in new and item.event_id not in answered_new:
                answered_new.add(item.event_id)
                results.append(wire.ItemStatus(key, "stored"))
            else:
                results.append(wire.ItemStatus(key, "duplicate"))
            metrics.ITEMS.labels(results[-1].status).inc()
        log.info("delivery_batch", items=len(items), stored=len(answered_new),
                 rejected=sum(1 for r in results if r.status == "rejected"),
                 duplicate=sum(1 for r in results if r.status == "duplicate"))
        return results

    def _open_all(self, items: Sequence[wire.Item], lines: Sequence[wire.SubjectLine],
                  ) -> tuple[list[OpenedItem | str], dict[uuid.UUID, KnownSubject],
                             dict[uuid.UUID, str]]:
        out: list[OpenedItem | str] = []
        for item in items:
            try:
                out.append(self.opener.open(item))
            except Refused as why:
                out.append(why.reason)
        learned: dict[uuid.UUID, KnownSubject] = {}
        refused: dict[uuid.UUID, str] = {}
        for line in lines:
            try:
                learned[line.assignment_id] = self.opener.open_subject_line(line)
            except Refused as why:  # the items that need it are refused for the same reason
                refused[line.assignment_id] = why.reason
                metrics.REJECTED.labels(why.reason).inc()
                log.warning("subject_line_refused", assignment_id=str(line.assignment_id),
                            reason=why.reason)
        return out, learned, refused

    async def _subjects_for(self, opened: Sequence[OpenedItem | str],
                            learned: dict[uuid.UUID, KnownSubject],
                            ) -> dict[uuid.UUID, KnownSubject]:
        """Every subject the batch's items name that this node holds: sent with the batch,
        kept in memory, or stored earlier."""
        wanted = {a for o in opened if isinstance(o, OpenedItem) for a in o.wanted}
        known = {a: self._known[a] for a in wanted if a in self._known} | learned
        missing = [a for a in wanted if a not in known]
        if missing:
            stored = await self.store.subjects(missing)
            self._remember(stored)
            known |= {s.assignment_id: s for s in stored}
        return known

    def _remember(self, subjects: Iterable[KnownSubject]) -> None:
        for s in subjects:
            self._known.pop(s.assignment_id, None)
            self._known[s.assignment_id] = s
        while len(self._known) > KNOWN_SUBJECTS:
            del self._known[next(iter(self._known))]

    def _finish(self, opened: OpenedItem | str, known: dict[uuid.UUID, KnownSubject],
                refused: dict[uuid.UUID, str]) -> OpenedCopy | str:
        if isinstance(opened, str):
            return opened
        try:
            return self.opener.finish(opened, known)
        except SubjectUnknown:
            # Sent, but not openable here: sending it again would not help.
            return next((refused[a] for a in opened.wanted if a in refused and a not in known),
                        SUBJECT_UNKNOWN)
        except Refused as refused:
            return refused.reason


def create_app(receiver: Receiver, *, max_body_bytes: int) -> FastAPI:
    app = FastAPI(title=f"Huvudman node {receiver.opener.huvudman}", version="1",
                  description="Receives this huvudman's deliveries. See docs/delivery.md.")

    @app.post("/v1/deliveries", summary="A signed NDJSON batch of sealed copies",
              openapi_extra={"requestBody": {"required": True, "content": {
                  wire.CONTENT_TYPE: {"schema": {"type": "string"}}}}})
    async def deliveries(
            request: Request,
            content_type: Annotated[str | None, Header()] = None,
            x_gateway_timestamp: Annotated[str | None, Header()] = None,
            x_gateway_signature: Annotated[str | None, Header()] = None) -> Response:
        mime = (content_type or "").split(";", 1)[0].strip().lower()
        if mime != wire.CONTENT_TYPE:
            metrics.REQUESTS.labels("content_type").inc()
            return _json(415, {"error": f"send {wire.CONTENT_TYPE}"})
        body = await read_limited(request, max_body_bytes)
        if body is None:
            metrics.REQUESTS.labels("too_large").inc()
            return _json(413, {"error": f"body larger than {max_body_bytes} bytes"})
        problem = receiver.authenticate(x_gateway_timestamp, x_gateway_signature, body)
        if problem is not None:
            metrics.REQUESTS.labels("unauthorized").inc()
            log.warning("delivery_unauthorized", reason=problem)
            return _json(401, {"error": problem})
        try:
            results = await receiver.receive(body)
        except DB_ERRORS as err:
            metrics.REQUESTS.labels("unavailable").inc()
            log.warning("delivery_store_failed", error=type(err).__name__)
            return _json(503, {"error": "storage unavailable; retry"})
        metrics.REQUESTS.labels("ok").inc()
        return Response(wire.encode_answer(results), media_type="application/json")

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", summary="Readiness: the node's database answers")
    async def readyz() -> Response:
        checks = {"database": await receiver.store.ready()}
        ok = all(checks.values())
        return _json(200 if ok else 503, {"ready": ok, "checks": checks})

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
