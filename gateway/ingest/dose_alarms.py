"""A missed medicine dose becomes an alarm for the people whose assignment says so.

Medicine robots (vendor JSON, adapters/vendor_medicine.py) and SCAIP pill dispensers (stc 0081,
adapters/scaip.py) report a dose not taken after the reminder window. Both adapters can turn
that report into an Alarm DOSE_MISSED (`medication_alarms=True`). Whether it should be one is a
fact about the person, recorded on the assignment (`Assignment.dose_alarm`), and a device's
assignments change over its life. So ingest parses with `medication_alarms=False` and `apply()`
decides per event. It is pure: no clock, no I/O; the assignments and a way to parse the same
bytes again are passed in.

Rules, and why
--------------
- **By the assignment valid when the dose was missed.** The decision uses the event's routing
  time (`routing.routing_time`: the measurement time, or the receive time when the device
  clock is implausible), the same time routing decides ownership by (docs/architecture.md,
  Ownership). A late offline batch after a return is decided by the assignment the report was
  measured under, never by the device's current one.
- **Which events.** A MEDICATION `DeviceEvent` whose type is `dose_not_taken` (the vendor format
  adds `/<dose slot>`; `vendor_medicine.dose_slot` splits it). It becomes an alarm when an
  assignment of its device covers that time, grants `medication` and has `dose_alarm`.
- **The adapter's own Alarm.** The message is parsed again with `medication_alarms=True` (only
  when an event needs it, which is rare), so ids, priority and position are exactly the
  adapter's: for the vendor format the alarm's id is `vendor_medicine.not_taken_id(device,
  dose)`, which a later `dose_taken/<dose>` lets the receiver recompute to close it; for SCAIP
  the alarm id rule of adapters/scaip.py. Nothing here derives an id.
- **Instead of the event, not besides it.** The adapters give a missed dose's alarm and its
  event the same id (the vendor format on purpose: one id a later "taken" closes, whichever of
  the two was sent), and the store keys events by (id, measurement time), so only one of them
  can be stored. The Alarm is stored; every huvudman that got the plain event before still gets
  the missed dose, under the same id and times: routing (gateway/ownership/routing.py, rule 5)
  sends a DOSE_MISSED alarm on the alarm lane, to its alarm route, under the assignments with
  `dose_alarm`, and on the bulk lane, without a receiver, under the other assignments that
  grant `medication`. An assignment that grants `alarm` but not `medication` gets nothing of it.
- When every missed dose of a message is to be an alarm (always so for SCAIP: one status per
  message) the result is the adapter's output as is, so a SCAIP dispenser's position travels in
  the alarm, as for any SCAIP alarm. A vendor batch spanning an assignment change is mixed:
  there each missed dose is paired, in order, with the alarm the second parse made of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from adapters.codes import Kind
from adapters.errors import AdapterError
from adapters.events import Alarm, AlarmType, DeviceEvent, Event
from adapters.vendor_medicine import dose_slot
from gateway.ownership.assignment import Assignment
from gateway.ownership.routing import AssignmentIndex, routing_time

NOT_TAKEN = "dose_not_taken"


def is_missed_dose(event: Event) -> bool:
    return (isinstance(event, DeviceEvent) and event.kind == Kind.MEDICATION
            and dose_slot(event.event_type)[0] == NOT_TAKEN)


def alarms_missed_doses(assignment: Assignment) -> bool:
    """Whether missed doses reported under this assignment are its alarms."""
    return assignment.dose_alarm and Kind.MEDICATION in assignment.kinds


def is_alarm_for(event: Event, assignments: Sequence[Assignment]) -> bool:
    """Whether `event`, a missed dose, is an alarm: decided at its routing time."""
    at, _ = routing_time(event)
    return any(a.device_id == event.device_id and a.covers(at) and alarms_missed_doses(a)
               for a in assignments)


def apply(events: Sequence[Event], index: AssignmentIndex,
          alarmed: Callable[[], Sequence[Event]]) -> list[Event]:
    """`events` (parsed with `medication_alarms=False`) with each missed dose that an assignment
    makes an alarm replaced by its Alarm. `alarmed` parses the same bytes, received at the same
    time, with `medication_alarms=True`; it is called only when some event needs it."""
    decisions = [is_alarm_for(e, index.for_device(e.device_id)) if is_missed_dose(e) else None
                 for e in events]
    wanted = [d for d in decisions if d is not None]
    if not any(wanted):
        return list(events)
    try:
        alternative = list(alarmed())
    except AdapterError:
        # Cannot happen for bytes that parsed a moment ago; if it did, the plain events still
        # reach every huvudman as before rather than being lost.
        return list(events)
    if all(wanted):
        return alternative
    alarms = iter([a for a in alternative
                   if isinstance(a, Alarm) and a.alarm_type == AlarmType.DOSE_MISSED])
    out: list[Event] = []
    for event, decision in zip(events, decisions, strict=True):
        if decision is None:
            out.append(event)
            continue
        alarm = next(alarms, None)  # consumed for every missed dose: the pairing is by order
        same = (alarm is not None and alarm.device_id == event.device_id
                and alarm.measured_at == event.measured_at)
        out.append(alarm if decision and same and alarm is not None else event)
    return out
