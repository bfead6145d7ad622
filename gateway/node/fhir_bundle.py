"""The huvudman's stored readings as a FHIR R4 transaction Bundle of PHD-shaped Observations.

Pure: no database, no network, no clock. `gateway/node/fhir_forward.py` feeds it the node's
stored copies and posts what it returns; docs/fhir-forwarding.md describes the result for
integrators.

The shape follows the HL7 PHD IG (the examples in tests/conformance/phd-fhir): PHD profile in
`meta.profile`, `status` final, categories `vital-signs` (for codes that are FHIR vital signs,
i.e. have a LOINC code) and `phd`, `code` with the MDC coding (ref id as display) and LOINC where
known, `valueQuantity` in UCUM, or one component per value for compound readings (blood
pressure), `effectiveDateTime` = the measurement time, `issued` = when the gateway received it.
Codes, ref ids, LOINC and units come from adapters/codes.py and the systems from
adapters/phd_fhir.py, so the parser and this builder cannot drift apart.

What the PHD IG leaves to the uploader, decided here:
- Deterministic ids, conditional create: `fullUrl` is `urn:uuid:<event id>`, the Observation's
  identifier is that URI (system `urn:ietf:rfc:3986`) and the request is
  `POST Observation` with `ifNoneExist: identifier=urn:ietf:rfc:3986|urn:uuid:<event id>`, so a
  resend (lost answer, node restart) never makes a second Observation.
- Subject: the huvudman's own subject reference (opened on the node) as an identifier of the
  configured system (default: personnummer, `urn:oid:1.2.752.129.2.1.3.1`; a personnummer is sent
  as 12 digits without separator), by default as a conditional reference
  `Patient?identifier=<system>|<value>` that the server resolves to its Patient, or (subject mode
  `identifier`) as a logical reference by identifier only. The gateway never creates Patients.
- Device: a logical reference by identifier. A device whose id is an EUI-64 (PHD and PCD-01
  devices) is named as PHD does (SYSID, `urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680`, written
  `00-1C-05-…`); any other device by its gateway device id in the configured device system.
- Flags (clock_implausible, converted_unit, late) stay visible twice: a `meta.tag` (system
  FLAG_SYSTEM, code = the flag) for systems, and a `note` in plain words for the clinician.
- Only readings become Observations. Alarms, positions, device status and device events are the
  node's business (alarm console, supervision), not a patient record's, and are never sent.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal
from urllib.parse import quote

import msgspec

from adapters import codes
from adapters.events import Event, Flag, Quantity, Reading
from adapters.phd_fhir import EUI64_SYSTEM, LOINC_SYSTEM, MDC_SYSTEM, UCUM_SYSTEM, normalise_eui64

PERSONNUMMER_SYSTEM: Final = "urn:oid:1.2.752.129.2.1.3.1"
SAMORDNINGSNUMMER_SYSTEM: Final = "urn:oid:1.2.752.129.2.1.3.3"
# Identifiers that are URIs (RFC 3986): the event id as `urn:uuid:…`.
URI_SYSTEM: Final = "urn:ietf:rfc:3986"
# HMC's naming systems for what no standard names. Placeholders to be registered with the
# region (a NamingSystem); the device system is a setting (`--fhir-device-system`).
DEFAULT_DEVICE_SYSTEM: Final = "https://hmc.vgregion.se/fhir/sid/device-id"
FLAG_SYSTEM: Final = "https://hmc.vgregion.se/fhir/CodeSystem/reading-flag"

PHD_PROFILE: Final = "http://hl7.org/fhir/uv/phd/StructureDefinition/"
NUMERIC_PROFILES: Final = (f"{PHD_PROFILE}PhdNumericObservation",)
COMPOUND_PROFILES: Final = (f"{PHD_PROFILE}PhdCompoundNumericObservation",
                            f"{PHD_PROFILE}PhdCompoundObservation")
CATEGORY_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
PHD_CATEGORY_SYSTEM: Final = "http://hl7.org/fhir/uv/phd/CodeSystem/PhdObservationCategories"

SubjectMode = Literal["conditional", "identifier"]
SUBJECT_MODES: Final = ("conditional", "identifier")

_FLAG_TEXT: Final[Mapping[str, str]] = {
    Flag.CLOCK_IMPLAUSIBLE: "The device clock was implausible when this was measured: the "
                            "measurement time may be wrong.",
    Flag.CONVERTED_UNIT: "Converted by the gateway from the unit the device sent.",
    Flag.LATE: "Received late: the device had kept it and sent it afterwards.",
}
# Swedish personal identity numbers travel as 12 digits (Inera's convention for these OIDs).
_SWEDISH_ID_SYSTEMS: Final = frozenset({PERSONNUMMER_SYSTEM, SAMORDNINGSNUMMER_SYSTEM})
_SWEDISH_ID: Final = re.compile(r"([0-9]{8})[-+]?([0-9]{4})")

# Why a stored copy is not sent. Fixed phrases of letters and spaces: safe to log and store.
NOT_A_READING: Final = "not an observation"
NOT_UNDERSTOOD: Final = "content not understood"
NO_SUBJECT: Final = "no subject reference"
SEVERAL_SUBJECTS: Final = "several subject references"


class NotSent(Exception):
    """A stored copy that makes no Observation; `reason` is one of the fixed phrases above."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Identifiers:
    """How the huvudman's FHIR server names patients and devices (node settings)."""

    patient_system: str = PERSONNUMMER_SYSTEM
    device_system: str = DEFAULT_DEVICE_SYSTEM
    subject_mode: SubjectMode = "conditional"


