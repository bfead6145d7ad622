"""HL7 PHD FHIR (Continua H.812.5), FHIR R4 JSON: Observations and transaction Bundles.

A Continua gateway (PHG: a hub or phone app) uploads what its personal health devices (PHDs:
cuff, oximeter, scale, thermometer) measured. Accepted payloads: a transaction (or batch) Bundle,
or a single Observation, Device or Patient resource.

Mapping (MDC codes from adapters/codes.py):

| Observation code | becomes |
|---|---|
| 150020 with components 150021/150022 (150023 optional) | Reading, blood pressure |
| 150456, 149530, 149546, 150364, 188736, 188752 | Reading (SpO2, pulse, temp, weight, BMI) |
| 67996 MDC_ATTR_VAL_BATT_CHARGE | DeviceStatus with battery_pct |
| 67975 / 68226 / 67983 / 68072 (coincident time stamp) | no event; used to judge the clock |
| anything else | a per-entry 422 outcome, "not-supported" |

Device identity. The measuring device is the Observation's `device`: the Device entry it points
to (its EUI-64 SYSID identifier, system urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680), a logical
reference by that identifier, or, when the Device is not in the upload, the EUI-64 in the PHD IG's
logical id convention `Device/phd-<EUI-64>.<transport address>`. Events carry the measuring
device's EUI-64 as 16 upper-case hex digits (the PCD-01 spelling), so the same device gives the
same event ids over every protocol. An entry is accepted when the authenticated `device_id` is
the measuring device or the gateway (PHG) named in the Observation's gateway extension; otherwise
the entry gets a 422 "security" outcome. `Upload.device_ids`/`gateway_ids` list what was found,
so a caller that authenticates per PHG can check which PHDs that PHG may speak for.

Time. `effectiveDateTime`/`effectiveInstant`, or the end (else the start) of `effectivePeriod`.
A time needs date, time of day and an offset; `-00:00` (offset unknown) is read as UTC.
Coincident time stamps: per the PHD IG the PHG has already placed every measurement on its own
timeline using the coincident time stamp, and the CTS records the correction it applied. Applying
that correction again here would shift correct times, so the gateway does not. Where the CTS says
the PHD clock is not on a usable timeline (it has a `dataAbsentReason`, e.g. "Sensor Time Fault"),
every reading that references it is flagged `clock_implausible`, and routing falls back to the
receive time, as for any implausible clock.

Transactions are processed per entry, not all-or-nothing: a bad entry never sinks good readings
(docs/architecture.md, Invariants). The transaction-response says, per entry, "201 Created"
(stored as events), "200 OK" (accepted, nothing stored: Patient, Device, coincident time stamp; a
conditional create is therefore always duplicate-safe) or "422 Unprocessable Entity" with an
OperationOutcome that names the element (FHIRPath) and the rule. Patient resources are never read
beyond their type: no name, identifier or reference is copied into events, outcomes or errors.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import msgspec

from adapters import codes, plausibility, units
from adapters.errors import AdapterError, Parsed, Rejection
from adapters.events import DeviceStatus, Event, Flag, Quantity, Reading, event_id, utc
from adapters.text import ascii_digits

SOURCE = "phd-fhir"
MAX_ENTRIES = 1000

MDC_SYSTEM: Final = "urn:iso:std:iso:11073:10101"
UCUM_SYSTEM: Final = "http://unitsofmeasure.org"
LOINC_SYSTEM: Final = "http://loinc.org"
EUI64_SYSTEM: Final = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"
GATEWAY_EXTENSIONS: Final = frozenset({
    "http://hl7.org/fhir/StructureDefinition/device-gateway",
    "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice",
})
CTS_EXTENSION: Final = "http://hl7.org/fhir/uv/phd/StructureDefinition/CoincidentTimeStampReference"

# Coincident time-stamp codes: absolute, base-offset, relative and hi-res relative time.
TIME_CODES: Final = frozenset({67975, 68226, 67983, 68072})
# MDC_ATTR_VAL_BATT_CHARGE. Not in adapters/codes.py (it is a device attribute, not a metric).
BATTERY_CHARGE: Final = 67996

CREATED: Final = "201 Created"
OK: Final = "200 OK"
UNPROCESSABLE: Final = "422 Unprocessable Entity"

_STORED_STATUSES = frozenset({"final", "amended", "corrected"})
_NOT_STORED = frozenset({"Patient", "Device", "DeviceMetric"})
_ACCEPTED_METHODS = frozenset({"POST", "PUT"})
_BP_PARTS = (codes.BP_SYSTOLIC, codes.BP_DIASTOLIC, codes.BP_MEAN)
_SINGLE_CODES = frozenset({codes.WEIGHT.code, codes.BMI.code, codes.PULSE_CUFF.code,
                           codes.PULSE_OXIMETER.code, codes.SPO2.code,
                           codes.BODY_TEMPERATURE.code, codes.GLUCOSE_CAPILLARY.code,
                           codes.GLUCOSE_PLASMA.code})
# LOINC, for the rare uploader that omits the MDC coding. 8867-4 serves both pulse codes; the
# non-invasive pulse rate is the generic one.
_LOINC: Final[Mapping[str, int]] = {
    "29463-7": codes.WEIGHT.code, "39156-5": codes.BMI.code, "85354-9": codes.BP_COMPOUND.code,
    "8480-6": codes.BP_SYSTOLIC.code, "8462-4": codes.BP_DIASTOLIC.code,
    "8867-4": codes.PULSE_CUFF.code, "2708-6": codes.SPO2.code,
    "8310-5": codes.BODY_TEMPERATURE.code,
}

_FHIR_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})")
_PARTIAL_DATE = re.compile(r"\d{4}(?:-\d{2}(?:-\d{2})?)?")
_EUI64 = re.compile(r"[0-9A-F]{16}")
_PHD_LOGICAL_ID = re.compile(r"(?:^|/)Device/ph[dg]-([0-9A-Fa-f]{16})(?:\.|$)")


class _EntryError(AdapterError):
    """An AdapterError that also knows its FHIR issue type (OperationOutcome.issue.code)."""

    def __init__(self, field: str, reason: str, issue: str = "invalid") -> None:
        super().__init__(field, reason)
        self.issue = issue


@dataclass(frozen=True, slots=True)
class EntryOutcome:
    """What happened to one entry (index 0 for a single resource)."""

    index: int
    status: str
    resource_type: str | None
    event_ids: tuple[uuid.UUID, ...] = ()
    rejection: Rejection | None = None
    issue: str | None = None
    note: str | None = None


@dataclass(slots=True)
class Upload:
    """Everything an upload yielded, for the pipeline and for the FHIR answer."""

    parsed: Parsed
    outcomes: list[EntryOutcome]
    bundle: bool
    device_ids: list[str] = field(default_factory=list)
    gateway_ids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Context:
    device_id: str | None
    received_at: datetime
    index: dict[str, dict[str, Any]]
    device_ids: list[str]
    gateway_ids: list[str]


# --- entry points --------------------------------------------------------------------------

def parse(payload: bytes, *, device_id: str | None, received_at: datetime) -> Parsed:
    """Events and rejections only; use `parse_upload` to answer the uploader."""
    return parse_upload(payload, device_id=device_id, received_at=received_at).parsed


def parse_upload(payload: bytes, *, device_id: str | None, received_at: datetime) -> Upload:
    """Parse a PHD FHIR upload. `device_id` is the authenticated device (PHD or PHG), or None
    when the caller authorises afterwards from `Upload.device_ids` / `gateway_ids`."""
    doc = _decode(payload)
    if not isinstance(doc, dict):
        raise AdapterError("$", "expected a FHIR resource (a JSON object)")
    kind = _text(doc.get("resourceType"))
    authenticated = normalise_eui64(device_id) or device_id if device_id is not None else None
    ctx = _Context(authenticated, utc(received_at), {}, [], [])
    if kind == "Bundle":
        entries = _bundle_entries(doc)
    elif kind in {"Observation", *_NOT_STORED}:
        entries = [({"resource": doc}, "")]
    else:
        raise AdapterError("resourceType", "expected Bundle, Observation, Device or Patient")
    _index(entries, ctx)
    upload = Upload(Parsed(), [], bundle=kind == "Bundle")
    for position, (entry, path) in enumerate(entries):
        outcome, events = _entry(position, entry, path, ctx)
        upload.outcomes.append(outcome)
        upload.parsed.events.extend(events)
        if outcome.rejection is not None:
            upload.parsed.rejections.append(outcome.rejection)
    upload.device_ids, upload.gateway_ids = ctx.device_ids, ctx.gateway_ids
    return upload


def normalise_eui64(value: str | None) -> str | None:
    """`71-10-00-FE-FF-5F-49-B0`, `ec:de:…` or `7110…` -> `711000FEFF5F49B0`; None if not one."""
    if not isinstance(value, str):
        return None
    compact = re.sub(r"[-:\s]", "", value).upper()
    return compact if _EUI64.fullmatch(compact) else None


# --- decoding and bundle structure ---------------------------------------------------------

def _text(value: Any) -> str | None:
    """A JSON string, else None: untrusted values meet set lookups, which need hashables."""
    return value if isinstance(value, str) else None


def _decode(payload: bytes) -> Any:
    try:
        return msgspec.json.decode(payload)
    except (msgspec.MsgspecError, RecursionError, UnicodeDecodeError):
        raise AdapterError("$", "malformed JSON") from None


def _bundle_entries(doc: Mapping[str, Any]) -> list[tuple[dict[str, Any], str]]:
    if _text(doc.get("type")) not in {"transaction", "batch"}:
        raise AdapterError("type", "expected a transaction or batch Bundle")
    entries = doc.get("entry")
    if not isinstance(entries, list) or not entries:
        raise AdapterError("entry", "a transaction needs at least one entry")
    if len(entries) > MAX_ENTRIES:
        raise AdapterError("entry", f"more than {MAX_ENTRIES} entries in one Bundle")
    return [(e if isinstance(e, dict) else {}, f"entry[{i}].") for i, e in enumerate(entries)]


def _index(entries: list[tuple[dict[str, Any], str]], ctx: _Context) -> None:
    """Make every resource findable by fullUrl and by `Type/id`, and note device ids."""
    for entry, _ in entries:
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            continue
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str):
            ctx.index[full_url] = resource
        kind, rid = resource.get("resourceType"), resource.get("id")
        if isinstance(kind, str) and isinstance(rid, str):
            ctx.index.setdefault(f"{kind}/{rid}", resource)


def _entry(position: int, entry: Mapping[str, Any], path: str,
           ctx: _Context) -> tuple[EntryOutcome, list[Event]]:
    resource = entry.get("resource")
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    kind = kind if isinstance(kind, str) else None
    try:
        result = _check_entry(entry, path, ctx)
    except AdapterError as err:
        issue = err.issue if isinstance(err, _EntryError) else "invalid"
        return EntryOutcome(position, UNPROCESSABLE, kind, rejection=err.rejection(position),
                            issue=issue), []
    if isinstance(result, str):
        return EntryOutcome(position, OK, kind, note=result), []
    return EntryOutcome(position, CREATED, kind,
                        event_ids=tuple(e.event_id for e in result)), result


def _check_entry(entry: Mapping[str, Any], path: str, ctx: _Context) -> str | list[Event]:
    """The events an entry makes, or why it is accepted without storing anything."""
    if not entry:
        raise _EntryError(path.rstrip(".") or "$", "expected an entry object")
    _check_request(entry, path)
    resource = entry.get("resource")
    rpath = f"{path}resource." if path else ""
    if not isinstance(resource, dict):
        raise _EntryError(f"{path}resource", "required: a FHIR resource", "required")
    kind = resource.get("resourceType")
    if kind == "Patient":
        return "patient data is not stored by this gateway"
    if kind == "Device":
        _note_device(resource, ctx)
        return "device identity noted; the resource is not stored"
    if kind == "DeviceMetric":
        return "device metric not stored"
    if kind != "Observation":
        raise _EntryError(f"{rpath}resourceType", "resource type not supported", "not-supported")
    return _observation(resource, rpath, ctx)


def _check_request(entry: Mapping[str, Any], path: str) -> None:
    request = entry.get("request")
    if request is None or not path:
        return
    method = _text(request.get("method")) if isinstance(request, dict) else None
    if method not in _ACCEPTED_METHODS:
        raise _EntryError(f"{path}request.method", "only POST and PUT are accepted",
                          "not-supported")


# --- Observations --------------------------------------------------------------------------

def _observation(resource: Mapping[str, Any], path: str, ctx: _Context) -> str | list[Event]:
    code = _observation_code(resource, path)
    if code in TIME_CODES:
        if "dataAbsentReason" in resource:
            return ("coincident time stamp reports the device clock unusable; readings that "
                    "reference it are flagged clock_implausible; not stored")
        return "coincident time stamp used to judge the device clock; not stored"
    device = _authorised_device(resource, path, ctx)
    if _text(resource.get("status")) not in _STORED_STATUSES:
        raise _EntryError(f"{path}status", "only final, amended or corrected observations "
                          "are stored", "business-rule")
    if "valueSampledData" in resource:
        # A waveform (a pleth wave, an ECG strip) is not a reading a huvudman follows; the
        # gateway deliberately takes spot values only (issue 16).
        raise _EntryError(f"{path}valueSampledData", "real-time sample arrays are not taken "
                          "by this gateway; send the spot values; not stored", "not-supported")
    if code != BATTERY_CHARGE and code != codes.BP_COMPOUND.code and code not in _SINGLE_CODES:
        raise _EntryError(f"{path}code", "observation code not supported by this gateway; "
                          "not stored", "not-supported")
    measured_at = _effective(resource, path)
    flags = _flags(resource, measured_at, ctx)
    if code == BATTERY_CHARGE:
        return [_battery(resource, path, device, measured_at, flags, ctx)]
    metric = codes.METRICS[code]
    if metric is codes.BP_COMPOUND:
        values, converted = _blood_pressure(resource, path)
    else:
        value, converted = _quantity(resource, path, metric)
        values = (Quantity(metric.code, value, metric.ucum),)
    if converted:
        flags = (*flags, Flag.CONVERTED_UNIT)
    return [Reading(
        event_id=event_id(device, str(code), measured_at), device_id=device, code=code,
        kind=metric.kind, values=values, measured_at=measured_at,
        received_at=ctx.received_at, source=SOURCE, flags=flags,
    )]


def _battery(resource: Mapping[str, Any], path: str, device: str, measured_at: datetime,
             flags: tuple[str, ...], ctx: _Context) -> DeviceStatus:
    quantity = _value_quantity(resource.get("valueQuantity"), f"{path}valueQuantity", resource)
    value = _number(quantity.get("value"), f"{path}valueQuantity.value")
    if _unit_of(quantity, f"{path}valueQuantity") != "%" or not 0.0 <= value <= 100.0:
        raise _EntryError(f"{path}valueQuantity", "battery charge must be 0-100 %", "value")
    return DeviceStatus(
        event_id=event_id(device, "status", measured_at), device_id=device,
        measured_at=measured_at, received_at=ctx.received_at, source=SOURCE,
        battery_pct=value, flags=flags,
    )


def _codings(concept: Any) -> Iterator[tuple[str, str]]:
    if not isinstance(concept, dict) or not isinstance(concept.get("coding"), list):
        return
    for coding in concept["coding"]:
        if isinstance(coding, dict):
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(code, str):
                yield system, code


def _code(concept: Any, field: str) -> int:
    """The MDC code of a CodeableConcept, else one derived from its LOINC coding."""
    loinc: int | None = None
    for system, code in _codings(concept):
        if system == MDC_SYSTEM:
            if not ascii_digits(code) or len(code) > 10:
                raise _EntryError(field, "MDC code must be a 32-bit decimal number", "value")
            return int(code)
        if system == LOINC_SYSTEM and loinc is None:
            loinc = _LOINC.get(code)
    if loinc is not None:
        return loinc
    raise _EntryError(field, "no MDC (urn:iso:std:iso:11073:10101) or known LOINC coding",
                      "not-supported" if concept else "required")


def _observation_code(resource: Mapping[str, Any], path: str) -> int:
    return _code(resource.get("code"), f"{path}code")


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _EntryError(field, "expected a number", "required" if value is None else "value")
    try:
        number = float(value)
    except OverflowError:
        raise _EntryError(field, "number out of range", "value") from None
    if not math.isfinite(number):
        raise _EntryError(field, "value is not a finite number", "value")
    return number


def _value_quantity(quantity: Any, field: str, holder: Mapping[str, Any]) -> Mapping[str, Any]:
    if quantity is None:
        if "dataAbsentReason" in holder:
            raise _EntryError(field, "no value (dataAbsentReason given); nothing to store",
                              "incomplete")
        raise _EntryError(field, "required: a valueQuantity", "required")
    if not isinstance(quantity, dict):
        raise _EntryError(field, "expected a Quantity", "structure")
    return quantity


def _unit_of(quantity: Mapping[str, Any], field: str) -> str:
    """UCUM for the Quantity's unit: UCUM code, MDC unit code, or the human `unit` text."""
    system, code, text = quantity.get("system"), quantity.get("code"), quantity.get("unit")
    if system == MDC_SYSTEM and isinstance(code, str) and ascii_digits(code) and len(code) < 11:
        mdc = codes.MDC_UNITS.get(int(code))
        if mdc is None:
            raise _EntryError(f"{field}.code", "MDC unit code not known to this gateway",
                              "not-supported")
        return mdc
    if system in (UCUM_SYSTEM, None) and isinstance(code, str):
        return code
    if isinstance(text, str):
        return text
    raise _EntryError(f"{field}.code", "required: a UCUM unit code", "required")


