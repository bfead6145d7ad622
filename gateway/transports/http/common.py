"""What every HTTP ingest endpoint shares: credentials, answers, counting, and the one way a
device's body becomes committed events (`HttpIngest.native_style`).

The rules (docs/http.md): the uploader is authenticated first, bodies are limited to
`HTTP_MAX_BODY_BYTES`, the answer comes only after the commit, 503 when the commit does not come
within `HTTP_COMMIT_TIMEOUT_S` (a retry is harmless: event ids are deterministic), and every
refused item is named with its field and reason. Each refusal is counted once, by reason.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from fastapi import Request
from fastapi.responses import Response

from adapters.errors import Rejection
from adapters.events import Event
from gateway.ingest import decoding, formats
from gateway.ingest.pipeline import Pipeline, SubmissionResult
from gateway.observability import metrics
from gateway.ownership.credentials import token_hash
from gateway.ownership.registry import AuthError, Device, Registry
from gateway.settings import Settings
from gateway.transports.http.body import read_limited
from gateway.transports.rate import RateLimit, retry_after

TRANSPORT: Final = "http"
JSON: Final = "application/json"
SLOW_COMMIT: Final = "storage is slow to commit; retry with the same body"


class CommitTimeout(Exception):
    """The commit did not come within HTTP_COMMIT_TIMEOUT_S; the events stay queued and will
    be committed, so the retry finds them stored."""


def json_response(status: int, body: dict[str, Any],
                  headers: Mapping[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(body), status_code=status, media_type=JSON,
                    headers=dict(headers) if headers else None)


def rejection_json(r: Rejection) -> dict[str, Any]:
    return {k: v for k, v in msgspec.structs.asdict(r).items() if v is not None}


def refused(rejections: Sequence[dict[str, Any]]) -> Response:
    """422: nothing in the request was usable; `rejected` says why."""
    return json_response(422, {"accepted": [], "duplicates": [], "rejected": list(rejections)})


def mime(content_type: str | None, default: str) -> str:
    return (content_type or default).split(";", 1)[0].strip().lower()


def bearer(authorization: str | None) -> str | None:
    """The token of `Authorization: Bearer <token>` (case-insensitive scheme), else None."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


def credentials(authorization: str | None) -> tuple[str | None, str | None]:
    """(claimed device id, token) from `Bearer <token>` or `Basic base64(id:token)`."""
    if not authorization:
        return None, None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return None, value.strip() or None
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode(
                "utf-8").partition(":")
        except (binascii.Error, ValueError):
            return None, None
        return user or None, password or None
    return None, None


def identify(registry: Registry, claimed: str | None, token: str | None) -> Device:
    """The uploader a credential belongs to. Without a claimed id the token alone names it.

    Raises AuthError: 401 missing or unknown credential, 403 another device's or retired.
    """
    if not token:
        raise AuthError(401, "missing credentials")
    if claimed is None:
        claimed = registry.snapshot.by_credential.get(token_hash(token))
        if claimed is None:
            raise AuthError(401, "invalid credentials")
    return registry.authenticate(claimed, token)


def count_refusal(reason: str) -> None:
    metrics.REJECTED.labels(TRANSPORT, reason).inc()


def count_rejections(rejections: Sequence[Rejection]) -> None:
    """One count per refused item, by the top-level field (bounded label)."""
    for r in rejections:
        count_refusal(r.field.split("[", 1)[0].split(".", 1)[0].split("-", 1)[0] or "$")


def auth_failed(err: AuthError) -> Response:
    """Count the refusal; the JSON answer of the native-style endpoints."""
    count_refusal("auth")
    return json_response(err.status, {"error": err.reason},
                         {"WWW-Authenticate": "Bearer"} if err.status == 401 else None)


def slow_down(retry_after_s: str) -> Response:
    """429 for a device sending faster than it may: the same body can be sent again later."""
    return json_response(429, {"error": "too many requests; send again after Retry-After"},
                         {"Retry-After": retry_after_s})


def too_large(settings: Settings) -> str:
    """What a 413 says."""
    return f"body larger than {settings.http_max_body_bytes} bytes"


