"""The ingest HTTP application (FastAPI): the device endpoints (native, standard and vendor
formats), the admin API for the device lifecycle, and operations (`/healthz`, `/readyz`,
`/metrics`). See docs/http.md."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.ingest.pipeline import Pipeline
from gateway.observability import metrics
from gateway.ownership.registry import Registry
from gateway.settings import Settings
from gateway.transports.http.common import HttpIngest, json_response
from gateway.transports.http.lifecycle_api import lifecycle_router
from gateway.transports.http.native import native_router
from gateway.transports.http.standards import standards_router
from gateway.transports.rate import RateLimit, retry_after

_OPERATIONS = frozenset({"/healthz", "/readyz", "/metrics"})


class Readiness(Protocol):
    async def ready(self) -> dict[str, bool]: ...


def create_app(settings: Settings, registry: Registry, pipeline: Pipeline,
               readiness: Readiness) -> FastAPI:
    app = FastAPI(
        title="VGR telemetry gateway",
        version="1",
        description="Ingest for assistive devices. See docs/http.md.",
    )
    ingest = HttpIngest(settings, registry, pipeline)
    by_address = RateLimit(settings.http_rate_per_address, settings.http_burst_per_address)

    @app.middleware("http")
    async def limit_per_address(request: Request, call_next: Callable[[Request], Awaitable[
            Response]]) -> Response:
        """A flood from one address is refused before anything is read (429, Retry-After);
        the operations endpoints are always answered."""
        if request.url.path not in _OPERATIONS and request.client is not None:
            wait = by_address.take(request.client.host)
            if wait:
                metrics.RATE_LIMITED.labels("http", "address").inc()
                return json_response(429, {"error": "too many requests from this address"},
                                     {"Retry-After": retry_after(wait)})
        return await call_next(request)

    app.include_router(native_router(ingest))

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", summary="Readiness: database, broker and commit loop are working")
    async def readyz() -> Response:
        checks = await readiness.ready()
        ok = all(checks.values())
        return json_response(200 if ok else 503, {"ready": ok, "checks": checks})

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(standards_router(ingest))
    app.include_router(lifecycle_router(settings))
    return app
