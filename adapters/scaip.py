"""SCAIP (SS 91100:2014) `<mrq>` requests to canonical events, and `<mrs>` responses.

Facts and tables: docs/protocols.md §1. Integrator view: docs/formats/scaip.md.

Parsing rules, and why:
- XML is parsed with defusedxml with DTDs forbidden: SCAIP has no DTD, so any DOCTYPE is an
  attack or garbage (XXE, billion laughs) and is refused before an entity is expanded.
- Both the Annex F namespace and no namespace are accepted (every example in the standard has
  none); elements are matched by local name, so a future namespace (TS 50134-9) still parses.
- Codes (`dty`, `stc`, `lco`, `pri`, `hbo`) are compared as integers: sources write `0010`,
  `010` and `10` for the same code. Identifiers (`ref`, `cid`, `did`) are kept as strings.
- Validation follows the tables of SS §6.2, not the contradictory informative XSD.
- Elements the gateway does not use (`ver`, `sco`, `dco`, texts, `crd`, `ico`/`ite`) are not
  validated: a fault in them must not turn an alarm away.
- What makes the message meaningless is an error with the `snu` the sender must get:
  1 too long (whole body, or an element longer than its table allows), 2 bad format (not XML,
  wrong root, duplicated or nested element), 3 wrong content (value outside its rule),
  7 mandatory tag missing (`cid`, `dty`), 10 ref missing, 99 undefined (a fault of ours).
- A bad position or time does not refuse the message: the event is kept without it (time falls
  back to the receive time) and a Rejection names what was dropped. An alarm is never refused
  for its position.

Device id: `scaip:<cid>` or `scaip:<cid>:<did>`. `cid` is digits and `did` up to 16 printable
ASCII; a `did` outside `[A-Za-z0-9._-]` is written as `scaip:<cid>::<hex of its bytes>` so the id
stays inside the registry's `^[A-Za-z0-9._:-]{1,64}$` without two dids colliding. Peripherals
that send no `did` share their controller's id.

Times: `measured_at` is `lge/tim` when present, else `received_at` (no flag: SCAIP makes `tim`
optional and most units omit it). Consequence: a resend of a request without `tim` (after
`snu=4`, or after the gateway failed to answer) gets a new event id. The transport must absorb
those resends by (device_id, ref, mty) for the 30 min SCAIP's hold polling may last.

Event ids: `event_id(device_id, f"scaip:{kind}:{stc or 'none'}", measured_at, extra=ref)`.
"""

from __future__ import annotations

import math
import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from xml.sax.saxutils import escape

from defusedxml import ElementTree as SafeET  # type: ignore[import-untyped]

from adapters import plausibility
from adapters.codes import Kind
from adapters.errors import AdapterError, Parsed, Rejection
from adapters.events import (
    Alarm,
    AlarmType,
    DeviceEvent,
    DeviceStatus,
    Event,
    Flag,
    Location,
    Position,
    PositionFix,
    event_id,
    utc,
)

SOURCE = "scaip"
NAMESPACE = "http://www.hi.se/2012/XScaipXML"
# SS 91100 fragments above 1300 B and the TR says to use TCP or deflate above 1000 B; a real
# `<mrq>` is a few hundred bytes, so 8 KiB is generous and still bounds the parse.
MAX_BODY_BYTES = 8 * 1024


class Snu(IntEnum):
    """`<snu>` values of SS 91100 Table 2."""

    OK = 0
    TOO_LONG = 1
    BAD_FORMAT = 2
    WRONG_CONTENT = 3
    HOLD = 4
    NOT_TREATED = 5
    BUSY = 6
    MANDATORY_MISSING = 7
    REF_MISSING = 10
    UNDEFINED = 99


class Mty:
    MESSAGE = "ME"
    RESET = "RE"
    INFO = "IN"
    PING = "PI"


# Annex A device types and Annex C status codes used in the mapping, as integers.
DTY_LUC, DTY_PERSONAL_TRIGGER, DTY_FIXED_TRIGGER, DTY_FALL, DTY_PANIC = 2, 3, 4, 5, 7
DTY_ACTIVITY, DTY_PILL, DTY_BED, DTY_MAT, DTY_DOOR, DTY_WANDERING = 10, 11, 12, 13, 14, 15
DTY_HEART_RATE, DTY_MAN_DOWN, DTY_SYSTEM, DTY_LINK, DTY_LOCAL_UNIT, DTY_TRACKER = (
    19, 30, 31, 32, 48, 51)
STC_AUTOMATIC, STC_MANUAL = 9, 10
STC_PILL_NOT_TAKEN, STC_PILL_REMINDER, STC_PILL_TAKEN = 81, 82, 83
STC_CANCEL = 19  # Annex C state: the alarm was cancelled at the unit
LCO_GEOFENCE, LCO_GEO, LCO_GGA = 19, 34, 35


