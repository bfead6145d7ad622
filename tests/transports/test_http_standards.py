"""The standards endpoints against the running gateway and the real database: PCD-01 (SOAP and
plain ER7), PHD FHIR, Open mHealth, vendor JSON and OsmAnd. Answers come after commit."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from adapters import continua, vendor_gps, vendor_medicine, vendor_night
from gateway.ownership import registration
from gateway.ownership.credentials import token_hash
from gateway.ownership.registry import AuthError
from gateway.store.connector import Store
from simulator import standards_devices as sim
from simulator.senders import Tally
from tests.paths import CONFORMANCE_ROOT, ROOT
from tests.support import FakeDevice, RunningGateway, wait_until

pytestmark = pytest.mark.integration

CONFORMANCE = CONFORMANCE_ROOT
PNR = "191212121212"  # Skatteverket's test personnummer
CET = timezone(timedelta(hours=1))
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=CET)
REGION = [{"huvudman": "14", "subject_ref": "test-subject-standards", "legal_basis": "HSL",
           "kinds": ["weight", "bmi", "blood_pressure", "pulse", "spo2", "temperature",
                     "status"], "valid_from": "2018-01-01T00:00:00+00:00"}]


def _eui() -> str:
    return uuid.uuid4().hex[:16].upper()


async def register(store: Store, gateway: RunningGateway, device_id: str | None = None, *,
                   device_type: str = "scale", hub: FakeDevice | None = None,
                   token: bool = True,
                   assignments: list[dict[str, Any]] | None = None) -> FakeDevice:
    """Register (or re-pair) a device and wait until the running gateway sees it so."""
    device = FakeDevice(device_id or f"T-{device_type[:5].upper()}-{uuid.uuid4().hex[:10]}",
                        f"test-token-{uuid.uuid4().hex}" if token else "")
    await registration.apply_config(store, registration.ConfigFile(
        device=[registration.DeviceSpec(id=device.id, type=device_type, hub=hub.id if hub else None,
                                 token_sha256=token_hash(device.token).hex() if token else None)],
        assignment=[registration.AssignmentSpec.model_validate({"device": device.id, **a})
                    for a in assignments or []]))
    registry = gateway.runtime.registry
    deadline = time.monotonic() + 5
    while True:
        known = registry.device(device.id)
        ready = known is not None and known.hub_id == (hub.id if hub else None)
        if ready and token:
            try:
                registry.authenticate(device.id, device.token)
            except AuthError:
                ready = False
        if ready:
            return device
        assert time.monotonic() < deadline, f"registry never picked up {device.id}"
        await _sleep()


async def _sleep() -> None:
    await asyncio.sleep(0.01)


async def _post(gateway: RunningGateway, path: str, content: bytes, content_type: str,
                token: str | None, **kw: Any) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(base_url=gateway.http) as client:
        return await client.post(path, content=content, headers=headers, **kw)


async def _rows(store: Store, device_id: str) -> list[tuple[str, str, int | None, str]]:
    rows = await store.pool.fetch(
        "SELECT event_type, kind, code, source FROM event WHERE device_id = $1 "
        "ORDER BY measured_at, code", device_id)
    return [(r["event_type"], r["kind"], r["code"], r["source"]) for r in rows]


async def _stored_text(store: Store, device_ids: list[str]) -> str:
    """Everything stored about these devices' events, as text (events, copies, deliveries)."""
    parts = []
    for table in ("event", "event_copy", "delivery"):
        exists = await store.pool.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
        if not exists:
            continue
        parts += [str(r[0]) for r in await store.pool.fetch(
            f"SELECT row_to_json(t)::text FROM {table} t WHERE t.event_id IN "
            "(SELECT event_id FROM event WHERE device_id = ANY($1))", device_ids)]
    return "\n".join(parts)


def _segments(ack: str) -> list[list[str]]:
    return [s.split("|") for s in ack.replace("\n", "\r").split("\r") if s]


