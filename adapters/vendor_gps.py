"""GPS alarms (mobile safety alarms) in the Traccar / OsmAnd style, JSON or query/form fields.

Two shapes are accepted (docs/formats/vendor-gps.md has both with examples):

- JSON as Traccar's OsmAnd endpoint takes it (the transistorsoft background-geolocation shape):
  `{"device_id": …, "location": {"timestamp", "coords": {latitude, longitude, accuracy, speed,
  heading, altitude}, "event", "battery": {level, is_charging}, "geofence": {action}, "alarm",
  "uuid"}}`; `location` may also be a list (batch upload), each element judged on its own.
- Flat query/form fields (`id`, `lat`, `lon`, `timestamp`, `accuracy`, `batt`, `charge`,
  `alarm`, …) that the HTTP transport hands over as a mapping: `parse_params`.

What becomes what: a valid position is a PositionFix, unless the same location carries an
alarm, which then carries the position. Battery, charging and `event: "heartbeat"` become a
DeviceStatus. Alarms: `sos`/`general` (button), `fall`, `geofenceExit`, `lowBattery`, `powerCut`,
`tampering`/`removing`; an alarm name we do not know is still an alarm (AlarmType.OTHER): alarms
are never dropped. Geofence enter is a DeviceEvent (`geofence_enter`, kind ALARM) so the receiver
of the exit alarm sees the return; the model has no alarm type for it.

A bad position is rejected on its own (field and reason) and the rest of the location kept, so a
broken GPS fix never loses the button alarm that came with it.

Times: ISO 8601 with offset, or epoch seconds (milliseconds when above 10^11). A time without an
offset is taken as UTC, as Traccar does. No time: the receive time. Battery: JSON `level` is a
fraction 0–1 (transistorsoft; -1 = unknown); above 1 it is read as a percentage. Flat `batt` is a
percentage.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from adapters import plausibility
from adapters.codes import Kind
from adapters.errors import AdapterError, Parsed
from adapters.events import (
    Alarm,
    AlarmType,
    DeviceEvent,
    DeviceStatus,
    Flag,
    Position,
    PositionFix,
    event_id,
    utc,
)
from adapters.json_errors import DECODE_ERRORS, explain

SOURCE = "vendor_gps"
MAX_BYTES = 256 * 1024
MAX_LOCATIONS = 1000
_DEVICE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_NUMBER = re.compile(
    r"[+-]?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})(?:[eE][+-]?[0-9]{1,3})?")

# Traccar alarm names (lower case, without '_' and '-') to (alarm type, technical).
_ALARMS: dict[str, tuple[AlarmType, bool]] = {
    "sos": (AlarmType.BUTTON, False), "general": (AlarmType.BUTTON, False),
    "button": (AlarmType.BUTTON, False), "alarm": (AlarmType.BUTTON, False),
    "fall": (AlarmType.FALL, False), "falldown": (AlarmType.FALL, False),
    "geofenceexit": (AlarmType.GEOFENCE_EXIT, False),
    "lowbattery": (AlarmType.BATTERY_LOW, True),
    "powercut": (AlarmType.MAINS_LOST, True),
    "tampering": (AlarmType.DEVICE_FAULT, True), "removing": (AlarmType.DEVICE_FAULT, True),
}
_GEOFENCE_ENTER = "geofenceenter"


class Coords(msgspec.Struct, forbid_unknown_fields=False):
    latitude: float
    longitude: float
    accuracy: float | None = None
    speed: float | None = None
    heading: float | None = None
    altitude: float | None = None


class Battery(msgspec.Struct, forbid_unknown_fields=False):
    level: float | None = None
    is_charging: bool | None = None


class Geofence(msgspec.Struct, forbid_unknown_fields=False):
    action: str | None = None
    identifier: str | None = None


class Location(msgspec.Struct, forbid_unknown_fields=False):
    # Raw: a broken time, position or battery is rejected on its own, never with the alarm.
    timestamp: msgspec.Raw = msgspec.Raw()
    coords: msgspec.Raw = msgspec.Raw()
    battery: msgspec.Raw = msgspec.Raw()
    event: str | None = None
    geofence: Geofence | None = None
    alarm: str | None = None
    uuid: str | None = None


class Envelope(msgspec.Struct, forbid_unknown_fields=False):
    device_id: str | int | None = None
    location: msgspec.Raw = msgspec.Raw()


_envelope = msgspec.json.Decoder(Envelope)
_location = msgspec.json.Decoder(Location)
_coords = msgspec.json.Decoder(Coords)
_battery = msgspec.json.Decoder(Battery)
_timestamp = msgspec.json.Decoder(str | float | None)
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])


def parse(payload: bytes, *, received_at: datetime, device_id: str | None = None) -> Parsed:
    """Parse Traccar/OsmAnd JSON. `device_id` is the authenticated device, if the transport
    knows it; the payload's `device_id` must then match it or be absent."""
    if len(payload) > MAX_BYTES:
        raise AdapterError("$", f"message longer than {MAX_BYTES} bytes")
    try:
        env = _envelope.decode(payload)
    except DECODE_ERRORS as err:
        raise explain(err) from None
    dev = _device(None if env.device_id is None else str(env.device_id), device_id, "device_id")
    raw = bytes(env.location).strip()
    if not raw or raw == b"null":
        raise AdapterError("location", "missing")
    if raw.startswith(b"["):
        try:
            items = _raw_list.decode(raw)
        except DECODE_ERRORS as err:
            raise explain(err, "location") from None
        if not items:
            raise AdapterError("location", "empty list")
        if len(items) > MAX_LOCATIONS:
            raise AdapterError("location", f"more than {MAX_LOCATIONS} locations")
        indexed: list[tuple[str, int | None, bytes]] = [
            (f"location[{i}]", i, bytes(item)) for i, item in enumerate(items)]
    else:
        indexed = [("location", None, raw)]

    out = Parsed()
    for field, index, item in indexed:
        try:
            loc = _location.decode(item)
            _location_events(loc, dev, received_at, field, index, out)
        except DECODE_ERRORS as err:
            out.rejections.append(explain(err, field).rejection(index))
        except AdapterError as err:
            out.rejections.append(err.rejection(index))
    return out