class ScaipError(AdapterError):
    """The request cannot be used; answer `<mrs>` with `snu` (and `ref`, when one was read)."""

    def __init__(self, field: str, reason: str, snu: Snu, *, ref: str | None = None) -> None:
        super().__init__(field, reason, position=f"mrq/{field}" if field != "mrq" else "mrq")
        self.snu = snu
        self.ref = ref


@dataclass(slots=True)
class ScaipParsed(Parsed):
    """Events of one `<mrq>`, plus what the transport needs to answer it."""

    ref: str = ""
    mty: str = Mty.MESSAGE
    hbo: bool = False  # the ARC may set the heartbeat interval (`hbi`) in its answer
    device_id: str = ""
    cid: str = ""
    did: str | None = None
    dty: int = 0
    stc: int | None = None
    callback: bool = False  # `cha=1`: the unit asks to be called back
    more_fragments: int = 0  # `ame`; fragments are not reassembled (TR §7.6: not used)


@dataclass(frozen=True, slots=True)
class ScaipResponse:
    """A parsed `<mrs>`."""

    ref: str | None
    snu: int
    ste: str | None = None
    mre: int | None = None
    hbi: int | None = None
    cre: int | None = None
    tnu: str | None = None
    cve: str | None = None


_REF = re.compile(r"[0-9A-Za-z]{1,16}")
_DIGITS = re.compile(r"[0-9]+")
_PRINTABLE = re.compile(r"[\x20-\x7e]+")
_SAFE_DID = re.compile(r"[A-Za-z0-9._-]+")
_COORD = re.compile(r"[+-]?[0-9]{1,3}(?:\.[0-9]{1,12})?")
_NUMBER = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6})?")
_GGA_LAT = re.compile(r"([0-9]{2})([0-9]{2}(?:\.[0-9]{1,8})?)")
_GGA_LON = re.compile(r"([0-9]{3})([0-9]{2}(?:\.[0-9]{1,8})?)")
_SINGLE = frozenset({"ref", "ver", "sco", "cha", "mty", "hbo", "cid", "dty", "did", "dco", "stc",
                     "pri", "lco", "lva", "lge", "ico", "ite", "ame", "dte", "stt", "lte"})
# Integer codes with their maximum digit count (SS Table 1 / Annexes).
_SNU_VALUES = frozenset(int(s) for s in Snu)
# Message errors (SS Table 2): an answer to a request whose ref could not be read may omit it.
_ERROR_SNU = frozenset({Snu.TOO_LONG, Snu.BAD_FORMAT, Snu.WRONG_CONTENT, Snu.MANDATORY_MISSING,
                        Snu.REF_MISSING, Snu.UNDEFINED})
_CODE_DIGITS = {"dty": 4, "stc": 4, "lco": 3, "pri": 1, "hbo": 3, "cha": 1, "ame": 3}


def device_id(cid: str, did: str | None) -> str:
    """The gateway device id of a SCAIP unit (rule in the module docstring)."""
    if did is None:
        return f"scaip:{cid}"
    if _SAFE_DID.fullmatch(did):
        return f"scaip:{cid}:{did}"
    return f"scaip:{cid}::{did.encode('ascii').hex()}"


def parse_mrq(data: bytes, *, received_at: datetime,
              medication_alarms: bool = False) -> ScaipParsed:
    """Parse one `<mrq>` received at `received_at` (aware UTC).

    `medication_alarms`: a "pill not taken" (stc 0081) becomes an Alarm (DOSE_MISSED) rather
    than a MEDICATION DeviceEvent; ingest decides by the assignment valid at the measurement
    time (gateway/ingest/dose_alarms.py).
    Raises ScaipError (an AdapterError) only.
    """
    try:
        return _parse_mrq(data, received_at, medication_alarms)
    except ScaipError as err:
        if err.ref is None:  # so the unit can match the answer to what it sent
            err.ref = scan_ref(data)
        raise
    except AdapterError as err:
        raise ScaipError(err.field, err.reason, Snu.WRONG_CONTENT, ref=scan_ref(data)) from None
    except Exception:  # a fault of ours must still get an answer (snu 99)
        raise ScaipError("mrq", "internal error while parsing", Snu.UNDEFINED,
                         ref=scan_ref(data)) from None


_REF_IN_BYTES = re.compile(rb"<(?:[A-Za-z][\w.-]*:)?ref>\s*([0-9A-Za-z]{1,16})\s*"
                           rb"</(?:[A-Za-z][\w.-]*:)?ref>")


