"""IHE PCD-01 (Continua H.812.1 observation upload): HL7 v2.6 ORU^R01 in ER7.

Accepted as a plain HL7 v2 body (optionally MLLP-framed), or wrapped in the SOAP operation
`CommunicatePCDData` (namespace `urn:ihe:pcd:dec:2010`, SOAP 1.2 or 1.1), whose text is the whole
ER7 message. Answers: `build_ack` (MSA|AA / AE / AR with ERR segments) and `soap_response`
(`CommunicatePCDDataResponse`). `encode_oru` is the simulator's side of the same format.

Parsing. The ER7 is parsed with hl7apy (tolerant validation, flat segment list). Groups are not
taken from hl7apy's group finder: it regroups out-of-order segments silently, while an OBX must
belong to the OBR above it, so the segments are walked in message order instead. Components are
split with the message's own encoding characters. Two parts are done minimally by hand, because
hl7apy cannot do them: reading MSH-10 from a message hl7apy refused (the AR acknowledgement still
needs it; `control_id_of`), and pre-screening size and separator counts, because hl7apy's cost
grows with every element (about 0.15 ms each), so an unbounded message is a cheap denial of
service.

Mapping, per OBX row in message order:

* Device rows (OBX-3 a device profile such as 528399, or OBX-11 `X`) register the EUI-64 in
  OBX-18 for their MDS (first number of OBX-4) within the OBR group.
* NM rows become readings: MDC code from OBX-3, value OBX-5, unit OBX-6 (MDC unit code via
  adapters/codes.py MDC_UNITS, or UCUM) converted to the canonical unit. The device is OBX-18 if
  set, else the device row of the same MDS, else the group's last device row, else the EUI-64 in
  MSH-3. BP components 150021/150022/150023 of one device and time make one 150020 Reading.
* Time is OBX-14 when set, else OBR-7 of the enclosing OBR. A time without offset takes MSH-7's
  offset; with none there either it is read as UTC and flagged clock_implausible.
* Other rows (CWE time-sync, DTM absolute time, ST) are metadata and are skipped.
* PID is never read: names and personnummer reach no event, error or exception.

Errors: a row that cannot be used becomes a Rejection with position `OBX[n]` (n counts OBX
segments in the message from 1) and the HL7 field (`OBX-5`); the message-level failures raise
AdapterError naming the field (`MSH-9`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Final
from xml.etree import ElementTree

import defusedxml  # type: ignore[import-untyped]
import defusedxml.ElementTree as SafeET  # type: ignore[import-untyped]
from hl7apy.consts import VALIDATION_LEVEL  # type: ignore[import-untyped]
from hl7apy.exceptions import UnsupportedVersion  # type: ignore[import-untyped]
from hl7apy.parser import parse_message as _hl7apy_parse  # type: ignore[import-untyped]

from adapters import codes, plausibility, units
from adapters.errors import AdapterError, Parsed, Rejection
from adapters.events import Event, Flag, Quantity, Reading, event_id, utc
from adapters.text import ascii_digits

SOURCE = "pcd-01"
PCD_NAMESPACE: Final = "urn:ihe:pcd:dec:2010"
SOAP_ACTION: Final = "urn:ihe:pcd:2010:CommunicatePCDData"
SOAP12: Final = "http://www.w3.org/2003/05/soap-envelope"
SOAP11: Final = "http://schemas.xmlsoap.org/soap/envelope/"
WSA: Final = "http://www.w3.org/2005/08/addressing"

MAX_BYTES: Final = 512 * 1024
MAX_SEGMENTS: Final = 1000
MAX_SEPARATORS: Final = 30_000
# hl7apy knows these; PCD-01 is 2.6, neighbours are accepted because devices lag behind.
SUPPORTED_VERSIONS: Final = frozenset({"2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1",
                                       "2.8.2"})
GATEWAY_APPLICATION: Final = "VGR-TELEMETRY-GATEWAY"

_MEASURED_STATUSES = frozenset({"", "R", "F", "C"})
_BP_PARTS = (codes.BP_SYSTOLIC, codes.BP_DIASTOLIC, codes.BP_MEAN)
_BP_CODES = frozenset(p.code for p in _BP_PARTS)
_PROFILE_REF_IDS: Final[Mapping[int, str]] = {
    528388: "MDC_DEV_SPEC_PROFILE_PULS_OXIM", 528391: "MDC_DEV_SPEC_PROFILE_BP",
    528399: "MDC_DEV_SPEC_PROFILE_SCALE", 528392: "MDC_DEV_SPEC_PROFILE_TEMP",
}
_LOINC: Final[Mapping[str, int]] = {
    "29463-7": codes.WEIGHT.code, "39156-5": codes.BMI.code, "8480-6": codes.BP_SYSTOLIC.code,
    "8462-4": codes.BP_DIASTOLIC.code, "8867-4": codes.PULSE_CUFF.code,
    "2708-6": codes.SPO2.code, "8310-5": codes.BODY_TEMPERATURE.code,
}

_MSH21: Final = "IHE PCD ORU-R01 2006^HL7^2.16.840.1.113883.9.n.m^HL7"
_DTM = re.compile(r"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_EUI64 = re.compile(r"[0-9A-F]{16}")


@dataclass(slots=True)
class Pcd01Message:
    """What a PCD-01 message yielded, plus what the acknowledgement needs."""

    parsed: Parsed
    control_id: str                       # MSH-10, echoed in MSA-2
    sending_application: str              # MSH-3 as sent (ER7), the ACK's MSH-5
    sender_eui64: str | None              # EUI-64 in MSH-3, if any
    device_ids: list[str] = field(default_factory=list)
    soap_message_id: str | None = None    # wsa:MessageID, for wsa:RelatesTo


@dataclass(slots=True)
class _State:
    device_id: str | None
    received_at: datetime
    sender: str | None
    default_offset: timezone | None
    component: str
    obr_index: int = 0
    obr_time: datetime | None = None
    obr_time_error: str | None = None
    obr_flags: tuple[str, ...] = ()
    obx_count: int = 0
    mds: dict[tuple[int, str], str] = field(default_factory=dict)
    last_device: str | None = None
    devices: list[str] = field(default_factory=list)
    bp: dict[tuple[str, datetime, int], dict[int, tuple[Quantity, bool, str]]] = field(
        default_factory=dict)
    bp_flags: dict[tuple[str, datetime, int], tuple[str, ...]] = field(default_factory=dict)


# --- entry points --------------------------------------------------------------------------

def parse(payload: bytes, *, device_id: str | None, received_at: datetime) -> Parsed:
    """Events and rejections of a PCD-01 message, SOAP-wrapped or plain."""
    return parse_message(payload, device_id=device_id, received_at=received_at).parsed


def parse_message(payload: bytes, *, device_id: str | None,
                  received_at: datetime) -> Pcd01Message:
    """Parse SOAP `CommunicatePCDData` or a plain ER7 body; keeps what the ACK needs.

    `device_id` is the authenticated device (a PHD's or the uploading gateway's EUI-64), or None
    when the caller authorises afterwards from `Pcd01Message.device_ids`.
    """
    if payload.lstrip()[:1] == b"<":
        return parse_soap(payload, device_id=device_id, received_at=received_at)
    return parse_er7(payload, device_id=device_id, received_at=received_at)


def parse_soap(payload: bytes, *, device_id: str | None, received_at: datetime) -> Pcd01Message:
    er7, message_id = _soap_body(payload)
    message = _parse_text(er7, device_id, received_at)
    message.soap_message_id = message_id
    return message


def parse_er7(payload: bytes | str, *, device_id: str | None,
              received_at: datetime) -> Pcd01Message:
    return _parse_text(_er7_text(payload), device_id, received_at)


def normalise_eui64(value: str | None) -> str | None:
    if not isinstance(value, str):
        return None
    compact = re.sub(r"[-:\s]", "", value).upper()
    return compact if _EUI64.fullmatch(compact) else None


# --- SOAP ----------------------------------------------------------------------------------

def _soap_body(payload: bytes) -> tuple[str, str | None]:
    if len(payload) > MAX_BYTES:
        raise AdapterError("Envelope", f"message larger than {MAX_BYTES} bytes")
    try:
        # A SOAP message must not carry a DTD (SOAP 1.2 part 1 §5), so forbidding DTDs costs
        # nothing and stops XXE and entity expansion (billion laughs) before any expansion.
        root = SafeET.fromstring(payload, forbid_dtd=True, forbid_entities=True,
                                 forbid_external=True)
    except defusedxml.DefusedXmlException:
        raise AdapterError("Envelope", "DTDs and entities are not allowed in SOAP") from None
    except (ElementTree.ParseError, ValueError, RecursionError):
        raise AdapterError("Envelope", "malformed XML") from None
    namespace = _namespace(root.tag)
    if _local(root.tag) != "Envelope" or namespace not in (SOAP12, SOAP11):
        raise AdapterError("Envelope", "expected a SOAP 1.2 or 1.1 Envelope")
    body = root.find(f"{{{namespace}}}Body")
    operation = next(iter(body), None) if body is not None else None
    if operation is None or operation.tag != f"{{{PCD_NAMESPACE}}}CommunicatePCDData":
        raise AdapterError("Body", f"expected CommunicatePCDData in namespace {PCD_NAMESPACE}")
    found = root.find(f"{{{namespace}}}Header/{{{WSA}}}MessageID")
    message_id = (found.text or "").strip() if found is not None else ""
    return _er7_text("".join(operation.itertext())), message_id or None


def _namespace(tag: str) -> str:
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def soap_response(ack: str, *, relates_to: str | None = None, soap11: bool = False) -> bytes:
    """`CommunicatePCDDataResponse` carrying the ER7 acknowledgement."""
    soap = SOAP11 if soap11 else SOAP12
    envelope = ElementTree.Element(f"{{{soap}}}Envelope")
    header = ElementTree.SubElement(envelope, f"{{{soap}}}Header")
    ElementTree.SubElement(header, f"{{{WSA}}}Action").text = f"{SOAP_ACTION}Response"
    if relates_to:
        ElementTree.SubElement(header, f"{{{WSA}}}RelatesTo").text = relates_to
    body = ElementTree.SubElement(envelope, f"{{{soap}}}Body")
    response = ElementTree.SubElement(body, f"{{{PCD_NAMESPACE}}}CommunicatePCDDataResponse")
    response.text = ack
    return _xml_bytes(envelope)


def encode_soap(er7: str, *, message_id: str | None = None, to: str | None = None) -> bytes:
    """The SOAP 1.2 `CommunicatePCDData` request a device or the simulator sends."""
    envelope = ElementTree.Element(f"{{{SOAP12}}}Envelope")
    header = ElementTree.SubElement(envelope, f"{{{SOAP12}}}Header")
    ElementTree.SubElement(header, f"{{{WSA}}}Action").text = SOAP_ACTION
    if message_id:
        ElementTree.SubElement(header, f"{{{WSA}}}MessageID").text = message_id
    if to:
        ElementTree.SubElement(header, f"{{{WSA}}}To").text = to
    body = ElementTree.SubElement(envelope, f"{{{SOAP12}}}Body")
    ElementTree.SubElement(body, f"{{{PCD_NAMESPACE}}}CommunicatePCDData").text = er7
    return _xml_bytes(envelope)


def _xml_bytes(element: ElementTree.Element) -> bytes:
    ElementTree.register_namespace("soap", SOAP12)
    ElementTree.register_namespace("soapenv", SOAP11)
    ElementTree.register_namespace("wsa", WSA)
    ElementTree.register_namespace("pcd", PCD_NAMESPACE)
    text = ElementTree.tostring(element, encoding="unicode")
    # XML parsers turn a literal CR into LF; the character reference keeps the ER7 segment
    # separator intact for receivers that do not normalise line ends themselves.
    return ('<?xml version="1.0" encoding="UTF-8"?>' + text.replace("\r", "&#13;")).encode()


# --- ER7 -----------------------------------------------------------------------------------

def _er7_text(payload: bytes | str) -> str:
    if isinstance(payload, bytes):
        if len(payload) > MAX_BYTES:
            raise AdapterError("MSH", f"message larger than {MAX_BYTES} bytes")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise AdapterError("MSH-18", "message is not valid UTF-8") from None
    else:
        text = payload
    # MLLP framing and every line-end convention seen in the field, down to ER7's CR.
    text = text.strip().strip("\x0b\x1c").strip()
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    return "\r".join(s for s in text.split("\r") if s.strip())


def _screen(text: str) -> None:
    if not text.startswith("MSH") or len(text) < 8:
        raise AdapterError("MSH", "message must start with an MSH segment")
    if len(text) > MAX_BYTES:
        raise AdapterError("MSH", f"message larger than {MAX_BYTES} bytes")
    if text.count("\r") >= MAX_SEGMENTS:
        raise AdapterError("MSH", f"more than {MAX_SEGMENTS} segments")
    if sum(text.count(c) for c in set(text[3:8])) > MAX_SEPARATORS:
        raise AdapterError("MSH", "too many fields and components")


def _hl7(text: str) -> Any:
    _screen(text)
    try:
        return _hl7apy_parse(text, find_groups=False,
                             validation_level=VALIDATION_LEVEL.TOLERANT)
    except UnsupportedVersion:
        raise AdapterError("MSH-12", "unsupported HL7 version; PCD-01 uses 2.6") from None
    except Exception:  # hl7apy raises many undocumented types on bad input
        raise AdapterError("MSH", "not a parsable HL7 v2 message") from None


def _er7(element: Any) -> str:
    try:
        return str(element.to_er7())
    except Exception:  # a field hl7apy cannot render is as good as absent
        return ""


def _field(segment: Any, number: int) -> str:
    try:
        return _er7(getattr(segment, f"{str(segment.name).lower()}_{number}"))
    except Exception:  # hl7apy raises ChildNotFound and friends
        return ""


def _parts(value: str, separator: str) -> list[str]:
    return value.split(separator) if value else []


def _part(parts: list[str], index: int) -> str:
    return parts[index] if index < len(parts) else ""


def _parse_text(text: str, device_id: str | None, received_at: datetime) -> Pcd01Message:
    message = _hl7(text)
    try:
        segments = list(message.children)
        component = str(message.encoding_chars["COMPONENT"])
        msh = message.msh
    except Exception:  # structure hl7apy could not build
        raise AdapterError("MSH", "not a parsable HL7 v2 message") from None
    header = _header(msh, component)
    control_id, sending, sender, offset = header
    authenticated = (normalise_eui64(device_id) or device_id) if device_id else None
    state = _State(authenticated, utc(received_at), sender, offset, component)
    if sender:
        state.devices.append(sender)
    out = Parsed()
    for segment in segments[1:]:
        name = str(getattr(segment, "name", ""))
        if name == "OBR":
            _start_group(segment, state)
        elif name == "OBX":
            state.obx_count += 1
            position = f"OBX[{state.obx_count}]"
            try:
                event = _row(segment, position, state)
            except AdapterError as err:
                out.rejections.append(Rejection(field=err.field, reason=err.reason,
                                                position=position))
                continue
            if event is not None:
                out.events.append(event)
        # PID, NTE, Z-segments: not needed, and PID must not be read at all.
    _finish_blood_pressure(state, out)
    if not out.events and not out.rejections:
        raise AdapterError("OBX", "message holds no observations")
    return Pcd01Message(out, control_id, sending, sender, list(state.devices))


def _header(msh: Any, component: str) -> tuple[str, str, str | None, timezone | None]:
    message_type = _parts(_field(msh, 9), component)
    if _part(message_type, 0) != "ORU" or _part(message_type, 1) != "R01":
        raise AdapterError("MSH-9", "expected an ORU^R01 message")
    version = _part(_parts(_field(msh, 12), component), 0)
    if version not in SUPPORTED_VERSIONS:
        raise AdapterError("MSH-12", "unsupported HL7 version; PCD-01 uses 2.6")
    control_id = _field(msh, 10)
    if not control_id:
        raise AdapterError("MSH-10", "required: message control id")
    sending = _field(msh, 3)
    sender_parts = _parts(sending, component)
    sender = normalise_eui64(_part(sender_parts, 1)) if _part(sender_parts, 2).upper() in (
        "EUI-64", "EUI64") else None
    sent = _DTM.fullmatch(_part(_parts(_field(msh, 7), component), 0))
    offset = _offset(sent.group(8)) if sent and sent.group(8) else None
    return control_id, sending, sender, offset


def control_id_of(payload: bytes) -> str:
    """MSH-10 of a message, best effort and never raising: for the AR of a refused message.

    Minimal by hand because this runs exactly when hl7apy could not parse the message.
    """
    try:
        raw = payload.decode("utf-8", errors="replace")
        start = raw.find("MSH")
        if start < 0 or len(raw) < start + 4:
            return ""
        separator = raw[start + 3]
        line = re.split(r"[\r\n<]", raw[start:], maxsplit=1)[0]
        fields = line.split(separator)
        return fields[9][:199] if len(fields) > 9 else ""
    except (ValueError, IndexError):
        return ""


# --- OBR and OBX ---------------------------------------------------------------------------

def _start_group(segment: Any, state: _State) -> None:
    state.obr_index += 1
    state.last_device = None
    state.obr_time, state.obr_time_error, state.obr_flags = None, None, ()
    value = _part(_parts(_field(segment, 7), state.component), 0)
    if not value:
        return
    try:
        state.obr_time, state.obr_flags = _dtm(value, "OBR-7", state)
    except AdapterError as err:
        state.obr_time_error = err.reason


def _dtm(value: str, field: str, state: _State) -> tuple[datetime, tuple[str, ...]]:
    match = _DTM.fullmatch(value)
    if match is None:
        raise AdapterError(field, "expected an HL7 DTM with at least minutes "
                           "(YYYYMMDDHHMM[SS[.SSSS]][+ZZZZ])")
    year, month, day, hour, minute = (int(match.group(i)) for i in range(1, 6))
    second = int(match.group(6) or 0)
    fraction = int((match.group(7) or "0").ljust(6, "0")[:6])
    zone = _offset(match.group(8)) if match.group(8) else state.default_offset
    flags: tuple[str, ...] = () if zone is not None else (Flag.CLOCK_IMPLAUSIBLE,)
    try:
        local = datetime(year, month, day, hour, minute, second, fraction, tzinfo=zone or UTC)
        return utc(local), flags
    except (ValueError, OverflowError):
        raise AdapterError(field, "not a valid date and time") from None


def _offset(text: str) -> timezone | None:
    hours, minutes = int(text[1:3]), int(text[3:5])
    if hours > 14 or minutes > 59:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if text[0] == "-" else delta)


def _row(segment: Any, position: str, state: _State) -> Event | None:
    comp = state.component
    code_parts = _parts(_field(segment, 3), comp)
    value_type = _field(segment, 2).upper()
    status = _field(segment, 11).upper()
    containment = _part(_field(segment, 4).split("."), 0)
    own_device = _eui64_field(_field(segment, 18), comp)
    if _is_device_row(code_parts, value_type, status):
        if own_device:
            state.mds[(state.obr_index, containment)] = own_device
            state.last_device = own_device
            _remember(own_device, state)
        return None
    if value_type != "NM":
        return None  # time sync, absolute time and other metadata rows
    code = _mdc_code(code_parts)
    if code == codes.BP_COMPOUND.code and not _field(segment, 5):
        return None  # the compound's parent row; its components follow
    device = _device(own_device, containment, state)
    if status not in _MEASURED_STATUSES:
        raise AdapterError("OBX-11", "only final, corrected or unqualified results are stored")
    metric = codes.metric(code)
    if metric is None or code == codes.BP_COMPOUND.code:
        raise AdapterError("OBX-3", "observation code not supported by this gateway")
    measured_at, flags = _row_time(segment, state)
    value, converted = _value(segment, metric, comp)
    flags = _clock_flags(measured_at, flags, state)
    if code in _BP_CODES:
        _collect_blood_pressure(device, measured_at, Quantity(code, value, metric.ucum),
                                converted, flags, position, state)
        return None
    if converted:
        flags = (*flags, Flag.CONVERTED_UNIT)
    return Reading(
        event_id=event_id(device, str(code), measured_at), device_id=device, code=code,
        kind=metric.kind, values=(Quantity(code, value, metric.ucum),),
        measured_at=measured_at, received_at=state.received_at, source=SOURCE, flags=flags,
    )


def _is_device_row(code_parts: list[str], value_type: str, status: str) -> bool:
    code = _part(code_parts, 0)
    return (ascii_digits(code) and len(code) < 11 and int(code) in codes.DEVICE_PROFILES) or (
        status == "X" and value_type == "")


def _mdc_code(code_parts: list[str]) -> int:
    code, system = _part(code_parts, 0), _part(code_parts, 2).upper()
    if system in ("LN", "LOINC") and code in _LOINC:
        return _LOINC[code]
    if system not in ("MDC", "") or not ascii_digits(code) or len(code) > 10:
        raise AdapterError("OBX-3", "expected <MDC code>^<ref id>^MDC")
    return int(code)


def _eui64_field(value: str, component: str) -> str | None:
    parts = _parts(value, component)
    kind = _part(parts, 1).upper()
    if kind and kind not in ("EUI-64", "EUI64"):
        return None
    return normalise_eui64(_part(parts, 0))


def _remember(device: str, state: _State) -> None:
    if device not in state.devices:
        state.devices.append(device)


def _device(own: str | None, containment: str, state: _State) -> str:
    device = (own or state.mds.get((state.obr_index, containment)) or state.last_device
              or state.sender)
    if device is None:
        raise AdapterError("OBX-18", "no device identity: no EUI-64 in OBX-18, a device row "
                           "or MSH-3")
    _remember(device, state)
    if state.device_id is not None and state.device_id not in (device, state.sender):
        raise AdapterError("OBX-18", "neither the device nor the sending gateway is the "
                           "authenticated device")
    return device


def _row_time(segment: Any, state: _State) -> tuple[datetime, tuple[str, ...]]:
    own = _part(_parts(_field(segment, 14), state.component), 0)
    if own:
        return _dtm(own, "OBX-14", state)
    if state.obr_time is not None:
        return state.obr_time, state.obr_flags
    if state.obr_time_error is not None:
        raise AdapterError("OBR-7", state.obr_time_error)
    raise AdapterError("OBX-14", "required: no OBX-14 and no OBR-7 to fall back on")


def _clock_flags(measured_at: datetime, flags: tuple[str, ...],
                 state: _State) -> tuple[str, ...]:
    if Flag.CLOCK_IMPLAUSIBLE not in flags and not plausibility.clock_plausible(
            measured_at, state.received_at):
        return (*flags, Flag.CLOCK_IMPLAUSIBLE)
    return flags


def _value(segment: Any, metric: codes.Metric, component: str) -> tuple[float, bool]:
    raw = _field(segment, 5)
    if not raw:
        raise AdapterError("OBX-5", "required: a numeric value")
    if _NUMBER.fullmatch(raw) is None:
        raise AdapterError("OBX-5", "not an HL7 NM number")
    number = float(raw)
    unit = _unit(_parts(_field(segment, 6), component))
    value, converted = units.to_canonical(number, unit, metric.ucum, "OBX-6")
    plausibility.check_value(metric.code, value, "OBX-5")
    return value, converted


def _unit(parts: list[str]) -> str:
    code, name, system = _part(parts, 0), _part(parts, 1), _part(parts, 2).upper()
    if not code:
        raise AdapterError("OBX-6", "required: <MDC unit code>^<ref id>^MDC")
    if system == "MDC" or (ascii_digits(code) and system == ""):
        if not ascii_digits(code) or len(code) > 10 or int(code) not in codes.MDC_UNITS:
            raise AdapterError("OBX-6", "MDC unit code not known to this gateway")
        return codes.MDC_UNITS[int(code)]
    return code if units.ucum(code) is not None else name


# --- blood pressure ------------------------------------------------------------------------

def _collect_blood_pressure(device: str, measured_at: datetime, quantity: Quantity,
                            converted: bool, flags: tuple[str, ...], position: str,
                            state: _State) -> None:
    key = (device, measured_at, state.obr_index)
    state.bp.setdefault(key, {})[quantity.code] = (quantity, converted, position)
    state.bp_flags[key] = tuple(dict.fromkeys((*state.bp_flags.get(key, ()), *flags)))


def _finish_blood_pressure(state: _State, out: Parsed) -> None:
    for key, parts in state.bp.items():
        device, measured_at, _ = key
        first = min((p[2] for p in parts.values()), key=lambda s: int(s[4:-1]))
        missing = [p.ref_id for p in (codes.BP_SYSTOLIC, codes.BP_DIASTOLIC)
                   if p.code not in parts]
        if missing:
            out.rejections.append(Rejection(field="OBX-3", position=first, reason=(
                "blood pressure needs systolic and diastolic rows for the same device and time; "
                "missing " + ", ".join(missing))))
            continue
        systolic = parts[codes.BP_SYSTOLIC.code][0]
        diastolic = parts[codes.BP_DIASTOLIC.code][0]
        try:
            plausibility.check_blood_pressure(systolic.value, diastolic.value, "OBX-5")
        except AdapterError as err:
            out.rejections.append(Rejection(field=err.field, reason=err.reason,
                                            position=parts[codes.BP_SYSTOLIC.code][2]))
            continue
        flags = state.bp_flags[key]
        if any(p[1] for p in parts.values()):
            flags = (*flags, Flag.CONVERTED_UNIT)
        values = tuple(parts[p.code][0] for p in _BP_PARTS if p.code in parts)
        out.events.append(Reading(
            event_id=event_id(device, str(codes.BP_COMPOUND.code), measured_at),
            device_id=device, code=codes.BP_COMPOUND.code, kind=codes.BP_COMPOUND.kind,
            values=values, measured_at=measured_at, received_at=state.received_at,
            source=SOURCE, flags=flags,
        ))


# --- acknowledgements ----------------------------------------------------------------------

_ACK_CODES = frozenset({"AA", "AE", "AR"})


def _escape(text: str) -> str:
    """ER7-escape text for a field, and drop line ends that would split the segment."""
    text = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    text = text.replace("&", "\\T\\").replace("~", "\\R\\")
    return re.sub(r"[\r\n\x0b\x1c]", " ", text)


def _dtm_text(moment: datetime) -> str:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    fraction = f".{aware.microsecond // 100:04d}" if aware.microsecond else ""
    return aware.strftime("%Y%m%d%H%M%S") + fraction + aware.strftime("%z")


def _error_location(rejection: Rejection) -> str:
    segment = re.fullmatch(r"([A-Z0-9]{3})\[(\d+)\]", rejection.position or "")
    field_ref = re.fullmatch(r"([A-Z0-9]{3})-(\d+)", rejection.field)
    if segment and field_ref:
        return f"{segment.group(1)}^{segment.group(2)}^{field_ref.group(2)}"
    if field_ref:
        return f"{field_ref.group(1)}^1^{field_ref.group(2)}"
    return ""


# HL7 v2 table 0357 (message error condition codes), the ones this gateway answers with.
TABLE_0357: Final = {
    "101": "Required field missing", "102": "Data type error", "103": "Table value not found",
    "200": "Unsupported message type", "203": "Unsupported version id",
    "207": "Application internal error"}
_BY_FIELD: Final = {"MSH-9": "200", "MSH-12": "203", "OBX-3": "103", "OBX-6": "103",
                    "OBX-11": "103"}


def _hl7_error_code(rejection: Rejection) -> str:
    """The ERR-3 code: the rejection's own (an application refusal), else by what is wrong."""
    if rejection.code in TABLE_0357:
        code = rejection.code
    elif rejection.reason.startswith("required"):
        code = "101"
    else:
        code = _BY_FIELD.get(rejection.field, "102")
    return f"{code}^{TABLE_0357[code]}^HL70357"


