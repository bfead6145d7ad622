"""PHD FHIR adapter: the HL7 PHD IG examples, device matching, clock faults, answers, fuzzing."""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import phd_fhir
from adapters.errors import AdapterError
from adapters.events import DeviceStatus, Flag, Reading, event_id
from tests.paths import CONFORMANCE_ROOT

CONFORMANCE = CONFORMANCE_ROOT / "phd-fhir"
RECEIVED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
OXIMETER = "74E8FFFEFF051C00"
CUFF = "711000FEFF5F49B0"
PHG = "ECDE3D4E58532D31"
UNSUPPORTED = "observation code not supported by this gateway; not stored"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CONFORMANCE / name).read_text())
    return data


def _upload(doc: Any, device_id: str | None = None) -> phd_fhir.Upload:
    payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return phd_fhir.parse_upload(payload, device_id=device_id, received_at=RECEIVED)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _single(reading_code: int, values: list[tuple[int, float, str]], time: str,
            device: str) -> dict[str, Any]:
    return {"code": reading_code, "values": values, "time": time, "device": device}


# Each file: the readings it must yield, and the outcome statuses per entry.
EXPECTED: dict[str, dict[str, Any]] = {
    "compound-numeric-blood-pressure.json": {
        "readings": [_single(150020, [(150021, 116, "mm[Hg]"), (150022, 71, "mm[Hg]"),
                                      (150023, 86, "mm[Hg]")],
                             "2018-11-11T11:38:15-05:00", CUFF)],
        "statuses": ["201 Created"]},
    "compound-numeric-blood-pressure-no-mean.json": {
        "readings": [_single(150020, [(150021, 116, "mm[Hg]"), (150022, 71, "mm[Hg]")],
                             "2018-11-11T11:38:15-05:00", CUFF)],
        "statuses": ["201 Created"]},
    "numeric-spo2-alarm.json": {
        "readings": [_single(150456, [(150456, 79, "%")], "2018-11-13T17:59:02-05:00",
                             OXIMETER)],
        "statuses": ["201 Created"]},
    "numeric-spotnumeric.json": {
        "readings": [_single(149530, [(149530, 48, "/min")], "2018-11-13T17:59:03-05:00",
                             OXIMETER)],
        "statuses": ["201 Created"]},
    "temperature-observation.json": {
        "readings": [_single(150364, [(150364, 36.5, "Cel")], "2025-01-08T19:07:48-05:00",
                             OXIMETER)],
        "statuses": ["201 Created"]},
    "bpm-status.json": {"readings": [], "statuses": ["422 Unprocessable Entity"],
                        "rejected": ["code"]},
    "numeric-observation-not-a-number.json": {"readings": [],
                                              "statuses": ["422 Unprocessable Entity"],
                                              "rejected": ["code"]},
    "coin-example-timefault.json": {"readings": [], "statuses": ["200 OK"]},
    "patientExample-1.json": {"readings": [], "statuses": ["200 OK"]},
    "phd-711000FEFF5F49B0.B0495F001071.json": {"readings": [], "statuses": ["200 OK"],
                                               "devices": [CUFF]},
    "phg-ecde3d4e58532d31.000000000000.json": {"readings": [], "statuses": ["200 OK"],
                                               "gateways": [PHG]},
    "bundle-example-1.json": {
        "readings": [_single(150456, [(150456, 98, "%")], "2019-09-20T12:40:16.936-04:00",
                             "001C050400007825"),
                     _single(149530, [(149530, 47, "/min")], "2019-09-20T12:40:16.936-04:00",
                             "001C050400007825")],
        "statuses": ["200 OK", "200 OK", "200 OK", "200 OK", "201 Created", "201 Created"],
        "devices": ["001C050400007825"], "gateways": ["4C4E49123456FFFF"]},
}


def test_every_file_has_expectations() -> None:
    names = {p.name for p in CONFORMANCE.glob("*.json")}
    assert names == {*EXPECTED, "bundle-continuousnonin.json", "rtsa-example.json",
                     "glucose-observation.json"}