def _content_only(data: bytes) -> bytes:
    """`data` without comments, CDATA sections and declarations (the DTD), in one pass: a ref
    inside them is no ref of the request's. What follows an unterminated one is dropped."""
    kept: list[bytes] = []
    at = 0
    while (start := data.find(b"<!", at)) >= 0:
        kept.append(data[at:start])
        if data.startswith(b"<!--", start):
            end, close = data.find(b"-->", start + 4), 3
        elif data.startswith(b"<![CDATA[", start):
            end, close = data.find(b"]]>", start + 9), 3
        else:  # <!DOCTYPE …> with or without an internal subset [ … ]
            bracket, gt = data.find(b"[", start), data.find(b">", start)
            if bracket >= 0 and (gt < 0 or bracket < gt):
                end, close = data.find(b"]>", bracket), 2
            else:
                end, close = gt, 1
        if end < 0:
            return b" ".join(kept)
        at = end + close
    kept.append(data[at:])
    return b" ".join(kept)


def scan_ref(data: bytes) -> str | None:
    """The `ref` of a request refused before (or instead of) being parsed as XML, found in its
    bytes without an XML parser (so nothing a hostile document declares is ever expanded),
    outside comments, CDATA and the DTD: only when there is exactly one, and it is a valid ref;
    None otherwise."""
    found = _REF_IN_BYTES.findall(_content_only(data[:MAX_BODY_BYTES]))
    return found[0].decode("ascii") if len(found) == 1 else None


def _root(data: bytes, expected: str) -> ET.Element:
    if len(data) > MAX_BODY_BYTES:
        raise ScaipError(expected, f"message longer than {MAX_BODY_BYTES} bytes", Snu.TOO_LONG)
    try:
        root: ET.Element = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True,
                                             forbid_external=True)
    except (ET.ParseError, ValueError, LookupError, UnicodeError):
        # DefusedXmlException is a ValueError; its text names the entity, so it is not echoed.
        raise ScaipError(expected, "not well-formed XML, or contains a DTD or entity",
                         Snu.BAD_FORMAT) from None
    if _local(root.tag) != expected:
        raise ScaipError(expected, f"root element is not <{expected}>", Snu.BAD_FORMAT)
    return root


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _fields(root: ET.Element) -> tuple[dict[str, str], ET.Element | None]:
    """Text of each single-valued child; the `lge` container is returned as is."""
    values: dict[str, str] = {}
    lge: ET.Element | None = None
    seen: set[str] = set()
    for child in root:
        name = _local(child.tag)
        if name in seen and name in _SINGLE:
            raise ScaipError(name, "element appears more than once", Snu.BAD_FORMAT,
                             ref=_ref_or_none(values))
        seen.add(name)
        if name == "lge":
            lge = child
            continue
        if len(child):
            raise ScaipError(name, "element has child elements where text is expected",
                             Snu.BAD_FORMAT, ref=_ref_or_none(values))
        if name in _SINGLE:
            values[name] = (child.text or "").strip()
    return values, lge


def _ref_or_none(values: dict[str, str]) -> str | None:
    ref = values.get("ref")
    return ref if ref is not None and _REF.fullmatch(ref) else None


