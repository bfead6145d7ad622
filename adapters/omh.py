"""Open mHealth data points (`application/json`, schemas from openmhealth/schemas).

Accepted payloads:

* a full data point, `{"header": {"schema_id": {"namespace": "omh", "name": "body-weight",
  "version": "3.0"}, ...}, "body": {...}}`;
* a bare body, when the caller knows the schema (an HTTP route, an MQTT topic) and passes
  `schema="omh:body-weight:3.0"`;
* a JSON array of full data points (what Open mHealth APIs return).

A single document is one item, so any error in it raises `AdapterError`. In an array each data
point stands alone: the good ones become events and each bad one becomes a `Rejection` carrying
its index.

Field names in errors are paths from the payload root: `body_weight.unit` for a bare body,
`body.body_weight.unit` for a data point, `[2].body.body_weight.unit` in an array.

Choices (docs/formats/omh.md says the same to integrators):

* Time: `date_time` as given; for a `time_interval` the **end** of the interval (given, or
  start + duration). A statistic over an interval is only known at its end, and routing by the
  end keeps a value computed after a device was reissued away from the old owner. Intervals whose
  end precedes their start are accepted as sent (the published test data has one); their end is
  still what we use.
* A date-time without an offset is UTC, as the IEEE 1752 date-time schema says.
* `descriptive_statistic` values (minimum, average, ...) become ordinary readings; the statistic
  goes into the event id so a daily minimum does not collide with a spot reading at the same time.
  The canonical model has no field for it yet (see the adapter report).
* `heart-rate` maps to 149546 MDC_PULS_RATE_NON_INV: Open mHealth does not say which sensor, and
  the non-invasive pulse rate is the generic code (the native format defaults to it too).
* Qualifiers the gateway does not store (posture, measurement location, relation to sleep or
  activity, oxygen therapy) are still validated against the schema's value sets, so a document
  the schema rejects is rejected here too, but they are not copied into events.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec

from adapters import codes, plausibility, units
from adapters.errors import AdapterError, Parsed
from adapters.events import (
    DeviceEvent,
    Event,
    Flag,
    Position,
    PositionFix,
    Quantity,
    Reading,
    event_id,
    utc,
)

SOURCE = "omh"
NAMESPACE = "omh"
MAX_DATA_POINTS = 1000

# Schema name -> the versions this adapter implements. Only versions whose shape was checked
# against the published test data are listed; others get "unsupported schema version".
SUPPORTED_SCHEMAS: Final[Mapping[str, frozenset[str]]] = {
    "body-weight": frozenset({"1.0", "2.0", "3.0"}),
    "blood-pressure": frozenset({"1.0", "2.0", "3.0", "3.1", "4.0"}),
    "oxygen-saturation": frozenset({"1.0", "2.0"}),
    "heart-rate": frozenset({"1.0", "1.1", "2.0"}),
    "body-temperature": frozenset({"1.0", "2.0", "3.0", "4.0"}),
    "geoposition": frozenset({"1.0"}),
    "single-medication-dose-taken": frozenset({"1.0"}),
}

# Value sets copied from the schemas (IEEE 1752.1 and omh), as data.
_STATISTICS = frozenset({
    "average", "count", "maximum", "median", "minimum", "standard deviation", "sum", "variance",
    "20th percentile", "80th percentile", "lower quartile", "upper quartile",
    "quartile deviation", "1st quintile", "2nd quintile", "3rd quintile", "4th quintile",
})
_PHYSICAL_ACTIVITY = frozenset({
    "at rest", "active", "before exercise", "after exercise", "during exercise",
})
_SLEEP = frozenset({"before sleeping", "during sleep", "on waking"})
_POSITION_DURING_MEASUREMENT = frozenset({"sitting", "lying down", "standing"})  # bp 1.0
_BODY_POSTURE_1X = _POSITION_DURING_MEASUREMENT | {"semi-recumbent"}  # omh body-posture-1.x
_BODY_LOCATION = frozenset({
    "left ankle", "right ankle", "left hip", "right hip", "left thigh", "right thigh",
    "left thorax", "middle left thorax", "left upper arm", "right upper arm", "left wrist",
    "right wrist",
})
_TEMPERATURE_LOCATION = frozenset({
    "axillary", "finger", "forehead", "oral", "rectal", "temporal artery", "toe", "tympanic",
    "wrist", "vagina",
})
_TEMPERATURE_LOCATION_1_0 = frozenset({
    "oral", "rectal", "vaginal", "axillary", "otic", "wrist", "chest", "temporal"})
# medication-dose-unit-1.x, as data.
_DOSE_UNITS: Final = frozenset({
    '%', 'AU', 'AU/mL', 'BAU', 'BAU/mL', 'BU', 'CCID_50', 'Ci', "D'ag'U", 'FFU', 'IU', 'IU/L',
    'IU/mL', 'L', 'Lf', 'LfU/mL', 'PFU', 'PNU', 'PNU/mL', 'TCID_50', 'U', "USP'U", 'X', 'bar',
    'bead', 'capsule', 'cellular sheet', 'cloth', 'cm^2', 'dL', 'disc', 'douche', 'drop', 'g',
    'globule', 'granule', 'gum', 'hp_C', 'hp_M', 'hp_Q', 'hp_X', 'kp_C', 'lozenge', 'mCi',
    'mCi/mL', 'mEq', 'mL', 'mU', 'mg', 'mg/actuat', 'mg/hr', 'mg/mL', 'mg/mg', 'mmol', 'mol',
    'ng', 'nmol', 'organisms', 'pastille', 'patch', 'pellet', 'pill', 'pouch', 'puff', 'ring',
    'salve', 'stick', 'strip', 'suppository', 'swab', 'tablet', 'tampon', 'tape', 'tbsp', 'tsp',
    'uCi', 'uL', 'ug', 'ug/mL', 'umol', 'unt', 'unt/mL', 'vial', 'wafer',
})
_POSITIONING_SYSTEMS = frozenset({"GPS", "GLONASS", "Galileo", "Beidou", "COMPASS", "IRNSS",
                                  "QZSS"})

# Open mHealth unit spellings (case-sensitive, as in the schemas) -> UCUM.
_MASS_UNITS: Final[Mapping[str, str]] = {
    "fg": "fg", "pg": "pg", "ng": "ng", "ug": "ug", "mg": "mg", "g": "g", "kg": "kg",
    "Metric Ton": "t", "gr": "[gr]", "oz": "[oz_av]", "lb": "[lb_av]", "Ton": "[ston_av]",
}
# units.py knows only g, kg and [lb_av] of these. Until it grows the rest (see the adapter
# report), the remaining mass units are converted here; none of them is a plausible body weight
# anyway, so plausibility rejects them after conversion.
_PRIVATE_TO_KG: Final[Mapping[str, float]] = {
    "fg": 1e-18, "pg": 1e-15, "ng": 1e-12, "ug": 1e-9, "mg": 1e-6, "t": 1000.0,
    "[gr]": 0.00006479891, "[oz_av]": 0.028349523125, "[ston_av]": 907.18474,
}
_PRESSURE_UNITS: Final[Mapping[str, str]] = {"mmHg": "mm[Hg]"}
_PERCENT_UNITS: Final[Mapping[str, str]] = {"%": "%"}
_RATE_UNITS: Final[Mapping[str, str]] = {"beats/min": "/min"}
_TEMPERATURE_UNITS: Final[Mapping[str, str]] = {"C": "Cel", "F": "[degF]", "K": "K"}
# "degree-decimal" is the spelling of plane-angle-unit-value before it settled on "deg".
_ANGLE_UNITS: Final[Mapping[str, str]] = {"deg": "deg", "degree-decimal": "deg"}
_LENGTH_UNITS: Final[Mapping[str, float]] = {"m": 1.0, "ft": 0.3048}
_FLOW_UNITS: Final[Mapping[str, str]] = {"L/min": "L/min"}
# Calendar units take their mean Gregorian length: a statistic over "1 Mo" is not meant to the
# second, and the result only places the reading in time.
_DURATION_SECONDS: Final[Mapping[str, float]] = {
    "ps": 1e-12, "ns": 1e-9, "us": 1e-6, "ms": 1e-3, "sec": 1.0, "min": 60.0, "h": 3600.0,
    "d": 86400.0, "wk": 604800.0, "Mo": 2629746.0, "yr": 31556952.0,
}

# Versions whose time frame is optional (1.x: a value with no time), and versions whose time
# frame is Open mHealth's own time-frame-1.x, whose interval may also be a date and a part of the
# day (the IEEE 1752 time frame of the newer versions dropped that).
_TIME_FRAME_OPTIONAL: Final = frozenset({
    ("body-weight", "1.0"), ("heart-rate", "1.0"), ("heart-rate", "1.1"),
    ("oxygen-saturation", "1.0"), ("blood-pressure", "1.0"), ("blood-pressure", "2.0"),
    ("body-temperature", "1.0"), ("body-temperature", "2.0")})
_PART_OF_DAY_ALLOWED: Final = frozenset({
    ("body-weight", "1.0"), ("body-weight", "2.0"), ("heart-rate", "1.0"), ("heart-rate", "1.1"),
    ("heart-rate", "2.0"), ("oxygen-saturation", "1.0"), ("oxygen-saturation", "2.0"),
    ("blood-pressure", "1.0"), ("blood-pressure", "2.0"), ("blood-pressure", "3.0"),
    ("blood-pressure", "3.1"), ("body-temperature", "1.0"), ("body-temperature", "2.0"),
    ("body-temperature", "3.0"), ("single-medication-dose-taken", "1.0")})
# Where a part of the day ends (the reading is placed at the end of its interval, as any other
# interval is), in hours after the date's midnight, UTC: a date without an offset is UTC.
_PART_OF_DAY_ENDS: Final[Mapping[str, int]] = {
    "night": 6, "morning": 12, "afternoon": 18, "evening": 24}
_FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})?")
_SCHEMA_ARG = re.compile(r"(?P<ns>[a-z0-9-]+):(?P<name>[a-z0-9-]+):(?P<version>[0-9A-Za-z.]+)")


@dataclass(frozen=True, slots=True)
class _Context:
    device_id: str
    received_at: datetime
    schema: tuple[str, str] = ("", "")  # (name, version) of the data point being read
    created_at: datetime | None = None  # its header's creation_date_time, when it has one
    point_id: str | None = None  # its header's id: tells apart points whose time is inferred


# --- entry point ---------------------------------------------------------------------------

def parse(payload: bytes, *, device_id: str | None, received_at: datetime,
          schema: str | None = None) -> Parsed:
    """Parse one Open mHealth payload sent by `device_id`, received at `received_at`.

    `schema` ("omh:<name>:<version>") is required for a bare body and, when given with a full
    data point, must agree with its header.
    """
    if device_id is None:
        raise AdapterError("device_id", "Open mHealth carries no device identity; the transport "
                           "must supply the authenticated device")
    ctx = _Context(device_id, utc(received_at))
    expected = _schema_argument(schema) if schema is not None else None
    doc = _decode(payload)
    if isinstance(doc, list):
        return _parse_array(doc, expected, ctx)
    return Parsed(events=_data_point(doc, expected, "", ctx))


def _decode(payload: bytes) -> Any:
    try:
        return msgspec.json.decode(payload)
    except (msgspec.MsgspecError, RecursionError, UnicodeDecodeError):
        raise AdapterError("$", "malformed JSON") from None


def _parse_array(docs: list[Any], expected: tuple[str, str] | None, ctx: _Context) -> Parsed:
    if not docs:
        raise AdapterError("$", "empty array; expected at least one data point")
    if len(docs) > MAX_DATA_POINTS:
        raise AdapterError("$", f"more than {MAX_DATA_POINTS} data points in one message")
    out = Parsed()
    for index, doc in enumerate(docs):
        prefix = f"[{index}]."
        try:
            if not isinstance(doc, dict) or "body" not in doc:
                raise AdapterError(f"[{index}]", "expected a data point with header and body")
            out.events.extend(_data_point(doc, expected, prefix, ctx))
        except AdapterError as err:
            out.rejections.append(err.rejection(index))
    return out


# --- schema identification -----------------------------------------------------------------

def _schema_argument(schema: str) -> tuple[str, str]:
    match = _SCHEMA_ARG.fullmatch(schema)
    if match is None:
        raise AdapterError("schema", "expected namespace:name:version, e.g. omh:body-weight:3.0")
    return _supported(match["ns"], match["name"], match["version"], "schema")


def _supported(namespace: str, name: str, version: str, field: str) -> tuple[str, str]:
    if namespace != NAMESPACE:
        raise AdapterError(field, f"unsupported schema namespace; expected {NAMESPACE}")
    versions = SUPPORTED_SCHEMAS.get(name)
    if versions is None:
        raise AdapterError(field, "unsupported schema; supported: "
                           + ", ".join(sorted(SUPPORTED_SCHEMAS)))
    if version not in versions:
        raise AdapterError(field, f"unsupported schema version for {name}; supported: "
                           + ", ".join(sorted(versions)))
    return name, version


def _header_schema(header: Any, prefix: str) -> tuple[str, str]:
    field = f"{prefix}header"
    if not isinstance(header, dict):
        raise AdapterError(field, "expected an object")
    schema_id = header.get("schema_id")
    field = f"{field}.schema_id"
    if not isinstance(schema_id, dict):
        raise AdapterError(field, "required: an object with namespace, name and version")
    parts: list[str] = []
    for key in ("namespace", "name", "version"):
        value = schema_id.get(key)
        if not isinstance(value, str) or not value:
            raise AdapterError(f"{field}.{key}", "required: a non-empty string")
        parts.append(value)
    namespace, name, version = parts
    if namespace != NAMESPACE:
        raise AdapterError(f"{field}.namespace", f"unsupported schema namespace; expected "
                           f"{NAMESPACE}")
    if name not in SUPPORTED_SCHEMAS:
        raise AdapterError(f"{field}.name", "unsupported schema; supported: "
                           + ", ".join(sorted(SUPPORTED_SCHEMAS)))
    return _supported(namespace, name, version, f"{field}.version")


def _data_point(doc: Any, expected: tuple[str, str] | None, prefix: str,
                ctx: _Context) -> list[Event]:
    if not isinstance(doc, dict):
        raise AdapterError(prefix.rstrip(".") or "$", "expected a JSON object")
    if "header" in doc or "body" in doc:
        schema = _header_schema(doc.get("header"), prefix)
        if expected is not None and schema != expected:
            raise AdapterError(f"{prefix}header.schema_id",
                               "does not match the schema this endpoint expects")
        body = doc.get("body")
        prefix = f"{prefix}body."
        if not isinstance(body, dict):
            raise AdapterError(prefix.rstrip("."), "required: a JSON object")
    else:
        if expected is None:
            raise AdapterError("schema", "a body without header needs the schema from the caller")
        schema, body = expected, doc
    found = doc.get("header")
    header: dict[str, Any] = found if isinstance(found, dict) else {}
    created = header.get("creation_date_time")
    created_at = (_date_time(created, f"{prefix.removesuffix('body.')}header.creation_date_time")
                  if created is not None else None)
    point_id = header.get("id") if isinstance(header.get("id"), str) else None
    return _MAPPERS[schema[0]](body, prefix, dataclasses.replace(
        ctx, schema=schema, created_at=created_at, point_id=point_id))


# --- field helpers -------------------------------------------------------------------------

def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AdapterError(field, "expected a number")
    try:
        number = float(value)
    except OverflowError:
        raise AdapterError(field, "number out of range") from None
    if not math.isfinite(number):
        raise AdapterError(field, "value is not a finite number")
    return number


def _unit_value(body: Mapping[str, Any], key: str, prefix: str,
                allowed: Mapping[str, Any]) -> tuple[float, str]:
    """A `{value, unit}` object: the value and the schema's spelling of its unit."""
    field = f"{prefix}{key}"
    item = body.get(key)
    if item is None:
        raise AdapterError(field, "required")
    if not isinstance(item, dict):
        raise AdapterError(field, "expected an object with value and unit")
    if "value" not in item:
        raise AdapterError(f"{field}.value", "required")
    value = _number(item["value"], f"{field}.value")
    unit = item.get("unit")
    if unit is None:
        raise AdapterError(f"{field}.unit", "required")
    if not isinstance(unit, str) or unit not in allowed:
        raise AdapterError(f"{field}.unit", "unsupported unit; expected one of "
                           + ", ".join(allowed))
    return value, unit


