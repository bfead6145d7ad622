"""The node's FHIR Bundle builder (gateway/node/fhir_bundle.py), without a database or network.

The PHD IG's own examples (tests/conformance/phd-fhir) are read by the gateway's PHD FHIR
parser into readings, built back into Observations, and compared with the example element by
element where the shape is the IG's (profile, status, category, code, value or components, time,
device); what the node decides itself (identifier, conditional create, subject) is checked
against its rules. A Bundle the node builds is also accepted by the gateway's own PHD parser
(the same readings, the same event ids) and by the recording FHIR server's validation."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from adapters import codes, phd_fhir
from adapters.events import Alarm, AlarmType, Event, Flag, Quantity, Reading, encode, event_id
from gateway.node import fhir_bundle
from gateway.node.fhir_bundle import Identifiers, NotSent
from simulator.fhir_server import validate_entry
from tests.paths import CONFORMANCE_ROOT

CONFORMANCE = CONFORMANCE_ROOT / "phd-fhir"
PNR = "19121212-1212"  # the test personnummer
AT = datetime(2026, 11, 12, 7, 30, tzinfo=UTC)
IDS = Identifiers()


def _reading(code: int, values: tuple[Quantity, ...], device: str = "T-SCALE-0001",
             flags: tuple[str, ...] = ()) -> Reading:
    metric = codes.METRICS[code]
    return Reading(event_id=event_id(device, str(code), AT), device_id=device, code=code,
                   kind=metric.kind, values=values, measured_at=AT,
                   received_at=AT + timedelta(seconds=4), source="native", flags=flags)


def _example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((CONFORMANCE / name).read_text())
    return doc


def _parsed(example: dict[str, Any]) -> Reading:
    """The example read by the gateway's PHD parser, as a huvudman node would store it."""
    parsed = phd_fhir.parse(msgspec.json.encode(example), device_id=None,
                            received_at=datetime.now(UTC))
    [event] = parsed.events
    assert isinstance(event, Reading)
    return event


def _codings(concept: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept["coding"]}


def _categories(resource: dict[str, Any]) -> set[tuple[str, str]]:
    return {pair for concept in resource["category"] for pair in _codings(concept)}


def _quantity(q: dict[str, Any]) -> tuple[float, str, str]:
    return float(q["value"]), q["system"], q["code"]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize("name", ["compound-numeric-blood-pressure.json",
                                  "compound-numeric-blood-pressure-no-mean.json",
                                  "numeric-spo2-alarm.json", "numeric-spotnumeric.json",
                                  "temperature-observation.json"])
def test_built_observation_has_the_shape_of_the_phd_example(name: str) -> None:
    example = _example(name)
    built = fhir_bundle.observation(_parsed(example), PNR, IDS)
    assert built["resourceType"] == "Observation" and built["status"] == example["status"]
    assert set(built["meta"]["profile"]) == set(example["meta"]["profile"])
    assert _categories(built) == _categories(example)
    assert _codings(built["code"]) == _codings(example["code"])
    assert _instant(built["effectiveDateTime"]) == _instant(example["effectiveDateTime"])
    if "valueQuantity" in example:
        assert _quantity(built["valueQuantity"]) == _quantity(example["valueQuantity"])
        assert "component" not in built
    else:
        measured = [c for c in example["component"] if "valueQuantity" in c]
        assert [(_codings(c["code"]), _quantity(c["valueQuantity"]))
                for c in built["component"]] == [
            (_codings(c["code"]), _quantity(c["valueQuantity"])) for c in measured]
        assert "valueQuantity" not in built
    # The example's device is a logical id `Device/phd-<EUI-64>.…`; the node names it by the
    # PHD SYSID identifier instead (the Device need not exist on the huvudman's server).
    eui64 = example["device"]["reference"].split("phd-")[1].split(".")[0]
    assert built["device"] == {"identifier": {"system": phd_fhir.EUI64_SYSTEM, "value": "-".join(
        eui64[i:i + 2] for i in range(0, 16, 2))}}