def _device(in_payload: str | None, authenticated: str | None, field: str) -> str:
    if in_payload is not None and authenticated is not None and in_payload != authenticated:
        raise AdapterError(field, "does not match the authenticated device")
    dev = authenticated or in_payload
    if not dev:
        raise AdapterError(field, "missing")
    if not _DEVICE_ID.fullmatch(dev):
        raise AdapterError(field, "not 1-64 characters of A-Z a-z 0-9 . _ : -")
    return dev


def _present(raw: msgspec.Raw) -> bool:
    return len(raw) > 0 and bytes(raw) != b"null"


def _location_events(loc: Location, dev: str, received_at: datetime, field: str,
                     index: int | None, out: Parsed) -> None:
    before = (len(out.events), len(out.rejections))
    measured: datetime | None = None
    position: Position | None = None
    battery: Battery | None = None
    level: float | None = None
    try:
        if _present(loc.timestamp):
            measured = _time(_timestamp.decode(loc.timestamp), f"{field}.timestamp")
    except DECODE_ERRORS as err:
        out.rejections.append(explain(err, f"{field}.timestamp").rejection(index))
    except AdapterError as err:
        out.rejections.append(err.rejection(index))
    try:
        if _present(loc.coords):
            c = _coords.decode(loc.coords)
            position = check_position(c.latitude, c.longitude, c.accuracy, f"{field}.coords")
    except DECODE_ERRORS as err:
        out.rejections.append(explain(err, f"{field}.coords").rejection(index))
    except AdapterError as err:
        out.rejections.append(err.rejection(index))
    try:
        if _present(loc.battery):
            battery = _battery.decode(loc.battery)
            if battery.level is not None:
                level = _battery_pct(battery.level, fraction=True,
                                     field=f"{field}.battery.level")
    except DECODE_ERRORS as err:
        out.rejections.append(explain(err, f"{field}.battery").rejection(index))
    except AdapterError as err:
        out.rejections.append(err.rejection(index))
    alarm_name = loc.alarm
    event = (loc.event or "").strip().lower()
    if alarm_name is None and event in ("sos", "alarm", "panic"):
        alarm_name = "sos"
    if alarm_name is None and loc.geofence is not None and loc.geofence.action:
        action = loc.geofence.action.strip().lower()
        alarm_name = {"exit": "geofenceExit", "enter": "geofenceEnter"}.get(action)
    _emit(out, dev, received_at, measured or received_at, measured is not None, position,
          battery_pct=level, charging=battery.is_charging if battery else None,
          heartbeat=event == "heartbeat", alarm=alarm_name, extra=loc.uuid or "")
    if (len(out.events), len(out.rejections)) == before:
        raise AdapterError(field, "holds no position, battery, heartbeat or alarm")