def _optional_unit_value(body: Mapping[str, Any], key: str, prefix: str,
                         allowed: Mapping[str, Any]) -> tuple[float, str] | None:
    if key not in body:
        return None
    return _unit_value(body, key, prefix, allowed)


def _enum(body: Mapping[str, Any], key: str, allowed: frozenset[str], prefix: str) -> str | None:
    if key not in body:
        return None
    value = body[key]
    if not isinstance(value, str) or value not in allowed:
        raise AdapterError(f"{prefix}{key}", "not one of the values the schema allows")
    return value


def _string(body: Mapping[str, Any], key: str, prefix: str) -> None:
    if key in body and not isinstance(body[key], str):
        raise AdapterError(f"{prefix}{key}", "expected a string")


def _integer(body: Mapping[str, Any], key: str, prefix: str) -> None:
    value = body.get(key)
    if key in body and (isinstance(value, bool) or not isinstance(value, int)):
        raise AdapterError(f"{prefix}{key}", "expected an integer")


def _date_time(value: Any, field: str) -> datetime:
    if not isinstance(value, str) or _RFC3339.fullmatch(value) is None:
        raise AdapterError(field, "expected an RFC 3339 date-time")
    try:
        return utc(datetime.fromisoformat(value.upper().replace(" ", "T")))
    except (ValueError, OverflowError):
        raise AdapterError(field, "not a valid date-time") from None