def _parse_mrq(data: bytes, received_at: datetime, medication_alarms: bool) -> ScaipParsed:
    root = _root(data, "mrq")
    values, lge = _fields(root)

    ref = values.get("ref", "")
    if not ref:
        raise ScaipError("ref", "mandatory element missing or empty", Snu.REF_MISSING)
    if len(ref) > 16:
        raise ScaipError("ref", "longer than 16 characters", Snu.TOO_LONG)
    if not _REF.fullmatch(ref):
        raise ScaipError("ref", "not 1-16 letters or digits", Snu.WRONG_CONTENT)

    def fail(name: str, reason: str, snu: Snu) -> ScaipError:
        return ScaipError(name, reason, snu, ref=ref)

    mty = values.get("mty", "").upper() or Mty.MESSAGE
    if mty not in (Mty.MESSAGE, Mty.RESET, Mty.INFO, Mty.PING):
        raise fail("mty", "not one of ME, RE, IN, PI", Snu.WRONG_CONTENT)

    cid = values.get("cid", "")
    if not cid:
        raise fail("cid", "mandatory element missing or empty", Snu.MANDATORY_MISSING)
    if len(cid) > 32:
        raise fail("cid", "longer than 32 digits", Snu.TOO_LONG)
    if not _DIGITS.fullmatch(cid):
        raise fail("cid", "not digits", Snu.WRONG_CONTENT)

    if not values.get("dty"):
        raise fail("dty", "mandatory element missing or empty", Snu.MANDATORY_MISSING)
    codes: dict[str, int | None] = {}
    for name, digits in _CODE_DIGITS.items():
        text = values.get(name, "")
        if not text:
            codes[name] = None
        elif not _DIGITS.fullmatch(text):
            raise fail(name, "not digits", Snu.WRONG_CONTENT)
        elif len(text) > 8 or len(text.lstrip("0")) > digits:
            # Leading zeros are padding (`0010` = `10`), so only significant digits count.
            raise fail(name, f"longer than {digits} digits", Snu.TOO_LONG)
        else:
            codes[name] = int(text)
    dty = codes["dty"]
    assert dty is not None  # checked above: dty is present and digits

    did = values.get("did") or None
    if did is not None:
        if len(did) > 16:
            raise fail("did", "longer than 16 characters", Snu.TOO_LONG)
        if not _PRINTABLE.fullmatch(did):
            raise fail("did", "not printable ASCII", Snu.WRONG_CONTENT)
    dev = device_id(cid, did)
    if len(dev) > 64:
        raise fail("did", "cid and did together too long for a device id", Snu.TOO_LONG)

    out = ScaipParsed(ref=ref, mty=mty, hbo=codes["hbo"] == 1, device_id=dev, cid=cid, did=did,
                      dty=dty, stc=codes["stc"], callback=codes["cha"] == 1,
                      more_fragments=codes["ame"] or 0)
    position, measured, flags = _location(lge, codes["lco"], received_at, out.rejections)
    ctx = _Context(dev, ref, measured or received_at, received_at, flags,
                   _room(codes["lco"], values, out.rejections))
    priority = codes["pri"] if codes["pri"] is not None else 5
    out.events.extend(_events(ctx, mty, dty, codes["stc"], codes["lco"], priority, position,
                              medication_alarms))
    return out


@dataclass(frozen=True, slots=True)
class _Context:
    device_id: str
    ref: str
    measured_at: datetime
    received_at: datetime
    flags: tuple[str, ...] = field(default=())
    location: Location | None = None

    def eid(self, kind: str, stc: int | None) -> uuid.UUID:
        return event_id(self.device_id, f"scaip:{kind}:{stc if stc is not None else 'none'}",
                        self.measured_at, extra=self.ref)


# Alarm type for an alarm (stc omitted or 0009 automatic), by device type. Manual (0010) is a
# button press on any device; lco 019 makes any alarm a geofence alarm.
_ALARM_BY_DTY: dict[int, tuple[AlarmType, bool]] = {
    DTY_LUC: (AlarmType.BUTTON, False), DTY_PERSONAL_TRIGGER: (AlarmType.BUTTON, False),
    DTY_FIXED_TRIGGER: (AlarmType.BUTTON, False), DTY_PANIC: (AlarmType.BUTTON, False),
    DTY_LOCAL_UNIT: (AlarmType.BUTTON, False), DTY_TRACKER: (AlarmType.BUTTON, False),
    DTY_FALL: (AlarmType.FALL, False), DTY_MAN_DOWN: (AlarmType.FALL, False),
    DTY_ACTIVITY: (AlarmType.INACTIVITY, False),
    DTY_BED: (AlarmType.BED_EXIT, False), DTY_MAT: (AlarmType.BED_EXIT, False),
    DTY_SYSTEM: (AlarmType.DEVICE_FAULT, True), DTY_LINK: (AlarmType.LINK_LOST, True),
}
# Status codes that are alarms (technical ones are about the equipment, not the person).
_ALARM_BY_STC: dict[int, tuple[AlarmType, bool]] = {
    14: (AlarmType.DEVICE_FAULT, True),  # battery failure
    16: (AlarmType.BATTERY_LOW, True),
    23: (AlarmType.LINK_LOST, True), 24: (AlarmType.LINK_LOST, True),
    77: (AlarmType.DOOR_OPEN_TOO_LONG, False),
    85: (AlarmType.MAINS_LOST, True),
    110: (AlarmType.OTHER, False),  # assistance requested
    123: (AlarmType.DEVICE_SILENT, True),  # radio test missing
    125: (AlarmType.DEVICE_FAULT, True),  # tamper
}
# Status codes that are occurrences, not alarms: (event_type, kind).
_EVENT_BY_STC: dict[int, tuple[str, Kind]] = {
    3: ("absent", Kind.ACTIVITY),
    5: ("alarm_acknowledged", Kind.ALARM),
    STC_CANCEL: ("alarm_cancelled", Kind.ALARM),
    70: ("normal", Kind.STATUS),
    76: ("door_open", Kind.ACTIVITY),
    81: ("dose_not_taken", Kind.MEDICATION),
    82: ("dose_reminder", Kind.MEDICATION),
    83: ("dose_taken", Kind.MEDICATION),
    86: ("mains_restored", Kind.STATUS),
    92: ("device_reset", Kind.STATUS), 93: ("device_reset", Kind.STATUS),
    94: ("restoral", Kind.STATUS),
    111: ("check_out", Kind.ALARM),
    112: ("link_restored", Kind.STATUS), 113: ("link_restored", Kind.STATUS),
    117: ("lying_in_bed", Kind.ACTIVITY),
    119: ("movement", Kind.ACTIVITY),
    121: ("present", Kind.ACTIVITY),
}
STC_TEST = 102  # test transmission: proof of life, like a heartbeat


