"""Routing: which huvudmän, and which alarm receivers, an event goes to.

`route()` is a pure function of one canonical event and the assignments of its device. It reads
no clock, does no I/O and never raises for a routable event, so the pipeline can call it for a
whole batch in memory before one transaction (docs/architecture.md, Data flow and Ownership).

Rules, in the order they are applied
------------------------------------
1. **Routing time.** Normally the *measurement* time. An event flagged
   `Flag.CLOCK_IMPLAUSIBLE` by validation is routed by its *receive* time instead;
   `Routing.clock_fallback` says so, and the event itself, flag included, is left untouched so the
   flag travels to the owner. Routing does not decide what is implausible: validation does, once.
2. **Coverage.** An assignment of the event's device covers it when `Assignment.covers()` is true
   at the routing time (half-open `[valid_from, valid_to)`) and the assignment grants the event's
   kind (`model.kind_of`). Every covering assignment is a destination: one scale feeds the region
   under HSL and the kommun under SoL at once. Because coverage is decided by measurement time,
   a late offline batch after a return and reissue splits cleanly: old readings to the old owner,
   new ones to the new owner, the gap between them to nobody.
3. **Quarantine.** A non-alarm event no assignment claims reaches no huvudman: `quarantined` is
   true, `destinations` is empty and `quarantine_reason` says why (device unassigned at that
   time, kind not granted, or a position without consent). Keeping the ciphertext for a short
   time and deleting it is the store's job.
4. **Positions.** A `PositionFix` (kind `position`) and the position inside an `Alarm` flow only
   under an assignment that records consent (`position_consent`) *and* names an alarm receiver
   (`alarm_route`): the GPS alarm prescription rules (docs/architecture.md, Ownership). For a
   `PositionFix` the assignment must also grant the `position` kind, like any other kind. For an
   alarm the `alarm` grant is what admits the alarm and `Destination.include_position` says
   whether its position may go with it; a destination without it must get the alarm with the
   position removed (the pipeline encrypts per destination, so it can).
5. **Alarms are never dropped and never quarantined.** Every assignment that covers the alarm and
   grants `alarm` gets a copy on the *alarm lane* (so the huvudman's alarm console sees it), with
   its `alarm_route` as `alarm_receiver`. If none of them names an alarm receiver, or nothing
   claims the alarm at all, one extra destination goes to the configured fallback receiver
   (`fallback=True`, no huvudman, no subject, no position) and `incident` is set. Technical
   alarms (battery, link lost) follow the same rule: an unassigned device's technical alarm is
   operational noise at the fallback receiver, but that is the fallback receiver's call, not a
   silent drop here.
   A missed medicine dose (`AlarmType.DOSE_MISSED`, gateway/ingest/dose_alarms.py) is medication
   data that is an alarm only for some people: it is claimed by the covering assignments that grant
   `medication` and have `dose_alarm` (alarm lane, their `alarm_route`), and also goes, on the
   bulk lane without a receiver, to the covering assignments that grant `medication` without
   `dose_alarm` (they got it as a plain event before it became an alarm). An assignment granting
   `alarm` but not `medication` gets none of it. Alarm-lane destinations come first, so a
   huvudman holding both kinds of assignment gets its one copy on the alarm lane. With no
   claiming assignment the fallback receiver and incident rule applies as for any alarm.
6. **Lanes.** Alarms use the alarm lane; everything else (readings, device events, status,
   position fixes) the bulk lane.

Other decisions
---------------
- One destination per *assignment*, not per huvudman: a kommun serving one person under both HSL
  (hemsjukvård) and SoL has two assignments and gets two destinations with different assignment
  ids. Delivery should therefore key idempotency on (event id, assignment id).
- Destinations are ordered by (valid_from, huvudman, assignment id) so that the same input always
  gives the same output, which keeps tests and outbox rows reproducible.
- `route()` still checks each assignment's `device_id` against the event's, so a caller that
  passes the wrong device's assignments routes nothing rather than leaking.
- `Destination.__repr__` leaves out `subject_key` so a logged routing carries ids only.
- The fallback receiver gets no position even in an emergency: with no assignment there is no
  recorded consent. Whether vital interest should override this is a policy question for the
  huvudmän, not one routing should answer on its own.

`AssignmentIndex` is an immutable lookup from device id to that device's assignments, built once
from a full list. The store rebuilds it on change (PostgreSQL NOTIFY) and swaps the reference;
readers holding the old index keep a consistent view.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum

import msgspec

from adapters.codes import Kind
from adapters.events import Alarm, AlarmType, Event, Flag, PositionFix, kind_of
from gateway.ownership.assignment import Assignment

__all__ = [
    "AssignmentIndex",
    "Destination",
    "Incident",
    "IncidentReason",
    "Lane",
    "QuarantineReason",
    "Routing",
    "may_receive_position",
    "route",
    "routing_time",
]


class Lane(StrEnum):
    ALARM = "alarm"
    BULK = "bulk"


class QuarantineReason(StrEnum):
    NO_ASSIGNMENT = "no_assignment"  # no assignment of the device covers the routing time
    KIND_NOT_GRANTED = "kind_not_granted"  # covered, but no covering assignment grants the kind
    POSITION_NOT_PERMITTED = "position_not_permitted"  # granted, but no consent + alarm route


class IncidentReason(StrEnum):
    UNCLAIMED_ALARM = "unclaimed_alarm"  # no assignment covers the alarm and grants `alarm`
    NO_ALARM_ROUTE = "no_alarm_route"  # claimed, but no claiming assignment names a receiver


class Destination(msgspec.Struct, frozen=True):
    """Where one copy of an event goes.

    `huvudman`, `assignment_id` and `subject_key` are None only for the fallback alarm receiver.
    """

    huvudman: str | None
    assignment_id: uuid.UUID | None
    subject_key: str | None
    lane: Lane
    alarm_receiver: str | None = None
    include_position: bool = False
    fallback: bool = False
    # The digest of the assignment's sealed subject reference, which each copy carries.
    subject_digest: bytes | None = None

    def __repr__(self) -> str:
        # No subject_key: a destination may end up in a log line.
        return (
            f"Destination(huvudman={self.huvudman!r}, assignment_id={self.assignment_id!r}, "
            f"lane={self.lane.value!r}, alarm_receiver={self.alarm_receiver!r}, "
            f"include_position={self.include_position!r}, fallback={self.fallback!r})"
        )


class Incident(msgspec.Struct, frozen=True):
    """An alarm that reached only the fallback receiver. Ids only, no personal data."""

    reason: IncidentReason
    event_id: uuid.UUID
    device_id: str
    assignment_ids: tuple[uuid.UUID, ...] = ()


class Routing(msgspec.Struct, frozen=True):
    event_id: uuid.UUID
    destinations: tuple[Destination, ...]
    quarantined: bool
    routed_at: datetime  # the time coverage was decided at
    clock_fallback: bool  # routed_at is the receive time because the device clock was implausible
    quarantine_reason: QuarantineReason | None = None
    incident: Incident | None = None


def routing_time(event: Event) -> tuple[datetime, bool]:
    """The time coverage is decided at, and whether it fell back to the receive time."""
    if Flag.CLOCK_IMPLAUSIBLE in event.flags:
        return event.received_at, True
    return event.measured_at, False


def may_receive_position(assignment: Assignment) -> bool:
    """Consent recorded and an alarm receiver named: the two conditions for positions."""
    return assignment.position_consent and bool(assignment.alarm_route)


def _order(a: Assignment) -> tuple[datetime, str, bytes]:
    return (a.valid_from, a.huvudman, a.id.bytes)


def _to_huvudman(a: Assignment, lane: Lane, *, include_position: bool = False) -> Destination:
    return Destination(
        huvudman=a.huvudman,
        assignment_id=a.id,
        subject_key=a.subject_key,
        subject_digest=a.subject_digest,
        lane=lane,
        alarm_receiver=(a.alarm_route or None) if lane is Lane.ALARM else None,
        include_position=include_position,
    )


def route(
    event: Event,
    assignments: Iterable[Assignment],
    *,
    fallback_alarm_receiver: str,
) -> Routing:
    """Decide the destinations of one event from its device's assignments. Pure."""
    if not fallback_alarm_receiver:
        raise ValueError("a fallback alarm receiver is required: alarms are never dropped")
    at, clock_fallback = routing_time(event)
    kind = kind_of(event)
    covering = [a for a in assignments if a.device_id == event.device_id and a.covers(at)]
    granted = sorted((a for a in covering if kind in a.kinds), key=_order)

    if isinstance(event, Alarm) and event.alarm_type == AlarmType.DOSE_MISSED:
        return _route_missed_dose(event, covering, at, clock_fallback, fallback_alarm_receiver)
    if isinstance(event, Alarm):
        return _route_alarm(event, granted, at, clock_fallback, fallback_alarm_receiver)

    if isinstance(event, PositionFix):
        permitted = [a for a in granted if may_receive_position(a)]
    else:
        permitted = granted
    destinations = tuple(_to_huvudman(a, Lane.BULK) for a in permitted)
    reason: QuarantineReason | None = None
    if not destinations:
        if not covering:
            reason = QuarantineReason.NO_ASSIGNMENT
        elif not granted:
            reason = QuarantineReason.KIND_NOT_GRANTED
        else:
            reason = QuarantineReason.POSITION_NOT_PERMITTED
    return Routing(
        event_id=event.event_id,
        destinations=destinations,
        quarantined=not destinations,
        routed_at=at,
        clock_fallback=clock_fallback,
        quarantine_reason=reason,
    )


