"""GPS alarms in Traccar/OsmAnd JSON and query/form fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import vendor_gps
from adapters.codes import Kind
from adapters.errors import AdapterError
from adapters.events import Alarm, AlarmType, DeviceEvent, DeviceStatus, Flag, PositionFix

RX = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
T = datetime(2026, 11, 22, 7, 58, 30, tzinfo=UTC)

# Shape of a Traccar OsmAnd JSON upload (transistorsoft background geolocation).
TRACCAR = b"""{"device_id": "gps-0042", "location": {
  "timestamp": "2026-11-22T07:58:30.000Z", "is_moving": true, "uuid": "3f1c-77",
  "coords": {"latitude": 57.70887, "longitude": 11.97456, "accuracy": 12.5, "speed": 1.2,
             "heading": 90, "altitude": 12},
  "event": "motionchange", "activity": {"type": "walking", "confidence": 80},
  "battery": {"level": 0.81, "is_charging": false}, "odometer": 1234.5}}"""


def parse(data: bytes, **kw: str) -> list[object]:
    out = vendor_gps.parse(data, received_at=RX, **kw)
    assert not out.rejections, out.rejections
    return list(out.events)


def test_traccar_location_gives_a_fix_and_battery() -> None:
    fix, status = parse(TRACCAR)
    assert isinstance(fix, PositionFix)
    assert (fix.device_id, fix.measured_at, fix.received_at) == ("gps-0042", T, RX)
    assert (fix.position.lat, fix.position.lon, fix.position.accuracy_m) == (
        57.70887, 11.97456, 12.5)
    assert isinstance(status, DeviceStatus)
    assert (status.battery_pct, status.charging, status.heartbeat) == (81.0, False, False)


def test_event_ids_are_deterministic() -> None:
    assert parse(TRACCAR) == parse(TRACCAR)


def test_authenticated_device_must_match() -> None:
    assert parse(TRACCAR, device_id="gps-0042")
    with pytest.raises(AdapterError) as err:
        vendor_gps.parse(TRACCAR, received_at=RX, device_id="gps-0043")
    assert err.value.field == "device_id"
    no_id = TRACCAR.replace(b'"device_id": "gps-0042", ', b"")
    with pytest.raises(AdapterError):
        vendor_gps.parse(no_id, received_at=RX)
    assert parse(no_id, device_id="gps-0042")


@pytest.mark.parametrize(("kwargs", "alarm_type", "technical"), [
    ({"alarm": "sos"}, AlarmType.BUTTON, False),
    ({"event": "sos"}, AlarmType.BUTTON, False),
    ({"alarm": "fall"}, AlarmType.FALL, False),
    ({"alarm": "geofenceExit"}, AlarmType.GEOFENCE_EXIT, False),
    ({"geofence_action": "EXIT"}, AlarmType.GEOFENCE_EXIT, False),
    ({"alarm": "lowBattery"}, AlarmType.BATTERY_LOW, True),
    ({"alarm": "power_cut"}, AlarmType.MAINS_LOST, True),
    ({"alarm": "tampering"}, AlarmType.DEVICE_FAULT, True),
    ({"alarm": "somethingNew"}, AlarmType.OTHER, False),
])
def test_alarms_carry_the_position(kwargs: dict[str, str], alarm_type: AlarmType,
                                   technical: bool) -> None:
    raw = vendor_gps.encode_json("gps-1", time=T, lat=57.7, lon=11.9, accuracy=5, **kwargs)
    (alarm,) = parse(raw)
    assert isinstance(alarm, Alarm)
    assert (alarm.alarm_type, alarm.technical) == (alarm_type, technical)
    assert alarm.position is not None and alarm.position.accuracy_m == 5


def test_geofence_enter_is_an_event() -> None:
    raw = vendor_gps.encode_json("gps-1", time=T, lat=57.7, lon=11.9, geofence_action="ENTER")
    event, fix = parse(raw)
    assert isinstance(event, DeviceEvent) and event.event_type == "geofence_enter"
    assert event.kind == Kind.ALARM
    assert isinstance(fix, PositionFix)


def test_heartbeat() -> None:
    (status,) = parse(vendor_gps.encode_json("gps-1", time=T, event="heartbeat"))
    assert isinstance(status, DeviceStatus) and status.heartbeat


def test_batch_of_locations_judged_one_by_one() -> None:
    good = msgspec.json.decode(vendor_gps.encode_json("gps-1", time=T, lat=1, lon=2))["location"]
    bad = {"timestamp": "2026-11-22T07:59:00Z", "coords": {"latitude": 95, "longitude": 2}}
    raw = msgspec.json.encode({"device_id": "gps-1", "location": [good, bad, {}]})
    out = vendor_gps.parse(raw, received_at=RX)
    assert [type(e) for e in out.events] == [PositionFix]
    assert [(r.index, r.field) for r in out.rejections] == [
        (1, "location[1].coords"), (2, "location[2]")]
    assert "95" not in out.rejections[0].reason
    out = vendor_gps.parse(b'{"device_id": "gps-1", "location": [1]}', received_at=RX)
    assert [(r.index, r.field) for r in out.rejections] == [(0, "location[0]")]


@pytest.mark.parametrize(("coords", "reason"), [
    ({"latitude": -90.1, "longitude": 0}, "latitude"),
    ({"latitude": 0, "longitude": 180.5}, "longitude"),
    ({"latitude": 0, "longitude": 0, "accuracy": -1}, "accuracy"),
    ({"latitude": "x", "longitude": 0}, "Expected"),
    ({"longitude": 0}, "missing"),
])
def test_bad_position_is_rejected_but_the_alarm_kept(coords: dict[str, object],
                                                    reason: str) -> None:
    raw = msgspec.json.encode({"device_id": "gps-1", "location": {
        "timestamp": T.isoformat(), "coords": coords, "alarm": "sos"}})
    out = vendor_gps.parse(raw, received_at=RX)
    (alarm,) = out.events
    assert isinstance(alarm, Alarm) and alarm.position is None
    (rej,) = out.rejections
    assert rej.field.startswith("location.coords") and reason in rej.reason


def test_bad_time_keeps_the_alarm_at_receive_time() -> None:
    raw = msgspec.json.encode({"device_id": "gps-1", "location": {
        "timestamp": "not a time", "alarm": "sos"}})
    out = vendor_gps.parse(raw, received_at=RX)
    (alarm,) = out.events
    assert isinstance(alarm, Alarm) and alarm.measured_at == RX
    assert [r.field for r in out.rejections] == ["location.timestamp"]


@pytest.mark.parametrize("stamp", [1795334310, 1795334310000, "1795334310",
                                   "2026-11-22T08:58:30+01:00", "2026-11-22 07:58:30"])
def test_time_forms(stamp: object) -> None:
    raw = msgspec.json.encode({"device_id": "gps-1", "location": {
        "timestamp": stamp, "event": "heartbeat"}})
    (status,) = parse(raw)
    assert isinstance(status, DeviceStatus)
    assert status.measured_at == T


def test_implausible_clock_is_flagged() -> None:
    raw = vendor_gps.encode_json("gps-1", time=RX + timedelta(hours=3), lat=1, lon=2)
    (fix,) = parse(raw)
    assert isinstance(fix, PositionFix) and fix.flags == (Flag.CLOCK_IMPLAUSIBLE,)


@pytest.mark.parametrize(("level", "pct"), [(0.5, 50.0), (1, 100.0), (55, 55.0), (-1, None)])
def test_battery_level(level: float, pct: float | None) -> None:
    raw = vendor_gps.encode_json("gps-1", time=T, battery_level=level, charging=True)
    (status,) = parse(raw)
    assert isinstance(status, DeviceStatus) and status.battery_pct == pct


@pytest.mark.parametrize(("payload", "field"), [
    (b"not json", "$"), (b"[]", "$"), (b'{"device_id": "gps-1"}', "location"),
    (b'{"device_id": "a b", "location": {}}', "device_id"),
    (b'{"device_id": "gps-1", "location": []}', "location"),
    (b'{"device_id": "gps-1", "location": [1, 2}', "$"),
])
def test_whole_message_errors(payload: bytes, field: str) -> None:
    with pytest.raises(AdapterError) as err:
        vendor_gps.parse(payload, received_at=RX)
    assert err.value.field == field


def test_flat_params() -> None:
    params = vendor_gps.encode_params("gps-7", time=T, lat=57.7, lon=11.9, accuracy=8, batt=64,
                                      charge=False, alarm="sos")
    assert params["id"] == "gps-7"
    out = vendor_gps.parse_params(params, received_at=RX)
    alarm, status = out.events
    assert isinstance(alarm, Alarm) and alarm.alarm_type == AlarmType.BUTTON
    assert alarm.position is not None and alarm.position.accuracy_m == 8.0
    assert alarm.measured_at == T
    assert isinstance(status, DeviceStatus) and status.battery_pct == 64.0
    assert status.charging is False


def test_flat_params_as_numbers_and_errors() -> None:
    out = vendor_gps.parse_params({"id": "gps-7", "lat": 57.7, "lon": 11.9,
                                   "timestamp": 1795334310}, received_at=RX)
    (fix,) = out.events
    assert isinstance(fix, PositionFix) and fix.measured_at == T
    out = vendor_gps.parse_params({"id": "gps-7", "lat": "95", "lon": "1", "batt": "x"},
                                  received_at=RX)
    assert not out.events
    assert [r.field for r in out.rejections] == ["lat", "batt"]
    out = vendor_gps.parse_params({"id": "gps-7", "lat": "1"}, received_at=RX)
    assert [r.field for r in out.rejections] == ["lon"]
    with pytest.raises(AdapterError):
        vendor_gps.parse_params({"id": "gps-7"}, received_at=RX)
    with pytest.raises(AdapterError):
        vendor_gps.parse_params({"lat": "1", "lon": "2"}, received_at=RX)


_coord = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(lat=st.floats(-90, 90), lon=st.floats(-180, 180),
       accuracy=st.none() | st.floats(0, 1e5), level=st.none() | st.floats(0, 1),
       charging=st.none() | st.booleans(),
       alarm=st.none() | st.sampled_from(["sos", "fall", "geofenceExit", "lowBattery"]),
       time=st.datetimes(min_value=datetime(2016, 1, 1), max_value=datetime(2030, 1, 1),
                         timezones=st.just(UTC)))
def test_encoders_round_trip(lat: float, lon: float, accuracy: float | None,
                             level: float | None, charging: bool | None, alarm: str | None,
                             time: datetime) -> None:
    raw = vendor_gps.encode_json("gps-1", time=time, lat=lat, lon=lon, accuracy=accuracy,
                                 battery_level=level, charging=charging, alarm=alarm)
    out = vendor_gps.parse(raw, received_at=RX)
    assert not out.rejections
    located = [e for e in out.events if isinstance(e, Alarm | PositionFix)]
    (first,) = located
    position = first.position
    assert position is not None and (position.lat, position.lon) == (lat, lon)
    assert first.measured_at == time
    params = vendor_gps.encode_params("gps-1", time=time, lat=lat, lon=lon, accuracy=accuracy,
                                      alarm=alarm)
    flat = vendor_gps.parse_params(params, received_at=RX)
    assert not flat.rejections
    located = [e for e in flat.events if isinstance(e, Alarm | PositionFix)]
    assert located[0].position == position


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | _coord | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["device_id", "location", "coords", "latitude",
                                       "longitude", "accuracy", "timestamp", "battery", "level",
                                       "is_charging", "event", "alarm", "geofence", "action",
                                       "uuid", "x"]), children, max_size=6),
    max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), _json.map(msgspec.json.encode),
                 _json.map(lambda v: msgspec.json.encode({"device_id": "gps-1", "location": v}))))
def test_no_input_raises_anything_but_adapter_error(data: bytes) -> None:
    try:
        vendor_gps.parse(data, received_at=RX)
    except AdapterError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "lat", "lon", "timestamp", "accuracy", "batt",
                                        "charge", "alarm", "deviceid"]),
                       st.none() | st.text(max_size=12) | st.integers() | _coord | st.booleans()
                       | st.lists(st.integers(), max_size=2), max_size=9))
def test_no_params_raise_anything_but_adapter_error(params: dict[str, object]) -> None:
    try:
        vendor_gps.parse_params(params, received_at=RX)
    except AdapterError:
        pass