def _events(ctx: _Context, mty: str, dty: int, stc: int | None, lco: int | None, priority: int,
            position: Position | None, medication_alarms: bool) -> list[Event]:
    events: list[Event] = []
    if mty == Mty.PING:
        # A heartbeat without stc is not an alarm: "omitted = alarm" holds for ME only.
        events.append(_heartbeat(ctx, "heartbeat", stc))
        if stc is not None:
            events += _status_events(ctx, dty, stc, lco, priority, position, medication_alarms)
    elif mty == Mty.RESET:
        # The unit gave up waiting for snu=0 and took its alternative action (SS §5).
        events.append(_event(ctx, "reset", stc, "alarm_reset", Kind.ALARM))
    elif mty == Mty.INFO:
        # An update to an open alarm (same ref); with stc 0019 the unit cancels it.
        events.append(_event(ctx, "info", stc, "alarm_cancelled" if stc == STC_CANCEL
                             else "alarm_info_update", Kind.ALARM))
    elif stc is None:
        events.append(_alarm_for(ctx, dty, stc, lco, priority, position))
    else:
        events += _status_events(ctx, dty, stc, lco, priority, position, medication_alarms)
    # An alarm carries its position; anything else reports it as a separate fix.
    if position is not None and not any(isinstance(e, Alarm) for e in events):
        events.append(PositionFix(
            event_id=ctx.eid(f"position:{mty}", stc),
            device_id=ctx.device_id, position=position, measured_at=ctx.measured_at,
            received_at=ctx.received_at, source=SOURCE, flags=ctx.flags))
    return events


def _alarm_for(ctx: _Context, dty: int, stc: int | None, lco: int | None, priority: int,
               position: Position | None) -> Alarm:
    if lco == LCO_GEOFENCE:
        alarm_type, technical = AlarmType.GEOFENCE_EXIT, False
    elif stc == STC_MANUAL:
        alarm_type, technical = AlarmType.BUTTON, False
    else:
        alarm_type, technical = _ALARM_BY_DTY.get(dty, (AlarmType.OTHER, False))
    return _alarm(ctx, stc, alarm_type, technical, priority, position)


def _alarm(ctx: _Context, stc: int | None, alarm_type: AlarmType, technical: bool,
           priority: int, position: Position | None) -> Alarm:
    return Alarm(event_id=ctx.eid("alarm", stc),
                 device_id=ctx.device_id, alarm_type=alarm_type, measured_at=ctx.measured_at,
                 received_at=ctx.received_at, source=SOURCE, priority=priority,
                 position=position, technical=technical, flags=ctx.flags,
                 location=ctx.location)


def _status_events(ctx: _Context, dty: int, stc: int, lco: int | None, priority: int,
                   position: Position | None, medication_alarms: bool) -> list[Event]:
    if stc in (STC_AUTOMATIC, STC_MANUAL):
        return [_alarm_for(ctx, dty, stc, lco, priority, position)]
    if stc == STC_PILL_NOT_TAKEN and medication_alarms:
        return [_alarm(ctx, stc, AlarmType.DOSE_MISSED, False, priority, position)]
    if stc in _ALARM_BY_STC:
        alarm_type, technical = _ALARM_BY_STC[stc]
        return [_alarm(ctx, stc, alarm_type, technical, priority, position)]
    if stc == STC_TEST:
        return [_heartbeat(ctx, "status", stc)]
    event_type, kind = _EVENT_BY_STC.get(stc, (f"stc_{stc:04d}", Kind.STATUS))
    if dty == DTY_DOOR and stc == 70:
        event_type, kind = "door_closed", Kind.ACTIVITY
    return [_event(ctx, "event", stc, event_type, kind)]


def _event(ctx: _Context, kind_tag: str, stc: int | None, event_type: str,
           kind: Kind) -> DeviceEvent:
    return DeviceEvent(event_id=ctx.eid(kind_tag, stc),
                       device_id=ctx.device_id, event_type=event_type, kind=kind,
                       measured_at=ctx.measured_at, received_at=ctx.received_at, source=SOURCE,
                       flags=ctx.flags, location=ctx.location)


