"""Routing rules (gateway/ownership/routing.py), one test per rule of docs/architecture.md,
Ownership."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from adapters.codes import WEIGHT, Kind
from adapters.events import (
    Alarm,
    AlarmType,
    DeviceEvent,
    DeviceStatus,
    Flag,
    Position,
    PositionFix,
    Quantity,
    Reading,
    event_id,
)
from gateway.ownership.assignment import Assignment, LegalBasis
from gateway.ownership.routing import (
    AssignmentIndex,
    IncidentReason,
    Lane,
    QuarantineReason,
    Routing,
    route,
)

FALLBACK = "arc-fallback-vgr"
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
SCALE = "scale-0001"
GPS = "gps-0001"
HERE = Position(lat=57.7089, lon=11.9746, accuracy_m=8.0)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def assignment(
    huvudman: str,
    *,
    device: str = SCALE,
    subject: str = "subj-a",
    basis: LegalBasis = LegalBasis.HSL,
    kinds: frozenset[Kind] = frozenset({Kind.WEIGHT}),
    start: float = 0,
    end: float | None = None,
    alarm_route: str | None = None,
    consent: bool = False,
) -> Assignment:
    return Assignment(
        id=uuid.uuid4(),
        device_id=device,
        huvudman=huvudman,
        subject_key=subject,
        legal_basis=basis,
        kinds=kinds,
        valid_from=at(start),
        valid_to=None if end is None else at(end),
        alarm_route=alarm_route,
        position_consent=consent,
    )


def reading(
    measured: float,
    *,
    received: float | None = None,
    device: str = SCALE,
    flags: tuple[str, ...] = (),
) -> Reading:
    m = at(measured)
    return Reading(
        event_id=event_id(device, str(WEIGHT.code), m),
        device_id=device,
        code=WEIGHT.code,
        kind=Kind.WEIGHT,
        values=(Quantity(WEIGHT.code, 81.4, "kg"),),
        measured_at=m,
        received_at=at(measured if received is None else received),
        source="test",
        flags=flags,
    )


def alarm(
    measured: float,
    *,
    position: Position | None = None,
    device: str = GPS,
    flags: tuple[str, ...] = (),
    received: float | None = None,
) -> Alarm:
    m = at(measured)
    return Alarm(
        event_id=event_id(device, AlarmType.BUTTON.value, m),
        device_id=device,
        alarm_type=AlarmType.BUTTON,
        measured_at=m,
        received_at=at(measured if received is None else received),
        source="test",
        position=position,
        flags=flags,
    )


def position_fix(measured: float, *, device: str = GPS) -> PositionFix:
    m = at(measured)
    return PositionFix(
        event_id=event_id(device, "position", m),
        device_id=device,
        position=HERE,
        measured_at=m,
        received_at=m,
        source="test",
    )


def owners(r: Routing) -> list[str | None]:
    return [d.huvudman for d in r.destinations]


def go(event: Reading | Alarm | PositionFix | DeviceEvent | DeviceStatus,
       assignments: list[Assignment]) -> Routing:
    return route(event, assignments, fallback_alarm_receiver=FALLBACK)


GPS_KINDS = frozenset({Kind.ALARM, Kind.POSITION})


# --- readings -----------------------------------------------------------------------------


def test_reading_goes_to_the_covering_assignment() -> None:
    a = assignment("14")
    r = go(reading(1), [a])
    assert not r.quarantined
    assert r.quarantine_reason is None
    assert r.incident is None
    [d] = r.destinations
    assert (d.huvudman, d.assignment_id, d.subject_key, d.lane) == ("14", a.id, "subj-a", Lane.BULK)
    assert d.alarm_receiver is None
    assert r.routed_at == at(1)
    assert not r.clock_fallback


def test_one_scale_feeds_region_under_hsl_and_kommun_under_sol_at_once() -> None:
    region = assignment("14", basis=LegalBasis.HSL, subject="vgr-ref-1", start=0)
    kommun = assignment("1480", basis=LegalBasis.SOL, subject="gbg-ref-9", start=0.5)
    r = go(reading(1), [kommun, region])
    assert owners(r) == ["14", "1480"]  # ordered by valid_from
    assert {d.subject_key for d in r.destinations} == {"vgr-ref-1", "gbg-ref-9"}
    assert {d.assignment_id for d in r.destinations} == {region.id, kommun.id}
    assert all(d.lane is Lane.BULK for d in r.destinations)


def test_same_huvudman_under_two_legal_bases_gets_one_destination_per_assignment() -> None:
    hsl = assignment("1480", basis=LegalBasis.HSL)
    sol = assignment("1480", basis=LegalBasis.SOL)
    r = go(reading(1), [hsl, sol])
    assert owners(r) == ["1480", "1480"]
    assert {d.assignment_id for d in r.destinations} == {hsl.id, sol.id}


def test_reading_outside_every_assignment_is_quarantined() -> None:
    # In stock until 1 h, assigned 1 h..5 h, returned and reconditioning after 5 h.
    a = assignment("1480", start=1, end=5)
    for measured in (0.5, 6):
        r = go(reading(measured), [a])
        assert r.quarantined
        assert r.destinations == ()
        assert r.quarantine_reason is QuarantineReason.NO_ASSIGNMENT
    assert go(reading(3), [a]).destinations[0].huvudman == "1480"


def test_device_with_no_assignment_at_all_is_quarantined() -> None:
    r = go(reading(1), [])
    assert r.quarantined
    assert r.quarantine_reason is QuarantineReason.NO_ASSIGNMENT


def test_kind_not_granted_is_not_delivered() -> None:
    region = assignment("14", kinds=frozenset({Kind.WEIGHT}))
    kommun = assignment("1480", kinds=frozenset({Kind.BLOOD_PRESSURE}))
    r = go(reading(1), [region, kommun])
    assert owners(r) == ["14"]
    only_bp = go(reading(1), [kommun])
    assert only_bp.quarantined
    assert only_bp.quarantine_reason is QuarantineReason.KIND_NOT_GRANTED


def test_boundary_valid_to_is_exclusive_and_valid_from_inclusive() -> None:
    old = assignment("1401", subject="old", start=0, end=2)
    new = assignment("1402", subject="new", start=2)
    assert owners(go(reading(2), [old, new])) == ["1402"]
    just_before = msgspec.structs.replace(reading(2), measured_at=at(2) - timedelta(microseconds=1))
    assert owners(go(just_before, [old, new])) == ["1401"]
    # A return at 2 h with no reissue: 2 h itself belongs to nobody.
    r = go(reading(2), [old])
    assert r.quarantined


def test_assignments_of_another_device_never_route() -> None:
    other = assignment("1480", device="scale-9999")
    r = go(reading(1), [other])
    assert r.quarantined


# --- late offline batches, return and reissue ------------------------------------------------


def test_return_and_reissue_with_late_offline_batch_never_crosses() -> None:
    # Used in Härryda until 10 h, returned, reconditioned, reissued in Partille from 12 h.
    old = assignment("1401", subject="old-user", start=0, end=10)
    new = assignment("1402", subject="new-user", start=12)
    index = AssignmentIndex([new, old])
    # The device was offline and sends its whole buffer at 13 h.
    batch = [reading(m, received=13) for m in (9, 9.99, 10, 11, 12, 12.5)]
    routed = [index.route(e, fallback_alarm_receiver=FALLBACK) for e in batch]
    assert [owners(r) for r in routed] == [
        ["1401"], ["1401"], [], [], ["1402"], ["1402"]
    ]
    assert [r.quarantined for r in routed] == [False, False, True, True, False, False]
    for r in routed:
        for d in r.destinations:
            assert (d.huvudman, d.subject_key) in {("1401", "old-user"), ("1402", "new-user")}
        assert r.routed_at < at(13)  # measurement time, not arrival


def test_late_reading_is_routed_by_measurement_time_not_receive_time() -> None:
    old = assignment("1401", start=0, end=10)
    new = assignment("1402", start=12)
    r = go(reading(5, received=30), [old, new])
    assert owners(r) == ["1401"]
    assert r.routed_at == at(5)


# --- clocks ----------------------------------------------------------------------------------


def test_implausible_clock_falls_back_to_receive_time_and_keeps_the_flag() -> None:
    old = assignment("1401", start=0, end=10)
    new = assignment("1402", start=12)
    # Device claims 1999-ish (before it existed): validation flagged it.
    e = reading(-200_000, received=13, flags=(Flag.CLOCK_IMPLAUSIBLE,))
    r = go(e, [old, new])
    assert r.clock_fallback
    assert r.routed_at == at(13)
    assert owners(r) == ["1402"]
    assert Flag.CLOCK_IMPLAUSIBLE in e.flags  # the event is untouched; the flag travels


def test_other_flags_do_not_change_routing_time() -> None:
    a = assignment("1401", start=0, end=10)
    r = go(reading(5, received=30, flags=(Flag.LATE, Flag.CONVERTED_UNIT)), [a])
    assert not r.clock_fallback
    assert owners(r) == ["1401"]


# --- positions -------------------------------------------------------------------------------


def test_position_fix_needs_consent_and_alarm_route() -> None:
    full = assignment("1480", device=GPS, kinds=GPS_KINDS, alarm_route="arc-1480", consent=True)
    no_consent = assignment("1481", device=GPS, kinds=GPS_KINDS, alarm_route="arc-1481")
    no_route = assignment("14", device=GPS, kinds=GPS_KINDS, consent=True)
    r = go(position_fix(1), [full, no_consent, no_route])
    assert owners(r) == ["1480"]
    assert r.destinations[0].lane is Lane.BULK

    for lacking in (no_consent, no_route):
        q = go(position_fix(1), [lacking])
        assert q.quarantined
        assert q.quarantine_reason is QuarantineReason.POSITION_NOT_PERMITTED


def test_position_fix_needs_the_position_kind_too() -> None:
    a = assignment("1480", device=GPS, kinds=frozenset({Kind.ALARM}), alarm_route="arc",
                   consent=True)
    r = go(position_fix(1), [a])
    assert r.quarantined
    assert r.quarantine_reason is QuarantineReason.KIND_NOT_GRANTED


def test_position_inside_alarm_only_where_consent_and_route() -> None:
    with_consent = assignment("1480", device=GPS, kinds=GPS_KINDS, alarm_route="arc-1480",
                              consent=True)
    without = assignment("14", device=GPS, kinds=frozenset({Kind.ALARM}), alarm_route="arc-14")
    r = go(alarm(1, position=HERE), [with_consent, without])
    by_owner = {d.huvudman: d for d in r.destinations}
    assert by_owner["1480"].include_position
    assert not by_owner["14"].include_position
    assert r.incident is None


def test_alarm_without_position_never_includes_one() -> None:
    a = assignment("1480", device=GPS, kinds=GPS_KINDS, alarm_route="arc", consent=True)
    [d] = go(alarm(1), [a]).destinations
    assert not d.include_position


# --- alarms ----------------------------------------------------------------------------------


def test_alarm_goes_to_alarm_lane_with_the_assignment_route() -> None:
    a = assignment("1480", device=GPS, kinds=GPS_KINDS, alarm_route="arc-1480", consent=True)
    r = go(alarm(1, position=HERE), [a])
    [d] = r.destinations
    assert (d.huvudman, d.assignment_id, d.lane, d.alarm_receiver) == (
        "1480", a.id, Lane.ALARM, "arc-1480"
    )
    assert not d.fallback
    assert not r.quarantined
    assert r.incident is None


def test_unclaimed_alarm_goes_to_fallback_and_raises_incident() -> None:
    # Device in stock (no assignment) and a device whose assignment ended.
    ended = assignment("1480", device=GPS, kinds=GPS_KINDS, alarm_route="arc", end=0.5)
    for assignments in ([], [ended]):
        e = alarm(1, position=HERE)
        r = go(e, assignments)
        assert not r.quarantined
        [d] = r.destinations
        assert d.fallback
        assert d.lane is Lane.ALARM
        assert d.alarm_receiver == FALLBACK
        assert d.huvudman is None and d.subject_key is None and d.assignment_id is None
        assert not d.include_position  # no assignment, no consent
        assert r.incident is not None
        assert r.incident.reason is IncidentReason.UNCLAIMED_ALARM
        assert r.incident.event_id == e.event_id
        assert r.incident.device_id == GPS


def test_alarm_kind_not_granted_is_unclaimed() -> None:
    scale_only = assignment("1480", device=GPS, kinds=frozenset({Kind.POSITION}),
                           alarm_route="arc", consent=True)
    r = go(alarm(1), [scale_only])
    assert r.incident is not None
    assert r.incident.reason is IncidentReason.UNCLAIMED_ALARM
    assert [d.alarm_receiver for d in r.destinations] == [FALLBACK]


def test_alarm_claimed_without_alarm_route_still_reaches_fallback() -> None:
    a = assignment("1480", device=GPS, kinds=GPS_KINDS, consent=True)  # no alarm_route
    r = go(alarm(1, position=HERE), [a])
    assert [(d.huvudman, d.fallback) for d in r.destinations] == [("1480", False), (None, True)]
    own, fallback = r.destinations
    assert own.lane is Lane.ALARM and own.alarm_receiver is None
    assert not own.include_position  # consent but no receiver: no position
    assert fallback.alarm_receiver == FALLBACK
    assert r.incident is not None
    assert r.incident.reason is IncidentReason.NO_ALARM_ROUTE
    assert r.incident.assignment_ids == (a.id,)


def test_one_route_among_claimants_is_enough_no_fallback() -> None:
    routed = assignment("1480", device=GPS, kinds=GPS_KINDS, alarm_route="arc-1480")
    unrouted = assignment("14", device=GPS, kinds=frozenset({Kind.ALARM}))
    r = go(alarm(1), [routed, unrouted])
    assert r.incident is None
    assert not any(d.fallback for d in r.destinations)
    assert sorted((d.huvudman or "", d.alarm_receiver or "") for d in r.destinations) == [
        ("14", ""), ("1480", "arc-1480")
    ]


def test_empty_alarm_route_counts_as_none() -> None:
    a = assignment("1480", device=GPS, kinds=GPS_KINDS, alarm_route="", consent=True)
    r = go(alarm(1, position=HERE), [a])
    assert r.incident is not None
    assert r.destinations[0].alarm_receiver is None
    assert not r.destinations[0].include_position


def test_alarm_with_implausible_clock_routes_by_receive_time() -> None:
    old = assignment("1401", device=GPS, kinds=GPS_KINDS, alarm_route="arc-old", end=10)
    new = assignment("1402", device=GPS, kinds=GPS_KINDS, alarm_route="arc-new", start=12)
    r = go(alarm(5, received=13, flags=(Flag.CLOCK_IMPLAUSIBLE,)), [old, new])
    assert r.clock_fallback
    assert [d.alarm_receiver for d in r.destinations] == ["arc-new"]


def test_fallback_receiver_is_required() -> None:
    with pytest.raises(ValueError, match="fallback"):
        route(alarm(1), [], fallback_alarm_receiver="")


# --- other event types -----------------------------------------------------------------------


def test_status_and_device_events_use_their_kind_on_the_bulk_lane() -> None:
    m = at(1)
    status = DeviceStatus(event_id=uuid.uuid4(), device_id=GPS, measured_at=m, received_at=m,
                          source="test", battery_pct=40.0)
    dose = DeviceEvent(event_id=uuid.uuid4(), device_id=GPS, event_type="dose_taken",
                       kind=Kind.MEDICATION, measured_at=m, received_at=m, source="test")
    a = assignment("1480", device=GPS, kinds=frozenset({Kind.STATUS, Kind.MEDICATION}))
    for e in (status, dose):
        [d] = go(e, [a]).destinations
        assert d.lane is Lane.BULK
    b = assignment("1480", device=GPS, kinds=frozenset({Kind.ALARM}))
    assert go(status, [b]).quarantine_reason is QuarantineReason.KIND_NOT_GRANTED


# --- index and hygiene -----------------------------------------------------------------------


def test_assignment_index_lookup_and_wholesale_replacement() -> None:
    a1 = assignment("1401", start=5)
    a2 = assignment("1402", start=0, end=5)
    gps = assignment("1480", device=GPS, kinds=GPS_KINDS)
    index = AssignmentIndex([a1, a2, gps])
    assert index.for_device(SCALE) == (a2, a1)  # oldest first
    assert index.for_device(GPS) == (gps,)
    assert index.for_device("unknown") == ()
    assert len(index) == 3 and index.device_count == 2
    assert SCALE in index and "unknown" not in index
    replaced = AssignmentIndex([gps])
    assert replaced.for_device(SCALE) == ()
    assert index.for_device(SCALE) == (a2, a1)  # the old one is unchanged for its readers


def test_routing_is_deterministic_and_pure() -> None:
    assignments = [assignment("1480", start=0.5), assignment("14"), assignment("1401", start=0.5)]
    e = reading(1)
    first = go(e, assignments)
    second = go(e, list(reversed(assignments)))
    assert first == second
    assert owners(first) == ["14", "1401", "1480"]


def test_destination_repr_has_no_subject_key() -> None:
    a = assignment("1480", subject="199001011234")
    r = go(reading(1), [a])
    assert "199001011234" not in repr(r)
    assert "199001011234" not in str(r.destinations[0])