def _duration(item: Mapping[str, Any], prefix: str) -> timedelta:
    value, unit = _unit_value(item, "duration", prefix, _DURATION_SECONDS)
    if value < 0:
        raise AdapterError(f"{prefix}duration.value", "must not be negative")
    try:
        return timedelta(seconds=value * _DURATION_SECONDS[unit])
    except OverflowError:
        raise AdapterError(f"{prefix}duration.value", "duration out of range") from None


_INTERVAL_SHAPES = (
    frozenset({"start_date_time", "end_date_time"}),
    frozenset({"start_date_time", "duration"}),
    frozenset({"end_date_time", "duration"}),
)


def _part_of_day(interval: Mapping[str, Any], field: str) -> datetime:
    """`{date, part_of_day}` (Open mHealth time-interval-1.x): the end of that part."""
    date, part = interval.get("date"), interval.get("part_of_day")
    if not isinstance(date, str) or _FULL_DATE.fullmatch(date) is None:
        raise AdapterError(f"{field}.date", "expected a date, YYYY-MM-DD")
    if not isinstance(part, str) or part not in _PART_OF_DAY_ENDS:
        raise AdapterError(f"{field}.part_of_day", "expected morning, afternoon, evening or "
                           "night")
    try:
        day = datetime.fromisoformat(date).replace(tzinfo=UTC)
    except ValueError:
        raise AdapterError(f"{field}.date", "not a valid date") from None
    try:
        return day + timedelta(hours=_PART_OF_DAY_ENDS[part])
    except OverflowError:
        raise AdapterError(f"{field}.date", "date out of range") from None