def _soap_ack(answer: httpx.Response) -> str:
    start = answer.text.index("MSH|")
    return answer.text[start:answer.text.index("</", start)].replace("&#13;", "\r")


def _oru(control_id: str, groups: list[continua.DeviceGroup], sender: str | None = None) -> str:
    return continua.encode_oru(control_id=control_id, sent_at=T0, devices=groups,
                               sender_eui64=sender, patient_id=PNR)


def _scale_group(eui: str, kg: float = 72.4) -> continua.DeviceGroup:
    return continua.DeviceGroup(eui, 528399, T0, [continua.Measurement(188736, kg)])


def _cuff_group(eui: str) -> continua.DeviceGroup:
    return continua.DeviceGroup(eui, 528391, T0, [
        continua.Measurement(150021, 128), continua.Measurement(150022, 82),
        continua.Measurement(150023, 97), continua.Measurement(149546, 66)])


# --- PCD-01 ----------------------------------------------------------------------------------

async def test_pcd01_soap_round_trip_acks_after_commit_and_keeps_pid_out(
        gateway: RunningGateway, store: Store, capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    hub = await register(store, gateway, device_type="continua_hub")
    scale = await register(store, gateway, _eui(), hub=hub, token=False, assignments=REGION)
    cuff = await register(store, gateway, _eui(), device_type="bp_meter", hub=hub, token=False,
                          assignments=REGION)
    er7 = _oru("MSG-SOAP-1", [_scale_group(scale.id), _cuff_group(cuff.id)])
    soap = continua.encode_soap(er7, message_id="urn:uuid:1111-2222")
    answer = await _post(gateway, "/pcd01/CommunicatePCDData", soap,
                         'application/soap+xml; charset=utf-8; action="urn:ihe:pcd:2010:'
                         'CommunicatePCDData"', hub.token)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/soap+xml")
    assert "CommunicatePCDDataResponse" in answer.text and "urn:uuid:1111-2222" in answer.text
    ack = _segments(_soap_ack(answer))
    assert ack[1][:3] == ["MSA", "AA", "MSG-SOAP-1"]
    # AA came after the commit: the rows are there the moment the answer is.
    assert await _rows(store, scale.id) == [("reading", "weight", 188736, "pcd-01")]
    assert await _rows(store, cuff.id) == [("reading", "pulse", 149546, "pcd-01"),
                                           ("reading", "blood_pressure", 150020, "pcd-01")]
    # A resend is answered AA again and stores nothing twice.
    again = await _post(gateway, "/pcd01/CommunicatePCDData", soap, "application/soap+xml",
                        hub.token)
    assert _segments(_soap_ack(again))[1][1] == "AA"
    assert len(await _rows(store, cuff.id)) == 2
    # The personnummer reaches no stored row, no answer and no log line.
    assert PNR not in await _stored_text(store, [scale.id, cuff.id])
    assert PNR not in answer.text and PNR not in again.text
    out, err = capfd.readouterr()
    assert PNR not in out + err
    assert PNR not in caplog.text


async def test_pcd01_plain_er7_and_soap11(gateway: RunningGateway, store: Store) -> None:
    hub = await register(store, gateway, device_type="continua_hub")
    scale = await register(store, gateway, _eui(), hub=hub, token=False, assignments=REGION)
    er7 = _oru("MSG-ER7-1", [_scale_group(scale.id, 80.1)])
    answer = await _post(gateway, "/pcd01/hl7v2", er7.encode(), "application/hl7-v2",
                         hub.token)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/hl7-v2")
    ack = _segments(answer.text)
    assert ack[0][8] == "ACK^R01^ACK" and ack[1][:3] == ["MSA", "AA", "MSG-ER7-1"]
    assert len(await _rows(store, scale.id)) == 1
    # The same device's own message, LF line ends, as text/plain: the device is its own uploader.
    device = await register(store, gateway, _eui(), device_type="scale")
    lf = _oru("MSG-ER7-2", [_scale_group(device.id, 66.0)]).replace("\r", "\n")
    answer = await _post(gateway, "/pcd01/hl7v2", lf.encode(), "text/plain", device.token)
    assert _segments(answer.text)[1][1] == "AA"
    # SOAP 1.1 (text/xml) is answered in SOAP 1.1.
    soap11 = continua.encode_soap(_oru("MSG-11", [_scale_group(scale.id, 80.3)])).replace(
        continua.SOAP12.encode(), continua.SOAP11.encode())
    answer = await _post(gateway, "/pcd01/CommunicatePCDData", soap11, "text/xml", hub.token)
    assert answer.headers["content-type"].startswith("text/xml")
    assert continua.SOAP11 in answer.text and _segments(_soap_ack(answer))[1][1] == "AA"


async def test_pcd01_bad_messages_are_answered_ae_or_ar_with_the_reason(
        gateway: RunningGateway, store: Store) -> None:
    hub = await register(store, gateway, device_type="continua_hub")
    scale = await register(store, gateway, _eui(), hub=hub, token=False, assignments=REGION)
    # Not an ORU^R01: refused whole, AR, reason and the control id kept.
    adt = _oru("MSG-ADT", [_scale_group(scale.id)]).replace("ORU^R01^ORU_R01", "ADT^A01")
    answer = await _post(gateway, "/pcd01/hl7v2", adt.encode(), "application/hl7-v2", hub.token)
    ack = _segments(answer.text)
    assert answer.status_code == 200
    assert ack[1][:3] == ["MSA", "AR", "MSG-ADT"] and "expected an ORU" in ack[1][3]
    err = next(e for e in ack if e[0] == "ERR")
    assert err[2] == "MSH^1^9" and err[3] == "200^Unsupported message type^HL70357"
    # One unusable row: AE with an ERR locating it; the good row is stored.
    er7 = _oru("MSG-AE", [_scale_group(scale.id, 70.0)]).rstrip("\r") + (
        f"\rOBX|9|NM|150364^MDC_TEMP_BODY^MDC|1.0.0.9|36.6|999999^^MDC|||||R|||||||"
        f"{scale.id}^EUI-64\r")
    answer = await _post(gateway, "/pcd01/hl7v2", er7.encode(), "application/hl7-v2", hub.token)
    ack = _segments(answer.text)
    assert ack[1][:3] == ["MSA", "AE", "MSG-AE"]
    assert ack[2][0] == "ERR" and ack[2][2] == "OBX^3^6" and "unit" in ack[2][8]
    assert await _rows(store, scale.id) == [("reading", "weight", 188736, "pcd-01")]
    # Malformed SOAP: AR in a SOAP answer.
    answer = await _post(gateway, "/pcd01/CommunicatePCDData", b"<not-soap/>",
                         "application/soap+xml", hub.token)
    assert answer.status_code == 200 and "MSA|AR|" in answer.text
    # Wrong or missing credential, wrong content type.
    assert (await _post(gateway, "/pcd01/hl7v2", er7.encode(), "application/hl7-v2",
                        None)).status_code == 401
    assert (await _post(gateway, "/pcd01/hl7v2", er7.encode(), "application/hl7-v2",
                        "not-a-token-at-all")).status_code == 401
    assert (await _post(gateway, "/pcd01/hl7v2", er7.encode(), "application/json",
                        hub.token)).status_code == 415


async def test_pcd01_reading_of_a_device_not_paired_with_the_hub_is_refused(
        gateway: RunningGateway, store: Store) -> None:
    hub = await register(store, gateway, device_type="continua_hub")
    other_hub = await register(store, gateway, device_type="continua_hub")
    mine = await register(store, gateway, _eui(), hub=hub, token=False, assignments=REGION)
    theirs = await register(store, gateway, _eui(), device_type="bp_meter", hub=other_hub,
                            token=False, assignments=REGION)
    er7 = _oru("MSG-PAIR", [_scale_group(mine.id), _cuff_group(theirs.id)])
    answer = await _post(gateway, "/pcd01/hl7v2", er7.encode(), "application/hl7-v2", hub.token)
    ack = _segments(answer.text)
    assert ack[1][:3] == ["MSA", "AE", "MSG-PAIR"]
    errs = [s for s in ack if s[0] == "ERR"]
    # The cuff's device row and its four rows (OBX 3..7) carry its EUI-64 in OBX-18.
    assert [e[2] for e in errs] == [f"OBX^{n}^18" for n in range(3, 8)]
    assert all("paired hub" in e[8] for e in errs)
    # An application refusal (HL7 table 0357), not an error in the message's data.
    assert {e[3] for e in errs} == {"207^Application internal error^HL70357"}
    assert len(await _rows(store, mine.id)) == 1
    assert await _rows(store, theirs.id) == []
    # A device the gateway does not know at all: the same answer, so that a hub cannot learn
    # which devices exist.
    stranger = _eui()
    answer = await _post(gateway, "/pcd01/hl7v2", _oru(
        "MSG-PAIR-3", [_scale_group(mine.id, 71.0), _scale_group(stranger, 72.0)]).encode(),
        "application/hl7-v2", hub.token)
    errs = [s for s in _segments(answer.text) if s[0] == "ERR"]
    assert [e[2] for e in errs] == ["OBX^3^18", "OBX^4^18"]  # its device row and reading
    assert {(e[3], "paired hub" in e[8]) for e in errs} == {
        ("207^Application internal error^HL70357", True)}
    # Nothing of the message usable: still AE, and nothing stored.
    only_theirs = _oru("MSG-PAIR-2", [_cuff_group(theirs.id)])
    answer = await _post(gateway, "/pcd01/hl7v2", only_theirs.encode(), "application/hl7-v2",
                         hub.token)
    assert _segments(answer.text)[1][:4] == ["MSA", "AE", "MSG-PAIR-2",
                                             "no observation was stored"]
    assert await _rows(store, theirs.id) == []


# --- PHD FHIR --------------------------------------------------------------------------------

def _fhir_file(name: str) -> bytes:
    return (CONFORMANCE / "phd-fhir" / name).read_bytes()


async def test_phd_fhir_conformance_bundle_gives_per_entry_statuses(
        gateway: RunningGateway, store: Store) -> None:
    hub = await register(store, gateway, device_type="fhir_hub")
    # The same document without its indentation (75 kB as published; the test gateway takes 64).
    payload = msgspec.json.encode(msgspec.json.decode(_fhir_file("bundle-continuousnonin.json")))
    phd = "74E8FFFEFF051C00"  # the PHD of the IG example
    await register(store, gateway, phd, device_type="pulse_oximeter", hub=hub, token=False,
                   assignments=REGION)
    answer = await _post(gateway, "/fhir/", payload, "application/fhir+json", hub.token)
    assert answer.status_code == 200, answer.text
    bundle = answer.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction-response"
    request = json.loads(payload)
    assert len(bundle["entry"]) == len(request["entry"]) == 47
    statuses = [e["response"]["status"] for e in bundle["entry"]]
    unsupported = [i for i, e in enumerate(request["entry"])
                   if e["resource"]["code"]["coding"][0]["code"] in ("150320", "150604")]
    assert {statuses[i] for i in unsupported} == {"422 Unprocessable Entity"}
    assert all(s == "201 Created" for i, s in enumerate(statuses) if i not in unsupported)
    issue = bundle["entry"][unsupported[0]]["response"]["outcome"]["issue"][0]
    assert issue["code"] == "not-supported"
    assert issue["expression"] == [f"Bundle.entry[{unsupported[0]}].resource.code"]
    rows = await _rows(store, phd)
    assert len(rows) == 47 - len(unsupported)
    assert {(k, c) for _, k, c, _ in rows} == {("spo2", 150456), ("pulse", 149530),
                                               ("status", None)}
    assert {s for *_, s in rows} == {"phd-fhir"}


async def test_phd_fhir_bundle_from_a_hub_not_paired_is_refused_per_entry(
        gateway: RunningGateway, store: Store) -> None:
    hub = await register(store, gateway, device_type="fhir_hub")
    phd = "001C050400007825"  # bundle-example-1's PHD
    stranger = await register(store, gateway, device_type="fhir_hub")
    await register(store, gateway, phd, device_type="pulse_oximeter", hub=stranger,
                   token=False, assignments=REGION)
    payload = _fhir_file("bundle-example-1.json")
    answer = await _post(gateway, "/fhir/", payload, "application/fhir+json", hub.token)
    entries = answer.json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["200", "200", "200", "200",
                                                              "422", "422"]
    refused = entries[4]["response"]["outcome"]["issue"][0]
    assert refused["code"] == "security"
    assert refused["expression"] == ["Bundle.entry[4].resource.device"]
    assert await _rows(store, phd) == []
    # Paired with this hub now: the two readings are stored; Patient and Devices are not.
    await register(store, gateway, phd, device_type="pulse_oximeter", hub=hub, token=False)
    answer = await _post(gateway, "/fhir/", payload, "application/fhir+json", hub.token)
    entries = answer.json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["200", "200", "200", "200",
                                                              "201", "201"]
    assert "patient" in entries[0]["response"]["outcome"]["issue"][0]["diagnostics"]
    assert {(k, c) for _, k, c, _ in await _rows(store, phd)} == {("spo2", 150456),
                                                                  ("pulse", 149530)}
    stored = await _stored_text(store, [phd])
    assert "sisansarahId" not in stored and "sisansarahId" not in answer.text


async def test_phd_fhir_device_on_its_own_and_unknown_paths_answer_in_fhir(
        gateway: RunningGateway, store: Store) -> None:
    """Issue 16: a bare Device is taken at /fhir/Device as inside a Bundle (nothing stored);
    any other FHIR path answers with an OperationOutcome, never a bare `{"detail": ...}`."""
    hub = await register(store, gateway, device_type="continua_hub")
    device = {"resourceType": "Device", "identifier": [{
        "system": "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680",
        "value": "74-E8-FF-FE-FF-05-1C-00"}]}
    answer = await _post(gateway, "/fhir/Device", msgspec.json.encode(device),
                         "application/fhir+json", hub.token)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+json")
    for method, path in (("POST", "/fhir/Encounter"), ("GET", "/fhir/Observation/1"),
                         ("DELETE", "/fhir/Device/1")):
        async with httpx.AsyncClient(base_url=gateway.http) as client:
            answer = await client.request(method, path, headers={
                "Authorization": f"Bearer {hub.token}", "Content-Type": "application/fhir+json"})
        assert answer.status_code == 404
        body = answer.json()
        assert body["resourceType"] == "OperationOutcome" and "detail" not in body
        assert body["issue"][0]["code"] == "not-supported"
    async with httpx.AsyncClient(base_url=gateway.http) as client:
        # A known path with another method: 405 saying which; with a trailing slash: redirected.
        wrong = await client.get("/fhir/Observation")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
        assert wrong.json()["resourceType"] == "OperationOutcome"
        slash = await client.get("/fhir/metadata/")
        assert slash.status_code == 307 and slash.headers["location"].endswith("/fhir/metadata")


async def test_phd_fhir_single_observation(gateway: RunningGateway, store: Store) -> None:
    device = await register(store, gateway, _eui(), device_type="pulse_oximeter",
                            assignments=REGION)
    observation: dict[str, Any] = {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "150456"}]},
        "subject": {"reference": "Patient/secret-patient-ref"},
        "effectiveDateTime": "2026-11-20T08:58:00+01:00",
        "device": {"reference": f"Device/phd-{device.id}.001C05FFE874"},
        "valueQuantity": {"value": 96, "system": "http://unitsofmeasure.org", "code": "%"}}
    answer = await _post(gateway, "/fhir/Observation", msgspec.json.encode(observation),
                         "application/fhir+json", device.token)
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["resourceType"] == "Observation" and created["valueQuantity"]["value"] == 96
    assert "subject" not in created and "secret-patient-ref" not in answer.text
    assert answer.headers["location"].endswith(f"/fhir/Observation/{created['id']}/_history/1")
    assert await _rows(store, device.id) == [("reading", "spo2", 150456, "phd-fhir")]
    # An unsupported code: 422 with an OperationOutcome naming the element.
    observation["code"]["coding"][0]["code"] = "150320"
    answer = await _post(gateway, "/fhir/Observation", msgspec.json.encode(observation),
                         "application/fhir+json", device.token)
    assert answer.status_code == 422
    issue = answer.json()["issue"][0]
    assert issue["code"] == "not-supported" and issue["expression"] == ["Observation.code"]
    # Not FHIR at all, or a Bundle on the Observation endpoint: 400.
    answer = await _post(gateway, "/fhir/Observation", b"{nope", "application/fhir+json",
                         device.token)
    assert answer.status_code == 400 and answer.json()["resourceType"] == "OperationOutcome"
    answer = await _post(gateway, "/fhir/Observation", _fhir_file("bundle-example-1.json"),
                         "application/fhir+json", device.token)
    assert answer.status_code == 400
    assert (await _post(gateway, "/fhir/", b"{}", "application/fhir+json",
                        None)).status_code == 401