def _heartbeat(ctx: _Context, kind_tag: str, stc: int | None) -> DeviceStatus:
    return DeviceStatus(event_id=ctx.eid(kind_tag, stc),
                        device_id=ctx.device_id, measured_at=ctx.measured_at,
                        received_at=ctx.received_at, source=SOURCE, heartbeat=True,
                        flags=ctx.flags)


# `lco` codes that say how a position is given, not where in the home the unit is.
_POSITION_LCO = frozenset({LCO_GEOFENCE, 33, LCO_GEO, LCO_GGA})
MAX_LTE = 32  # characters (SS 91100 §6.2)
MAX_LVA = 16  # the table says 1-2 characters; longer ones seen in the wild are kept up to this


def _room(lco: int | None, values: dict[str, str], rejections: list[Rejection],
          ) -> Location | None:
    """Where in the home (`lco` other than a position code, `lva`, `lte`); a value that does
    not fit is left out with a rejection, never refusing the message."""
    code = lco if lco is not None and lco not in _POSITION_LCO else None
    value = values.get("lva") or None
    if value is not None and (len(value) > MAX_LVA or not _PRINTABLE.fullmatch(value)):
        rejections.append(Rejection("lva", f"not 1-{MAX_LVA} printable characters; left out",
                                    position="mrq/lva"))
        value = None
    text = " ".join((values.get("lte") or "").split()) or None
    if text is not None and (len(text) > MAX_LTE or not text.isprintable()):
        rejections.append(Rejection("lte", f"not 1-{MAX_LTE} printable characters; left out",
                                    position="mrq/lte"))
        text = None
    if code is None and value is None and text is None:
        return None
    return Location(code, value, text)


def _location(lge: ET.Element | None, lco: int | None, received_at: datetime,
              rejections: list[Rejection]) -> tuple[Position | None, datetime | None,
                                                    tuple[str, ...]]:
    if lge is None:
        return None, None, ()
    parts: dict[str, str] = {}
    for child in lge:
        name = _local(child.tag)
        if name in ("geo", "tim", "gga"):
            if name in parts or len(child):
                rejections.append(Rejection(f"lge.{name}", "repeated or has child elements",
                                            position=f"mrq/lge/{name}"))
                continue
            parts[name] = (child.text or "").strip()
    measured: datetime | None = None
    flags: tuple[str, ...] = ()
    if parts.get("tim"):
        try:
            measured = _time(parts["tim"])
        except AdapterError as err:
            rejections.append(Rejection(err.field, err.reason, position="mrq/lge/tim"))
        else:
            if not plausibility.clock_plausible(measured, received_at):
                flags = (Flag.CLOCK_IMPLAUSIBLE,)
    order = ("gga", "geo") if lco == LCO_GGA else ("geo", "gga")
    position: Position | None = None
    for name in order:
        if not parts.get(name) or position is not None:
            continue
        try:
            position = _geo(parts[name]) if name == "geo" else _gga(parts[name])
        except AdapterError as err:
            rejections.append(Rejection(err.field, err.reason, position=f"mrq/lge/{name}"))
    return position, measured, flags


def _time(text: str) -> datetime:
    if len(text) > 40:
        raise AdapterError("lge.tim", "longer than an ISO 8601 time; receive time used")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise AdapterError("lge.tim", "not an ISO 8601 time; receive time used") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise AdapterError("lge.tim", "ISO 8601 time without UTC offset; receive time used")
    try:
        return utc(parsed)
    except OverflowError:  # year 1 or 9999 shifted past the range of datetime
        raise AdapterError("lge.tim", "outside the range of dates; receive time used") from None


def _checked_position(lat: float, lon: float, accuracy: float | None, name: str) -> Position:
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise AdapterError(name, "latitude outside -90..90; position dropped")
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise AdapterError(name, "longitude outside -180..180; position dropped")
    if accuracy is not None and not (math.isfinite(accuracy) and accuracy >= 0):
        raise AdapterError(name, "uncertainty is negative; position dropped")
    return Position(lat, lon, accuracy)


def _geo(text: str) -> Position:
    """`lat,lon` (RFC 5870 coordinates), tolerating a `geo:` prefix, altitude and `;u=`."""
    if len(text) > 80:
        raise AdapterError("lge.geo", "longer than a geo position; position dropped")
    body = text[4:] if text[:4].lower() == "geo:" else text
    coords, *params = body.split(";")
    accuracy: float | None = None
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "u" and _NUMBER.fullmatch(value.strip()):
            accuracy = float(value)
    pieces = [p.strip() for p in coords.split(",")]
    if len(pieces) not in (2, 3) or not all(_COORD.fullmatch(p) for p in pieces[:2]):
        raise AdapterError("lge.geo", "not lat,lon in decimal degrees; position dropped")
    return _checked_position(float(pieces[0]), float(pieces[1]), accuracy, "lge.geo")