def _time_interval(interval: Any, field: str, *, part_of_day: bool = False) -> datetime:
    if not isinstance(interval, dict):
        raise AdapterError(field, "expected an object")
    if part_of_day and ("date" in interval or "part_of_day" in interval):
        if interval.keys() & {"start_date_time", "end_date_time", "duration"}:
            raise AdapterError(field, "either a date and part_of_day, or date-times and a "
                               "duration, not both")
        return _part_of_day(interval, field)
    present = frozenset(k for k in ("start_date_time", "end_date_time", "duration")
                        if k in interval)
    if present not in _INTERVAL_SHAPES:
        raise AdapterError(field, "expected exactly two of start_date_time, end_date_time "
                           "and duration")
    start = (_date_time(interval["start_date_time"], f"{field}.start_date_time")
             if "start_date_time" in present else None)
    duration = _duration(interval, f"{field}.") if "duration" in present else None
    if "end_date_time" in present or start is None or duration is None:
        return _date_time(interval["end_date_time"], f"{field}.end_date_time")
    try:
        return start + duration
    except OverflowError:
        raise AdapterError(f"{field}.duration", "interval ends out of range") from None


def _time_frame(body: Mapping[str, Any], prefix: str, ctx: _Context) -> tuple[datetime, bool]:
    """When it was measured, and whether the gateway had to infer it: a version whose time
    frame is optional and has none (the header's creation time, else the receive time), or a
    date with a part of the day."""
    field = f"{prefix}effective_time_frame"
    frame = body.get("effective_time_frame")
    schema = ctx.schema
    if "effective_time_frame" not in body:
        if schema in _TIME_FRAME_OPTIONAL:
            return ctx.created_at or ctx.received_at, True
        raise AdapterError(field, "required")
    if not isinstance(frame, dict):
        raise AdapterError(field, "expected an object")
    has_point, has_interval = "date_time" in frame, "time_interval" in frame
    if has_point == has_interval:
        raise AdapterError(field, "expected exactly one of date_time and time_interval")
    if has_point:
        return _date_time(frame["date_time"], f"{field}.date_time"), False
    interval = frame["time_interval"]
    inferred = isinstance(interval, dict) and "part_of_day" in interval
    return _time_interval(interval, f"{field}.time_interval",
                          part_of_day=schema in _PART_OF_DAY_ALLOWED), inferred