async def test_fhir_metadata_and_simulator_bundle(gateway: RunningGateway,
                                                  store: Store) -> None:
    async with httpx.AsyncClient(base_url=gateway.http) as client:
        meta = (await client.get("/fhir/metadata")).json()
    assert meta["resourceType"] == "CapabilityStatement" and meta["fhirVersion"] == "4.0.1"
    hub = await register(store, gateway, device_type="fhir_hub")
    cuff = await register(store, gateway, _eui(), device_type="bp_meter", hub=hub, token=False)
    phd = sim.Phd(cuff.id, "bp_meter", sim.Person(seed=3))
    bundle = sim.phd_fhir_bundle(_eui(), sim.fhir_observations(phd, T0))
    answer = await _post(gateway, "/fhir", bundle, "application/fhir+json", hub.token)
    statuses = [e["response"]["status"] for e in answer.json()["entry"]]
    assert statuses == ["200 OK", "200 OK", "201 Created", "201 Created"]
    assert {(k, c) for _, k, c, _ in await _rows(store, cuff.id)} == {
        ("blood_pressure", 150020), ("pulse", 149546)}


# --- Open mHealth ----------------------------------------------------------------------------

def _omh_files(kind: str) -> list[Path]:
    return sorted((CONFORMANCE / "omh").glob(f"*/*/{kind}/*.json"))