def test_the_igs_glucose_example_becomes_a_glucose_reading_in_mmol_per_litre() -> None:
    """Issue 16: the PHD IG's glucose example (MDC 160368, 99 mg/dL) in Swedish care's unit."""
    upload = _upload((CONFORMANCE / "glucose-observation.json").read_bytes())
    [reading] = upload.parsed.events
    assert isinstance(reading, Reading)
    assert (reading.code, reading.kind) == (160368, "glucose")
    [value] = reading.values
    assert (value.code, value.unit) == (160368, "mmol/L")
    assert value.value == pytest.approx(99 / 18.016)
    assert reading.flags == ("converted_unit",)
    assert reading.measured_at == _at("2025-01-08T19:07:48-05:00")
    assert reading.device_id == OXIMETER  # the IG's example device, 74E8FFFEFF051C00


def test_a_real_time_sample_array_is_refused_with_the_reason() -> None:
    """Issue 16: waveforms are deliberately not taken, and the answer says so."""
    upload = _upload((CONFORMANCE / "rtsa-example.json").read_bytes())
    assert upload.parsed.events == []
    [rejection] = upload.parsed.rejections
    assert rejection.field == "valueSampledData"
    assert rejection.reason.startswith("real-time sample arrays are not taken")
    assert [o.issue for o in upload.outcomes] == ["not-supported"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_conformance_file(name: str) -> None:
    expected = EXPECTED[name]
    upload = _upload((CONFORMANCE / name).read_bytes())
    assert [o.status for o in upload.outcomes] == expected["statuses"]
    readings = [e for e in upload.parsed.events if isinstance(e, Reading)]
    assert len(readings) == len(upload.parsed.events) == len(expected["readings"])
    for reading, want in zip(readings, expected["readings"], strict=True):
        assert reading.code == want["code"]
        assert [(q.code, q.unit) for q in reading.values] == [(c, u) for c, _, u in
                                                                want["values"]]
        assert [q.value for q in reading.values] == pytest.approx([v for _, v, _ in
                                                                     want["values"]])
        assert reading.measured_at == _at(want["time"])
        assert reading.device_id == want["device"]
        assert reading.event_id == event_id(want["device"], str(want["code"]),
                                            reading.measured_at)
        assert reading.source == "phd-fhir"
        assert reading.flags == ()
    assert [r.field for r in upload.parsed.rejections] == expected.get("rejected", [])
    for rejection in upload.parsed.rejections:
        assert rejection.reason == UNSUPPORTED
    if "devices" in expected:
        assert upload.device_ids == expected["devices"]
    if "gateways" in expected:
        assert upload.gateway_ids == expected["gateways"]
    # Every entry gets an answer; none is dropped silently.
    assert len(upload.outcomes) == max(1, len(_load(name).get("entry", [])))


def test_continuous_nonin_bundle() -> None:
    upload = _upload((CONFORMANCE / "bundle-continuousnonin.json").read_bytes(), PHG)
    statuses = Counter(o.status for o in upload.outcomes)
    assert statuses == {"201 Created": 25, "422 Unprocessable Entity": 22}
    kinds = Counter(e.code if isinstance(e, Reading) else "battery" for e in upload.parsed.events)
    assert kinds == {150456: 12, 149530: 12, "battery": 1}
    [battery] = [e for e in upload.parsed.events if isinstance(e, DeviceStatus)]
    assert battery.battery_pct == 100
    assert battery.measured_at == _at("2018-11-11T19:07:36-05:00")
    first_spo2 = next(e for e in upload.parsed.events if isinstance(e, Reading))
    assert first_spo2.values[0].value == 99
    assert first_spo2.device_id == OXIMETER
    # Unsupported codes: quality (150320) and device status (150604), each answered per entry.
    rejected = {r.index: r for r in upload.parsed.rejections}
    assert rejected[3].field == "entry[3].resource.code"
    assert all(r.reason == UNSUPPORTED for r in rejected.values())
    assert upload.device_ids == [OXIMETER]
    assert upload.gateway_ids == [PHG]


def test_transaction_response_has_outcome_per_failed_entry() -> None:
    upload = _upload((CONFORMANCE / "bundle-continuousnonin.json").read_bytes(), PHG)
    answer = json.loads(phd_fhir.transaction_response(upload))
    assert answer["resourceType"] == "Bundle"
    assert answer["type"] == "transaction-response"
    assert len(answer["entry"]) == 47
    assert answer["entry"][1]["response"] == {"status": "201 Created"}
    failed = answer["entry"][3]["response"]
    assert failed["status"] == "422 Unprocessable Entity"
    [issue] = failed["outcome"]["issue"]
    assert failed["outcome"]["resourceType"] == "OperationOutcome"
    assert issue["severity"] == "error"
    assert issue["code"] == "not-supported"
    assert issue["expression"] == ["Bundle.entry[3].resource.code"]
    assert issue["diagnostics"] == UNSUPPORTED


def test_conditional_creates_answer_200_and_keep_patient_out() -> None:
    doc = _load("bundle-example-1.json")
    upload = _upload(doc, "4C4E49123456FFFF")
    answer = phd_fhir.transaction_response(upload)
    entries = json.loads(answer)["entry"]
    assert [e["response"]["status"] for e in entries[:3]] == ["200 OK"] * 3
    text = answer.decode() + repr(upload)
    for personal in ("Gyannea", "Sisansarah", "sisansarahId", "patient-001", "5b7842fe"):
        assert personal not in text


def test_device_mismatch_rejects_entries_per_entry() -> None:
    doc = _load("bundle-example-1.json")
    upload = _upload(doc, "0011223344556677")
    assert upload.parsed.events == []
    assert [o.status for o in upload.outcomes[4:]] == ["422 Unprocessable Entity"] * 2
    assert {o.issue for o in upload.outcomes[4:]} == {"security"}
    assert upload.parsed.rejections[0].field == "entry[4].resource.device"
    assert upload.device_ids == ["001C050400007825"]


def test_measuring_device_itself_may_authenticate() -> None:
    upload = _upload(_load("numeric-spo2-alarm.json"), "74-E8-FF-FE-FF-05-1C-00")
    assert len(upload.parsed.events) == 1


def test_clock_fault_in_coincident_time_stamp_flags_readings() -> None:
    cts = _load("coin-example-timefault.json")
    reading = _load("compound-numeric-blood-pressure.json")
    for ext in reading["extension"]:
        if ext["url"].endswith("CoincidentTimeStampReference"):
            ext["valueReference"]["reference"] = "Observation/coin-example-timefault"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": cts,
         "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": "urn:uuid:2", "resource": reading,
         "request": {"method": "POST", "url": "Observation"}}]}
    upload = _upload(bundle)
    [event] = upload.parsed.events
    assert event.flags == (Flag.CLOCK_IMPLAUSIBLE,)
    # The time is reported as the PHG placed it; it is flagged, not shifted.
    assert event.measured_at == _at("2018-11-11T11:38:15-05:00")
    assert "unusable" in (upload.outcomes[0].note or "")