def test_weight_is_a_phd_numeric_vital_sign_with_mdc_loinc_and_ucum() -> None:
    reading = _reading(codes.WEIGHT.code, (Quantity(codes.WEIGHT.code, 72.4, "kg"),))
    entry = fhir_bundle.entry(reading, [PNR], IDS)
    uri = f"urn:uuid:{reading.event_id}"
    assert entry["fullUrl"] == uri
    assert entry["request"] == {"method": "POST", "url": "Observation",
                                "ifNoneExist": f"identifier=urn:ietf:rfc:3986|{uri}"}
    obs = entry["resource"]
    assert obs["identifier"] == [{"system": "urn:ietf:rfc:3986", "value": uri}]
    assert obs["meta"] == {"profile": [
        "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdNumericObservation"]}
    assert _categories(obs) == {
        ("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs"),
        ("http://hl7.org/fhir/uv/phd/CodeSystem/PhdObservationCategories", "phd")}
    assert obs["code"]["coding"] == [
        {"system": "urn:iso:std:iso:11073:10101", "code": "188736",
         "display": "MDC_MASS_BODY_ACTUAL"},
        {"system": "http://loinc.org", "code": "29463-7"}]
    assert obs["valueQuantity"] == {"value": 72.4, "unit": "kg",
                                    "system": "http://unitsofmeasure.org", "code": "kg"}
    assert obs["effectiveDateTime"] == "2026-11-12T07:30:00Z"
    assert obs["issued"] == "2026-11-12T07:30:04Z"
    # The personnummer travels as 12 digits in the personnummer OID system, as a conditional
    # reference the server resolves to its own Patient.
    identifier = {"system": "urn:oid:1.2.752.129.2.1.3.1", "value": "191212121212"}
    assert obs["subject"] == {
        "reference": "Patient?identifier=urn:oid:1.2.752.129.2.1.3.1|191212121212",
        "identifier": identifier}
    assert obs["device"] == {"identifier": {"system": fhir_bundle.DEFAULT_DEVICE_SYSTEM,
                                            "value": "T-SCALE-0001"}}
    assert "note" not in obs and "tag" not in obs["meta"]


def test_blood_pressure_has_components_and_the_compound_profile() -> None:
    values = (Quantity(codes.BP_SYSTOLIC.code, 132.0, "mm[Hg]"),
              Quantity(codes.BP_DIASTOLIC.code, 84.0, "mm[Hg]"),
              Quantity(codes.BP_MEAN.code, 100.0, "mm[Hg]"))
    obs = fhir_bundle.observation(_reading(codes.BP_COMPOUND.code, values), PNR, IDS)
    example = _example("compound-numeric-blood-pressure.json")
    assert set(obs["meta"]["profile"]) == set(example["meta"]["profile"])
    assert [(_codings(c["code"]), c["valueQuantity"]["value"]) for c in obs["component"]] == [
        ({("urn:iso:std:iso:11073:10101", "150021"), ("http://loinc.org", "8480-6")}, 132.0),
        ({("urn:iso:std:iso:11073:10101", "150022"), ("http://loinc.org", "8462-4")}, 84.0),
        ({("urn:iso:std:iso:11073:10101", "150023")}, 100.0)]
    assert _codings(obs["code"]) == _codings(example["code"])


def test_spo2_from_an_eui64_device_names_it_as_phd_does() -> None:
    reading = _reading(codes.SPO2.code, (Quantity(codes.SPO2.code, 97.0, "%"),),
                       device="74E8FFFEFF051C00")
    obs = fhir_bundle.observation(reading, PNR, IDS)
    assert obs["device"] == {"identifier": {"system": phd_fhir.EUI64_SYSTEM,
                                            "value": "74-E8-FF-FE-FF-05-1C-00"}}
    assert obs["valueQuantity"]["code"] == "%"
    assert _codings(obs["code"]) == {("urn:iso:std:iso:11073:10101", "150456"),
                                     ("http://loinc.org", "2708-6")}


def test_the_gateways_own_phd_parser_reads_the_bundle_back_to_the_same_readings() -> None:
    device = "711000FEFF5F49B0"
    readings = [
        _reading(codes.WEIGHT.code, (Quantity(codes.WEIGHT.code, 80.5, "kg"),), device),
        _reading(codes.BP_COMPOUND.code, (Quantity(codes.BP_SYSTOLIC.code, 120.0, "mm[Hg]"),
                                          Quantity(codes.BP_DIASTOLIC.code, 70.0, "mm[Hg]")),
                 device),
        _reading(codes.SPO2.code, (Quantity(codes.SPO2.code, 95.0, "%"),), device)]
    bundle = fhir_bundle.transaction([fhir_bundle.entry(r, [PNR], IDS) for r in readings])
    upload = phd_fhir.parse_upload(msgspec.json.encode(bundle), device_id=device,
                                   received_at=AT + timedelta(seconds=10))
    assert [o.status for o in upload.outcomes] == [phd_fhir.CREATED] * 3
    back = upload.parsed.events
    assert [(e.event_id, e.code, e.values, e.measured_at) for e in back
            if isinstance(e, Reading)] == [
        (r.event_id, r.code, r.values, r.measured_at) for r in readings]