def _quantity(holder: Mapping[str, Any], path: str, metric: codes.Metric) -> tuple[float, bool]:
    field = f"{path}valueQuantity"
    quantity = _value_quantity(holder.get("valueQuantity"), field, holder)
    raw = _number(quantity.get("value"), f"{field}.value")
    unit = _unit_of(quantity, field)
    try:
        value, converted = units.to_canonical(raw, unit, metric.ucum, f"{field}.code")
        plausibility.check_value(metric.code, value, f"{field}.value")
    except AdapterError as err:
        raise _EntryError(err.field, err.reason, "value") from None
    return value, converted


def _blood_pressure(resource: Mapping[str, Any],
                    path: str) -> tuple[tuple[Quantity, ...], bool]:
    components = resource.get("component")
    if not isinstance(components, list):
        raise _EntryError(f"{path}component", "required: systolic and diastolic components",
                          "required")
    found: dict[int, Quantity] = {}
    converted = False
    for i, component in enumerate(components):
        cpath = f"{path}component[{i}]."
        if not isinstance(component, dict):
            raise _EntryError(cpath.rstrip("."), "expected a component object", "structure")
        try:
            code = _code(component.get("code"), f"{cpath}code")
        except AdapterError:
            continue  # supplemental components (68193 etc.) carry no pressure
        metric = codes.metric(code)
        if metric not in _BP_PARTS or code in found:
            continue
        if metric is codes.BP_MEAN and component.get("valueQuantity") is None:
            continue  # mean is optional; the IG sends it as dataAbsentReason when not measured
        value, conv = _quantity(component, cpath, metric)
        converted |= conv
        found[code] = Quantity(code, value, metric.ucum)
    for part in (codes.BP_SYSTOLIC, codes.BP_DIASTOLIC):
        if part.code not in found:
            raise _EntryError(f"{path}component", f"required: a {part.ref_id} component with "
                              "a value", "required")
    systolic, diastolic = found[codes.BP_SYSTOLIC.code], found[codes.BP_DIASTOLIC.code]
    try:
        plausibility.check_blood_pressure(systolic.value, diastolic.value, f"{path}component")
    except AdapterError as err:
        raise _EntryError(err.field, err.reason, "value") from None
    return tuple(found[p.code] for p in _BP_PARTS if p.code in found), converted