def _route_alarm(
    alarm: Alarm,
    claimed: Sequence[Assignment],
    at: datetime,
    clock_fallback: bool,
    fallback_alarm_receiver: str,
) -> Routing:
    has_position = alarm.position is not None
    destinations = [
        _to_huvudman(a, Lane.ALARM, include_position=has_position and may_receive_position(a))
        for a in claimed
    ]
    incident: Incident | None = None
    if not any(a.alarm_route for a in claimed):
        destinations.append(
            Destination(
                huvudman=None,
                assignment_id=None,
                subject_key=None,
                lane=Lane.ALARM,
                alarm_receiver=fallback_alarm_receiver,
                fallback=True,
            )
        )
        incident = Incident(
            reason=IncidentReason.NO_ALARM_ROUTE if claimed else IncidentReason.UNCLAIMED_ALARM,
            event_id=alarm.event_id,
            device_id=alarm.device_id,
            assignment_ids=tuple(a.id for a in claimed),
        )
    return Routing(
        event_id=alarm.event_id,
        destinations=tuple(destinations),
        quarantined=False,
        routed_at=at,
        clock_fallback=clock_fallback,
        incident=incident,
    )


def _route_missed_dose(
    alarm: Alarm,
    covering: Sequence[Assignment],
    at: datetime,
    clock_fallback: bool,
    fallback_alarm_receiver: str,
) -> Routing:
    medication = sorted((a for a in covering if Kind.MEDICATION in a.kinds), key=_order)
    routing = _route_alarm(alarm, [a for a in medication if a.dose_alarm], at, clock_fallback,
                           fallback_alarm_receiver)
    informed = tuple(_to_huvudman(a, Lane.BULK) for a in medication if not a.dose_alarm)
    return msgspec.structs.replace(routing, destinations=routing.destinations + informed)


class AssignmentIndex:
    """Assignments by device id, O(1) per lookup. Immutable: rebuild and swap on any change."""

    __slots__ = ("_by_device", "_count")

    def __init__(self, assignments: Iterable[Assignment]) -> None:
        grouped: dict[str, list[Assignment]] = {}
        count = 0
        for a in assignments:
            grouped.setdefault(a.device_id, []).append(a)
            count += 1
        self._by_device: dict[str, tuple[Assignment, ...]] = {
            device: tuple(sorted(items, key=_order)) for device, items in grouped.items()
        }
        self._count = count

    def for_device(self, device_id: str) -> tuple[Assignment, ...]:
        """Every assignment the device has had or will have, oldest first; () if none."""
        return self._by_device.get(device_id, ())

    def route(self, event: Event, *, fallback_alarm_receiver: str) -> Routing:
        return route(
            event,
            self.for_device(event.device_id),
            fallback_alarm_receiver=fallback_alarm_receiver,
        )

    def __len__(self) -> int:
        return self._count

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._by_device

    @property
    def device_count(self) -> int:
        return len(self._by_device)
