"""The native JSON adapter: precise rejections, canonical units, deterministic ids, no crash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import codes, native
from adapters.errors import AdapterError
from adapters.events import Alarm, DeviceStatus, Flag, Reading

RECEIVED = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
T = "2026-11-22T07:58:00+01:00"


def parse(doc: object) -> native.Parsed:
    payload = doc if isinstance(doc, bytes) else msgspec.json.encode(doc)
    return native.parse(payload, device_id="SCALE-1", received_at=RECEIVED)


def test_single_reading_without_envelope() -> None:
    out = parse({"type": "weight", "value": 72.4, "unit": "kg", "time": T})
    (reading,) = out.events
    assert isinstance(reading, Reading)
    assert (reading.code, reading.kind, reading.values[0].value, reading.values[0].unit) == (
        188736, codes.Kind.WEIGHT, 72.4, "kg")
    assert reading.measured_at == datetime(2026, 11, 22, 6, 58, tzinfo=UTC)
    assert reading.received_at == RECEIVED and reading.flags == ()


@pytest.mark.parametrize(("item", "code", "value", "unit"), [
    ({"type": "weight", "value": 154, "unit": "lb"}, 188736, 69.853, "kg"),
    ({"type": "temperature", "value": 98.6, "unit": "°F"}, 150364, 37.0, "Cel"),
    ({"type": "spo2", "value": 97}, 150456, 97.0, "%"),
    ({"type": "pulse", "value": 61, "via": "oximeter", "unit": "bpm"}, 149530, 61.0, "/min"),
    ({"type": "pulse", "value": 61}, 149546, 61.0, "/min"),
    ({"type": "bmi", "value": 24.1, "unit": "kg/m2"}, 188752, 24.1, "kg/m2"),
])
def test_units_become_canonical(item: dict[str, object], code: int, value: float,
                                unit: str) -> None:
    (reading,) = parse({**item, "time": T}).events
    assert isinstance(reading, Reading)
    assert reading.code == code and reading.values[0].unit == unit
    assert reading.values[0].value == pytest.approx(value, abs=0.001)
    assert (Flag.CONVERTED_UNIT in reading.flags) == (item.get("unit") not in (None, unit, "bpm"))


def test_blood_pressure_is_one_compound_reading() -> None:
    (bp,) = parse({"type": "blood_pressure", "systolic": 16, "diastolic": 10.5, "unit": "kPa",
                   "time": T}).events
    assert isinstance(bp, Reading) and bp.code == 150020
    assert [(q.code, round(q.value)) for q in bp.values] == [(150021, 120), (150022, 79)]


@pytest.mark.parametrize(("item", "field", "reason"), [
    ({"type": "weight", "value": 0}, "readings[0].value", "physiologically impossible"),
    ({"type": "weight", "value": 700}, "readings[0].value", "physiologically impossible"),
    ({"type": "spo2", "value": 100.5}, "readings[0].value", "physiologically impossible"),
    ({"type": "blood_pressure", "systolic": 80, "diastolic": 95}, "readings[0].systolic",
     "below diastolic"),
    ({"type": "weight", "value": 70, "unit": "stone"}, "readings[0].unit", "unknown unit"),
    ({"type": "weight", "value": 70, "unit": "%"}, "readings[0].unit", "cannot be converted"),
    ({"type": "weight"}, "readings[0].value", "required field missing"),
    ({"type": "glucose", "value": 5}, "readings[0].type", "unknown type"),
    ({"type": "weight", "value": True}, "readings[0].value", "Expected float"),
])
def test_rejections_name_field_and_reason(item: dict[str, object], field: str,
                                          reason: str) -> None:
    out = parse({"readings": [{"time": T, **item}]})
    assert out.events == []
    (rejection,) = out.rejections
    assert rejection.field == field and rejection.index == 0
    assert reason.lower() in rejection.reason.lower()


def test_time_without_offset_is_refused() -> None:
    (rejection,) = parse({"readings": [{"type": "weight", "value": 70,
                                        "time": "2026-11-22T07:58:00"}]}).rejections
    assert rejection.field == "readings[0].time" and "timezone" in rejection.reason


def test_one_bad_item_does_not_sink_the_good_ones() -> None:
    out = parse({"readings": [{"type": "weight", "value": 70, "time": T},
                              {"type": "weight", "value": -1, "time": T},
                              {"type": "bmi", "value": 22, "time": T}],
                 "status": {"battery": 150, "time": T},
                 "alarms": [{"type": "fall", "time": T, "priority": 9}]})
    assert [type(e).__name__ for e in out.events] == ["Reading", "Reading", "Alarm"]
    assert [(r.field, r.index) for r in out.rejections] == [("readings[1].value", 1),
                                                             ("status.battery", None)]


def test_status_and_alarm() -> None:
    out = parse({"status": {"battery": 81, "heartbeat": True, "time": T},
                 "alarms": [{"type": "button", "time": T,
                             "position": {"lat": 57.7, "lon": 11.97, "accuracy": 8}}]})
    status, alarm = out.events
    assert isinstance(status, DeviceStatus) and status.battery_pct == 81 and status.heartbeat
    assert isinstance(alarm, Alarm) and alarm.position is not None
    assert alarm.position.accuracy_m == 8


@pytest.mark.parametrize(("payload", "field"), [
    (b"", "$"), (b"[1,2]", "$"), (b"{", "$"), (b'"\x80"', "$"), (b'{"readings": "\xff"}', "$"),
    (b"[" * 100_000, "$"), (b'{"v": 2, "readings": []}', "v"),
    (b'{"readings": []}', "readings"), (b'{"device": "OTHER", "readings": []}', "device"),
    (b'{"readings": {"a": 1}}', "readings"),
])
def test_whole_message_errors(payload: bytes, field: str) -> None:
    with pytest.raises(AdapterError) as err:
        parse(payload)
    assert err.value.field == field


def test_invalid_utf8_anywhere_is_not_json() -> None:
    """RFC 8259 JSON is UTF-8: a message with invalid bytes in any string is refused whole."""
    with pytest.raises(AdapterError) as err:
        native.parse(b'{"readings": [{"type": "weight", "value": 1, "unit": "\xff",'
                     b' "time": "2026-11-22T07:58:00Z"}]}', device_id="SCALE-1",
                     received_at=RECEIVED)
    assert (err.value.field, err.value.reason) == ("$", "malformed JSON")


def test_too_many_items() -> None:
    items = [{"type": "weight", "value": 70, "time": T}] * (native.MAX_ITEMS + 1)
    with pytest.raises(AdapterError, match="more than"):
        parse({"readings": items})


def test_event_ids_are_deterministic_and_distinct() -> None:
    doc = {"readings": [{"type": "weight", "value": 70, "time": T},
                        {"type": "weight", "value": 70.2,
                         "time": "2026-11-22T07:59:00+01:00"},
                        {"type": "bmi", "value": 22, "time": T}]}
    first = [e.event_id for e in parse(doc).events]
    again = [e.event_id for e in parse(doc).events]
    later = native.parse(msgspec.json.encode(doc), device_id="SCALE-1",
                         received_at=RECEIVED + timedelta(days=3))
    assert first == again == [e.event_id for e in later.events]
    assert len(set(first)) == 3
    other_device = native.parse(msgspec.json.encode(doc), device_id="SCALE-2",
                                received_at=RECEIVED)
    assert not set(first) & {e.event_id for e in other_device.events}


def test_implausible_clock_is_flagged_not_rejected() -> None:
    future = (RECEIVED + timedelta(days=2)).isoformat()
    (reading,) = parse({"type": "weight", "value": 70, "time": future}).events
    assert Flag.CLOCK_IMPLAUSIBLE in reading.flags
    (old,) = parse({"type": "weight", "value": 70, "time": "1970-01-01T00:00:00Z"}).events
    assert Flag.CLOCK_IMPLAUSIBLE in old.flags


@pytest.mark.parametrize("time", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_times_at_the_edge_of_the_calendar_are_rejected_not_raised(time: str) -> None:
    out = parse({"readings": [{"type": "weight", "value": 70, "time": time}],
                 "status": {"time": time}, "alarms": [{"type": "fall", "time": time}]})
    assert out.events == []
    assert [r.field for r in out.rejections] == ["readings[0].time", "status.time",
                                                 "alarms[0].time"]


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.timezones()) | st.datetimes(
    timezones=st.just(timezone(timedelta(hours=14)))))
def test_any_aware_time_is_an_event_or_a_rejection(ts: datetime) -> None:
    out = parse({"readings": [{"type": "weight", "value": 70, "time": ts.isoformat()}]})
    assert len(out.events) + len(out.rejections) == 1


def test_rejections_never_echo_values() -> None:
    out = parse({"readings": [{"type": "weight", "value": "19121212-1212", "time": T},
                              {"type": "weight", "value": 70, "unit": "19121212-1212",
                               "time": T}]})
    assert len(out.rejections) == 2
    assert all("1912" not in r.reason for r in out.rejections)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                  max_size=5),
    max_leaves=30)
reading_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["weight", "bmi", "spo2", "pulse", "temperature",
                              "blood_pressure", "x"])},
    optional={"value": json_values, "unit": json_values, "time": json_values,
              "systolic": json_values, "diastolic": json_values, "via": json_values})


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_adapter_error(payload: bytes) -> None:
    try:
        parse(payload)
    except AdapterError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(["v", "device", "readings", "status", "alarms", "x"]),
                       json_values | st.lists(reading_like, max_size=4), max_size=5))
def test_arbitrary_documents_only_ever_raise_adapter_error(doc: dict[str, object]) -> None:
    try:
        out = parse(doc)
    except AdapterError as err:
        assert err.field and err.reason
        return
    for rejection in out.rejections:
        assert rejection.field and rejection.reason


@settings(max_examples=200, deadline=None)
@given(st.lists(reading_like, min_size=1, max_size=6))
def test_every_item_is_either_an_event_or_a_rejection(items: list[dict[str, object]]) -> None:
    out = parse({"readings": items})
    indices = {r.index for r in out.rejections}
    assert len(out.events) + len(indices) == len(items)
