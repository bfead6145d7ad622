"""The canonical events every adapter produces and everything downstream consumes.

msgspec Structs rather than pydantic models: the ingest hot path builds and encodes one or more of
these per message, and msgspec does that several times faster (docs/performance.md). Times are
always timezone-aware UTC; values are always in the canonical UCUM unit of their MDC code.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum

import msgspec

from adapters.codes import Kind

# Fixed namespace for deterministic event ids. Changing it would make every resend of an old
# reading look new, so it is a constant of the data format, not a setting.
EVENT_NAMESPACE = uuid.UUID("6f1c2a52-3e0b-5d0e-9a57-8f5e0c1d4b17")


class Flag(StrEnum):
    """Facts about an event that travel with it to its owner."""

    CLOCK_IMPLAUSIBLE = "clock_implausible"
    CONVERTED_UNIT = "converted_unit"
    LATE = "late"
    # The source gave no exact time: the gateway placed it (Open mHealth 1.x: a data point
    # without a time frame, or a date and a part of the day; docs/formats/omh.md says how).
    TIME_INFERRED = "time_inferred"


class Quantity(msgspec.Struct, frozen=True):
    code: int
    value: float
    unit: str


class Position(msgspec.Struct, frozen=True):
    lat: float
    lon: float
    accuracy_m: float | None = None


class Reading(msgspec.Struct, frozen=True, tag="reading"):
    """A measurement: one value, or several for compound metrics (blood pressure)."""

    event_id: uuid.UUID
    device_id: str
    code: int
    kind: Kind
    values: tuple[Quantity, ...]
    measured_at: datetime
    received_at: datetime
    source: str
    flags: tuple[str, ...] = ()


class AlarmType(StrEnum):
    BUTTON = "button"
    FALL = "fall"
    GEOFENCE_EXIT = "geofence_exit"
    BED_EXIT = "bed_exit"
    DOOR_OPEN_TOO_LONG = "door_open_too_long"
    INACTIVITY = "inactivity"
    DOSE_MISSED = "dose_missed"
    DEVICE_SILENT = "device_silent"
    BATTERY_LOW = "battery_low"
    LINK_LOST = "link_lost"
    MAINS_LOST = "mains_lost"
    DEVICE_FAULT = "device_fault"
    OTHER = "other"


class Location(msgspec.Struct, frozen=True, omit_defaults=True):
    """Where in the home a fixed sensor is, as the unit says (SCAIP `lco`, `lva`, `lte`): the
    night patrol needs to know it is the bedroom, not only that it is the bed sensor."""

    code: int | None = None  # SS 91100 Annex D, e.g. 12 bedroom, 11 bathroom, 39 front door
    value: str | None = None  # room or zone number (`lva`)
    text: str | None = None  # the unit's own words (`lte`, e.g. "Sovrum"), at most 32 characters


class Alarm(msgspec.Struct, frozen=True, tag="alarm"):
    """Something a person must act on. Never dropped (docs/architecture.md, Invariants)."""

    event_id: uuid.UUID
    device_id: str
    alarm_type: AlarmType
    measured_at: datetime
    received_at: datetime
    source: str
    priority: int = 5
    position: Position | None = None
    technical: bool = False
    flags: tuple[str, ...] = ()
    location: Location | None = None


class DeviceStatus(msgspec.Struct, frozen=True, tag="status"):
    """Battery, links and heartbeats: what supervision needs to know a device is alive."""

    event_id: uuid.UUID
    device_id: str
    measured_at: datetime
    received_at: datetime
    source: str
    battery_pct: float | None = None
    charging: bool | None = None
    heartbeat: bool = False
    flags: tuple[str, ...] = ()


class PositionFix(msgspec.Struct, frozen=True, tag="position"):
    event_id: uuid.UUID
    device_id: str
    position: Position
    measured_at: datetime
    received_at: datetime
    source: str
    flags: tuple[str, ...] = ()


class DeviceEvent(msgspec.Struct, frozen=True, tag="event"):
    """A non-alarm occurrence: door opened, lying in bed, dose taken, refill needed."""

    event_id: uuid.UUID
    device_id: str
    event_type: str
    kind: Kind
    measured_at: datetime
    received_at: datetime
    source: str
    flags: tuple[str, ...] = ()
    location: Location | None = None


Event = Reading | Alarm | DeviceStatus | PositionFix | DeviceEvent


def kind_of(event: Event) -> Kind:
    """The kind an assignment must grant for this event to reach a huvudman."""
    if isinstance(event, Reading | DeviceEvent):
        return event.kind
    if isinstance(event, Alarm):
        return Kind.ALARM
    if isinstance(event, PositionFix):
        return Kind.POSITION
    return Kind.STATUS


def event_id(device_id: str, discriminator: str, measured_at: datetime,
             extra: str = "") -> uuid.UUID:
    """Same device, same thing, same measurement time: same id, on every resend and instance.

    `discriminator` names what was measured (an MDC code, an alarm type); `extra` separates
    readings that share both (a SCAIP ref, a vendor sequence number).
    """
    micros = int(measured_at.timestamp() * 1_000_000)
    return uuid.uuid5(EVENT_NAMESPACE, f"{device_id}\x1f{discriminator}\x1f{micros}\x1f{extra}")


def utc(ts: datetime) -> datetime:
    """Normalise to aware UTC; a naive time from a device is taken as UTC and said so by callers."""
    if ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def decode(data: bytes) -> Event:
    event: Event = _decoder.decode(data)
    return event