class _Subject(msgspec.Struct):
    assignment_id: str
    subject_ref: str | None = None


_event_decoder = msgspec.json.Decoder(Event)
_subjects_decoder = msgspec.json.Decoder(list[_Subject])


def decode_copy(content: str | bytes, subjects: str | bytes) -> tuple[Event, list[str | None]]:
    """A stored copy's event and subject references (`huvudman_node.copy` columns)."""
    try:
        event = _event_decoder.decode(content)
        refs = [s.subject_ref for s in _subjects_decoder.decode(subjects)]
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        raise NotSent(NOT_UNDERSTOOD) from None
    return event, refs


def event_uri(event_id: uuid.UUID) -> str:
    return f"urn:uuid:{event_id}"


def if_none_exist(event_id: uuid.UUID) -> str:
    return f"identifier={URI_SYSTEM}|{event_uri(event_id)}"


def entry(event: Event, subject_refs: Sequence[str | None], ids: Identifiers) -> dict[str, Any]:
    """One transaction entry: conditional create of the reading's Observation."""
    if not isinstance(event, Reading):
        raise NotSent(NOT_A_READING)
    subject = _one_subject(subject_refs)
    return {
        "fullUrl": event_uri(event.event_id),
        "resource": observation(event, subject, ids),
        "request": {"method": "POST", "url": "Observation",
                    "ifNoneExist": if_none_exist(event.event_id)},
    }


def transaction(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def observation(reading: Reading, subject_ref: str, ids: Identifiers) -> dict[str, Any]:
    """The reading as a PHD Observation (no `id`: the server assigns it on create)."""
    metric = codes.metric(reading.code)
    single = len(reading.values) == 1 and reading.values[0].code == reading.code
    meta: dict[str, Any] = {"profile": list(NUMERIC_PROFILES if single else COMPOUND_PROFILES)}
    flags = [f for f in reading.flags if f]
    if flags:
        meta["tag"] = [{"system": FLAG_SYSTEM, "code": f} for f in flags]
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "meta": meta,
        "identifier": [{"system": URI_SYSTEM, "value": event_uri(reading.event_id)}],
        "status": "final",
        "category": _categories(metric),
        "code": _concept(reading.code),
        "subject": _subject(subject_ref, ids),
        "effectiveDateTime": _instant(reading.measured_at),
        "issued": _instant(reading.received_at),
        "device": {"identifier": _device_identifier(reading.device_id, ids)},
    }
    if single:
        resource["valueQuantity"] = _quantity(reading.values[0])
    else:
        resource["component"] = [{"code": _concept(q.code), "valueQuantity": _quantity(q)}
                                 for q in reading.values]
    notes = [{"text": _FLAG_TEXT.get(f, f"Flagged by the gateway: {f}.")} for f in flags]
    if notes:
        resource["note"] = notes
    return resource


def patient_identifier(subject_ref: str, ids: Identifiers) -> dict[str, str]:
    value = subject_ref.strip()
    if ids.patient_system in _SWEDISH_ID_SYSTEMS:
        match = _SWEDISH_ID.fullmatch(value)
        if match:
            value = match.group(1) + match.group(2)
    return {"system": ids.patient_system, "value": value}


def _one_subject(refs: Sequence[str | None]) -> str:
    found = {r for r in refs if r}
    if not found:
        raise NotSent(NO_SUBJECT)
    if len(found) > 1:  # one Observation has one subject; which person is not ours to guess
        raise NotSent(SEVERAL_SUBJECTS)
    return found.pop()


def _subject(subject_ref: str, ids: Identifiers) -> dict[str, Any]:
    identifier = patient_identifier(subject_ref, ids)
    if ids.subject_mode == "identifier":
        return {"identifier": identifier}
    search = f"{quote(identifier['system'], safe=':/.')}|{quote(identifier['value'], safe='')}"
    return {"reference": f"Patient?identifier={search}", "identifier": identifier}


def _device_identifier(device_id: str, ids: Identifiers) -> dict[str, str]:
    eui64 = normalise_eui64(device_id)
    if eui64 is not None:
        return {"system": EUI64_SYSTEM,
                "value": "-".join(eui64[i:i + 2] for i in range(0, 16, 2))}
    return {"system": ids.device_system, "value": device_id}


def _categories(metric: codes.Metric | None) -> list[dict[str, Any]]:
    phd = {"coding": [{"system": PHD_CATEGORY_SYSTEM, "code": "phd"}]}
    # Blood glucose has a LOINC code but is no FHIR vital sign (a laboratory-type value).
    if metric is None or metric.loinc is None or metric.kind is codes.Kind.GLUCOSE:
        return [phd]
    return [{"coding": [{"system": CATEGORY_SYSTEM, "code": "vital-signs",
                         "display": "Vital Signs"}]}, phd]


def _concept(code: int) -> dict[str, Any]:
    metric = codes.metric(code)
    mdc: dict[str, str] = {"system": MDC_SYSTEM, "code": str(code)}
    if metric is None:
        return {"coding": [mdc]}
    mdc["display"] = metric.ref_id
    coding = [mdc]
    if metric.loinc is not None:
        coding.append({"system": LOINC_SYSTEM, "code": metric.loinc})
    return {"coding": coding}


def _quantity(q: Quantity) -> dict[str, Any]:
    return {"value": q.value, "unit": q.unit, "system": UCUM_SYSTEM, "code": q.unit}


def _instant(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")