def _to_canonical(value: float, ucum: str, metric: codes.Metric, field: str) -> tuple[float, bool]:
    factor = _PRIVATE_TO_KG.get(ucum) if metric.ucum == "kg" else None
    if factor is not None:
        return value * factor, True
    return units.to_canonical(value, ucum, metric.ucum, field)


# --- event construction --------------------------------------------------------------------

def _flags(measured_at: datetime, ctx: _Context, converted: bool,
           inferred: bool = False) -> tuple[str, ...]:
    flags: list[str] = []
    if not plausibility.clock_plausible(measured_at, ctx.received_at):
        flags.append(Flag.CLOCK_IMPLAUSIBLE)
    if converted:
        flags.append(Flag.CONVERTED_UNIT)
    if inferred:
        flags.append(Flag.TIME_INFERRED)
    return tuple(flags)


def _statistic_key(statistic: str | None) -> str:
    return f"statistic:{statistic}" if statistic else ""


def _inferred_key(inferred: bool, ctx: _Context, what: object) -> str:
    """Points whose time the gateway inferred may share it (one header time, one receive time,
    one part of a day): their ids are told apart by the data point's id, or by what they say."""
    if not inferred:
        return ""
    return f"|point:{ctx.point_id}" if ctx.point_id else f"|content:{what!r}"


