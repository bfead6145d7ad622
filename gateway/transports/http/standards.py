"""HTTP endpoints for the standard and vendor formats (docs/http.md).

```
POST /pcd01/CommunicatePCDData       IHE PCD-01, SOAP 1.2/1.1 -> CommunicatePCDDataResponse (ACK)
POST /pcd01/hl7v2                    IHE PCD-01, plain ER7    -> HL7 ACK
POST /fhir/                          PHD FHIR Bundle          -> transaction-response Bundle
POST /fhir/Observation               one PHD Observation      -> 201 Observation | OperationOutcome
GET  /fhir/metadata                                           -> CapabilityStatement
POST /v1/devices/{id}/omh            Open mHealth             -> as the native endpoint
POST /v1/devices/{id}/events?format= vendor-gps|night|medicine -> as the native endpoint
GET|POST /v1/osmand                  Traccar/OsmAnd fields    -> as the native endpoint
```

The rules are the native endpoint's: the uploader is authenticated first, bodies are limited to
`HTTP_MAX_BODY_BYTES`, the answer comes only after `pipeline.commit`, 503 when the commit does
not come in time (a retry is harmless: event ids are deterministic), and every refused item is
named with its field and reason.

Who may send what. PCD-01 and PHD FHIR messages carry the measuring device inside (an EUI-64),
and the uploader is often a hub (a Continua gateway, a phone app). The uploader authenticates
with its own credential (bearer token, or HTTP Basic with its device id as user name); each
reading is kept only when `Registry.may_speak_for(uploader, reading's device)`: the reading's
device is the uploader itself or is paired with it (`hub = "<uploader>"`). Readings of other
devices are refused one by one (an ERR per OBX row, an OperationOutcome per Bundle entry); the
rest of the message is stored. EUI-64s are registry device ids written as 16 upper-case hex
digits without separators, which is how both adapters emit them.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final
from urllib.parse import parse_qsl

import msgspec
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import RedirectResponse, Response

from adapters import continua, omh, phd_fhir, vendor_gps
from adapters.errors import AdapterError, Parsed, Rejection
from adapters.events import Event
from gateway.ingest import formats
from gateway.observability import metrics
from gateway.ownership.credentials import token_hash
from gateway.ownership.registry import AuthError
from gateway.transports.http.common import (
    JSON,
    TRANSPORT,
    CommitTimeout,
    HttpIngest,
    auth_failed,
    bearer,
    count_refusal,
    count_rejections,
    credentials,
    identify,
    json_response,
    mime,
    too_large,
)

VENDOR_FORMATS: Final = ("vendor-gps", "vendor-night", "vendor-medicine")
FHIR_JSON: Final = "application/fhir+json"
SOAP12_TYPE: Final = "application/soap+xml"
SOAP11_TYPE: Final = "text/xml"
ER7_TYPES: Final = frozenset({"application/hl7-v2", "x-application/hl7-v2+er7", "text/plain",
                              "application/edi-hl7v2"})
JSON_TYPES: Final = frozenset({"application/json", FHIR_JSON})
FORM_TYPE: Final = "application/x-www-form-urlencoded"
_NOT_PAIRED: Final = ("the authenticated uploader may not send this device's readings: it is "
                      "neither the device nor its paired hub")
# The FHIR paths served, with the one method each takes (for 405 and trailing-slash redirects).
_FHIR_PATHS: Final = {"/fhir/Observation": "POST", "/fhir/Device": "POST",
                      "/fhir/Patient": "POST", "/fhir/metadata": "GET"}
_AUTH_HEADERS: Final = {"WWW-Authenticate": 'Bearer, Basic realm="gateway"'}
_SEGMENT_SPLIT = re.compile(r"\r\n|\r|\n|&#13;|&#x[dD];|&#10;|&#x[aA];")
# Observation elements the answer to a single create echoes; subject, performer and narrative
# (patient data) are never sent back.
_ECHOED: Final = ("resourceType", "identifier", "status", "category", "code",
                  "effectiveDateTime", "effectiveInstant", "effectivePeriod", "device",
                  "valueQuantity", "component", "extension")


def standards_router(ingest: HttpIngest) -> APIRouter:
    router = APIRouter()
    settings, registry = ingest.settings, ingest.registry

    # --- IHE PCD-01 --------------------------------------------------------------------------

    async def pcd01(request: Request, authorization: str | None, sent_as: str,
                    soap: bool) -> Response:
        started = time.monotonic()
        received_at = datetime.now(UTC)
        soap11 = sent_as == SOAP11_TYPE
        allowed = {SOAP12_TYPE, SOAP11_TYPE} if soap else ER7_TYPES
        try:
            uploader = identify(registry, *credentials(authorization))
        except AuthError as err:
            count_refusal("auth")
            return Response(err.reason, status_code=err.status, media_type="text/plain",
                            headers=_AUTH_HEADERS if err.status == 401 else None)
        if (wait := ingest.too_fast(uploader.id)) is not None:
            return Response("too many requests; send again after Retry-After", status_code=429,
                            media_type="text/plain", headers={"Retry-After": wait})
        if sent_as not in allowed:
            count_refusal("content_type")
            return Response("unsupported content type; send " + " or ".join(sorted(allowed)),
                            status_code=415, media_type="text/plain")
        body = await ingest.read_body(request)
        if body is None:
            return Response(too_large(settings), status_code=413, media_type="text/plain")
        metrics.RECEIVED.labels(TRANSPORT).inc()

        def answer(ack: str, status: int = 200, relates_to: str | None = None) -> Response:
            if not soap:
                return Response(ack.encode(), status_code=status,
                                media_type="application/hl7-v2; charset=utf-8")
            media = (f"{SOAP11_TYPE}; charset=utf-8" if soap11 else
                     f'{SOAP12_TYPE}; charset=utf-8; action="{continua.SOAP_ACTION}Response"')
            return Response(continua.soap_response(ack, relates_to=relates_to, soap11=soap11),
                            status_code=status, media_type=media)

        try:
            message = (continua.parse_soap if soap else continua.parse_er7)(
                body, device_id=None, received_at=received_at)
        except AdapterError as err:
            count_rejections([err.rejection()])
            return answer(continua.ack_for_error(body, err, at=received_at))
        mine, foreign = ingest.split(uploader.id, message.parsed.events)
        refused = list(message.parsed.rejections)
        if foreign:
            refused += _pcd01_refusals(body, foreign)
        count_rejections(refused)
        ack_to = message.sending_application
        if mine:
            try:
                await ingest.commit(mine, started)
            except CommitTimeout:
                return answer(continua.build_ack(
                    message.control_id, "AE", "storage is slow to commit; resend the same "
                    "message", at=received_at, receiving_application=ack_to),
                    503, message.soap_message_id)
        if not refused:
            ack = continua.build_ack(message.control_id, "AA", at=received_at,
                                     receiving_application=ack_to)
        else:
            reason = ("some observations were refused" if mine
                      else "no observation was stored")
            ack = continua.build_ack(message.control_id, "AE", reason, at=received_at,
                                     receiving_application=ack_to, errors=refused)
        return answer(ack, relates_to=message.soap_message_id)

    @router.post(
        "/pcd01/CommunicatePCDData", tags=["IHE PCD-01"],
        summary="PCD-01 ORU^R01 in the SOAP operation CommunicatePCDData (ihe.pcd.dec)",
        response_class=Response,
        responses={200: {"content": {SOAP12_TYPE: {}, SOAP11_TYPE: {}},
                         "description": "CommunicatePCDDataResponse holding the HL7 ACK "
                                        "(MSA AA, AE or AR)"},
                   401: {"description": "missing or unknown credential"},
                   403: {"description": "another device's credential, or retired"},
                   413: {"description": "body too large"},
                   415: {"description": "not SOAP"},
                   503: {"description": "commit timed out; ACK AE, resend the same message"}},
        openapi_extra={"requestBody": {"required": True, "content": {
            SOAP12_TYPE: {"schema": {"type": "string"}},
            SOAP11_TYPE: {"schema": {"type": "string"}}}}},
    )
    async def pcd01_soap(request: Request,
                         authorization: Annotated[str | None, Header()] = None,
                         content_type: Annotated[str | None, Header()] = None) -> Response:
        return await pcd01(request, authorization, mime(content_type, SOAP12_TYPE), soap=True)

    @router.post(
        "/pcd01/hl7v2", tags=["IHE PCD-01"],
        summary="PCD-01 ORU^R01 as a plain ER7 body",
        response_class=Response,
        responses={200: {"content": {"application/hl7-v2": {}},
                         "description": "the HL7 ACK (MSA AA, AE or AR)"},
                   401: {"description": "missing or unknown credential"},
                   413: {"description": "body too large"},
                   415: {"description": "not an HL7 v2 content type"},
                   503: {"description": "commit timed out; ACK AE, resend the same message"}},
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/hl7-v2": {"schema": {"type": "string"}}}}},
    )
    async def pcd01_er7(request: Request,
                        authorization: Annotated[str | None, Header()] = None,
                        content_type: Annotated[str | None, Header()] = None) -> Response:
        return await pcd01(request, authorization, mime(content_type, "application/hl7-v2"),
                           soap=False)

    # --- HL7 PHD FHIR ------------------------------------------------------------------------

    def fhir(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
        content = body if isinstance(body, bytes) else msgspec.json.encode(body)
        return Response(content, status_code=status, media_type=FHIR_JSON,
                        headers=dict(headers) if headers else None)

    def outcome(code: str, text: str) -> dict[str, Any]:
        return {"resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": code, "diagnostics": text}]}

    async def fhir_upload(request: Request, authorization: str | None,
                          content_type: str | None, single: str | None) -> Response:
        """`single`: the resource type this path takes alone; None: a Bundle."""
        started = time.monotonic()
        received_at = datetime.now(UTC)
        try:
            uploader = identify(registry, *credentials(authorization))
        except AuthError as err:
            count_refusal("auth")
            return fhir(err.status, outcome("login" if err.status == 401 else "forbidden",
                                            err.reason),
                        _AUTH_HEADERS if err.status == 401 else None)
        if (wait := ingest.too_fast(uploader.id)) is not None:
            return fhir(429, outcome("throttled", "too many requests; send again after "
                                                  "Retry-After"), {"Retry-After": wait})
        if mime(content_type, FHIR_JSON) not in JSON_TYPES:
            count_refusal("content_type")
            return fhir(415, outcome("not-supported", "send application/fhir+json"))
        body = await ingest.read_body(request)
        if body is None:
            return fhir(413, outcome("too-costly", too_large(settings)))
        metrics.RECEIVED.labels(TRANSPORT).inc()
        try:
            upload = phd_fhir.parse_upload(body, device_id=None, received_at=received_at)
        except AdapterError as err:
            count_rejections([err.rejection()])
            return fhir(*phd_fhir.error_response(err))
        if upload.bundle == (single is not None) or (
                single is not None and upload.outcomes[0].resource_type != single):
            wanted = f"one {single}" if single else "a transaction or batch Bundle"
            count_refusal("resourceType")
            return fhir(400, outcome("invalid", f"this endpoint takes {wanted}"))
        mine, foreign = ingest.split(uploader.id, upload.parsed.events)
        if foreign:
            refused_ids = {e.event_id for e in foreign}
            prefix = "entry[{}].resource." if upload.bundle else ""
            upload.outcomes = [
                dataclasses.replace(
                    o, status=phd_fhir.UNPROCESSABLE, event_ids=(), issue="security",
                    rejection=Rejection(prefix.format(o.index) + "device", _NOT_PAIRED,
                                        index=o.index))
                if refused_ids & set(o.event_ids) else o
                for o in upload.outcomes]
        count_rejections([o.rejection for o in upload.outcomes if o.rejection is not None])
        if mine:
            try:
                await ingest.commit(mine, started)
            except CommitTimeout:
                return fhir(503, outcome("transient", "storage is slow to commit; retry the "
                                                      "same request"))
        status, answer = phd_fhir.response(upload)
        if single == "Observation" and status == 201:
            return _created_observation(body, upload.outcomes[0], request)
        return fhir(status, answer)

    @router.post(
        "/fhir", tags=["HL7 PHD FHIR"], include_in_schema=False, response_class=Response)
    @router.post(
        "/fhir/", tags=["HL7 PHD FHIR"],
        summary="A transaction (or batch) Bundle as a Continua PHG uploads it",
        response_class=Response,
        responses={200: {"content": {FHIR_JSON: {}},
                         "description": "transaction-response Bundle, one entry per request "
                                        "entry, with an OperationOutcome for each refused one"},
                   400: {"description": "not a transaction Bundle (OperationOutcome)"},
                   401: {"description": "missing or unknown credential"},
                   413: {"description": "body too large"},
                   503: {"description": "commit timed out; retry the same Bundle"}},
        openapi_extra={"requestBody": {"required": True, "content": {
            FHIR_JSON: {"schema": {"type": "object"}}}}},
    )
    async def fhir_bundle(request: Request,
                          authorization: Annotated[str | None, Header()] = None,
                          content_type: Annotated[str | None, Header()] = None) -> Response:
        return await fhir_upload(request, authorization, content_type, single=None)

    @router.post(
        "/fhir/Observation", tags=["HL7 PHD FHIR"],
        summary="One PHD Observation (create)",
        response_class=Response,
        responses={201: {"content": {FHIR_JSON: {}},
                         "description": "stored; the Observation without patient data"},
                   422: {"description": "refused; OperationOutcome naming element and rule"},
                   401: {"description": "missing or unknown credential"},
                   413: {"description": "body too large"},
                   503: {"description": "commit timed out; retry"}},
        openapi_extra={"requestBody": {"required": True, "content": {
            FHIR_JSON: {"schema": {"type": "object"}}}}},
    )
    async def fhir_observation(request: Request,
                               authorization: Annotated[str | None, Header()] = None,
                               content_type: Annotated[str | None, Header()] = None) -> Response:
        return await fhir_upload(request, authorization, content_type, single="Observation")

    @router.get("/fhir/metadata", tags=["HL7 PHD FHIR"], response_class=Response,
                summary="CapabilityStatement (what this FHIR endpoint accepts)")
    async def fhir_metadata() -> Response:
        return fhir(200, _CAPABILITY)

    def alone(resource_type: str) -> Callable[..., Awaitable[Response]]:
        async def upload(request: Request,
                         authorization: Annotated[str | None, Header()] = None,
                         content_type: Annotated[str | None, Header()] = None) -> Response:
            return await fhir_upload(request, authorization, content_type, single=resource_type)
        return upload

    for resource_type in ("Device", "Patient"):
        router.add_api_route(
            f"/fhir/{resource_type}", alone(resource_type), methods=["POST"],
            tags=["HL7 PHD FHIR"], response_class=Response,
            summary=f"One {resource_type} resource, as a PHG may send it on its own: answered "
                    "200 as inside a Bundle, nothing stored (docs/formats/phd-fhir.md)",
            openapi_extra={"requestBody": {"required": True, "content": {
                FHIR_JSON: {"schema": {"type": "object"}}}}})

    @router.api_route("/fhir/{rest:path}", include_in_schema=False, response_class=Response,
                      methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
    async def fhir_unknown(request: Request, rest: str) -> Response:
        # A FHIR client reads OperationOutcomes, never a bare {"detail": ...}.
        path = "/fhir/" + rest.rstrip("/")
        if path in _FHIR_PATHS and rest.endswith("/"):  # as the routes did before: redirect
            return RedirectResponse(request.url.replace(path=path), status_code=307)
        if path in _FHIR_PATHS:
            return fhir(405, outcome("not-supported", f"{path} takes {_FHIR_PATHS[path]} only"),
                        {"Allow": _FHIR_PATHS[path]})
        return fhir(404, outcome("not-supported", "this endpoint takes POST /fhir (a "
                                 "transaction or batch Bundle, or one resource), POST "
                                 "/fhir/Observation, /fhir/Device, /fhir/Patient and GET "
                                 "/fhir/metadata"))

    # --- Open mHealth and vendor JSON ---------------------------------------------------------

    native_responses: dict[int | str, dict[str, Any]] = {
        200: {"description": "accepted, duplicates, and each rejected item with field, reason "
                             "and index (as POST /v1/devices/{id}/readings)"},
        401: {"description": "missing or unknown credential"},
        403: {"description": "another device's credential, or retired"},
        413: {"description": "body too large"}, 415: {"description": "not application/json"},
        422: {"description": "nothing usable; rejected says why"},
        503: {"description": "commit timed out; retry the same body"}}

    @router.post(
        "/v1/devices/{device_id}/omh", tags=["Open mHealth"],
        summary="One Open mHealth data point, an array of them, or a bare body with ?schema=",
        response_class=Response, responses=native_responses,
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": {}}}}},
    )
    async def post_omh(device_id: str, request: Request,
                       schema: Annotated[str | None, Query(
                           description="omh:<name>:<version>, for a bare body",
                           max_length=100)] = None,
                       authorization: Annotated[str | None, Header()] = None,
                       content_type: Annotated[str | None, Header()] = None) -> Response:
        parse = _omh_with_schema(schema) if schema else None
        return await ingest.native_style(request, device_id, bearer(authorization),
                                         content_type=content_type,
                                         formats_by_type={JSON: "omh"}, parse=parse)

    @router.post(
        "/v1/devices/{device_id}/events", tags=["Vendor JSON"],
        summary="Vendor JSON: GPS alarms, night-supervision sensors, medicine robots",
        response_class=Response, responses=native_responses,
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": {"type": "object"}}}}},
    )
    async def post_vendor(device_id: str, request: Request,
                          fmt: Annotated[str | None, Query(
                              alias="format", description=" | ".join(VENDOR_FORMATS))] = None,
                          authorization: Annotated[str | None, Header()] = None,
                          content_type: Annotated[str | None, Header()] = None) -> Response:
        if fmt not in VENDOR_FORMATS:
            count_refusal("format")
            return json_response(422, {"accepted": [], "duplicates": [], "rejected": [
                {"field": "format", "reason": "required query parameter; expected one of "
                                              + ", ".join(VENDOR_FORMATS)}]})
        return await ingest.native_style(request, device_id, bearer(authorization),
                                         content_type=content_type,
                                         formats_by_type={JSON: fmt})

    async def osmand(request: Request, authorization: str | None,
                     content_type: str | None) -> Response:
        params: dict[str, str] = {}
        if len(request.url.query) > settings.http_max_body_bytes:
            count_refusal("size")
            return json_response(413, {"error": too_large(settings)})
        for key, value in request.query_params.multi_items():
            params.setdefault(key, value)
        sent_as = mime(content_type, FORM_TYPE)
        body: bytes | None = None
        if request.method == "POST":
            body = await ingest.read_body(request)
            if body is None:
                return json_response(413, {"error": too_large(settings)})
            if sent_as == FORM_TYPE and body:
                try:
                    form = parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                     max_num_fields=200)
                except (UnicodeDecodeError, ValueError):
                    count_refusal("$")
                    return json_response(422, {"accepted": [], "duplicates": [], "rejected": [
                        {"field": "$", "reason": "not a URL-encoded form"}]})
                for key, value in form:
                    params.setdefault(key, value)
            elif sent_as != JSON and body:
                count_refusal("content_type")
                return json_response(415, {"error": "send query fields, a URL-encoded form "
                                                    "or JSON"})
        token = bearer(authorization) or params.pop("key", None) or None
        params.pop("key", None)
        json_body = request.method == "POST" and sent_as == JSON and bool(body)
        claimed = params.get("id", params.get("deviceid"))
        if claimed is None and token:
            claimed = registry.snapshot.by_credential.get(token_hash(token))
        if claimed is None:
            return auth_failed(AuthError(401, "missing credentials" if not token
                                          else "invalid credentials"))
        if json_body:
            assert body is not None
            return await ingest.native_body(claimed, token, "vendor-gps", body)
        return await ingest.native_body(claimed, token, "vendor-gps", b"",
                                        _osmand_params(params))

    @router.get(
        "/v1/osmand", tags=["Vendor JSON"],
        summary="Traccar/OsmAnd position or alarm as query fields (id, lat, lon, timestamp, "
                "accuracy, batt, charge, alarm; credential as key= or bearer)",
        response_class=Response, responses=native_responses)
    async def osmand_get(request: Request,
                         authorization: Annotated[str | None, Header()] = None) -> Response:
        return await osmand(request, authorization, None)

    @router.post(
        "/v1/osmand", tags=["Vendor JSON"],
        summary="Traccar/OsmAnd fields as a URL-encoded form (or query), or Traccar's JSON",
        response_class=Response, responses=native_responses)
    async def osmand_post(request: Request,
                          authorization: Annotated[str | None, Header()] = None,
                          content_type: Annotated[str | None, Header()] = None) -> Response:
        return await osmand(request, authorization, content_type)

    return router


def _omh_with_schema(schema: str) -> formats.Parse:
    def parse(payload: bytes, *, device_id: str, received_at: datetime) -> Parsed:
        return omh.parse(payload, device_id=device_id, received_at=received_at, schema=schema)

    return parse


def _osmand_params(params: Mapping[str, str]) -> formats.Parse:
    def parse(payload: bytes, *, device_id: str, received_at: datetime) -> Parsed:
        return vendor_gps.parse_params(params, device_id=device_id, received_at=received_at)

    return parse


def _pcd01_refusals(body: bytes, foreign: Sequence[Event]) -> list[Rejection]:
    """One rejection per OBX row naming a device the uploader may not speak for: an
    application refusal in HL7 terms (table 0357: 207 application error), not an error in the
    message. The same for a device the gateway does not know and for another hub's, so that a
    hub cannot learn which devices exist.

    The adapter does not say which row an event came from, so the rows are located by their
    OBX-18 EUI-64 (every Continua row carries it; device rows always do). This only places the
    ERR segments: the decision was taken on the parsed events. A device known only from MSH-3
    is reported at MSH-3.
    """
    devices = list(dict.fromkeys(e.device_id for e in foreign))
    text = body.decode("utf-8", errors="replace")
    start = text.find("MSH")
    if start < 0 or len(text) < start + 5:
        return [Rejection("MSH-3", _NOT_PAIRED, code="207")]
    field_sep, comp_sep = text[start + 3], text[start + 4]
    rows: dict[str, list[int]] = {d: [] for d in devices}
    obx = 0
    for segment in _SEGMENT_SPLIT.split(text[start:]):
        segment = segment.lstrip()
        if not segment.startswith("OBX" + field_sep):
            continue
        obx += 1
        fields = segment.split(field_sep)
        if len(fields) > 18:
            found = continua.normalise_eui64(fields[18].split(comp_sep)[0].split("<")[0])
            if found in rows:
                rows[found].append(obx)
    out: list[Rejection] = []
    for device in devices:
        out.extend(Rejection("OBX-18", _NOT_PAIRED, position=f"OBX[{n}]", code="207")
                   for n in rows[device])
        if not rows[device]:
            out.append(Rejection("MSH-3", _NOT_PAIRED, code="207"))
    return out


def _created_observation(body: bytes, outcome: phd_fhir.EntryOutcome,
                         request: Request) -> Response:
    """201 for a single create: the Observation as stored (no patient data), with Location."""
    event = str(outcome.event_ids[0]) if outcome.event_ids else ""
    location = f"{str(request.base_url).rstrip('/')}/fhir/Observation/{event}/_history/1"
    headers = {"Location": location, "ETag": 'W/"1"'}
    if "return=minimal" in request.headers.get("prefer", ""):
        return Response(b"", status_code=201, headers=headers)
    sent = msgspec.json.decode(body)
    created = {k: sent[k] for k in _ECHOED if isinstance(sent, dict) and k in sent}
    created = {"resourceType": "Observation", "id": event, "meta": {"versionId": "1"},
               **{k: v for k, v in created.items() if k != "resourceType"}}
    return Response(msgspec.json.encode(created), status_code=201, media_type=FHIR_JSON,
                    headers=headers)


_CAPABILITY: Final[dict[str, Any]] = {
    "resourceType": "CapabilityStatement",
    "status": "active",
    "date": "2026-11-22",
    "kind": "instance",
    "software": {"name": "VGR telemetry gateway"},
    "implementation": {"description": "Ingest of Continua PHG uploads (HL7 PHD IG); "
                                      "see docs/formats/phd-fhir.md"},
    "fhirVersion": "4.0.1",
    "format": ["application/fhir+json"],
    "instantiates": ["http://hl7.org/fhir/uv/phd/CapabilityStatement/"
                     "PhdObservationServerCapabilityStatement"],
    "rest": [{
        "mode": "server",
        "security": {"description": "Bearer token, or HTTP Basic with the device id as user "
                                    "name and the device credential as password"},
        "resource": [
            {"type": "Observation", "interaction": [{"code": "create"}]},
            {"type": "Device", "interaction": [{"code": "create"}],
             "documentation": "accepted (conditional create) in a transaction; not stored"},
            {"type": "Patient", "interaction": [{"code": "create"}],
             "documentation": "accepted (conditional create) in a transaction; never stored"},
        ],
        "interaction": [{"code": "transaction"}, {"code": "batch"}],
    }],
}