def _schema(path: Path) -> str:
    version, name = path.parent.parent.name, path.parent.parent.parent.name
    return f"omh:{name}:{version}"


async def test_omh_conformance_documents(gateway: RunningGateway, store: Store) -> None:
    device = await register(store, gateway, device_type="omh_scale", assignments=REGION)
    path = f"/v1/devices/{device.id}/omh"
    for doc in _omh_files("shouldPass"):
        answer = await _post(gateway, path, doc.read_bytes(), "application/json", device.token,
                             params={"schema": _schema(doc)})
        assert answer.status_code == 200, (doc, answer.text)
        body = answer.json()
        assert len(body["accepted"]) + len(body["duplicates"]) >= 1 and not body["rejected"]
    for doc in _omh_files("shouldFail"):
        answer = await _post(gateway, path, doc.read_bytes(), "application/json", device.token,
                             params={"schema": _schema(doc)})
        assert answer.status_code == 422, (doc, answer.text)
        assert answer.json()["rejected"][0]["field"], doc
    kinds = {k for _, k, _, _ in await _rows(store, device.id)}
    assert kinds == {"weight", "blood_pressure", "spo2", "pulse", "temperature", "position",
                     "medication"}  # single-medication-dose-taken (issue 16)
    # An array of full data points: the good one kept, the bad one named with its index.
    good = sim.omh_body_weight(71.0, T0)
    bad = sim.omh_body_weight(71.0, T0 + timedelta(minutes=1))
    bad["body"]["body_weight"]["unit"] = "km"
    answer = await _post(gateway, path, msgspec.json.encode([good, bad]), "application/json",
                         device.token)
    body = answer.json()
    assert answer.status_code == 200 and len(body["accepted"]) == 1
    assert body["rejected"] == [{"field": "[1].body.body_weight.unit", "index": 1,
                                 "reason": body["rejected"][0]["reason"]}]


