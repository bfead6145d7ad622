"""Night-supervision sensor JSON v1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import vendor_night
from adapters.codes import Kind
from adapters.errors import AdapterError
from adapters.events import Alarm, AlarmType, DeviceEvent, DeviceStatus, Flag

RX = datetime(2026, 11, 22, 1, 40, tzinfo=UTC)
DEV = "night-0042"

EXAMPLE = b"""{"v": 1,
 "events": [{"type": "bed_exit", "time": "2026-11-22T02:14:00+01:00", "seq": 1812},
            {"type": "door_open_too_long", "time": "2026-11-22T02:31:00+01:00",
             "open_s": 900}],
 "status": {"time": "2026-11-22T02:31:00+01:00", "battery": 64, "heartbeat": true}}"""


def parse(data: bytes) -> list[object]:
    out = vendor_night.parse(data, device_id=DEV, received_at=RX)
    assert not out.rejections, out.rejections
    return list(out.events)


def test_documented_example() -> None:
    bed, door, status = parse(EXAMPLE)
    assert isinstance(bed, Alarm) and bed.alarm_type == AlarmType.BED_EXIT
    assert bed.measured_at == datetime(2026, 11, 22, 1, 14, tzinfo=UTC)
    assert bed.source == "vendor_night" and bed.device_id == DEV and bed.flags == ()
    assert isinstance(door, Alarm) and door.alarm_type == AlarmType.DOOR_OPEN_TOO_LONG
    assert isinstance(status, DeviceStatus)
    assert (status.battery_pct, status.heartbeat) == (64, True)


@pytest.mark.parametrize(("type_", "alarm_type"), [
    ("bed_exit", AlarmType.BED_EXIT), ("door_open_too_long", AlarmType.DOOR_OPEN_TOO_LONG),
    ("inactivity", AlarmType.INACTIVITY), ("fall", AlarmType.FALL),
])
def test_alarms(type_: str, alarm_type: AlarmType) -> None:
    t = RX - timedelta(minutes=1)
    (alarm,) = parse(vendor_night.encode_message([vendor_night.encode_event(type_, t,
                                                                            priority=8)]))
    assert isinstance(alarm, Alarm)
    assert (alarm.alarm_type, alarm.priority, alarm.technical) == (alarm_type, 8, False)


@pytest.mark.parametrize(("type_", "event_type"), [
    ("in_bed", "lying_in_bed"), ("door_open", "door_open"), ("door_closed", "door_closed"),
    ("movement", "movement"), ("absent", "absent"), ("present", "present"),
])
def test_events(type_: str, event_type: str) -> None:
    (event,) = parse(vendor_night.encode_message([vendor_night.encode_event(type_, RX)]))
    assert isinstance(event, DeviceEvent)
    assert (event.event_type, event.kind) == (event_type, Kind.ACTIVITY)


def test_heartbeat_event() -> None:
    (status,) = parse(vendor_night.encode_message([vendor_night.encode_event("heartbeat", RX)]))
    assert isinstance(status, DeviceStatus) and status.heartbeat


def test_seq_separates_events_in_the_same_second() -> None:
    a, b = parse(vendor_night.encode_message([
        vendor_night.encode_event("movement", RX, seq=1),
        vendor_night.encode_event("movement", RX, seq=2)]))
    assert isinstance(a, DeviceEvent) and isinstance(b, DeviceEvent)
    assert a.event_id != b.event_id
    assert parse(vendor_night.encode_message([vendor_night.encode_event(
        "movement", RX, seq=1)]))[0] == a


def test_one_bad_event_does_not_spoil_the_others() -> None:
    raw = msgspec.json.encode({"v": 1, "events": [
        {"type": "fall", "time": RX.isoformat()},
        {"type": "levitation", "time": RX.isoformat()},
        {"type": "fall", "time": "2026-11-22T02:14:00"},
        {"type": "fall", "time": RX.isoformat(), "priority": 12},
        {"type": "fall"},
        {"type": "fall", "time": "0001-01-01T00:00:00+05:00"},
        "x",
    ]})
    out = vendor_night.parse(raw, device_id=DEV, received_at=RX)
    assert len(out.events) == 1
    got = [(r.index, r.field) for r in out.rejections]
    assert got == [(1, "events[1].type"), (2, "events[2].time"), (3, "events[3].priority"),
                   (4, "events[4].time"), (5, "events[5].time"), (6, "events[6]")]
    assert "bed_exit" in out.rejections[0].reason and "levitation" not in out.rejections[0].reason


def test_implausible_clock_is_flagged() -> None:
    (alarm,) = parse(vendor_night.encode_message([vendor_night.encode_event(
        "fall", datetime(2001, 1, 1, tzinfo=UTC))]))
    assert isinstance(alarm, Alarm) and alarm.flags == (Flag.CLOCK_IMPLAUSIBLE,)


@pytest.mark.parametrize(("payload", "field"), [
    (b"nope", "$"), (b"[]", "$"), (b"{}", "v"), (b'{"v": 2, "events": []}', "v"),
    (b'{"v": 1, "events": []}', "events"),
    (b'{"v": 1, "device": "other", "events": []}', "device"),
    (b'{"v": 1, "events": {}}', "events"),
])
def test_whole_message_errors(payload: bytes, field: str) -> None:
    with pytest.raises(AdapterError) as err:
        vendor_night.parse(payload, device_id=DEV, received_at=RX)
    assert err.value.field == field


def test_device_may_be_named_if_it_matches() -> None:
    raw = vendor_night.encode_message([vendor_night.encode_event("fall", RX)], device=DEV)
    assert parse(raw)


def test_bad_status_is_a_rejection() -> None:
    raw = msgspec.json.encode({"v": 1, "events": [{"type": "fall", "time": RX.isoformat()}],
                               "status": {"time": RX.isoformat(), "battery": 140}})
    out = vendor_night.parse(raw, device_id=DEV, received_at=RX)
    assert len(out.events) == 1 and [r.field for r in out.rejections] == ["status.battery"]


_times = st.datetimes(min_value=datetime(2016, 1, 1), max_value=datetime(2030, 1, 1),
                      timezones=st.just(UTC))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(vendor_night.TYPES), _times,
                          st.none() | st.integers(0, 2**40), st.none() | st.integers(0, 9)),
                min_size=1, max_size=5),
       st.none() | st.tuples(_times, st.none() | st.floats(0, 100), st.booleans()))
def test_encoder_round_trips(events: list[tuple[str, datetime, int | None, int | None]],
                             status: tuple[datetime, float | None, bool] | None) -> None:
    raw = vendor_night.encode_message(
        [vendor_night.encode_event(t, when, seq=seq, priority=pri) for t, when, seq, pri in events],
        status=None if status is None else vendor_night.encode_status(
            status[0], battery=status[1], heartbeat=status[2]))
    out = vendor_night.parse(raw, device_id=DEV, received_at=RX)
    assert not out.rejections
    assert len(out.events) == len(events) + (status is not None)
    for event, (_, when, _, _) in zip(out.events, events, strict=False):
        assert event.measured_at == when


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=25)
    | st.sampled_from(vendor_night.TYPES) | st.sampled_from(["2026-11-22T02:14:00+01:00"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["v", "device", "events", "status", "type", "time", "seq",
                                       "priority", "battery", "heartbeat", "open_s"]),
                      children, max_size=5),
    max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), _json.map(msgspec.json.encode),
                 _json.map(lambda v: msgspec.json.encode({"v": 1, "events": [v]}))))
def test_no_input_raises_anything_but_adapter_error(data: bytes) -> None:
    try:
        vendor_night.parse(data, device_id=DEV, received_at=RX)
    except AdapterError:
        pass
