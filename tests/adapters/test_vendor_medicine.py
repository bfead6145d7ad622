"""Medicine robot JSON v1, including closing a "not taken" with a later "taken"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import vendor_medicine as med
from adapters.codes import Kind
from adapters.errors import AdapterError
from adapters.events import Alarm, AlarmType, DeviceEvent, DeviceStatus

RX = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
DEV = "med-0007"
SLOT = "2026-11-22T08:00+01:00"

EXAMPLE = b"""{"v": 1,
 "events": [{"type": "dose_dispensed", "time": "2026-11-22T08:00:05+01:00",
             "dose": "2026-11-22T08:00+01:00"},
            {"type": "dose_not_taken", "time": "2026-11-22T08:45:00+01:00",
             "dose": "2026-11-22T08:00+01:00"}],
 "status": {"time": "2026-11-22T08:45:00+01:00", "battery": 92}}"""


def parse(data: bytes, *, medication_alarms: bool = False) -> list[object]:
    out = med.parse(data, device_id=DEV, received_at=RX, medication_alarms=medication_alarms)
    assert not out.rejections, out.rejections
    return list(out.events)


def one(type_: str, *, dose: str | None = None, code: str | None = None,
        doses_left: int | None = None, at: datetime = RX) -> bytes:
    return med.encode_message([med.encode_event(type_, at, dose=dose, code=code,
                                                doses_left=doses_left)])


def test_documented_example() -> None:
    dispensed, not_taken, status = parse(EXAMPLE)
    assert isinstance(dispensed, DeviceEvent)
    assert dispensed.event_type == f"dose_dispensed/{SLOT}"
    assert dispensed.kind == Kind.MEDICATION
    assert isinstance(not_taken, DeviceEvent)
    assert med.dose_slot(not_taken.event_type) == ("dose_not_taken", SLOT)
    assert not_taken.event_id == med.not_taken_id(DEV, SLOT)
    assert isinstance(status, DeviceStatus) and status.battery_pct == 92


def test_not_taken_is_an_alarm_when_asked_with_the_same_id() -> None:
    (event,) = parse(one("dose_not_taken", dose=SLOT))
    (alarm,) = parse(one("dose_not_taken", dose=SLOT), medication_alarms=True)
    assert isinstance(alarm, Alarm) and alarm.alarm_type == AlarmType.DOSE_MISSED
    assert isinstance(event, DeviceEvent)
    assert alarm.event_id == event.event_id == med.not_taken_id(DEV, SLOT)


def test_later_taken_names_the_slot_it_closes() -> None:
    (missed,) = parse(one("dose_not_taken", dose=SLOT), medication_alarms=True)
    (taken,) = parse(one("dose_taken", dose=SLOT, at=RX + timedelta(minutes=20)))
    assert isinstance(taken, DeviceEvent) and isinstance(missed, Alarm)
    base, slot = med.dose_slot(taken.event_type)
    assert base == "dose_taken" and slot == SLOT
    assert med.not_taken_id(taken.device_id, slot) == missed.event_id


def test_repeated_not_taken_is_one_event() -> None:
    (a,) = parse(one("dose_not_taken", dose=SLOT))
    (b,) = parse(one("dose_not_taken", dose=SLOT, at=RX + timedelta(minutes=5)))
    assert isinstance(a, DeviceEvent) and isinstance(b, DeviceEvent)
    assert a.event_id == b.event_id


@pytest.mark.parametrize(("type_", "event_type"), [
    ("dose_dispensed", f"dose_dispensed/{SLOT}"), ("dose_taken", f"dose_taken/{SLOT}"),
    ("reminder", f"dose_reminder/{SLOT}"), ("refill_needed", "refill_needed"),
])
def test_events(type_: str, event_type: str) -> None:
    raw = one(type_, dose=SLOT) if type_ != "refill_needed" else one(type_, doses_left=3)
    (event,) = parse(raw)
    assert isinstance(event, DeviceEvent)
    assert (event.event_type, event.kind) == (event_type, Kind.MEDICATION)
    assert med.dose_slot(event.event_type)[1] == (None if type_ == "refill_needed" else SLOT)


def test_fault_is_a_technical_alarm() -> None:
    (alarm,) = parse(one("fault", code="jam"))
    assert isinstance(alarm, Alarm)
    assert (alarm.alarm_type, alarm.technical) == (AlarmType.DEVICE_FAULT, True)


def test_dose_events_differ_per_slot() -> None:
    (a,) = parse(one("dose_taken", dose="slot-1"))
    (b,) = parse(one("dose_taken", dose="slot-2"))
    assert isinstance(a, DeviceEvent) and isinstance(b, DeviceEvent)
    assert a.event_id != b.event_id


def test_rejections_name_field_and_reason() -> None:
    raw = msgspec.json.encode({"v": 1, "events": [
        {"type": "dose_taken", "time": RX.isoformat()},
        {"type": "dose_taken", "time": RX.isoformat(), "dose": "has space"},
        {"type": "fault", "time": RX.isoformat(), "code": "x" * 40},
        {"type": "refill_needed", "time": RX.isoformat(), "doses_left": -1},
        {"type": "pill_party", "time": RX.isoformat()},
        {"type": "dose_taken", "time": RX.isoformat(), "dose": SLOT},
    ]})
    out = med.parse(raw, device_id=DEV, received_at=RX)
    assert len(out.events) == 1
    assert [(r.index, r.field) for r in out.rejections] == [
        (0, "events[0].dose"), (1, "events[1].dose"), (2, "events[2].code"),
        (3, "events[3].doses_left"), (4, "events[4].type")]
    assert all("has space" not in r.reason and "pill_party" not in r.reason
               for r in out.rejections)


@pytest.mark.parametrize(("payload", "field"), [
    (b"", "$"), (b'{"v": 1}', "events"), (b'{"v": "1", "events": []}', "v"),
    (b'{"v": 1, "device": "med-9", "events": []}', "device"),
])
def test_whole_message_errors(payload: bytes, field: str) -> None:
    with pytest.raises(AdapterError) as err:
        med.parse(payload, device_id=DEV, received_at=RX)
    assert err.value.field == field


_times = st.datetimes(min_value=datetime(2016, 1, 1), max_value=datetime(2030, 1, 1),
                      timezones=st.just(UTC))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(med.TYPES), _times, _times.map(med.dose_of),
                          st.none() | st.integers(0, 2**40)), min_size=1, max_size=5),
       st.booleans())
def test_encoder_round_trips(events: list[tuple[str, datetime, str, int | None]],
                             alarms: bool) -> None:
    raw = med.encode_message([med.encode_event(t, when, dose=dose, seq=seq)
                              for t, when, dose, seq in events], device=DEV)
    out = med.parse(raw, device_id=DEV, received_at=RX, medication_alarms=alarms)
    assert not out.rejections
    assert len(out.events) == len(events)
    for event, (type_, when, dose, _) in zip(out.events, events, strict=True):
        assert event.measured_at == when
        if isinstance(event, DeviceEvent) and type_ != "refill_needed":
            assert med.dose_slot(event.event_type)[1] == dose


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=25)
    | st.sampled_from(med.TYPES) | st.sampled_from([SLOT, "2026-11-22T02:14:00+01:00"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["v", "device", "events", "status", "type", "time", "seq",
                                       "dose", "code", "doses_left", "priority", "battery"]),
                      children, max_size=5),
    max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), _json.map(msgspec.json.encode),
                 _json.map(lambda v: msgspec.json.encode({"v": 1, "events": [v]}))),
       st.booleans())
def test_no_input_raises_anything_but_adapter_error(data: bytes, alarms: bool) -> None:
    try:
        med.parse(data, device_id=DEV, received_at=RX, medication_alarms=alarms)
    except AdapterError:
        pass
