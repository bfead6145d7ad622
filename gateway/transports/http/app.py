"""HTTP ingest and operations endpoints (FastAPI).

A device posts one reading or a batch with its bearer token. The answer comes after the commit:
200 with what was stored, what was already stored (a retry), and each rejected item with its
field and reason. 422 when nothing in the request was usable, 401/403 for wrong or foreign
credentials, 413 over the size limit, 503 when the database cannot commit in time (retry; the
event ids make a retry harmless).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

import msgspec
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from adapters.errors import Rejection
from gateway.ingest import decoding, formats
from gateway.ingest.pipeline import Pipeline
from gateway.observability import metrics
from gateway.ownership.registry import AuthError, Registry
from gateway.settings import Settings
from gateway.transports.http.body import read_limited

TRANSPORT = "http"


class Readiness(Protocol):
    async def ready(self) -> dict[str, bool]: ...


class RejectedItem(BaseModel):
    field: str = Field(description="Path of the offending field, e.g. readings[2].value")
    reason: str
    position: str | None = None
    index: int | None = Field(None, description="Index of the item in the request's batch")


class IngestAnswer(BaseModel):
    accepted: list[str] = Field(description="Event ids stored by this request")
    duplicates: list[str] = Field(description="Event ids that were already stored (retries)")
    rejected: list[RejectedItem]


class ErrorAnswer(BaseModel):
    error: str


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json")


def create_app(settings: Settings, registry: Registry, pipeline: Pipeline,
               readiness: Readiness) -> FastAPI:
    app = FastAPI(
        title="VGR telemetry gateway",
        version="1",
        description="Ingest for assistive devices. See docs/http.md.",
    )

    @app.post(
        "/v1/devices/{device_id}/readings",
        response_model=IngestAnswer,
        responses={401: {"model": ErrorAnswer}, 403: {"model": ErrorAnswer},
                   413: {"model": ErrorAnswer}, 415: {"model": ErrorAnswer},
                   422: {"model": IngestAnswer}, 503: {"model": ErrorAnswer}},
        summary="Send one reading or a batch (native JSON format, docs/formats/native.md)",
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": {"type": "object"}}}}},
    )
    async def post_readings(device_id: str, request: Request,
                            authorization: Annotated[str | None, Header()] = None,
                            content_type: Annotated[str | None, Header()] = None) -> Response:
        started = time.monotonic()
        token = authorization[7:] if authorization and authorization[:7].lower() == "bearer " \
            else None
        try:
            registry.authenticate(device_id, token)
        except AuthError as err:
            metrics.REJECTED.labels(TRANSPORT, "auth").inc()
            headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
            return JSONResponse({"error": err.reason}, status_code=err.status, headers=headers)
        mime = (content_type or "application/json").split(";", 1)[0].strip().lower()
        fmt = formats.HTTP_CONTENT_TYPES.get(mime)
        if fmt is None:
            metrics.REJECTED.labels(TRANSPORT, "content_type").inc()
            return _json(415, {"error": "unsupported content type; send application/json"})
        body = await read_limited(request, settings.http_max_body_bytes)
        if body is None:
            metrics.REJECTED.labels(TRANSPORT, "size").inc()
            return _json(413, {"error": f"body larger than {settings.http_max_body_bytes} bytes"})
        decoded = decoding.decode(registry, TRANSPORT, device_id, fmt, body, datetime.now(UTC))
        rejected = [_rejection(r) for r in decoded.rejections]
        if not decoded.events:
            return _json(422, {"accepted": [], "duplicates": [], "rejected": rejected})
        try:
            outcome = await asyncio.wait_for(pipeline.commit(decoded.events),
                                             settings.http_commit_timeout_s)
        except TimeoutError:
            # The events stay queued and will be committed; the retry will find them stored.
            return _json(503, {"error": "storage is slow to commit; retry with the same body"})
        metrics.ACCEPTED.labels(TRANSPORT).inc(len(outcome.new))
        metrics.DUPLICATES.labels(TRANSPORT).inc(len(outcome.duplicates))
        metrics.ACKED.labels(TRANSPORT).inc()
        metrics.ACK_SECONDS.labels(TRANSPORT).observe(time.monotonic() - started)
        return _json(200, {"accepted": [str(i) for i in outcome.new],
                           "duplicates": [str(i) for i in outcome.duplicates],
                           "rejected": rejected})

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", summary="Readiness: database, broker and commit loop are working")
    async def readyz() -> Response:
        checks = await readiness.ready()
        ok = all(checks.values())
        return _json(200 if ok else 503, {"ready": ok, "checks": checks})

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    from gateway.transports.http.standards import standards_router  # imports this module
    app.include_router(standards_router(settings, registry, pipeline))
    from gateway.transports.http.lifecycle_api import (
        admin_router,  # the device lifecycle for operators
    )
    app.include_router(admin_router(settings))
    return app


def _rejection(r: Rejection) -> dict[str, Any]:
    return {k: v for k, v in msgspec.structs.asdict(r).items() if v is not None}