class HttpIngest:
    """The HTTP endpoints' way into ingest, bound to one gateway's registry and pipeline."""

    def __init__(self, settings: Settings, registry: Registry, pipeline: Pipeline) -> None:
        self.settings = settings
        self.registry = registry
        self.pipeline = pipeline
        self._per_device = RateLimit(settings.http_rate_per_device,
                                     settings.http_burst_per_device)

    def too_fast(self, device_id: str) -> str | None:
        """The Retry-After for an authenticated device that sends faster than it may
        (counted), or None."""
        wait = self._per_device.take(device_id)
        if not wait:
            return None
        metrics.RATE_LIMITED.labels(TRANSPORT, "device").inc()
        return retry_after(wait)

    async def read_body(self, request: Request) -> bytes | None:
        """The body, or None (counted) when it is over the limit."""
        body = await read_limited(request, self.settings.http_max_body_bytes)
        if body is None:
            count_refusal("size")
        return body

    def split(self, uploader: str, events: Sequence[Event]) -> tuple[list[Event], list[Event]]:
        """The events the uploader may send (its own, its paired devices'), and the rest."""
        mine: list[Event] = []
        foreign: list[Event] = []
        for e in events:
            (mine if self.registry.may_speak_for(uploader, e.device_id) else foreign).append(e)
        return mine, foreign

    async def commit(self, events: Sequence[Event], started: float) -> SubmissionResult:
        """Commit and count; raises CommitTimeout when the commit does not come in time."""
        try:
            done = await asyncio.wait_for(self.pipeline.commit(events),
                                          self.settings.http_commit_timeout_s)
        except TimeoutError:
            raise CommitTimeout from None
        metrics.ACCEPTED.labels(TRANSPORT).inc(len(done.new))
        metrics.DUPLICATES.labels(TRANSPORT).inc(len(done.duplicates))
        metrics.ACKED.labels(TRANSPORT).inc()
        metrics.ACK_SECONDS.labels(TRANSPORT).observe(time.monotonic() - started)
        return done

    async def native_style(self, request: Request, device_id: str, token: str | None, *,
                           content_type: str | None, formats_by_type: Mapping[str, str],
                           parse: formats.Parse | None = None) -> Response:
        """Authenticate the device, read its body (`formats_by_type`: which format each
        accepted content type is), decode, commit and answer (`native_body`)."""
        started = time.monotonic()
        try:
            self.registry.authenticate(device_id, token)
        except AuthError as err:
            return auth_failed(err)
        if (wait := self.too_fast(device_id)) is not None:
            return slow_down(wait)
        fmt = formats_by_type.get(mime(content_type, JSON))
        if fmt is None:
            count_refusal("content_type")
            return json_response(415, {"error": "unsupported content type; send "
                                                + " or ".join(sorted(formats_by_type))})
        body = await self.read_body(request)
        if body is None:
            return json_response(413, {"error": too_large(self.settings)})
        return await self._decode_and_commit(device_id, fmt, body, parse, started)

    async def native_body(self, device_id: str, token: str | None, fmt: str, body: bytes,
                          parse: formats.Parse | None = None) -> Response:
        """As `native_style`, for a body already read (OsmAnd's fields)."""
        started = time.monotonic()
        try:
            self.registry.authenticate(device_id, token)
        except AuthError as err:
            return auth_failed(err)
        if (wait := self.too_fast(device_id)) is not None:
            return slow_down(wait)
        return await self._decode_and_commit(device_id, fmt, body, parse, started)

    async def _decode_and_commit(self, device_id: str, fmt: str, body: bytes,
                                 parse: formats.Parse | None, started: float) -> Response:
        """200 with what was stored, what was already stored and each rejected item; 422 when
        nothing was usable; 503 when the commit did not come in time."""
        decoded = decoding.decode(self.registry, TRANSPORT, device_id, fmt, body,
                                  datetime.now(UTC), parse)
        rejected = [rejection_json(r) for r in decoded.rejections]
        if not decoded.events:
            return refused(rejected)
        try:
            done = await self.commit(decoded.events, started)
        except CommitTimeout:
            return json_response(503, {"error": SLOW_COMMIT})
        return json_response(200, {"accepted": [str(i) for i in done.new],
                                   "duplicates": [str(i) for i in done.duplicates],
                                   "rejected": rejected})