def _reading(metric: codes.Metric, values: tuple[Quantity, ...], measured_at: datetime,
             statistic: str | None, converted: bool, ctx: _Context,
             inferred: bool = False) -> Reading:
    return Reading(
        event_id=event_id(ctx.device_id, str(metric.code), measured_at,
                          _statistic_key(statistic) + _inferred_key(inferred, ctx, values)),
        device_id=ctx.device_id, code=metric.code, kind=metric.kind, values=values,
        measured_at=measured_at, received_at=ctx.received_at, source=SOURCE,
        flags=_flags(measured_at, ctx, converted, inferred),
    )


@dataclass(frozen=True, slots=True)
class _Single:
    """A schema with one measured value."""

    metric: codes.Metric
    key: str
    units: Mapping[str, str]
    qualifiers: Mapping[str, frozenset[str]]

    def __call__(self, body: Mapping[str, Any], prefix: str, ctx: _Context) -> list[Event]:
        raw, unit = _unit_value(body, self.key, prefix, self.units)
        measured_at, inferred = _time_frame(body, prefix, ctx)
        statistic = _enum(body, "descriptive_statistic", _STATISTICS, prefix)
        for key, allowed in _QUALIFIERS_OF_VERSION.get(ctx.schema, self.qualifiers).items():
            _enum(body, key, allowed, prefix)
        _extra_checks(self.metric, body, prefix, ctx.schema)
        value, converted = _to_canonical(raw, self.units[unit], self.metric,
                                         f"{prefix}{self.key}.unit")
        plausibility.check_value(self.metric.code, value, f"{prefix}{self.key}.value")
        values = (Quantity(self.metric.code, value, self.metric.ucum),)
        return [_reading(self.metric, values, measured_at, statistic, converted, ctx,
                         inferred)]