# --- vendor JSON and OsmAnd ------------------------------------------------------------------

SOCIAL = [{"huvudman": "1480", "subject_ref": "test-brukare-vendor", "legal_basis": "SoL",
           "kinds": ["alarm", "position", "status", "activity", "medication"],
           "valid_from": "2026-01-01T00:00:00+00:00", "alarm_route": "test-larmcentral",
           "position_consent": True}]


async def test_vendor_formats_over_http(gateway: RunningGateway, store: Store) -> None:
    gps = await register(store, gateway, device_type="gps_alarm", assignments=SOCIAL)
    night = await register(store, gateway, device_type="night_sensor", assignments=SOCIAL)
    robot = await register(store, gateway, device_type="medicine_robot", assignments=SOCIAL)
    cases = [
        (gps, "vendor-gps", vendor_gps.encode_json(
            gps.id, time=T0, lat=57.7, lon=11.97, accuracy=10.0, alarm="sos",
            battery_level=0.8), {("alarm", "alarm", None, "vendor_gps"),
                                 ("status", "status", None, "vendor_gps")}),
        (night, "vendor-night", vendor_night.encode_message(
            [vendor_night.encode_event("bed_exit", T0, seq=1),
             vendor_night.encode_event("in_bed", T0 + timedelta(minutes=5), seq=2)]),
         {("alarm", "alarm", None, "vendor_night"), ("event", "activity", None, "vendor_night")}),
        (robot, "vendor-medicine", vendor_medicine.encode_message(
            [vendor_medicine.encode_event("dose_dispensed", T0, dose="slot-08"),
             vendor_medicine.encode_event("dose_taken", T0 + timedelta(minutes=3),
                                          dose="slot-08")]),
         {("event", "medication", None, "vendor_medicine")}),
    ]
    for device, fmt, payload, expected in cases:
        answer = await _post(gateway, f"/v1/devices/{device.id}/events", payload,
                             "application/json", device.token, params={"format": fmt})
        assert answer.status_code == 200, answer.text
        assert answer.json()["rejected"] == []
        assert set(await _rows(store, device.id)) == expected, fmt
    # A bad event is named; the good one is kept.
    bad = vendor_night.encode_message([
        vendor_night.encode_event("movement", T0 + timedelta(hours=1)),
        {"type": "levitation", "time": T0.isoformat()}])
    answer = await _post(gateway, f"/v1/devices/{night.id}/events", bad, "application/json",
                         night.token, params={"format": "vendor-night"})
    body = answer.json()
    assert len(body["accepted"]) == 1 and body["rejected"][0]["field"] == "events[1].type"
    answer = await _post(gateway, f"/v1/devices/{night.id}/events", bad, "application/json",
                         night.token, params={"format": "native"})
    assert answer.status_code == 422 and answer.json()["rejected"][0]["field"] == "format"
    answer = await _post(gateway, f"/v1/devices/{night.id}/events", bad, "application/json",
                         gps.token, params={"format": "vendor-night"})
    assert answer.status_code == 403


