"""Physiological and clock plausibility: what no real device reading can be.

Limits are deliberately wide: they catch broken devices and typing errors, not illness. Clinical
attention thresholds (SpO2 < 90 %, weight gain) belong to the huvudman's rules, not here.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from adapters import codes
from adapters.errors import AdapterError
from adapters.events import utc

# Canonical-unit ranges, inclusive.
RANGES: dict[int, tuple[float, float]] = {
    codes.WEIGHT.code: (2.0, 450.0),
    codes.BMI.code: (8.0, 120.0),
    codes.BP_SYSTOLIC.code: (40.0, 300.0),
    codes.BP_DIASTOLIC.code: (20.0, 220.0),
    codes.BP_MEAN.code: (25.0, 250.0),
    codes.PULSE_CUFF.code: (20.0, 300.0),
    codes.PULSE_OXIMETER.code: (20.0, 300.0),
    codes.SPO2.code: (30.0, 100.0),
    codes.BODY_TEMPERATURE.code: (25.0, 45.0),
    # Meters read about 0.6-33 mmol/L; beyond this it is a unit or device error.
    codes.GLUCOSE_CAPILLARY.code: (0.5, 50.0),
    codes.GLUCOSE_PLASMA.code: (0.5, 50.0),
}

# A device clock this far ahead of the gateway's receive time is wrong, not early.
MAX_CLOCK_AHEAD = timedelta(minutes=5)
# No device in the fleet predates this; an earlier time is an unset clock (often 1970 or 2000).
EARLIEST_PLAUSIBLE = datetime(2015, 1, 1, tzinfo=UTC)


def check_value(code: int, value: float, field: str) -> None:
    if not math.isfinite(value):
        raise AdapterError(field, "value is not a finite number")
    low, high = RANGES.get(code, (-math.inf, math.inf))
    if not low <= value <= high:
        metric = codes.metric(code)
        unit = metric.ucum if metric else ""
        raise AdapterError(field, f"physiologically impossible: outside {low:g}–{high:g} {unit}")


def check_blood_pressure(systolic: float, diastolic: float, field: str) -> None:
    if systolic < diastolic:
        raise AdapterError(field, "systolic pressure is below diastolic")


def to_utc(ts: datetime, field: str = "time") -> datetime:
    """utc(), refusing times that UTC cannot hold (year 1 east of Greenwich, year 9999 west)."""
    try:
        return utc(ts)
    except OverflowError:
        raise AdapterError(field, "outside the range of dates") from None


def clock_plausible(measured_at: datetime, received_at: datetime) -> bool:
    return EARLIEST_PLAUSIBLE <= measured_at <= received_at + MAX_CLOCK_AHEAD