def _extra_checks(metric: codes.Metric, body: Mapping[str, Any], prefix: str,
                  schema: tuple[str, str]) -> None:
    if schema in (("heart-rate", "1.0"), ("heart-rate", "1.1")):
        _string(body, "user_notes", prefix)
    # Oxygen saturation carries a flow-rate quantity we validate but do not store.
    if metric is codes.SPO2:
        _optional_unit_value(body, "supplemental_oxygen_flow_rate", prefix, _FLOW_UNITS)


def _blood_pressure(body: Mapping[str, Any], prefix: str, ctx: _Context) -> list[Event]:
    systolic, sys_unit = _unit_value(body, "systolic_blood_pressure", prefix, _PRESSURE_UNITS)
    diastolic, dia_unit = _unit_value(body, "diastolic_blood_pressure", prefix, _PRESSURE_UNITS)
    measured_at, inferred = _time_frame(body, prefix, ctx)
    statistic = _enum(body, "descriptive_statistic", _STATISTICS, prefix)
    version = ctx.schema[1]
    if version in ("3.1", "4.0"):  # where the schema defines them
        _enum(body, "temporal_relationship_to_physical_activity", _PHYSICAL_ACTIVITY, prefix)
    if version in ("3.0", "3.1", "4.0"):
        _enum(body, "measurement_location", _BODY_LOCATION, prefix)
    if ctx.schema[1] == "1.0":
        _enum(body, "position_during_measurement", _POSITION_DURING_MEASUREMENT, prefix)
    elif ctx.schema[1] != "4.0":
        _enum(body, "body_posture", _BODY_POSTURE_1X, prefix)
    else:
        # IEEE 1752 body-posture's value set was not available to check; any string.
        _string(body, "body_posture", prefix)
    if ctx.schema[1] in ("1.0", "2.0"):  # where the schema defines it
        _string(body, "user_notes", prefix)
    parts: list[Quantity] = []
    converted = False
    for key, raw, unit, metric in (
            ("systolic_blood_pressure", systolic, sys_unit, codes.BP_SYSTOLIC),
            ("diastolic_blood_pressure", diastolic, dia_unit, codes.BP_DIASTOLIC)):
        value, conv = _to_canonical(raw, _PRESSURE_UNITS[unit], metric, f"{prefix}{key}.unit")
        converted |= conv
        plausibility.check_value(metric.code, value, f"{prefix}{key}.value")
        parts.append(Quantity(metric.code, value, metric.ucum))
    plausibility.check_blood_pressure(parts[0].value, parts[1].value,
                                      f"{prefix}systolic_blood_pressure.value")
    return [_reading(codes.BP_COMPOUND, tuple(parts), measured_at, statistic, converted, ctx,
                     inferred)]


def _geoposition(body: Mapping[str, Any], prefix: str, ctx: _Context) -> list[Event]:
    lat, _ = _unit_value(body, "latitude", prefix, _ANGLE_UNITS)
    lon, _ = _unit_value(body, "longitude", prefix, _ANGLE_UNITS)
    if not -90.0 <= lat <= 90.0:
        raise AdapterError(f"{prefix}latitude.value", "outside -90..90 degrees")
    if not -180.0 <= lon <= 180.0:
        raise AdapterError(f"{prefix}longitude.value", "outside -180..180 degrees")
    measured_at, _ = _time_frame(body, prefix, ctx)
    statistic = _enum(body, "descriptive_statistic", _STATISTICS, prefix)
    _enum(body, "positioning_system", _POSITIONING_SYSTEMS, prefix)
    _integer(body, "number_of_satellites_in_view", prefix)
    _integer(body, "number_of_satellites_in_fix", prefix)
    _optional_unit_value(body, "elevation", prefix, _LENGTH_UNITS)
    accuracy = _optional_unit_value(body, "accuracy", prefix, {"m": 1.0})
    if accuracy is not None and accuracy[0] < 0:
        raise AdapterError(f"{prefix}accuracy.value", "must not be negative")
    position = Position(lat, lon, accuracy[0] if accuracy else None)
    return [PositionFix(
        event_id=event_id(ctx.device_id, "position", measured_at, _statistic_key(statistic)),
        device_id=ctx.device_id, position=position, measured_at=measured_at,
        received_at=ctx.received_at, source=SOURCE, flags=_flags(measured_at, ctx, False),
    )]