def _gga(text: str) -> Position:
    """An NMEA GGA sentence: ddmm.mmmm,N/S,dddmm.mmmm,E/W; fix quality 0 means no position."""
    if len(text) > 100:
        raise AdapterError("lge.gga", "longer than an NMEA sentence; position dropped")
    sentence, star, checksum = text.lstrip("$").partition("*")
    if star:
        calc = 0
        for char in sentence:
            calc ^= ord(char)
        if checksum.strip().upper() != f"{calc:02X}":
            raise AdapterError("lge.gga", "NMEA checksum does not match; position dropped")
    fields = sentence.split(",")
    if len(fields) < 7 or not fields[0].upper().endswith("GGA"):
        raise AdapterError("lge.gga", "not an NMEA GGA sentence; position dropped")
    if fields[6].strip() in ("", "0"):
        raise AdapterError("lge.gga", "GGA reports no fix; position dropped")
    lat_m = _GGA_LAT.fullmatch(fields[2])
    lon_m = _GGA_LON.fullmatch(fields[4])
    ns, ew = fields[3].upper(), fields[5].upper()
    if lat_m is None or lon_m is None or ns not in ("N", "S") or ew not in ("E", "W"):
        raise AdapterError("lge.gga", "latitude or longitude not in NMEA form; position dropped")
    lat_min, lon_min = float(lat_m.group(2)), float(lon_m.group(2))
    if lat_min >= 60 or lon_min >= 60:
        raise AdapterError("lge.gga", "minutes of arc not below 60; position dropped")
    lat = int(lat_m.group(1)) + lat_min / 60.0
    lon = int(lon_m.group(1)) + lon_min / 60.0
    return _checked_position(-lat if ns == "S" else lat, -lon if ew == "W" else lon, None,
                             "lge.gga")


# --- Responses -----------------------------------------------------------------------------

def build_mrs(ref: str | None, snu: int, *, hbi: int | None = None, mre: int | None = None,
              ste: str | None = None) -> bytes:
    """An `<mrs>` answering `ref`. `ref` is None only when the request had none (snu 10).

    `hbi` (1–1440 min) is honoured by the unit only when its request had `hbo=001`.
    """
    if ref is not None and not _REF.fullmatch(ref):
        raise AdapterError("ref", "not 1-16 letters or digits")
    if snu not in _SNU_VALUES:
        raise AdapterError("snu", "not a code of SS 91100 Table 2")
    if ref is None and snu not in _ERROR_SNU:
        raise AdapterError("ref", "required unless the snu reports a message error")
    parts = [f"<ref>{ref}</ref>"] if ref is not None else []
    parts.append(f"<snu>{snu}</snu>")
    if ste is not None:
        if len(ste) > 128:
            raise AdapterError("ste", "longer than 128 characters")
        parts.append(f"<ste>{escape(ste)}</ste>")
    if mre is not None:
        if not 0 <= mre <= 3:
            raise AdapterError("mre", "not 0-3")
        parts.append(f"<mre>{mre}</mre>")
    if hbi is not None:
        if not 1 <= hbi <= 1440:
            raise AdapterError("hbi", "not 1-1440 minutes")
        parts.append(f"<hbi>{hbi}</hbi>")
    return ("<mrs>" + "".join(parts) + "</mrs>").encode("utf-8")


def error_mrs(error: ScaipError) -> bytes:
    """The `<mrs>` a refused request gets: its ref when one was read, and the error's snu."""
    return build_mrs(error.ref, error.snu)


def parse_mrs(data: bytes) -> ScaipResponse:
    """Parse an `<mrs>` (the gateway forwarding to an alarm centre reads its answer)."""
    try:
        return _parse_mrs(data)
    except ScaipError:
        raise
    except AdapterError as err:
        raise ScaipError(err.field, err.reason, Snu.WRONG_CONTENT) from None
    except Exception:  # same guarantee as parse_mrq
        raise ScaipError("mrs", "internal error while parsing", Snu.UNDEFINED) from None