def parse_params(params: Mapping[str, object], *, received_at: datetime,
                 device_id: str | None = None) -> Parsed:
    """Parse OsmAnd query/form fields (`id`, `lat`, `lon`, `timestamp`, `accuracy`, `batt`,
    `charge`, `alarm`, `speed`, `bearing`, `altitude`), values as strings or numbers."""
    given = params.get("id", params.get("deviceid"))
    dev = _device(None if given is None else str(given), device_id, "id")
    out = Parsed()
    measured: datetime | None = None
    try:
        measured = _time(_scalar(params.get("timestamp"), "timestamp"), "timestamp")
    except AdapterError as err:
        out.rejections.append(err.rejection())
    position: Position | None = None
    if params.get("lat") is not None or params.get("lon") is not None:
        try:
            lat = _number(params.get("lat"), "lat")
            lon = _number(params.get("lon"), "lon")
            if lat is None or lon is None:
                raise AdapterError("lat" if lat is None else "lon", "missing while the other "
                                   "coordinate is given")
            acc = _number(params.get("accuracy"), "accuracy")
            position = check_position(lat, lon, acc, "lat")
        except AdapterError as err:
            out.rejections.append(err.rejection())
    level: float | None = None
    try:
        batt = _number(params.get("batt"), "batt")
        if batt is not None:
            level = _battery_pct(batt, fraction=False, field="batt")
    except AdapterError as err:
        out.rejections.append(err.rejection())
    charge = params.get("charge")
    charging = None if charge is None else str(charge).strip().lower() in ("true", "1", "yes")
    alarm = params.get("alarm")
    _emit(out, dev, received_at, measured or received_at, measured is not None, position,
          battery_pct=level, charging=charging, heartbeat=False,
          alarm=None if alarm is None else str(alarm), extra="")
    if not out.events and not out.rejections:
        raise AdapterError("$", "no position, battery or alarm")
    return out


def check_position(lat: float, lon: float, accuracy: float | None, field: str) -> Position:
    """A position within WGS-84 bounds and with a non-negative accuracy, or AdapterError."""
    if not (math.isfinite(lat) and -90.0 <= lat <= 90.0):
        raise AdapterError(field, "latitude outside -90..90")
    if not (math.isfinite(lon) and -180.0 <= lon <= 180.0):
        raise AdapterError(field, "longitude outside -180..180")
    if accuracy is not None and not (math.isfinite(accuracy) and accuracy >= 0):
        raise AdapterError(field, "accuracy is negative or not a number")
    return Position(lat, lon, accuracy)


def _emit(out: Parsed, dev: str, received_at: datetime, measured_at: datetime, timed: bool,
          position: Position | None, *, battery_pct: float | None, charging: bool | None,
          heartbeat: bool, alarm: str | None, extra: str) -> None:
    flags: tuple[str, ...] = ()
    if timed and not plausibility.clock_plausible(measured_at, received_at):
        flags = (Flag.CLOCK_IMPLAUSIBLE,)
    carried = False
    if alarm is not None:
        key = re.sub(r"[\s_-]", "", alarm).lower()
        if key == _GEOFENCE_ENTER:
            out.events.append(DeviceEvent(
                event_id=event_id(dev, "gps:geofence_enter", measured_at, extra),
                device_id=dev, event_type="geofence_enter", kind=Kind.ALARM,
                measured_at=measured_at, received_at=received_at, source=SOURCE, flags=flags))
        else:
            alarm_type, technical = _ALARMS.get(key, (AlarmType.OTHER, False))
            out.events.append(Alarm(
                event_id=event_id(dev, f"gps:alarm:{alarm_type}", measured_at, extra),
                device_id=dev, alarm_type=alarm_type, measured_at=measured_at,
                received_at=received_at, source=SOURCE, position=position, technical=technical,
                flags=flags))
            carried = True
    if position is not None and not carried:
        out.events.append(PositionFix(
            event_id=event_id(dev, "gps:position", measured_at, extra), device_id=dev,
            position=position, measured_at=measured_at, received_at=received_at, source=SOURCE,
            flags=flags))
    if battery_pct is not None or charging is not None or heartbeat:
        out.events.append(DeviceStatus(
            event_id=event_id(dev, "gps:status", measured_at, extra), device_id=dev,
            measured_at=measured_at, received_at=received_at, source=SOURCE,
            battery_pct=battery_pct, charging=charging, heartbeat=heartbeat, flags=flags))