# Versions whose qualifiers differ from the newest version's (the mapper's own).
_QUALIFIERS_OF_VERSION: Final[Mapping[tuple[str, str], Mapping[str, frozenset[str]]]] = {
    ("heart-rate", "1.0"): {"temporal_relationship_to_physical_activity": _PHYSICAL_ACTIVITY},
    ("body-temperature", "1.0"): {"measurement_location": _TEMPERATURE_LOCATION_1_0},
}

def _dose_taken(body: Mapping[str, Any], prefix: str, ctx: _Context) -> list[Event]:
    """A medicine robot's or app's report that a dose was taken: a MEDICATION event
    `dose_taken`, as the other medicine formats give. Which medicine and how much are checked
    against the schema but not kept (the canonical event has no place for them, and the
    huvudman's own systems hold the prescription)."""
    field = f"{prefix}medication"
    medication = body.get("medication")
    if medication is None:
        raise AdapterError(field, "required")
    if not isinstance(medication, dict):
        raise AdapterError(field, "expected an object")
    if not any(isinstance(medication.get(k), str) and medication[k]
               for k in ("generic_name", "trade_name")):
        raise AdapterError(f"{field}.generic_name", "required: generic_name or trade_name")
    if not isinstance(medication.get("strength"), list):
        raise AdapterError(f"{field}.strength", "required: a list of value and unit")
    for name in ("generic_name", "trade_name"):
        if name in medication and not isinstance(medication[name], str):
            raise AdapterError(f"{field}.{name}", "expected a string")
    for i, strength in enumerate(medication["strength"]):
        if not isinstance(strength, dict):
            raise AdapterError(f"{field}.strength[{i}]", "expected an object with value and unit")
        _number(strength.get("value"), f"{field}.strength[{i}].value")
        if not isinstance(strength.get("unit"), str):
            raise AdapterError(f"{field}.strength[{i}].unit", "required: a string")
    value, unit = _unit_value(body, "dose", prefix, dict.fromkeys(sorted(_DOSE_UNITS)))
    _string(body, "reason_dose_taken_not_as_prescribed", prefix)
    measured_at, inferred = _time_frame(body, prefix, ctx)
    # Two medicines taken at one time are two events: the medicine and dose tell them apart.
    which = f"{medication.get('generic_name') or medication.get('trade_name')}|{value}{unit}"
    return [DeviceEvent(
        event_id=event_id(ctx.device_id, "omh:dose_taken", measured_at, which),
        device_id=ctx.device_id, event_type="dose_taken", kind=codes.Kind.MEDICATION,
        measured_at=measured_at, received_at=ctx.received_at, source=SOURCE,
        flags=_flags(measured_at, ctx, False, inferred))]


_Mapper = Callable[[Mapping[str, Any], str, _Context], list[Event]]

_MAPPERS: Final[Mapping[str, _Mapper]] = {
    "body-weight": _Single(codes.WEIGHT, "body_weight", _MASS_UNITS, {}),
    "heart-rate": _Single(codes.PULSE_CUFF, "heart_rate", _RATE_UNITS, {
        "temporal_relationship_to_physical_activity": _PHYSICAL_ACTIVITY,
        "temporal_relationship_to_sleep": _SLEEP,
    }),
    "oxygen-saturation": _Single(codes.SPO2, "oxygen_saturation", _PERCENT_UNITS, {
        "system": frozenset({"peripheral capillary"}),
        "oxygen_therapy_mode_of_administration": frozenset({"nasal cannula"}),
        "measurement_method": frozenset({"pulse oximetry"}),
    }),
    "body-temperature": _Single(codes.BODY_TEMPERATURE, "body_temperature", _TEMPERATURE_UNITS, {
        "measurement_location": _TEMPERATURE_LOCATION,
        "temporal_relationship_to_sleep": _SLEEP,
    }),
    "blood-pressure": _blood_pressure,
    "geoposition": _geoposition,
    "single-medication-dose-taken": _dose_taken,
}