# --- time ----------------------------------------------------------------------------------

def _datetime(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise _EntryError(field, "expected a FHIR dateTime string", "structure")
    if _FHIR_DATETIME.fullmatch(value) is None:
        reason = ("needs a time of day and a UTC offset" if _PARTIAL_DATE.fullmatch(value)
                  else "not a FHIR dateTime with time and offset")
        raise _EntryError(field, reason, "value")
    try:
        return utc(datetime.fromisoformat(value))
    except (ValueError, OverflowError):
        raise _EntryError(field, "not a valid date-time", "value") from None


def _effective(resource: Mapping[str, Any], path: str) -> datetime:
    for key in ("effectiveDateTime", "effectiveInstant"):
        if key in resource:
            return _datetime(resource[key], f"{path}{key}")
    period = resource.get("effectivePeriod")
    if isinstance(period, dict):
        for key in ("end", "start"):
            if key in period:
                return _datetime(period[key], f"{path}effectivePeriod.{key}")
    raise _EntryError(f"{path}effective[x]", "required: when the measurement was made",
                      "required")


def _flags(resource: Mapping[str, Any], measured_at: datetime,
           ctx: _Context) -> tuple[str, ...]:
    if _cts_reports_fault(resource, ctx) or not plausibility.clock_plausible(
            measured_at, ctx.received_at):
        return (Flag.CLOCK_IMPLAUSIBLE,)
    return ()


def _cts_reports_fault(resource: Mapping[str, Any], ctx: _Context) -> bool:
    """True when the referenced coincident time stamp says the PHD clock is unusable."""
    for ext in _extensions(resource, CTS_EXTENSION):
        cts = _resolve(ext.get("valueReference"), ctx)
        if cts is not None and "dataAbsentReason" in cts:
            return True
    return False


# --- devices -------------------------------------------------------------------------------

def _extensions(resource: Mapping[str, Any], url: str | frozenset[str]) -> Iterator[
        Mapping[str, Any]]:
    exts = resource.get("extension")
    if not isinstance(exts, list):
        return
    for ext in exts:
        found = _text(ext.get("url")) if isinstance(ext, dict) else None
        if found is not None and (found == url if isinstance(url, str) else found in url):
            yield ext


def _resolve(reference: Any, ctx: _Context) -> Mapping[str, Any] | None:
    if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
        return None
    ref: str = reference["reference"]
    found = ctx.index.get(ref)
    if found is None and ref.count("/") >= 1:
        found = ctx.index.get("/".join(ref.rsplit("/", 2)[-2:]))
    return found


def _sysid(resource: Mapping[str, Any]) -> str | None:
    identifiers = resource.get("identifier")
    if not isinstance(identifiers, list):
        return None
    for ident in identifiers:
        if isinstance(ident, dict) and ident.get("system") == EUI64_SYSTEM:
            found = normalise_eui64(ident.get("value"))
            if found:
                return found
    return None


def _device_eui64(reference: Any, ctx: _Context) -> str | None:
    if not isinstance(reference, dict):
        return None
    ident = reference.get("identifier")
    if isinstance(ident, dict) and ident.get("system") == EUI64_SYSTEM:
        return normalise_eui64(ident.get("value"))
    resource = _resolve(reference, ctx)
    if resource is not None:
        return _sysid(resource) if resource.get("resourceType") == "Device" else None
    ref = reference.get("reference")
    match = _PHD_LOGICAL_ID.search(ref) if isinstance(ref, str) else None
    return match.group(1).upper() if match else None


def _remember(found: str, into: list[str]) -> None:
    if found not in into:
        into.append(found)


def _note_device(resource: Mapping[str, Any], ctx: _Context) -> None:
    found = _sysid(resource)
    if found is None:
        return
    kind = resource.get("type")
    is_phg = any(system == MDC_SYSTEM and code == "531981" for system, code in _codings(kind))
    _remember(found, ctx.gateway_ids if is_phg else ctx.device_ids)


def _authorised_device(resource: Mapping[str, Any], path: str, ctx: _Context) -> str:
    device = _device_eui64(resource.get("device"), ctx)
    if device is None:
        raise _EntryError(f"{path}device", "required: a reference to the measuring Device "
                          "with an EUI-64 system identifier", "required")
    _remember(device, ctx.device_ids)
    gateways = [g for ext in _extensions(resource, GATEWAY_EXTENSIONS)
                if (g := _device_eui64(ext.get("valueReference"), ctx)) is not None]
    for gateway in gateways:
        _remember(gateway, ctx.gateway_ids)
    if ctx.device_id is not None and ctx.device_id not in (device, *gateways):
        raise _EntryError(f"{path}device", "neither the measuring device nor its gateway is "
                          "the authenticated device", "security")
    return device


# --- answers -------------------------------------------------------------------------------

def _expression(rejection: Rejection, prefix: str) -> str:
    return f"{prefix}{rejection.field}" if rejection.field != "$" else prefix.rstrip(".")


def operation_outcome(issues: Sequence[tuple[Rejection, str]], *, prefix: str = "",
                      severity: str = "error") -> dict[str, Any]:
    """An OperationOutcome with one issue per (rejection, FHIR issue type)."""
    return {"resourceType": "OperationOutcome", "issue": [
        {"severity": severity, "code": issue, "diagnostics": rejection.reason,
         "expression": [_expression(rejection, prefix)]}
        for rejection, issue in issues]}


def _note_outcome(note: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "informational", "diagnostics": note}]}