def _parse_mrs(data: bytes) -> ScaipResponse:
    root = _root(data, "mrs")
    values: dict[str, str] = {}
    for child in root:
        name = _local(child.tag)
        if name in values:
            raise ScaipError(name, "element appears more than once", Snu.BAD_FORMAT)
        if len(child):
            raise ScaipError(name, "element has child elements", Snu.BAD_FORMAT)
        values[name] = (child.text or "").strip()
    ref = values.get("ref") or None
    if ref is not None and not _REF.fullmatch(ref):
        raise ScaipError("ref", "not 1-16 letters or digits", Snu.WRONG_CONTENT)

    def number(name: str, low: int, high: int) -> int | None:
        text = values.get(name)
        if not text:
            return None
        if not _DIGITS.fullmatch(text) or len(text) > 5 or not low <= int(text) <= high:
            raise ScaipError(name, f"not an integer {low}-{high}", Snu.WRONG_CONTENT)
        return int(text)

    snu = number("snu", 0, 99)
    if snu is None:
        raise ScaipError("snu", "mandatory element missing or empty", Snu.MANDATORY_MISSING)
    if ref is None and snu not in _ERROR_SNU:
        raise ScaipError("ref", "mandatory element missing or empty", Snu.REF_MISSING)
    return ScaipResponse(ref=ref, snu=snu, ste=values.get("ste") or None,
                         mre=number("mre", 0, 3), hbi=number("hbi", 1, 1440),
                         cre=number("cre", 1, 62), tnu=values.get("tnu") or None,
                         cve=values.get("cve") or None)


# --- Requests (device simulator) -----------------------------------------------------------

def format_time(ts: datetime) -> str:
    """ISO 8601 with an hour offset as SCAIP writes it (`2024-05-02T14:03:11+02`)."""
    if ts.tzinfo is None:
        raise AdapterError("tim", "time must be timezone-aware")
    text = ts.isoformat(timespec="seconds")
    if text.endswith(":00") and text[-6] in "+-":
        text = text[:-3]
    return text


def build_mrq(*, ref: str, cid: str, dty: int, mty: str = Mty.MESSAGE, stc: int | None = None,
              did: str | None = None, pri: int | None = None, hbo: bool = False,
              lco: int | None = None, lva: str | None = None, lte: str | None = None,
              geo: tuple[float, float] | None = None, gga: str | None = None,
              tim: datetime | None = None, crd: tuple[str, ...] = (), cha: bool = False,
              namespace: bool = False, zero_pad: bool = True) -> bytes:
    """An `<mrq>` as a unit sends it. `zero_pad` writes `0051` rather than `51`."""
    if not _REF.fullmatch(ref):
        raise AdapterError("ref", "not 1-16 letters or digits")
    if not _DIGITS.fullmatch(cid) or len(cid) > 32:
        raise AdapterError("cid", "not 1-32 digits")
    if mty not in (Mty.MESSAGE, Mty.RESET, Mty.INFO, Mty.PING):
        raise AdapterError("mty", "not one of ME, RE, IN, PI")
    if did is not None and (len(did) > 16 or not _PRINTABLE.fullmatch(did)):
        raise AdapterError("did", "not 1-16 printable ASCII characters")
    if pri is not None and not 0 <= pri <= 9:
        raise AdapterError("pri", "not 0-9")

    def code(value: int, width: int, name: str) -> str:
        if not 0 <= value < 10**width:
            raise AdapterError(name, f"not a {width}-digit code")
        return f"{value:0{width}d}" if zero_pad else str(value)

    parts = [f"<ref>{ref}</ref>", f"<mty>{mty}</mty>"]
    if hbo:
        parts.append("<hbo>001</hbo>")
    if cha:
        parts.append("<cha>1</cha>")
    parts += [f"<cid>{cid}</cid>", f"<dty>{code(dty, 4, 'dty')}</dty>"]
    if did is not None:
        parts.append(f"<did>{escape(did)}</did>")
    if stc is not None:
        parts.append(f"<stc>{code(stc, 4, 'stc')}</stc>")
    if pri is not None:
        parts.append(f"<pri>{pri}</pri>")
    parts += [f"<crd>{escape(medium)}</crd>" for medium in crd]
    if lco is not None:
        parts.append(f"<lco>{code(lco, 3, 'lco')}</lco>")
    if lva is not None:
        parts.append(f"<lva>{escape(lva)}</lva>")
    if lte is not None:
        parts.append(f"<lte>{escape(lte)}</lte>")
    lge: list[str] = []
    if geo is not None:
        _checked_position(geo[0], geo[1], None, "geo")
        lge.append(f"<geo>{geo[0]:.6f},{geo[1]:.6f}</geo>")
    if gga is not None:
        lge.append(f"<gga>{escape(gga)}</gga>")
    if tim is not None:
        lge.append(f"<tim>{format_time(tim)}</tim>")
    if lge:
        parts.append("<lge>" + "".join(lge) + "</lge>")
    open_tag = f'<mrq xmlns="{NAMESPACE}">' if namespace else "<mrq>"
    return (open_tag + "".join(parts) + "</mrq>").encode("utf-8")
