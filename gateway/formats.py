"""Which adapter reads which payload format. Transports name the format (MQTT topic suffix,
HTTP content type or path); adapters stay unaware of transports."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from adapters import native, omh, phd_fhir, vendor_gps, vendor_medicine, vendor_night
from adapters.errors import Parsed


class Parse(Protocol):
    def __call__(self, payload: bytes, *, device_id: str, received_at: datetime) -> Parsed: ...


def _phd_fhir(payload: bytes, *, device_id: str, received_at: datetime) -> Parsed:
    # The uploader may be a PHG (hub): which readings it may send is ingest.decode's check.
    return phd_fhir.parse(payload, device_id=None, received_at=received_at)


FORMATS: dict[str, Parse] = {
    "native": native.parse,
    "omh": omh.parse,
    "phd-fhir": _phd_fhir,
    "vendor-gps": vendor_gps.parse,
    "vendor-night": vendor_night.parse,
    "vendor-medicine": vendor_medicine.parse,  # a missed dose is a DeviceEvent, not an Alarm
}

HTTP_CONTENT_TYPES: dict[str, str] = {
    "application/json": "native",
    "application/vnd.vgr.telemetry+json": "native",
    "application/fhir+json": "phd-fhir",
}


def parser(name: str) -> Parse | None:
    return FORMATS.get(name)


def names() -> list[str]:
    return sorted(FORMATS)


Register = Callable[[str, Parse], None]