def build_ack(msh_control_id: str, code: str, reason: str | None = None, *,
              at: datetime | None = None, receiving_application: str = "",
              sending_application: str = GATEWAY_APPLICATION,
              errors: Sequence[Rejection] = ()) -> str:
    """The HL7 v2.6 ACK: `MSA|AA|<MSH-10>`, or AE/AR with the reason in MSA-3 and ERR.

    `at` is MSH-7 (pass the receive time; adapters do not read the clock). One ERR segment is
    written per rejection, locating it as `OBX^<n>^<field>`.
    """
    if code not in _ACK_CODES:
        raise ValueError("acknowledgement code must be AA, AE or AR")
    control = _escape(msh_control_id)[:199]
    msh = "|".join(["MSH", "^~\\&", _escape(sending_application), "", receiving_application,
                    "", _dtm_text(at) if at else "", "", "ACK^R01^ACK",
                    f"A{control}"[:199], "P", "2.6", "", "", "NE", "NE", "", "",
                    "UNICODE UTF-8"])
    segments = [msh, f"MSA|{code}|{control}" + (f"|{_escape(reason)}" if reason else "")]
    if code != "AA" and reason and not errors:
        segments.append(f"ERR|||207^Application internal error^HL70357|E||||{_escape(reason)}")
    for rejection in errors:
        segments.append(f"ERR||{_error_location(rejection)}|{_hl7_error_code(rejection)}|E||||"
                        f"{_escape(rejection.reason)}")
    return "\r".join(segments) + "\r"


