"""A recording FHIR R4 endpoint, standing in for a huvudman's FHIR server (a region's EHR) in
tests and the demo.

`POST /` and `POST /fhir` take a transaction Bundle. Every entry must be what a huvudman node
sends (docs/fhir-forwarding.md): an Observation with a PHD profile, a status, a code with an MDC
coding, an `effectiveDateTime` with time and offset, a value (UCUM quantity) or components with
values, a subject, an identifier, and a conditional create (`POST Observation` with
`ifNoneExist: identifier=<system>|<value>` naming the Observation's own identifier).

The answer is a `transaction-response` Bundle, one entry per request entry: `201 Created` for a
new identifier, `200 OK` for one it already holds (the conditional create honoured: nothing is
stored twice), `400 Bad Request` with an OperationOutcome for an invalid entry. With
`atomic=True` it behaves as a conforming server does with a transaction: one invalid entry fails
the whole Bundle (HTTP 400, an OperationOutcome naming the entries, nothing stored).

It records what it stored, by identifier, and how often each was created and answered, for
assertions. It can be told to misbehave: answer a status (503) for the next N requests or always,
store and then hang past the client's timeout (the answer is lost), refuse given identifiers,
require a bearer token, know only some patients (a conditional subject reference to another is
refused, "not-found"), or be down (`stop()`, `start()` again on the same port). It logs nothing;
its OperationOutcomes carry fixed phrases and element paths, never a value or an identifier.

Run on its own: `python -m simulator.fhir_server --port 8091`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from fastapi import FastAPI, Request, Response

from simulator.local_http import LocalHttp

MDC_SYSTEM = "urn:iso:std:iso:11073:10101"
UCUM_SYSTEM = "http://unitsofmeasure.org"
PHD_PROFILE = re.compile(r"http://hl7\.org/fhir/uv/phd/StructureDefinition/Phd\w*Observation")
STATUSES = frozenset({"registered", "preliminary", "final", "amended", "corrected"})
FHIR_JSON = "application/fhir+json"
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})")
_CONDITIONAL = re.compile(r"identifier=([^|]+)\|(.+)")
_PATIENT_SEARCH = re.compile(r"Patient\?identifier=([^|]+)\|(.+)")


@dataclass(frozen=True, slots=True)
class Issue:
    code: str  # FHIR issue type
    expression: str
    diagnostics: str


def outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": i.code, "diagnostics": i.diagnostics,
         "expression": [i.expression]} for i in issues]}


def _codings(concept: Any) -> list[Mapping[str, Any]]:
    coding = concept.get("coding") if isinstance(concept, dict) else None
    return [c for c in coding if isinstance(c, dict)] if isinstance(coding, list) else []


def _has_mdc(concept: Any) -> bool:
    return any(c.get("system") == MDC_SYSTEM and isinstance(c.get("code"), str)
               and c["code"].isascii() and c["code"].isdigit() for c in _codings(concept))


def _quantity_issue(quantity: Any, where: str) -> Issue | None:
    if not isinstance(quantity, dict):
        return Issue("required", where, "a value (valueQuantity) is required")
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Issue("required", f"{where}.value", "a numeric value is required")
    if quantity.get("system") != UCUM_SYSTEM or not isinstance(quantity.get("code"), str):
        return Issue("invalid", f"{where}.code", "the unit must be a UCUM code")
    return None


def validate_entry(entry: Any, where: str) -> tuple[list[Issue], str | None]:
    """The problems of one transaction entry, and its conditional-create key (system|value)."""
    if not isinstance(entry, dict):
        return [Issue("structure", where, "an entry must be an object")], None
    issues: list[Issue] = []
    resource = entry.get("resource")
    r = f"{where}.resource"
    if not isinstance(resource, dict) or resource.get("resourceType") != "Observation":
        return [Issue("not-supported", f"{r}.resourceType", "only Observations are taken")], None
    profiles = (resource.get("meta") or {}).get("profile") if isinstance(
        resource.get("meta"), dict) else None
    if not isinstance(profiles, list) or not any(
            isinstance(p, str) and PHD_PROFILE.fullmatch(p) for p in profiles):
        issues.append(Issue("invariant", f"{r}.meta.profile", "a PHD Observation profile is "
                            "required"))
    if resource.get("status") not in STATUSES:
        issues.append(Issue("required", f"{r}.status", "a valid status is required"))
    if not _has_mdc(resource.get("code")):
        issues.append(Issue("required", f"{r}.code", "an MDC coding is required"))
    effective = resource.get("effectiveDateTime")
    if not isinstance(effective, str) or not _DATETIME.fullmatch(effective):
        issues.append(Issue("required", f"{r}.effectiveDateTime",
                            "a date-time with time of day and offset is required"))
    components = resource.get("component")
    if "valueQuantity" in resource:
        if (problem := _quantity_issue(resource["valueQuantity"], f"{r}.valueQuantity")):
            issues.append(problem)
    elif isinstance(components, list) and components:
        for i, component in enumerate(components):
            c = f"{r}.component[{i}]"
            if not isinstance(component, dict) or not _has_mdc(component.get("code")):
                issues.append(Issue("required", f"{c}.code", "an MDC coding is required"))
            elif (problem := _quantity_issue(component.get("valueQuantity"),
                                             f"{c}.valueQuantity")):
                issues.append(problem)
    else:
        issues.append(Issue("required", r, "a valueQuantity or components are required"))
    subject = resource.get("subject")
    if not isinstance(subject, dict) or not (subject.get("reference") or subject.get(
            "identifier")):
        issues.append(Issue("required", f"{r}.subject", "a subject is required"))
    identifiers = {f"{i.get('system')}|{i.get('value')}" for i in resource.get("identifier", [])
                   if isinstance(i, dict)} if isinstance(resource.get("identifier"),
                                                         list) else set()
    request = entry.get("request")
    key = None
    if not isinstance(request, dict) or request.get("method") != "POST" or request.get(
            "url") != "Observation":
        issues.append(Issue("required", f"{where}.request", "POST Observation is required"))
    else:
        match = _CONDITIONAL.fullmatch(str(request.get("ifNoneExist", "")))
        if match is None:
            issues.append(Issue("required", f"{where}.request.ifNoneExist",
                                "a conditional create by identifier is required"))
        elif f"{match.group(1)}|{match.group(2)}" not in identifiers:
            issues.append(Issue("invalid", f"{where}.request.ifNoneExist",
                                "ifNoneExist must name the Observation's identifier"))
        else:
            key = f"{match.group(1)}|{match.group(2)}"
    return issues, key


@dataclass
class FhirServer:
    host: str = "127.0.0.1"
    port: int = 0
    atomic: bool = False
    token: str | None = None
    known_patients: set[str] | None = None  # "system|value"; None: any subject is taken
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)  # by identifier
    created: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)  # 201 or 200, per identifier
    # (monotonic when the request arrived, status), in the order the answers were given
    requests: list[tuple[float, int]] = field(default_factory=list)
    fail_next: int = 0
    fail_status: int = 503
    fail_headers: dict[str, str] = field(default_factory=dict)  # e.g. Retry-After
    fail_always: bool = False
    lose_answer_next: int = 0  # store, then hang this long: the client times out
    lose_answer_s: float = 2.0
    reject: set[str] = field(default_factory=set)  # identifiers answered 400

    def __post_init__(self) -> None:
        self.app = FastAPI(title="recording FHIR server")
        for path in ("/", "/fhir", "/fhir/"):
            self.app.add_api_route(path, self._transaction, methods=["POST"])
        self.app.add_api_route("/metadata", self._metadata, methods=["GET"])
        self.app.add_api_route("/fhir/metadata", self._metadata, methods=["GET"])
        self._http = LocalHttp(self.app, "fhir-server")
        self._next_id = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/fhir"

    def answered_status(self, status: int) -> int:
        return sum(1 for _, s in self.requests if s == status)

    async def start(self) -> None:
        self.port = await self._http.start(self.host, self.port)

    async def stop(self) -> None:
        """Down: the port refuses connections until `start()` again (same port)."""
        await self._http.stop()

    async def _metadata(self) -> Response:
        return _fhir(200, {"resourceType": "CapabilityStatement", "status": "active",
                           "kind": "instance", "fhirVersion": "4.0.1", "format": ["json"],
                           "rest": [{"mode": "server", "interaction": [{"code": "transaction"}],
                                     "resource": [{"type": "Observation",
                                                   "conditionalCreate": True}]}]})

    async def _transaction(self, request: Request) -> Response:
        arrived = time.monotonic()
        body = await request.body()
        if self.fail_always or self.fail_next > 0:
            self.fail_next = max(self.fail_next - 1, 0)
            answer = _fhir(self.fail_status, outcome([Issue(
                "transient", "Bundle", "the server is unavailable; retry")]))
            answer.headers.update(self.fail_headers)
            return self._answer(answer)
        if self.token is not None and request.headers.get(
                "authorization") != f"Bearer {self.token}":
            return self._answer(_fhir(401, outcome([Issue("login", "Bundle",
                                                          "a valid bearer token is required")])))
        try:
            bundle = msgspec.json.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return self._answer(_fhir(400, outcome([Issue("structure", "Bundle",
                                                          "not JSON")])))
        problem = _bundle_issue(bundle)
        if problem is not None:
            return self._answer(_fhir(400, outcome([problem])))
        checked = [self._check(e, f"Bundle.entry[{i}]") for i, e in enumerate(bundle["entry"])]
        if self.atomic and any(issues for issues, _ in checked):
            return self._answer(_fhir(400, outcome([i for issues, _ in checked for i in issues])))
        entries = []
        for (issues, key), raw in zip(checked, bundle["entry"], strict=True):
            if issues or key is None:
                entries.append({"response": {"status": "400 Bad Request",
                                             "outcome": outcome(issues)}})
            else:
                entries.append({"response": self._store(key, raw["resource"])})
        if self.lose_answer_next > 0:
            self.lose_answer_next -= 1
            await asyncio.sleep(self.lose_answer_s)
            return self._answer(Response(status_code=504), arrived)
        return self._answer(_fhir(200, {"resourceType": "Bundle",
                                        "type": "transaction-response", "entry": entries}))

    def _check(self, entry: Any, where: str) -> tuple[list[Issue], str | None]:
        issues, key = validate_entry(entry, where)
        if issues:
            return issues, key
        if key in self.reject:
            return [Issue("business-rule", f"{where}.resource", "refused by this test server")], key
        subject = entry["resource"]["subject"]
        match = _PATIENT_SEARCH.fullmatch(str(subject.get("reference", "")))
        if self.known_patients is not None and match and \
                f"{match.group(1)}|{match.group(2)}" not in self.known_patients:
            return [Issue("not-found", f"{where}.resource.subject",
                          "no Patient matches the subject identifier")], key
        return [], key

    def _store(self, key: str, resource: dict[str, Any]) -> dict[str, Any]:
        self.answered[key] += 1
        existing = self.stored.get(key)
        if existing is not None:
            return {"status": "200 OK", "location": f"Observation/{existing['id']}/_history/1"}
        self._next_id += 1
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        kept = {**resource, "id": f"obs-{self._next_id}",
                "meta": {**resource.get("meta", {}), "versionId": "1", "lastUpdated": now}}
        self.stored[key] = kept
        self.created[key] += 1
        return {"status": "201 Created", "location": f"Observation/{kept['id']}/_history/1",
                "etag": 'W/"1"', "lastModified": now}

    def _answer(self, response: Response, arrived: float | None = None) -> Response:
        self.requests.append((time.monotonic() if arrived is None else arrived,
                              response.status_code))
        return response


def _bundle_issue(bundle: Any) -> Issue | None:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return Issue("structure", "Bundle", "a Bundle is required")
    if bundle.get("type") != "transaction":
        return Issue("not-supported", "Bundle.type", "only transaction Bundles are taken")
    if not isinstance(bundle.get("entry"), list) or not bundle["entry"]:
        return Issue("required", "Bundle.entry", "a transaction needs at least one entry")
    return None


def _fhir(status: int, body: Mapping[str, Any]) -> Response:
    return Response(msgspec.json.encode(body), status_code=status, media_type=FHIR_JSON)


def main() -> None:
    parser = argparse.ArgumentParser(description="A recording FHIR R4 endpoint for trials")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--atomic", action="store_true",
                        help="fail a whole transaction when one entry is invalid")
    args = parser.parse_args()
    server = FhirServer(args.host, args.port, atomic=args.atomic)
    print(f"recording FHIR server at {server.url} (Ctrl-C stops)")

    async def run() -> None:
        await server.start()
        try:
            while True:
                await asyncio.sleep(10)
                print(f"{len(server.stored)} Observations stored, "
                      f"{len(server.requests)} requests")
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
