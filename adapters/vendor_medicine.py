"""Medicine robots (dose dispensers): the gateway's vendor JSON, v1.

    {"v": 1,
     "events": [{"type": "dose_dispensed", "time": "2026-11-22T08:00:05+01:00",
                 "dose": "2026-11-22T08:00+01:00"},
                {"type": "dose_not_taken", "time": "2026-11-22T08:45:00+01:00",
                 "dose": "2026-11-22T08:00+01:00"}],
     "status": {"time": "2026-11-22T08:45:00+01:00", "battery": 92}}

`dose` names the dose slot (the scheduled time, or the robot's own slot id; 1–64 characters of
`A-Z a-z 0-9 . _ : + -`). It is required on every dose event, and it is how a later
`dose_taken` closes an earlier `dose_not_taken` for the same slot:

| type | canonical event |
|---|---|
| `dose_dispensed` | DeviceEvent `dose_dispensed/<dose>` (MEDICATION) |
| `dose_taken` | DeviceEvent `dose_taken/<dose>` (MEDICATION) |
| `dose_not_taken` | DeviceEvent `dose_not_taken/<dose>` (MEDICATION); Alarm DOSE_MISSED (*) |
| `reminder` | DeviceEvent `dose_reminder/<dose>` (MEDICATION) |
| `refill_needed` | DeviceEvent `refill_needed` (MEDICATION) |
| `fault` | technical Alarm DEVICE_FAULT |

(*) an Alarm when the caller asks for medication alarms (`medication_alarms=True`).

Correlation: the canonical model has no field for a slot, so the slot travels in `event_type`
after a `/` (`dose_slot()` splits it), and a not-taken event's id is derived from the device
and slot alone (`not_taken_id()`), not from its time. Delivery, seeing `dose_taken/<dose>`,
computes the id of the alarm or event it closes. A repeated "not taken" for one slot is one
event. The event-type names match what the SCAIP adapter emits for stc 0081/0082/0083.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import msgspec

from adapters import vendor_envelope
from adapters.codes import Kind
from adapters.errors import AdapterError, Parsed
from adapters.events import Alarm, AlarmType, DeviceEvent, Event, event_id
from adapters.vendor_envelope import AwareTime, Seq

SOURCE = "vendor_medicine"
# The time argument of not-taken ids: fixed, because the slot, not the report time, is the
# identity that a later "taken" must be able to recompute.
_SLOT_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

DoseSlot = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:+-]{1,64}$")]
FaultCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,32}$")]


class MedicineType(StrEnum):
    DOSE_DISPENSED = "dose_dispensed"
    DOSE_TAKEN = "dose_taken"
    DOSE_NOT_TAKEN = "dose_not_taken"
    REMINDER = "reminder"
    REFILL_NEEDED = "refill_needed"
    FAULT = "fault"


class MedicineEvent(msgspec.Struct, forbid_unknown_fields=False):
    type: MedicineType
    time: AwareTime
    dose: DoseSlot | None = None
    seq: Seq | None = None
    priority: Annotated[int, msgspec.Meta(ge=0, le=9)] = 5
    doses_left: Annotated[int, msgspec.Meta(ge=0)] | None = None
    code: FaultCode | None = None


_DOSE_EVENTS: dict[MedicineType, str] = {
    MedicineType.DOSE_DISPENSED: "dose_dispensed",
    MedicineType.DOSE_TAKEN: "dose_taken",
    MedicineType.DOSE_NOT_TAKEN: "dose_not_taken",
    MedicineType.REMINDER: "dose_reminder",
}
_decoder = msgspec.json.Decoder(MedicineEvent)
TYPES = tuple(t.value for t in MedicineType)


def parse(payload: bytes, *, device_id: str, received_at: datetime,
          medication_alarms: bool = False) -> Parsed:
    """Parse one message from the authenticated `device_id`, received at `received_at`.

    `medication_alarms`: a `dose_not_taken` becomes an Alarm (DOSE_MISSED). Ingest parses with
    False and parses again with True only for events whose assignment at their measurement
    time has `dose_alarm` (gateway/ingest/dose_alarms.py): a missed dose is an alarm for some
    people.
    """

    def mapper(item: MedicineEvent, dev: str, rx: datetime) -> list[Event]:
        return _events(item, dev, rx, medication_alarms)

    return vendor_envelope.parse(payload, device_id=device_id, received_at=received_at,
                                 source=SOURCE, decoder=_decoder, mapper=mapper,
                                 type_names=TYPES)


def not_taken_id(device_id: str, dose: str) -> uuid.UUID:
    """The event id of the not-taken alarm or event for `dose`, which `dose_taken` closes."""
    return event_id(device_id, f"{SOURCE}:dose_not_taken", _SLOT_EPOCH, extra=dose)


def dose_slot(event_type: str) -> tuple[str, str | None]:
    """Split `dose_taken/<dose>` into ("dose_taken", "<dose>"); ("refill_needed", None)."""
    base, sep, dose = event_type.partition("/")
    return base, dose if sep else None


def _events(item: MedicineEvent, device_id: str, received_at: datetime,
            medication_alarms: bool) -> list[Event]:
    measured_at = vendor_envelope.to_utc(item.time)
    flags = vendor_envelope.flags(measured_at, received_at)
    extra = "" if item.seq is None else str(item.seq)
    if item.type == MedicineType.FAULT:
        return [Alarm(event_id=event_id(device_id, f"{SOURCE}:fault", measured_at,
                                        extra or (item.code or "")),
                      device_id=device_id, alarm_type=AlarmType.DEVICE_FAULT,
                      measured_at=measured_at, received_at=received_at, source=SOURCE,
                      priority=item.priority, technical=True, flags=flags)]
    if item.type == MedicineType.REFILL_NEEDED:
        return [DeviceEvent(event_id=event_id(device_id, f"{SOURCE}:refill", measured_at, extra),
                            device_id=device_id, event_type="refill_needed",
                            kind=Kind.MEDICATION, measured_at=measured_at,
                            received_at=received_at, source=SOURCE, flags=flags)]
    if item.dose is None:
        raise AdapterError("dose", "required: the dose slot this event belongs to")
    if item.type == MedicineType.DOSE_NOT_TAKEN:
        eid = not_taken_id(device_id, item.dose)
        if medication_alarms:
            return [Alarm(event_id=eid, device_id=device_id, alarm_type=AlarmType.DOSE_MISSED,
                          measured_at=measured_at, received_at=received_at, source=SOURCE,
                          priority=item.priority, flags=flags)]
    else:
        eid = event_id(device_id, f"{SOURCE}:{item.type}", measured_at, f"{item.dose}|{extra}")
    return [DeviceEvent(event_id=eid, device_id=device_id,
                        event_type=f"{_DOSE_EVENTS[item.type]}/{item.dose}",
                        kind=Kind.MEDICATION, measured_at=measured_at, received_at=received_at,
                        source=SOURCE, flags=flags)]


# --- Encoders used by the simulator ------------------------------------------------------------

def encode_event(type_: str, time: datetime, *, dose: str | None = None, seq: int | None = None,
                 priority: int | None = None, doses_left: int | None = None,
                 code: str | None = None) -> dict[str, object]:
    event: dict[str, object] = {"type": MedicineType(type_).value, "time": time.isoformat()}
    for key, value in (("dose", dose), ("seq", seq), ("priority", priority),
                       ("doses_left", doses_left), ("code", code)):
        if value is not None:
            event[key] = value
    return event


def dose_of(scheduled: datetime) -> str:
    """The conventional dose slot id: the scheduled time, minutes precision, with offset."""
    return scheduled.isoformat(timespec="minutes")


encode_status = vendor_envelope.encode_status


def encode_message(events: list[dict[str, object]], *, status: dict[str, object] | None = None,
                   device: str | None = None) -> bytes:
    return vendor_envelope.encode(events, status=status, device=device)