def ack_for(message: Pcd01Message, *, at: datetime | None = None) -> str:
    """AA when every row was used; AE with one ERR per refused row otherwise."""
    if not message.parsed.rejections:
        return build_ack(message.control_id, "AA", at=at,
                         receiving_application=message.sending_application)
    return build_ack(message.control_id, "AE", "some observations were refused", at=at,
                     receiving_application=message.sending_application,
                     errors=message.parsed.rejections)


def ack_for_error(payload: bytes, error: AdapterError, *, at: datetime | None = None) -> str:
    """AR for a message refused as a whole."""
    rejection = Rejection(field=error.field, reason=error.reason, position=error.position)
    return build_ack(control_id_of(payload), "AR", error.reason, at=at, errors=[rejection])


# --- encoder (the simulator speaks PCD-01 through this) ------------------------------------

@dataclass(frozen=True, slots=True)
class Measurement:
    """One OBX row: an MDC metric code, its value, and optionally its own unit and time."""

    code: int
    value: float
    unit: int | None = None               # MDC unit code; None = the metric's canonical unit
    measured_at: datetime | None = None   # OBX-14; None = the group's OBR-7 applies


@dataclass(frozen=True, slots=True)
class DeviceGroup:
    """One OBR group: a device (EUI-64 and specialisation) and what it measured."""

    eui64: str
    profile: int
    observed_at: datetime
    measurements: Sequence[Measurement]