def _entry_response(outcome: EntryOutcome, prefix: str) -> dict[str, Any]:
    response: dict[str, Any] = {"status": outcome.status}
    if outcome.rejection is not None:
        response["outcome"] = operation_outcome([(outcome.rejection, outcome.issue or "invalid")],
                                                prefix=prefix)
    elif outcome.note is not None:
        response["outcome"] = _note_outcome(outcome.note)
    return {"response": response}


def transaction_response(upload: Upload) -> bytes:
    """The `transaction-response` Bundle: one entry per request entry, in order."""
    return msgspec.json.encode({
        "resourceType": "Bundle", "type": "transaction-response",
        "entry": [_entry_response(o, "Bundle.") for o in upload.outcomes]})


def response(upload: Upload) -> tuple[int, bytes]:
    """HTTP status and body for the upload: the Bundle answer, or that of a single resource."""
    if upload.bundle:
        return 200, transaction_response(upload)
    [outcome] = upload.outcomes
    status = int(outcome.status.split()[0])
    entry = _entry_response(outcome, f"{outcome.resource_type or 'Resource'}.")["response"]
    return status, msgspec.json.encode(entry["outcome"]) if "outcome" in entry else b""


def error_response(err: AdapterError) -> tuple[int, bytes]:
    """HTTP 400 with an OperationOutcome for a whole-message failure."""
    issue = Rejection(field=err.field, reason=err.reason)
    return 400, msgspec.json.encode(operation_outcome([(issue, "invalid")]))