async def test_osmand_query_and_form_fields(gateway: RunningGateway, store: Store) -> None:
    gps = await register(store, gateway, device_type="gps_alarm", assignments=SOCIAL)
    params = vendor_gps.encode_params(gps.id, time=T0, lat=57.70887, lon=11.97456,
                                      accuracy=12.5, batt=81)
    async with httpx.AsyncClient(base_url=gateway.http) as client:
        answer = await client.get("/v1/osmand", params=params | {"key": gps.token})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["accepted"]) == 2   # a position fix and a battery status
        form = vendor_gps.encode_params(gps.id, time=T0 + timedelta(minutes=1), lat=57.71,
                                        lon=11.98, alarm="sos")
        answer = await client.post("/v1/osmand", data=form,
                                   headers={"Authorization": f"Bearer {gps.token}"})
        assert answer.status_code == 200 and len(answer.json()["accepted"]) == 1
        # Traccar's JSON on the same endpoint, the credential naming the device.
        answer = await client.post(
            "/v1/osmand", content=vendor_gps.encode_json(
                gps.id, time=T0 + timedelta(minutes=2), lat=57.7, lon=11.9, event="heartbeat"),
            headers={"Authorization": f"Bearer {gps.token}",
                     "Content-Type": "application/json"})
        assert answer.status_code == 200 and len(answer.json()["accepted"]) == 2
        wrong = await client.get("/v1/osmand", params=params | {"key": "wrong-key-1234567"})
        assert wrong.status_code == 401
        assert (await client.get("/v1/osmand", params=params)).status_code == 401
        bad = await client.get("/v1/osmand", params=params | {"key": gps.token, "lat": "north"})
        assert bad.json()["rejected"] == [{"field": "lat", "reason": "not a decimal number"}]
    rows = await _rows(store, gps.id)
    assert {r[0] for r in rows} == {"position", "status", "alarm"}