def measurements_from(reading: Reading) -> list[Measurement]:
    """A canonical Reading as OBX rows (blood pressure as its component rows)."""
    return [Measurement(q.code, q.value, None, reading.measured_at) for q in reading.values]


def encode_oru(*, control_id: str, sent_at: datetime, devices: Sequence[DeviceGroup],
               sender_eui64: str | None = None, sending_application: str = "VGR-SIM",
               receiving_application: str = GATEWAY_APPLICATION,
               patient_id: str | None = None) -> str:
    """An ORU^R01 v2.6 in ER7 (CR-separated), one OBR group per device, Continua row order.

    Times keep at most 0.1 ms (DTM precision); use whole seconds to keep event ids stable.
    """
    sender = sender_eui64 or (devices[0].eui64 if devices else "")
    msh = "|".join(["MSH", "^~\\&", f"{_escape(sending_application)}^{sender}^EUI-64", "",
                    _escape(receiving_application), "", _dtm_text(sent_at), "",
                    "ORU^R01^ORU_R01", _escape(control_id), "P", "2.6", "", "", "NE", "AL",
                    "", "", "UNICODE UTF-8", "", _MSH21])
    segments = [msh]
    if patient_id is not None:
        # Personnummer with the Swedish assigning authority (docs/protocols.md §2.3).
        segments.append(f"PID|||{_escape(patient_id)}^^^&1.2.752.129.2.1.3.1&ISO^PI")
    obx = 0
    for mds, group in enumerate(devices, start=1):
        segments.append(f"OBR|{mds}|||182777000^monitoring of patient^SNOMED-CT|||"
                        f"{_dtm_text(group.observed_at)}")
        obx += 1
        profile_ref = _PROFILE_REF_IDS.get(group.profile, "")
        segments.append(f"OBX|{obx}||{group.profile}^{profile_ref}^MDC|{mds}|||||||X|||||||"
                        f"{group.eui64}^EUI-64")
        for metric_index, item in enumerate(group.measurements, start=1):
            obx += 1
            segments.append(_encode_row(obx, mds, metric_index, item, group.eui64))
    return "\r".join(segments) + "\r"


def _encode_row(set_id: int, mds: int, index: int, item: Measurement, eui64: str) -> str:
    metric = codes.metric(item.code)
    unit = item.unit if item.unit is not None else (metric.mdc_unit if metric else 0)
    ref_id = metric.ref_id if metric else ""
    when = _dtm_text(item.measured_at) if item.measured_at else ""
    return (f"OBX|{set_id}|NM|{item.code}^{ref_id}^MDC|{mds}.0.0.{index}|{_nm(item.value)}|"
            f"{unit}^{codes.MDC_UNIT_REF_IDS.get(unit, '')}^MDC|||||R|||{when}||||{eui64}^EUI-64")


def _nm(value: float) -> str:
    """HL7 NM: plain decimal notation (no exponent), as many digits as the float needs."""
    return format(Decimal(repr(float(value))), "f")
