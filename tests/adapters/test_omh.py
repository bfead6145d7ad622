"""Open mHealth adapter: the published test data, full data points, arrays, and fuzzing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import codes, omh
from adapters.codes import Kind
from adapters.errors import AdapterError
from adapters.events import DeviceEvent, Flag, PositionFix, Reading, event_id
from tests.paths import CONFORMANCE_ROOT

CONFORMANCE = CONFORMANCE_ROOT / "omh"
RECEIVED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DEVICE = "omh-test-device"


def _files(kind: str) -> list[Path]:
    return sorted(CONFORMANCE.glob(f"*/*/{kind}/*.json"))


def _schema_of(path: Path) -> str:
    name, version = path.parts[-4], path.parts[-3]
    return f"omh:{name}:{version}"


def _id(path: Path) -> str:
    return "/".join(path.parts[-4:])


def _parse(doc: Any, schema: str | None = None) -> Any:
    return omh.parse(json.dumps(doc).encode(), device_id=DEVICE, received_at=RECEIVED,
                     schema=schema)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# What each shouldPass file must become: (code, ((component code, value, unit), ...), time).
# Issue 16: older versions too. No time frame (allowed in 1.x): the receive time, flagged.
NO_TIME = RECEIVED.isoformat()

EXPECTED_PASS: dict[str, tuple[int, tuple[tuple[int, float, str], ...], str]] = {
    "body-weight/1.0/shouldPass/body-weight-only.json": (188736, ((188736, 50.0, "kg"),), NO_TIME),
    "body-weight/1.0/shouldPass/date-time-time-frame.json":
        (188736, ((188736, 50.0, "kg"),), "2013-02-05T07:25:00Z"),
    "body-weight/1.0/shouldPass/time-interval-time-frame.json":
        (188736, ((188736, 50.0, "kg"),), "2013-06-05T07:25:00Z"),
    "body-weight/1.0/shouldPass/with-descriptive-statistic.json":
        (188736, ((188736, 50.0, "kg"),), "2013-06-05T07:25:00Z"),
    "body-weight/2.0/shouldPass/body-weight-only.json":
        (188736, ((188736, 50.0, "kg"),), "2020-02-05T09:45:00-08:00"),
    "body-weight/2.0/shouldPass/with-descriptive-statistic.json":
        (188736, ((188736, 49.5, "kg"),), "2020-03-05T10:40:00-08:00"),
    "heart-rate/1.0/shouldPass/heart-rate-only.json": (149546, ((149546, 60.0, "/min"),), NO_TIME),
    "heart-rate/1.0/shouldPass/with-everything.json":
        (149546, ((149546, 50.0, "/min"),), "2013-02-05T07:25:00Z"),
    "heart-rate/1.0/shouldPass/with-temporal-relationship-to-physical-activity.json":
        (149546, ((149546, 50.0, "/min"),), "2013-02-05T07:25:00Z"),
    "heart-rate/1.0/shouldPass/with-time-frame.json":
        (149546, ((149546, 60.0, "/min"),), "2013-02-05T07:25:00Z"),
    "heart-rate/1.0/shouldPass/with-user-notes.json":
        (149546, ((149546, 50.0, "/min"),), "2013-02-05T07:25:00Z"),
    "heart-rate/1.1/shouldPass/with-temporal-relationship-to-sleep.json":
        (149546, ((149546, 50.0, "/min"),), "2013-02-05T07:25:00Z"),
    **{f"blood-pressure/{v}/shouldPass/{name}.json": (150020, (
        (150021, systolic, "mm[Hg]"), (150022, 60.0, "mm[Hg]")), time)
       for v, name, systolic, time in (
           ("1.0", "blood-pressure-only", 160.0, NO_TIME),
           ("1.0", "with-date-time-time-frame", 160.0, "2013-02-05T07:25:00Z"),
           ("1.0", "with-descriptive-statistic", 160.0, "2013-06-05T07:25:00Z"),
           ("1.0", "with-everything", 100.0, "2013-06-05T07:25:00Z"),
           ("1.0", "with-position", 160.0, NO_TIME),
           ("1.0", "with-user-notes", 160.0, NO_TIME),
           ("2.0", "blood-pressure-only", 160.0, NO_TIME),
           ("2.0", "with-descriptive-statistic", 160.0, "2013-06-05T07:25:00Z"),
           ("2.0", "with-posture", 160.0, NO_TIME),
           ("3.0", "blood-pressure-only", 115.0, "2020-02-05T07:25:00-08:00"),
           ("3.0", "with-descriptive-statistic", 160.0, "2020-02-12T07:00:00-08:00"),
           ("3.0", "with-posture-and-location", 140.0, "2020-02-05T07:25:00-08:00"),
           ("3.1", "with-posture-location-pa-relation", 125.0, "2020-02-05T07:25:00-08:00"))},
    **{f"body-temperature/{v}/shouldPass/{name}.json":
       (150364, ((150364, (fahrenheit - 32) * 5 / 9, "Cel"),), time)
       for v, name, fahrenheit, time in (
           ("1.0", "valid-temperature-with-statistic", 96.5, "2015-02-06T06:00:00Z"),
           ("1.0", "valid-temperature", 97, "2013-02-05T07:25:00Z"),
           ("2.0", "basal-temperature", 96.5, "2013-02-05T06:25:00Z"),
           ("2.0", "valid-temperature-with-statistic", 96.5, "2015-02-06T06:00:00Z"),
           ("2.0", "valid-temperature", 97, "2013-02-05T07:25:00Z"),
           ("3.0", "basal-temperature", 96.5, "2013-02-05T06:25:00Z"),
           ("3.0", "valid-temperature-with-statistic", 96.5, "2020-02-06T06:00:00-08:00"),
           ("3.0", "valid-temperature", 97, "2013-02-05T07:25:00Z"))},
    # A date and "evening": the end of the evening, flagged as inferred (below).
    "blood-pressure/1.0/shouldPass/with-time-frame.json":
        (150020, ((150021, 160.0, "mm[Hg]"), (150022, 60.0, "mm[Hg]")), "2013-02-06T00:00:00Z"),
    "oxygen-saturation/1.0/shouldPass/saturation-only.json":
        (150456, ((150456, 95.0, "%"),), "2013-02-05T07:25:00Z"),
    "oxygen-saturation/1.0/shouldPass/with-oxygen.json":
        (150456, ((150456, 95.0, "%"),), "2013-02-05T07:25:00Z"),
    "body-weight/3.0/shouldPass/body-weight-only.json":
        (188736, ((188736, 50.0, "kg"),), "2020-02-05T09:45:00-08:00"),
    "body-weight/3.0/shouldPass/with-descriptive-statistic.json":
        (188736, ((188736, 49.5, "kg"),), "2020-03-05T10:40:00-08:00"),
    "blood-pressure/4.0/shouldPass/blood-pressure-only.json":
        (150020, ((150021, 115.0, "mm[Hg]"), (150022, 60.0, "mm[Hg]")),
         "2020-02-05T07:25:00-08:00"),
    "blood-pressure/4.0/shouldPass/with-descriptive-statistic.json":
        (150020, ((150021, 160.0, "mm[Hg]"), (150022, 60.0, "mm[Hg]")),
         "2020-02-12T07:00:00-08:00"),
    "blood-pressure/4.0/shouldPass/with-posture-and-location.json":
        (150020, ((150021, 140.0, "mm[Hg]"), (150022, 60.0, "mm[Hg]")),
         "2020-02-05T07:25:00-08:00"),
    "blood-pressure/4.0/shouldPass/with-posture-location-relation.json":
        (150020, ((150021, 125.0, "mm[Hg]"), (150022, 60.0, "mm[Hg]")),
         "2020-02-05T07:25:00-08:00"),
    "body-temperature/4.0/shouldPass/basal-temperature.json":
        (150364, ((150364, (96.5 - 32) * 5 / 9, "Cel"),), "2023-02-05T06:25:00Z"),
    "body-temperature/4.0/shouldPass/valid-temperature-with-statistic.json":
        (150364, ((150364, (96.5 - 32) * 5 / 9, "Cel"),), "2020-03-06T06:00:00-08:00"),
    "body-temperature/4.0/shouldPass/valid-temperature.json":
        (150364, ((150364, (97 - 32) * 5 / 9, "Cel"),), "2023-02-05T07:25:00+01:00"),
    "heart-rate/2.0/shouldPass/with-descriptive-statistic.json":
        (149546, ((149546, 50.0, "/min"),), "2020-02-06T06:00:00+01:00"),
    "heart-rate/2.0/shouldPass/with-temporal-relationship-to-sleep.json":
        (149546, ((149546, 67.5, "/min"),), "2020-02-05T07:25:00-08:00"),
    "oxygen-saturation/2.0/shouldPass/saturation-only.json":
        (150456, ((150456, 95.0, "%"),), "2013-02-05T07:25:00-08:00"),
    "oxygen-saturation/2.0/shouldPass/saturation-with-statistics.json":
        (150456, ((150456, 93.0, "%"),), "2020-02-06T06:00:00+01:00"),
    "oxygen-saturation/2.0/shouldPass/with-oxygen.json":
        (150456, ((150456, 95.0, "%"),), "2013-02-05T07:25:00Z"),
}

# The field each shouldFail file must be rejected for.
EXPECTED_FAIL: dict[str, str] = {
    **{f"body-weight/{v}/shouldFail/{name}": field for v in ("1.0", "2.0") for name, field in (
        ("empty-document.json", "body_weight"),
        ("invalid-time-frame.json", "effective_time_frame"),
        ("invalid-time-interval.json", "effective_time_frame.time_interval"),
        ("invalid-unit.json", "body_weight.unit"),
        ("missing-body-weight-unit.json", "body_weight.unit"),
        ("missing-body-weight-value.json", "body_weight.value"))},
    # In 1.0 this file also has a wrong unit ("km"), found first.
    "body-weight/1.0/shouldFail/invalid-descriptive-statistic.json": "body_weight.unit",
    "body-weight/2.0/shouldFail/invalid-descriptive-statistic.json": "descriptive_statistic",
    **{f"blood-pressure/{v}/shouldFail/empty-document.json": "systolic_blood_pressure"
       for v in ("1.0", "2.0", "3.0")},
    **{f"body-temperature/{v}/shouldFail/{name}": field for v in ("1.0", "2.0", "3.0")
       for name, field in (("empty-document.json", "body_temperature"),
                           ("invalid-unit.json", "body_temperature.unit"))},
    "body-temperature/3.0/shouldFail/missing-effective-time-frame.json": "effective_time_frame",
    "blood-pressure/2.0/shouldFail/invalid-unit.json": "systolic_blood_pressure.unit",
    "blood-pressure/3.0/shouldFail/invalid-unit.json": "systolic_blood_pressure.unit",
    "blood-pressure/3.1/shouldFail/invalid-pa-value.json":
        "temporal_relationship_to_physical_activity",
    "single-medication-dose-taken/1.0/shouldFail/missing-time-frame.json":
        "effective_time_frame",
    "heart-rate/1.0/shouldFail/empty-document.json": "heart_rate",
    "heart-rate/1.0/shouldFail/incorrect-unit.json": "heart_rate.unit",
    "oxygen-saturation/1.0/shouldFail/invalid-oxygen-unit.json":
        "supplemental_oxygen_flow_rate.unit",
    "oxygen-saturation/1.0/shouldFail/invalid-unit.json": "oxygen_saturation.unit",
    "blood-pressure/4.0/shouldFail/empty-document.json": "systolic_blood_pressure",
    "blood-pressure/4.0/shouldFail/invalid-pa-value.json":
        "temporal_relationship_to_physical_activity",
    "blood-pressure/4.0/shouldFail/invalid-timeframe-format.json":
        "effective_time_frame.time_interval",
    "blood-pressure/4.0/shouldFail/invalid-unit.json": "systolic_blood_pressure.unit",
    "body-temperature/4.0/shouldFail/empty-document.json": "body_temperature",
    "body-temperature/4.0/shouldFail/invalid-unit.json": "body_temperature.unit",
    "body-temperature/4.0/shouldFail/missing-effective-time-frame.json": "effective_time_frame",
    "body-weight/3.0/shouldFail/empty-document.json": "body_weight",
    "body-weight/3.0/shouldFail/invalid-descriptive-statistic.json": "descriptive_statistic",
    "body-weight/3.0/shouldFail/invalid-time-frame.json": "effective_time_frame",
    "body-weight/3.0/shouldFail/invalid-time-interval.json": "effective_time_frame.time_interval",
    "body-weight/3.0/shouldFail/invalid-unit.json": "body_weight.unit",
    "body-weight/3.0/shouldFail/missing-body-weight-unit.json": "body_weight.unit",
    "body-weight/3.0/shouldFail/missing-body-weight-value.json": "body_weight.value",
    "geoposition/1.0/shouldFail/invalid-plane-angle-value.json": "longitude.value",
    "geoposition/1.0/shouldFail/missing-longitude.json": "longitude",
    "heart-rate/2.0/shouldFail/empty-document.json": "heart_rate",
    "heart-rate/2.0/shouldFail/incorrect-unit.json": "heart_rate.unit",
    "heart-rate/2.0/shouldFail/missing-effective-time-frame.json": "effective_time_frame",
    "oxygen-saturation/2.0/shouldFail/invalid-oxygen-unit.json":
        "supplemental_oxygen_flow_rate.unit",
    "oxygen-saturation/2.0/shouldFail/invalid-unit.json": "oxygen_saturation.unit",
    "oxygen-saturation/2.0/shouldFail/missing-effective-time-frame.json": "effective_time_frame",
}


def test_corpus_is_fully_covered() -> None:
    passing = {_id(p) for p in _files("shouldPass") if not _not_a_reading(p)}
    assert passing == set(EXPECTED_PASS)
    assert {_id(p) for p in _files("shouldFail")} == set(EXPECTED_FAIL)


def _not_a_reading(path: Path) -> bool:
    return "geoposition" in str(path) or "medication" in str(path)


@pytest.mark.parametrize("path", [p for p in _files("shouldPass") if not _not_a_reading(p)],
                         ids=_id)
def test_should_pass_becomes_reading(path: Path) -> None:
    parsed = omh.parse(path.read_bytes(), device_id=DEVICE, received_at=RECEIVED,
                       schema=_schema_of(path))
    code, components, time = EXPECTED_PASS[_id(path)]
    assert parsed.rejections == []
    [event] = parsed.events
    assert isinstance(event, Reading)
    assert event.code == code
    assert event.kind == codes.metric(code).kind  # type: ignore[union-attr]
    assert [(q.code, q.unit) for q in event.values] == [(c, u) for c, _, u in components]
    assert [q.value for q in event.values] == pytest.approx([v for _, v, _ in components])
    assert event.measured_at == _at(time)
    assert event.measured_at.tzinfo is UTC
    assert event.received_at == RECEIVED
    assert event.source == "omh"
    assert event.device_id == DEVICE
    if event.measured_at.year < 2015:
        assert Flag.CLOCK_IMPLAUSIBLE in event.flags
    part_of_day = _id(path) == "blood-pressure/1.0/shouldPass/with-time-frame.json"
    assert (Flag.TIME_INFERRED in event.flags) == (time == NO_TIME or part_of_day)
    if "temperature" in _id(path):
        assert Flag.CONVERTED_UNIT in event.flags


@pytest.mark.parametrize("path", sorted(CONFORMANCE.glob("geoposition/*/shouldPass/*.json")),
                         ids=_id)
def test_should_pass_geoposition_becomes_position_fix(path: Path) -> None:
    parsed = omh.parse(path.read_bytes(), device_id=DEVICE, received_at=RECEIVED,
                       schema=_schema_of(path))
    [event] = parsed.events
    assert isinstance(event, PositionFix)
    assert event.position.lat == pytest.approx(40.0596923828125)
    assert event.position.lon == pytest.approx(-105.21440124511719)
    assert event.measured_at == _at("2013-02-05T07:25:00Z")
    # 2013 predates every device in the fleet: flagged, not dropped.
    assert event.flags == (Flag.CLOCK_IMPLAUSIBLE,)
    assert event.event_id == event_id(DEVICE, "position", event.measured_at)


@pytest.mark.parametrize("path", sorted(CONFORMANCE.glob(
    "single-medication-dose-taken/*/shouldPass/*.json")), ids=_id)
def test_should_pass_dose_taken_becomes_a_medication_event(path: Path) -> None:
    parsed = omh.parse(path.read_bytes(), device_id=DEVICE, received_at=RECEIVED,
                       schema=_schema_of(path))
    [event] = parsed.events
    assert isinstance(event, DeviceEvent)
    assert (event.event_type, event.kind) == ("dose_taken", Kind.MEDICATION)
    assert event.measured_at == _at("2013-02-05T07:10:00Z")
    # Which medicine and how much are not kept (nor the patient's own words).
    assert b"Tenormin" not in msgspec.json.encode(event)


@pytest.mark.parametrize("path", _files("shouldFail"), ids=_id)
def test_should_fail_names_the_field(path: Path) -> None:
    with pytest.raises(AdapterError) as caught:
        omh.parse(path.read_bytes(), device_id=DEVICE, received_at=RECEIVED,
                  schema=_schema_of(path))
    assert caught.value.field == EXPECTED_FAIL[_id(path)]
    assert caught.value.reason


def _weight_point(version: str = "3.0", value: float = 72.4) -> dict[str, Any]:
    return {
        "header": {"id": "a6d7", "creation_date_time": "2026-01-01T08:00:00Z",
                   "schema_id": {"namespace": "omh", "name": "body-weight", "version": version}},
        "body": {"body_weight": {"value": value, "unit": "kg"},
                 "effective_time_frame": {"date_time": "2025-12-31T07:58:00+01:00"}},
    }


def test_full_data_point_uses_header_schema() -> None:
    parsed = _parse(_weight_point())
    [event] = parsed.events
    assert isinstance(event, Reading)
    assert event.values[0].value == 72.4
    measured = datetime(2025, 12, 31, 6, 58, tzinfo=UTC)
    assert event.event_id == event_id(DEVICE, "188736", measured)
    assert event.flags == ()


def test_unsupported_version_in_header() -> None:
    with pytest.raises(AdapterError) as caught:
        _parse(_weight_point(version="4.0"))
    assert caught.value.field == "header.schema_id.version"
    assert "unsupported schema version" in caught.value.reason


def test_unsupported_version_from_caller() -> None:
    with pytest.raises(AdapterError) as caught:
        _parse(_weight_point()["body"], schema="omh:body-weight:4.0")
    assert caught.value.field == "schema"
    assert "unsupported schema version" in caught.value.reason


def test_caller_schema_must_agree_with_header() -> None:
    with pytest.raises(AdapterError) as caught:
        _parse(_weight_point(), schema="omh:heart-rate:2.0")
    assert caught.value.field == "header.schema_id"


def test_bare_body_without_schema_is_refused() -> None:
    with pytest.raises(AdapterError) as caught:
        _parse(_weight_point()["body"])
    assert caught.value.field == "schema"


def test_error_paths_in_full_data_point_start_at_body() -> None:
    point = _weight_point()
    point["body"]["body_weight"]["unit"] = "stone"
    with pytest.raises(AdapterError) as caught:
        _parse(point)
    assert caught.value.field == "body.body_weight.unit"


def test_array_keeps_good_points_and_rejects_bad_ones() -> None:
    bad = _weight_point(value=900.0)
    parsed = _parse([_weight_point(), bad, {"not": "a data point"}])
    assert len(parsed.events) == 1
    assert [(r.index, r.field) for r in parsed.rejections] == [
        (1, "[1].body.body_weight.value"), (2, "[2]")]
    assert "physiologically impossible" in parsed.rejections[0].reason
    assert "900" not in parsed.rejections[0].reason


def test_resend_gives_same_event_id() -> None:
    first = _parse(_weight_point()).events[0]
    again = _parse(_weight_point()).events[0]
    assert first.event_id == again.event_id


def test_statistic_does_not_collide_with_spot_reading() -> None:
    body = {"heart_rate": {"value": 60, "unit": "beats/min"},
            "effective_time_frame": {"date_time": "2025-12-31T07:00:00Z"}}
    spot = _parse(body, schema="omh:heart-rate:2.0").events[0]
    body["descriptive_statistic"] = "average"
    average = _parse(body, schema="omh:heart-rate:2.0").events[0]
    assert spot.event_id != average.event_id


def test_interval_with_duration_ends_at_start_plus_duration() -> None:
    body = {"body_weight": {"value": 70, "unit": "lb"},
            "effective_time_frame": {"time_interval": {
                "start_date_time": "2025-12-30T07:00:00Z",
                "duration": {"value": 2, "unit": "h"}}}}
    [event] = _parse(body, schema="omh:body-weight:3.0").events
    assert isinstance(event, Reading)
    assert event.measured_at == datetime(2025, 12, 30, 9, 0, tzinfo=UTC)
    assert event.values[0].value == pytest.approx(70 * 0.45359237)
    assert Flag.CONVERTED_UNIT in event.flags


def test_interval_with_all_three_members_is_refused() -> None:
    body = {"body_weight": {"value": 70, "unit": "kg"},
            "effective_time_frame": {"time_interval": {
                "start_date_time": "2025-12-30T07:00:00Z",
                "end_date_time": "2025-12-30T09:00:00Z",
                "duration": {"value": 2, "unit": "h"}}}}
    with pytest.raises(AdapterError) as caught:
        _parse(body, schema="omh:body-weight:3.0")
    assert caught.value.field == "effective_time_frame.time_interval"


def test_future_clock_is_flagged() -> None:
    body = {"oxygen_saturation": {"value": 97, "unit": "%"},
            "effective_time_frame": {"date_time": "2027-01-01T00:00:00Z"}}
    [event] = _parse(body, schema="omh:oxygen-saturation:2.0").events
    assert event.flags == (Flag.CLOCK_IMPLAUSIBLE,)


def test_blood_pressure_systolic_below_diastolic() -> None:
    body = {"systolic_blood_pressure": {"value": 60, "unit": "mmHg"},
            "diastolic_blood_pressure": {"value": 90, "unit": "mmHg"},
            "effective_time_frame": {"date_time": "2025-12-31T07:00:00Z"}}
    with pytest.raises(AdapterError) as caught:
        _parse(body, schema="omh:blood-pressure:4.0")
    assert caught.value.field == "systolic_blood_pressure.value"


def test_geoposition_out_of_range_latitude() -> None:
    body = {"latitude": {"value": 91, "unit": "deg"}, "longitude": {"value": 11.9, "unit": "deg"},
            "effective_time_frame": {"date_time": "2025-12-31T07:00:00Z"},
            "accuracy": {"value": 12.5, "unit": "m"}}
    with pytest.raises(AdapterError) as caught:
        _parse(body, schema="omh:geoposition:1.0")
    assert caught.value.field == "latitude.value"
    body["latitude"] = {"value": 57.7, "unit": "deg"}
    [fix] = _parse(body, schema="omh:geoposition:1.0").events
    assert isinstance(fix, PositionFix)
    assert fix.position.accuracy_m == 12.5


def test_device_is_required() -> None:
    with pytest.raises(AdapterError) as caught:
        omh.parse(b"{}", device_id=None, received_at=RECEIVED, schema="omh:body-weight:3.0")
    assert caught.value.field == "device_id"


@pytest.mark.parametrize("payload", [b"", b"\xff\xfe", b"[" * 100_000, b"1e400", b"[]",
                                     b'{"body_weight":{"value":1' + b"0" * 400 + b',"unit":"kg"}}',
                                     b'{"body_weight":{"value":70,"unit":"kg"},'
                                     b'"effective_time_frame":{"date_time":'
                                     b'"0001-01-01T00:00:00+01:00"}}'])
def test_hostile_payloads_raise_adapter_error(payload: bytes) -> None:
    with pytest.raises(AdapterError):
        omh.parse(payload, device_id=DEVICE, received_at=RECEIVED, schema="omh:body-weight:3.0")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=30) | st.sampled_from(["kg", "mmHg", "%", "deg", "2025-12-31T07:00:00Z"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["header", "body", "schema_id", "name", "version", "namespace",
                         "body_weight", "value", "unit", "effective_time_frame", "date_time",
                         "time_interval", "start_date_time", "end_date_time", "duration",
                         "latitude", "longitude", "descriptive_statistic"]) | st.text(max_size=8),
        inner, max_size=5),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=300),
       schema=st.sampled_from([None, "omh:body-weight:3.0", "omh:geoposition:1.0", "x"]))
def test_any_bytes_raise_only_adapter_error(payload: bytes, schema: str | None) -> None:
    try:
        omh.parse(payload, device_id=DEVICE, received_at=RECEIVED, schema=schema)
    except AdapterError:
        pass


@settings(max_examples=300, deadline=None)
@given(doc=_json, schema=st.sampled_from(
    [None, *(f"omh:{n}:{min(v)}" for n, v in omh.SUPPORTED_SCHEMAS.items())]))
def test_any_json_raises_only_adapter_error(doc: Any, schema: str | None) -> None:
    try:
        parsed = _parse(doc, schema)
    except AdapterError:
        return
    for rejection in parsed.rejections:
        assert rejection.field


def test_a_date_and_part_of_day_is_placed_at_the_end_of_that_part_and_flagged() -> None:
    """Open mHealth's own time-frame-1.x (heart-rate 2.0 and the 1.x versions) allows a date
    and a part of the day; the IEEE 1752 time frame of the newer versions does not."""
    body = {"heart_rate": {"value": 58, "unit": "beats/min"},
            "effective_time_frame": {"time_interval": {"date": "2025-12-30",
                                                       "part_of_day": "evening"}}}
    [event] = _parse(body, schema="omh:heart-rate:2.0").events
    assert event.measured_at == datetime(2025, 12, 31, 0, 0, tzinfo=UTC)
    assert Flag.TIME_INFERRED in event.flags
    body["effective_time_frame"]["time_interval"]["part_of_day"] = "teatime"
    with pytest.raises(AdapterError) as caught:
        _parse(body, schema="omh:heart-rate:2.0")
    assert caught.value.field == "effective_time_frame.time_interval.part_of_day"
    weight = {"body_weight": {"value": 72.4, "unit": "kg"},
              "effective_time_frame": {"time_interval": {"date": "2025-12-30",
                                                         "part_of_day": "morning"}}}
    [event] = _parse(weight, schema="omh:body-weight:2.0").events
    assert event.measured_at == datetime(2025, 12, 30, 12, 0, tzinfo=UTC)
    with pytest.raises(AdapterError) as caught:
        _parse(weight, schema="omh:body-weight:3.0")
    assert caught.value.field == "effective_time_frame.time_interval"


def test_a_1x_data_point_without_a_time_frame_takes_its_header_creation_time() -> None:
    point = _weight_point(version="1.0")
    del point["body"]["effective_time_frame"]
    [event] = _parse(point).events
    assert event.measured_at == datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    assert Flag.TIME_INFERRED in event.flags
    # 2.0 and later require it.
    point["header"]["schema_id"]["version"] = "2.0"
    with pytest.raises(AdapterError) as caught:
        _parse(point)
    assert caught.value.field == "body.effective_time_frame"


def test_points_whose_time_is_inferred_keep_ids_of_their_own() -> None:
    points = []
    for n, kg in enumerate((70.1, 70.4, 70.2)):
        point = _weight_point(version="1.0", value=kg)
        del point["body"]["effective_time_frame"]
        point["header"]["id"] = f"point-{n}"
        points.append(point)
    parsed = _parse(points)
    assert len({e.event_id for e in parsed.events}) == 3
    assert _parse([points[0]]).events[0].event_id == parsed.events[0].event_id  # a resend


def test_two_medicines_taken_at_once_are_two_events() -> None:
    def dose(name: str) -> dict[str, Any]:
        return {"medication": {"generic_name": name, "strength": [{"value": 5, "unit": "mg"}]},
                "dose": {"value": 1, "unit": "tablet"},
                "effective_time_frame": {"date_time": "2025-12-30T08:00:00Z"}}
    first = _parse(dose("metoprolol"), schema="omh:single-medication-dose-taken:1.0")
    second = _parse(dose("furosemid"), schema="omh:single-medication-dose-taken:1.0")
    assert first.events[0].event_id != second.events[0].event_id


@pytest.mark.parametrize(("frame", "field"), [
    ({"time_interval": {"date": "9999-12-31", "part_of_day": "evening"}},
     "effective_time_frame.time_interval.date"),
    ({"time_interval": {"date": "2025-12-30", "part_of_day": "evening",
                        "start_date_time": "2025-12-30T18:00:00Z",
                        "end_date_time": "2025-12-30T20:00:00Z"}},
     "effective_time_frame.time_interval"),
    (None, "effective_time_frame"),
])
def test_old_time_frames_the_schema_refuses_are_refused(frame: Any, field: str) -> None:
    body = {"body_weight": {"value": 70, "unit": "kg"}, "effective_time_frame": frame}
    with pytest.raises(AdapterError) as caught:
        _parse(body, schema="omh:body-weight:1.0")
    assert caught.value.field.startswith(field)


def test_a_header_creation_time_that_is_no_time_refuses_the_point() -> None:
    point = _weight_point(version="1.0")
    point["header"]["creation_date_time"] = ["not", "a", "time"]
    with pytest.raises(AdapterError) as caught:
        _parse(point)
    assert caught.value.field == "header.creation_date_time"