# --- size limits -----------------------------------------------------------------------------

async def test_every_endpoint_family_refuses_oversize_bodies(gateway: RunningGateway,
                                                             store: Store) -> None:
    device = await register(store, gateway, device_type="gps_alarm")
    huge = b"x" * (gateway.settings.http_max_body_bytes + 1)
    cases = [
        ("/pcd01/CommunicatePCDData", "application/soap+xml", {}),
        ("/pcd01/hl7v2", "application/hl7-v2", {}),
        ("/fhir/", "application/fhir+json", {}),
        ("/fhir/Observation", "application/fhir+json", {}),
        (f"/v1/devices/{device.id}/omh", "application/json", {}),
        (f"/v1/devices/{device.id}/events", "application/json", {"format": "vendor-gps"}),
        ("/v1/osmand", "application/x-www-form-urlencoded", {"id": device.id}),
    ]
    for path, content_type, params in cases:
        answer = await _post(gateway, path, huge, content_type, device.token, params=params)
        assert answer.status_code == 413, path


# --- the simulator's senders against the demo fleet ------------------------------------------

async def test_simulator_standards_devices_of_the_demo_fleet(gateway: RunningGateway,
                                                             store: Store) -> None:
    fleet = ROOT / "config" / "demo" / "fleet.toml"
    await registration.apply_config(store, registration.read_config(fleet))
    registry = gateway.runtime.registry
    for _ in range(500):
        known = registry.device("DE40000000000003")
        if known is not None and known.hub_id == "HUB-FHIR-0001" and registry.device(
                "MEDROBOT-0001") is not None:
            break
        await _sleep()
    tally = Tally()
    senders = sim.load(fleet, http_url=gateway.http, mqtt_url=gateway.settings.mqtt_url,
                       tally=tally)
    assert len(senders) == 6
    try:
        await asyncio.to_thread(sim.send_round, senders, datetime.now(CET))
        for _ in range(500):  # MQTT senders count their PUBACKs as they come
            if sum(tally.confirmed.values()) >= 6:
                break
            await _sleep()
    finally:
        await asyncio.to_thread(sim.close, senders)
    assert dict(tally.errors) == {} and dict(tally.rejected) == {}
    assert sum(tally.confirmed.values()) == 6
    for device_id in ("DE40000000000001", "DE40000000000002", "DE40000000000003",
                      "OMH-SCALE-0001", "NIGHT-0001", "GPS-0001", "MEDROBOT-0001"):
        assert await wait_until(lambda d=device_id: _rows(store, d)), device_id