def _battery_pct(value: float, *, fraction: bool, field: str) -> float | None:
    if not math.isfinite(value):
        raise AdapterError(field, "not a finite number")
    if value < 0:
        return None  # -1: the platform does not know
    pct = value * 100.0 if fraction and value <= 1.0 else value
    if pct > 100.0:
        raise AdapterError(field, "above 100 %")
    return round(pct, 1)


def _scalar(value: object, field: str) -> str | float | None:
    if value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise AdapterError(field, "not a string or number")


def _number(value: object, field: str) -> float | None:
    scalar = _scalar(value, field)
    if scalar is None or scalar == "":
        return None
    if isinstance(scalar, str):
        text = scalar.strip()
        if not _NUMBER.fullmatch(text):
            raise AdapterError(field, "not a decimal number")
        return float(text)
    return scalar


def _time(value: str | float | None, field: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            raise AdapterError(field, "not a valid epoch time")
        seconds = value / 1000.0 if value > 1e11 else value
        if seconds > 32503680000:  # year 3000: beyond any clock, and beyond datetime's range
            raise AdapterError(field, "epoch time too large")
        return datetime.fromtimestamp(seconds, UTC)
    if len(value) > 40:
        raise AdapterError(field, "too long for an ISO 8601 time")
    try:
        return utc(datetime.fromisoformat(value.strip()))
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted past UTC
        raise AdapterError(field, "not ISO 8601 or epoch seconds") from None


# --- Encoders used by the simulator: the same shapes, written by the module that reads them.

def encode_json(device_id: str, *, time: datetime, lat: float | None = None,
                lon: float | None = None, accuracy: float | None = None,
                speed: float | None = None, heading: float | None = None,
                altitude: float | None = None, event: str | None = None,
                alarm: str | None = None, geofence_action: str | None = None,
                battery_level: float | None = None, charging: bool | None = None,
                uuid: str | None = None) -> bytes:
    """One location in Traccar/OsmAnd JSON. `battery_level` is a fraction 0–1."""
    loc: dict[str, Any] = {"timestamp": time.isoformat()}
    if lat is not None and lon is not None:
        coords: dict[str, float] = {"latitude": lat, "longitude": lon}
        for key, value in (("accuracy", accuracy), ("speed", speed), ("heading", heading),
                           ("altitude", altitude)):
            if value is not None:
                coords[key] = value
        loc["coords"] = coords
    if event is not None:
        loc["event"] = event
    if alarm is not None:
        loc["alarm"] = alarm
    if geofence_action is not None:
        loc["geofence"] = {"action": geofence_action}
    if battery_level is not None or charging is not None:
        loc["battery"] = {"level": battery_level, "is_charging": charging}
    if uuid is not None:
        loc["uuid"] = uuid
    return msgspec.json.encode({"device_id": device_id, "location": loc})


def encode_params(device_id: str, *, time: datetime, lat: float | None = None,
                  lon: float | None = None, accuracy: float | None = None,
                  batt: float | None = None, charge: bool | None = None,
                  alarm: str | None = None) -> dict[str, str]:
    """OsmAnd query/form fields; `batt` is a percentage."""
    params = {"id": device_id, "timestamp": str(int(time.timestamp()))}
    for key, value in (("lat", lat), ("lon", lon), ("accuracy", accuracy), ("batt", batt)):
        if value is not None:
            params[key] = repr(float(value))
    if charge is not None:
        params["charge"] = "true" if charge else "false"
    if alarm is not None:
        params["alarm"] = alarm
    return params
