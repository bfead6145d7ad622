"""Conversion of the units devices send to the canonical UCUM unit of each metric."""

from __future__ import annotations

from collections.abc import Callable

from adapters.errors import AdapterError

# Spellings seen from devices and standards, mapped to UCUM. Lower-cased for lookup.
_ALIASES: dict[str, str] = {
    "kg": "kg", "kilogram": "kg", "kilograms": "kg",
    "g": "g",
    "lb": "[lb_av]", "lbs": "[lb_av]", "[lb_av]": "[lb_av]", "pound": "[lb_av]",
    "mm[hg]": "mm[Hg]", "mmhg": "mm[Hg]",
    "kpa": "kPa",
    "%": "%", "percent": "%",
    "/min": "/min", "bpm": "/min", "{beat}/min": "/min", "beats/min": "/min", "1/min": "/min",
    "cel": "Cel", "°c": "Cel", "c": "Cel", "celsius": "Cel", "k": "K",
    "[degf]": "[degF]", "°f": "[degF]", "f": "[degF]", "fahrenheit": "[degF]",
    "kg/m2": "kg/m2", "kg/m^2": "kg/m2", "kg/m²": "kg/m2",
    "mmol/l": "mmol/L", "mg/dl": "mg/dL",
}

_CONVERT: dict[tuple[str, str], Callable[[float], float]] = {
    ("g", "kg"): lambda v: v / 1000.0,
    ("[lb_av]", "kg"): lambda v: v * 0.45359237,
    ("kPa", "mm[Hg]"): lambda v: v * 7.500615758,
    ("[degF]", "Cel"): lambda v: (v - 32.0) * 5.0 / 9.0,
    ("K", "Cel"): lambda v: v - 273.15,
    # Glucose only (the one substance measured in both): its molar mass is 180.16 g/mol.
    ("mg/dL", "mmol/L"): lambda v: v / 18.016,
}


def ucum(unit: str) -> str | None:
    """The UCUM spelling of a unit, or None if it is not one the gateway knows."""
    return _ALIASES.get(unit.strip().lower())


def to_canonical(value: float, unit: str, canonical: str, field: str) -> tuple[float, bool]:
    """Return the value in `canonical` and whether a conversion happened.

    Raises AdapterError naming `field` for a unit that is unknown or not convertible.
    """
    spelled = ucum(unit)
    if spelled is None:
        raise AdapterError(field, f"unknown unit; expected {canonical}")
    if spelled == canonical:
        return value, False
    convert = _CONVERT.get((spelled, canonical))
    if convert is None:
        raise AdapterError(field, f"unit {spelled} cannot be converted to {canonical}")
    return convert(value), True
