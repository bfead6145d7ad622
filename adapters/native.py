"""The gateway's own JSON format (`application/vnd.vgr.telemetry+json; v=1`), for MQTT and HTTP.

A message is either one reading, or a document with `readings`, `status` and `alarms`:

    {"v": 1,
     "readings": [{"type": "weight", "value": 72.4, "unit": "kg",
                   "time": "2026-11-22T07:58:00+01:00"}],
     "status": {"battery": 81, "time": "2026-11-22T07:58:00+01:00"}}

Each item is validated on its own, so one bad reading is rejected (with its index, field and
reason) while the good ones in the same message are kept. docs/formats/native.md has the full
description with every type.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from adapters import codes, plausibility, units
from adapters.errors import AdapterError, Parsed, Rejection
from adapters.events import (
    Alarm,
    AlarmType,
    DeviceStatus,
    Event,
    Flag,
    Position,
    Quantity,
    Reading,
    event_id,
)
from adapters.json_errors import DECODE_ERRORS, explain
from adapters.plausibility import to_utc

SOURCE = "native"
MAX_ITEMS = 1000

AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]


class _Item(msgspec.Struct, tag_field="type", forbid_unknown_fields=False):
    time: AwareTime


class _Single(_Item):
    value: float
    unit: str | None = None


class Weight(_Single, tag="weight"):
    pass


class Bmi(_Single, tag="bmi"):
    pass


class Spo2(_Single, tag="spo2"):
    pass


class Temperature(_Single, tag="temperature"):
    pass


class Pulse(_Single, tag="pulse"):
    via: Literal["cuff", "oximeter"] = "cuff"


class BloodPressure(_Item, tag="blood_pressure"):
    systolic: float
    diastolic: float
    mean: float | None = None
    unit: str | None = None


ReadingItem = Weight | Bmi | Spo2 | Temperature | Pulse | BloodPressure

_SINGLE_METRIC: dict[type[_Single], codes.Metric] = {
    Weight: codes.WEIGHT,
    Bmi: codes.BMI,
    Spo2: codes.SPO2,
    Temperature: codes.BODY_TEMPERATURE,
}


class StatusItem(msgspec.Struct, forbid_unknown_fields=False):
    time: AwareTime
    battery: Annotated[float, msgspec.Meta(ge=0, le=100)] | None = None
    charging: bool | None = None
    heartbeat: bool = False


class PositionItem(msgspec.Struct):
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    lon: Annotated[float, msgspec.Meta(ge=-180, le=180)]
    accuracy: Annotated[float, msgspec.Meta(ge=0)] | None = None


class AlarmItem(msgspec.Struct, forbid_unknown_fields=False):
    type: AlarmType
    time: AwareTime
    priority: Annotated[int, msgspec.Meta(ge=0, le=9)] = 5
    position: PositionItem | None = None


class Envelope(msgspec.Struct, forbid_unknown_fields=False):
    v: int = 1
    device: str | None = None
    readings: list[msgspec.Raw] = []
    status: msgspec.Raw = msgspec.Raw()
    alarms: list[msgspec.Raw] = []


_READING_TYPES = ("weight", "bmi", "spo2", "temperature", "pulse", "blood_pressure")
_envelope = msgspec.json.Decoder(Envelope)
_reading = msgspec.json.Decoder(ReadingItem)
_status = msgspec.json.Decoder(StatusItem)
_alarm = msgspec.json.Decoder(AlarmItem)
_peek_type = msgspec.json.Decoder(dict[str, Any])


def parse(payload: bytes, *, device_id: str, received_at: datetime) -> Parsed:
    """Parse one native message from `device_id`, received at `received_at` (aware UTC)."""
    try:
        peek = _peek_type.decode(payload)
    except DECODE_ERRORS as err:
        raise AdapterError("$", "not a JSON object" if isinstance(err, msgspec.ValidationError)
                           else "malformed JSON") from None
    if "type" in peek and "readings" not in peek:
        payload = b'{"readings":[' + payload + b"]}"
    try:
        env = _envelope.decode(payload)
    except DECODE_ERRORS as err:
        raise explain(err, "") from None
    if env.v != 1:
        raise AdapterError("v", "unsupported format version; this gateway speaks v=1")
    if env.device is not None and env.device != device_id:
        raise AdapterError("device", "does not match the authenticated device")
    if len(env.readings) + len(env.alarms) > MAX_ITEMS:
        raise AdapterError("readings", f"more than {MAX_ITEMS} items in one message")

    out = Parsed()
    for index, raw in enumerate(env.readings):
        field = f"readings[{index}]"
        try:
            out.events.extend(_reading_events(_reading.decode(raw), device_id, received_at, field))
        except DECODE_ERRORS as err:
            out.rejections.append(_explain_reading(err, field).rejection(index))
        except AdapterError as err:
            out.rejections.append(err.rejection(index))
    if len(env.status) and bytes(env.status) != b"null":
        try:
            out.events.append(_status_event(_status.decode(env.status), device_id, received_at))
        except DECODE_ERRORS as err:
            out.rejections.append(explain(err, "status").rejection())
        except AdapterError as err:
            out.rejections.append(err.rejection())
    for index, raw in enumerate(env.alarms):
        field = f"alarms[{index}]"
        try:
            out.events.append(_alarm_event(_alarm.decode(raw), device_id, received_at, field))
        except DECODE_ERRORS as err:
            out.rejections.append(explain(err, field).rejection(index))
        except AdapterError as err:
            out.rejections.append(err.rejection(index))
    if not out.events and not out.rejections:
        raise AdapterError("readings", "message holds no readings, status or alarms")
    return out


def _explain_reading(err: Exception,
                     field: str) -> AdapterError:
    explained = explain(err, field)
    if explained.field.endswith(".type") and explained.reason.startswith("Invalid value"):
        return AdapterError(explained.field, "unknown type; expected one of "
                            + ", ".join(sorted(_READING_TYPES)))
    return explained


def _flags(measured_at: datetime, received_at: datetime, converted: bool) -> tuple[str, ...]:
    flags: list[str] = []
    if not plausibility.clock_plausible(measured_at, received_at):
        flags.append(Flag.CLOCK_IMPLAUSIBLE)
    if converted:
        flags.append(Flag.CONVERTED_UNIT)
    return tuple(flags)


def _reading_events(item: ReadingItem, device_id: str, received_at: datetime,
                    field: str) -> list[Event]:
    measured_at = to_utc(item.time, f"{field}.time")
    if isinstance(item, BloodPressure):
        metric = codes.BP_COMPOUND
        converted = False
        parts: list[Quantity] = []
        for name, code, value in (("systolic", codes.BP_SYSTOLIC, item.systolic),
                                  ("diastolic", codes.BP_DIASTOLIC, item.diastolic),
                                  ("mean", codes.BP_MEAN, item.mean)):
            if value is None:
                continue
            value, conv = units.to_canonical(value, item.unit or metric.ucum, metric.ucum,
                                             f"{field}.unit")
            converted |= conv
            plausibility.check_value(code.code, value, f"{field}.{name}")
            parts.append(Quantity(code.code, value, metric.ucum))
        plausibility.check_blood_pressure(parts[0].value, parts[1].value, f"{field}.systolic")
        values = tuple(parts)
    else:
        if isinstance(item, Pulse):
            metric = codes.PULSE_OXIMETER if item.via == "oximeter" else codes.PULSE_CUFF
        else:
            metric = _SINGLE_METRIC[type(item)]
        value, converted = units.to_canonical(item.value, item.unit or metric.ucum, metric.ucum,
                                              f"{field}.unit")
        plausibility.check_value(metric.code, value, f"{field}.value")
        values = (Quantity(metric.code, value, metric.ucum),)
    return [Reading(
        event_id=event_id(device_id, str(metric.code), measured_at),
        device_id=device_id, code=metric.code, kind=metric.kind, values=values,
        measured_at=measured_at, received_at=received_at, source=SOURCE,
        flags=_flags(measured_at, received_at, converted),
    )]


def _status_event(item: StatusItem, device_id: str, received_at: datetime) -> DeviceStatus:
    measured_at = to_utc(item.time, "status.time")
    return DeviceStatus(
        event_id=event_id(device_id, "status", measured_at), device_id=device_id,
        measured_at=measured_at, received_at=received_at, source=SOURCE,
        battery_pct=item.battery, charging=item.charging, heartbeat=item.heartbeat,
        flags=_flags(measured_at, received_at, False),
    )


def _alarm_event(item: AlarmItem, device_id: str, received_at: datetime,
                 field: str) -> Alarm:
    measured_at = to_utc(item.time, f"{field}.time")
    position = (Position(item.position.lat, item.position.lon, item.position.accuracy)
                if item.position else None)
    return Alarm(
        event_id=event_id(device_id, f"alarm:{item.type}", measured_at), device_id=device_id,
        alarm_type=item.type, measured_at=measured_at, received_at=received_at, source=SOURCE,
        priority=item.priority, position=position,
        flags=_flags(measured_at, received_at, False),
    )


def rejection_document(rejections: list[Rejection]) -> bytes:
    """The JSON error a device receives on its error topic or in an HTTP answer."""
    return msgspec.json.encode({"rejected": rejections})


# Encoder used by the simulator: the same format, written by the same module that reads it.
def encode_reading(kind: str, time: datetime, **fields: object) -> dict[str, object]:
    return {"type": kind, "time": time.isoformat(), **fields}


def encode_message(readings: list[dict[str, object]], *, status: dict[str, object] | None = None,
                   alarms: list[dict[str, object]] | None = None) -> bytes:
    doc: dict[str, object] = {"v": 1, "readings": readings}
    if status is not None:
        doc["status"] = status
    if alarms:
        doc["alarms"] = alarms
    return msgspec.json.encode(doc)
