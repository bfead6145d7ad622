"""Night-supervision sensors (bed, door, movement, fall): the gateway's vendor JSON, v1.

    {"v": 1,
     "events": [{"type": "bed_exit", "time": "2026-11-22T02:14:00+01:00", "seq": 1812},
                {"type": "door_open_too_long", "time": "2026-11-22T02:31:00+01:00",
                 "open_s": 900}],
     "status": {"time": "2026-11-22T02:31:00+01:00", "battery": 64, "heartbeat": true}}

Types and what they become (docs/formats/vendor-night.md has the full description):

| type | canonical event |
|---|---|
| `bed_exit` | Alarm BED_EXIT |
| `in_bed` | DeviceEvent `lying_in_bed` (ACTIVITY) |
| `door_open` / `door_closed` | DeviceEvent `door_open` / `door_closed` (ACTIVITY) |
| `door_open_too_long` | Alarm DOOR_OPEN_TOO_LONG |
| `movement` | DeviceEvent `movement` (ACTIVITY) |
| `inactivity` | Alarm INACTIVITY |
| `fall` | Alarm FALL |
| `absent` / `present` | DeviceEvent `absent` / `present` (ACTIVITY) |
| `heartbeat` | DeviceStatus with heartbeat (same as `status.heartbeat`) |

The names match what the SCAIP adapter emits for the same sensor codes, so a night patrol sees
one vocabulary whichever way a sensor is connected. `seq` (the sensor's own counter) separates
two events of one type in the same second. Alarms take `priority` 0–9 (default 5).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import msgspec

from adapters import vendor_envelope
from adapters.codes import Kind
from adapters.errors import Parsed
from adapters.events import Alarm, AlarmType, DeviceEvent, DeviceStatus, Event, event_id
from adapters.vendor_envelope import AwareTime, Seq

SOURCE = "vendor_night"


class NightType(StrEnum):
    BED_EXIT = "bed_exit"
    IN_BED = "in_bed"
    DOOR_OPEN = "door_open"
    DOOR_CLOSED = "door_closed"
    DOOR_OPEN_TOO_LONG = "door_open_too_long"
    MOVEMENT = "movement"
    INACTIVITY = "inactivity"
    FALL = "fall"
    ABSENT = "absent"
    PRESENT = "present"
    HEARTBEAT = "heartbeat"


class NightEvent(msgspec.Struct, forbid_unknown_fields=False):
    type: NightType
    time: AwareTime
    seq: Seq | None = None
    priority: Annotated[int, msgspec.Meta(ge=0, le=9)] = 5
    # Context a sensor may send; validated so the simulator and vendors keep to the format.
    open_s: Annotated[int, msgspec.Meta(ge=0)] | None = None
    inactive_min: Annotated[int, msgspec.Meta(ge=0)] | None = None


_ALARMS: dict[NightType, AlarmType] = {
    NightType.BED_EXIT: AlarmType.BED_EXIT,
    NightType.DOOR_OPEN_TOO_LONG: AlarmType.DOOR_OPEN_TOO_LONG,
    NightType.INACTIVITY: AlarmType.INACTIVITY,
    NightType.FALL: AlarmType.FALL,
}
_EVENTS: dict[NightType, str] = {
    NightType.IN_BED: "lying_in_bed",
    NightType.DOOR_OPEN: "door_open",
    NightType.DOOR_CLOSED: "door_closed",
    NightType.MOVEMENT: "movement",
    NightType.ABSENT: "absent",
    NightType.PRESENT: "present",
}
_decoder = msgspec.json.Decoder(NightEvent)
TYPES = tuple(t.value for t in NightType)


def parse(payload: bytes, *, device_id: str, received_at: datetime) -> Parsed:
    """Parse one message from the authenticated `device_id`, received at `received_at`."""
    return vendor_envelope.parse(payload, device_id=device_id, received_at=received_at,
                                 source=SOURCE, decoder=_decoder, mapper=_events,
                                 type_names=TYPES)


def _events(item: NightEvent, device_id: str, received_at: datetime) -> list[Event]:
    measured_at = vendor_envelope.to_utc(item.time)
    flags = vendor_envelope.flags(measured_at, received_at)
    extra = "" if item.seq is None else str(item.seq)
    eid = event_id(device_id, f"{SOURCE}:{item.type}", measured_at, extra)
    if item.type in _ALARMS:
        return [Alarm(event_id=eid, device_id=device_id, alarm_type=_ALARMS[item.type],
                      measured_at=measured_at, received_at=received_at, source=SOURCE,
                      priority=item.priority, flags=flags)]
    if item.type == NightType.HEARTBEAT:
        return [DeviceStatus(event_id=eid, device_id=device_id, measured_at=measured_at,
                             received_at=received_at, source=SOURCE, heartbeat=True,
                             flags=flags)]
    return [DeviceEvent(event_id=eid, device_id=device_id, event_type=_EVENTS[item.type],
                        kind=Kind.ACTIVITY, measured_at=measured_at, received_at=received_at,
                        source=SOURCE, flags=flags)]


# --- Encoders used by the simulator ------------------------------------------------------------

def encode_event(type_: str, time: datetime, *, seq: int | None = None,
                 priority: int | None = None, **context: int) -> dict[str, object]:
    event: dict[str, object] = {"type": NightType(type_).value, "time": time.isoformat()}
    if seq is not None:
        event["seq"] = seq
    if priority is not None:
        event["priority"] = priority
    event.update(context)
    return event


encode_status = vendor_envelope.encode_status


def encode_message(events: list[dict[str, object]], *, status: dict[str, object] | None = None,
                   device: str | None = None) -> bytes:
    return vendor_envelope.encode(events, status=status, device=device)
