"""`POST /v1/devices/{id}/readings`: the gateway's own JSON format (docs/formats/native.md).

A device posts one reading or a batch with its bearer token. The answer comes after the commit:
200 with what was stored, what was already stored (a retry), and each rejected item with its
field and reason. 422 when nothing in the request was usable, 401/403 for wrong or foreign
credentials, 413 over the size limit, 415 for a content type no format is read from, 503 when
the database cannot commit in time (retry; the event ids make a retry harmless).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from gateway.ingest import formats
from gateway.transports.http.common import HttpIngest, bearer


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


def native_router(ingest: HttpIngest) -> APIRouter:
    router = APIRouter()

    @router.post(
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
        return await ingest.native_style(request, device_id, bearer(authorization),
                                         content_type=content_type,
                                         formats_by_type=formats.HTTP_CONTENT_TYPES)

    return router