def test_good_coincident_time_stamp_leaves_readings_unflagged() -> None:
    upload = _upload(_load("bundle-example-1.json"))
    assert all(e.flags == () for e in upload.parsed.events)


def test_single_observation_response_codes() -> None:
    status, body = phd_fhir.response(_upload(_load("numeric-spo2-alarm.json")))
    assert (status, body) == (201, b"")
    status, body = phd_fhir.response(_upload(_load("bpm-status.json")))
    assert status == 422
    assert json.loads(body)["issue"][0]["expression"] == ["Observation.code"]


def _spo2(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(_load("numeric-spo2-alarm.json"))
    doc.update(changes)
    return doc


@pytest.mark.parametrize(("changes", "field", "issue"), [
    ({"valueQuantity": {"value": 140, "code": "%", "system": "http://unitsofmeasure.org"}},
     "valueQuantity.value", "value"),
    ({"valueQuantity": {"value": 97, "code": "kg", "system": "http://unitsofmeasure.org"}},
     "valueQuantity.code", "value"),
    ({"valueQuantity": None, "dataAbsentReason": {"text": "x"}}, "valueQuantity", "incomplete"),
    ({"effectiveDateTime": "2018-11-13"}, "effectiveDateTime", "value"),
    ({"effectiveDateTime": "2018-11-13T17:59:02"}, "effectiveDateTime", "value"),
    ({"status": "entered-in-error"}, "status", "business-rule"),
    ({"device": {"reference": "Device/unknown"}}, "device", "required"),
])
def test_bad_observation_names_the_element(changes: dict[str, Any], field: str,
                                           issue: str) -> None:
    upload = _upload(_spo2(**changes))
    [outcome] = upload.outcomes
    assert outcome.status == "422 Unprocessable Entity"
    assert outcome.rejection is not None
    assert outcome.rejection.field == field
    assert outcome.issue == issue
    assert "140" not in outcome.rejection.reason


def test_mdc_unit_code_is_converted_to_ucum() -> None:
    doc = _spo2(valueQuantity={"value": 96, "system": "urn:iso:std:iso:11073:10101",
                               "code": "262688"})
    [event] = _upload(doc).parsed.events
    assert isinstance(event, Reading)
    assert event.values[0].unit == "%"


def test_weight_in_pounds_is_converted_and_flagged() -> None:
    doc = _spo2(code={"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "188736"}]},
                valueQuantity={"value": 160, "system": "http://unitsofmeasure.org",
                               "code": "[lb_av]"})
    [event] = _upload(doc).parsed.events
    assert isinstance(event, Reading)
    assert event.values[0].value == pytest.approx(160 * 0.45359237)
    assert Flag.CONVERTED_UNIT in event.flags


@pytest.mark.parametrize(("payload", "field"), [
    (b"not json", "$"), (b"[]", "$"), (b'{"resourceType":"Claim"}', "resourceType"),
    (b'{"resourceType":"Bundle","type":"searchset","entry":[{}]}', "type"),
    (b'{"resourceType":"Bundle","type":"transaction","entry":[]}', "entry"),
])
def test_whole_message_failures(payload: bytes, field: str) -> None:
    with pytest.raises(AdapterError) as caught:
        _upload(payload)
    assert caught.value.field == field
    status, body = phd_fhir.error_response(caught.value)
    assert status == 400
    assert json.loads(body)["resourceType"] == "OperationOutcome"


def test_normalise_eui64() -> None:
    assert phd_fhir.normalise_eui64("ec-de-3d-4e-58-53-2d-31") == PHG
    assert phd_fhir.normalise_eui64("ECDE3D4E58532D31") == PHG
    assert phd_fhir.normalise_eui64("3d-4e-58-53-2d-31") is None


_keys = st.sampled_from([
    "resourceType", "type", "entry", "resource", "fullUrl", "request", "method", "code",
    "coding", "system", "valueQuantity", "value", "unit", "component", "device", "reference",
    "effectiveDateTime", "effectivePeriod", "end", "status", "extension", "url",
    "valueReference", "identifier", "dataAbsentReason"])
_leaf = (st.none() | st.booleans() | st.integers()
         | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
         | st.sampled_from(["Bundle", "transaction", "Observation", "Device", "Patient", "POST",
                            "final", "urn:iso:std:iso:11073:10101", "150456", "150020",
                            "150021", "67996", "67975", "%", "mm[Hg]", "262688",
                            "Device/phd-74E8FFFEFF051C00.1", "urn:uuid:1",
                            "2018-11-13T17:59:02-05:00", phd_fhir.EUI64_SYSTEM,
                            phd_fhir.CTS_EXTENSION]))
_json = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(_keys | st.text(max_size=6), inner, max_size=6),
                     max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=300))
def test_any_bytes_raise_only_adapter_error(payload: bytes) -> None:
    try:
        _upload(payload)
    except AdapterError:
        pass


@settings(max_examples=300, deadline=None)
@given(doc=_json, device=st.sampled_from([None, OXIMETER]))
def test_any_json_raises_only_adapter_error(doc: Any, device: str | None) -> None:
    try:
        upload = _upload(doc, device)
    except AdapterError:
        return
    assert len(upload.outcomes) >= 1
    phd_fhir.transaction_response(upload)
    phd_fhir.response(upload) if not upload.bundle else None


@settings(max_examples=300, deadline=None)
@given(entries=st.lists(_json, min_size=1, max_size=4))
def test_any_bundle_entries_raise_only_adapter_error(entries: list[Any]) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": e, "request": {"method": "POST"}} for e in entries]}
    upload = _upload(bundle)
    assert len(upload.outcomes) == len(entries)
    assert json.loads(phd_fhir.transaction_response(upload))["type"] == "transaction-response"