def test_flags_stay_visible_as_tag_and_note() -> None:
    reading = _reading(codes.WEIGHT.code, (Quantity(codes.WEIGHT.code, 70.0, "kg"),),
                       flags=(Flag.CLOCK_IMPLAUSIBLE, Flag.CONVERTED_UNIT))
    obs = fhir_bundle.observation(reading, PNR, IDS)
    assert obs["meta"]["tag"] == [
        {"system": fhir_bundle.FLAG_SYSTEM, "code": "clock_implausible"},
        {"system": fhir_bundle.FLAG_SYSTEM, "code": "converted_unit"}]
    assert len(obs["note"]) == 2 and "clock" in obs["note"][0]["text"]


def test_only_readings_with_one_subject_are_sent() -> None:
    alarm = Alarm(event_id=uuid.uuid4(), device_id="T-GPS-1", alarm_type=AlarmType.FALL,
                  measured_at=AT, received_at=AT, source="native")
    reading = _reading(codes.WEIGHT.code, (Quantity(codes.WEIGHT.code, 70.0, "kg"),))
    cases: list[tuple[Event, list[str | None], str]] = [
        (alarm, [PNR], fhir_bundle.NOT_A_READING),
        (reading, [None], fhir_bundle.NO_SUBJECT), (reading, [], fhir_bundle.NO_SUBJECT),
        (reading, [PNR, "test-subject-other"], fhir_bundle.SEVERAL_SUBJECTS)]
    for event, refs, reason in cases:
        with pytest.raises(NotSent) as refused:
            fhir_bundle.entry(event, refs, IDS)
        assert refused.value.reason == reason
    # Two assignments of the same person: one subject.
    assert fhir_bundle.entry(reading, [PNR, PNR], IDS)["resource"]["subject"]["identifier"][
        "value"] == "191212121212"


def test_stored_copy_decodes_whatever_order_jsonb_gives_its_keys() -> None:
    reading = _reading(codes.WEIGHT.code, (Quantity(codes.WEIGHT.code, 70.0, "kg"),))
    content = json.dumps(json.loads(encode(reading)), sort_keys=True)  # "type" no longer first
    subjects = json.dumps([{"subject_ref": PNR, "assignment_id": str(uuid.uuid4())}])
    event, refs = fhir_bundle.decode_copy(content, subjects)
    assert event == reading and refs == [PNR]
    with pytest.raises(NotSent, match=fhir_bundle.NOT_UNDERSTOOD):
        fhir_bundle.decode_copy("{}", subjects)


def test_other_identifier_systems_and_the_identifier_only_subject() -> None:
    ids = Identifiers(patient_system="urn:oid:1.2.752.97.3.1.3", device_system="urn:oid:1.2.3",
                      subject_mode="identifier")
    reading = _reading(codes.WEIGHT.code, (Quantity(codes.WEIGHT.code, 70.0, "kg"),))
    obs = fhir_bundle.observation(reading, PNR, ids)
    # Not a personnummer system: the reference is sent exactly as the huvudman registered it.
    assert obs["subject"] == {"identifier": {"system": "urn:oid:1.2.752.97.3.1.3",
                                             "value": PNR}}
    assert obs["device"]["identifier"]["system"] == "urn:oid:1.2.3"


def test_the_recording_fhir_server_accepts_exactly_this_shape() -> None:
    reading = _reading(codes.BP_COMPOUND.code, (Quantity(codes.BP_SYSTOLIC.code, 120.0, "mm[Hg]"),
                                                Quantity(codes.BP_DIASTOLIC.code, 70.0,
                                                         "mm[Hg]")))
    entry = fhir_bundle.entry(reading, [PNR], IDS)
    assert fhir_bundle.entry(reading, [PNR], IDS) == entry  # deterministic
    issues, key = validate_entry(entry, "Bundle.entry[0]")
    assert issues == [] and key == f"urn:ietf:rfc:3986|urn:uuid:{reading.event_id}"
    broken = json.loads(json.dumps(entry))
    broken["resource"]["code"]["coding"] = broken["resource"]["code"]["coding"][1:]
    del broken["request"]["ifNoneExist"]
    issues, _ = validate_entry(broken, "Bundle.entry[0]")
    assert [i.expression for i in issues] == ["Bundle.entry[0].resource.code",
                                              "Bundle.entry[0].request.ifNoneExist"]
