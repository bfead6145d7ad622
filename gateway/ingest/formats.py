"""Which adapter reads which payload format. Transports name the format (MQTT topic suffix,
HTTP content type or path); adapters stay unaware of transports."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from adapters import native, omh, phd_fhir, vendor_gps, vendor_medicine, vendor_night
from adapters.errors import Parsed


class Parse(Protocol):
    def __call__(self, payload: bytes, *, device_id: str, received_at: datetime) -> Parsed: ...


def _phd_fhir(payload: bytes, *, device_id: str, received_at: datetime) -> Parsed:
    # The uploader may be a PHG (hub): which readings it may send is decoding.decode's check.
    return phd_fhir.parse(payload, device_id=None, received_at=received_at)


FORMATS: dict[str, Parse] = {
    "native": native.parse,
    "omh": omh.parse,
    "phd-fhir": _phd_fhir,
    "vendor-gps": vendor_gps.parse,
    "vendor-night": vendor_night.parse,
    "vendor-medicine": vendor_medicine.parse,  # missed doses as events; see DOSE_ALARM_FORMATS
}


def _medicine_with_alarms(payload: bytes, *, device_id: str, received_at: datetime) -> Parsed:
    return vendor_medicine.parse(payload, device_id=device_id, received_at=received_at,
                                 medication_alarms=True)


# The same formats read with missed doses as alarms. Ingest asks for this reading only for the
# missed doses an assignment makes alarms (gateway/ingest/dose_alarms.py).
DOSE_ALARM_FORMATS: dict[str, Parse] = {
    "vendor-medicine": _medicine_with_alarms,
}

HTTP_CONTENT_TYPES: dict[str, str] = {
    "application/json": "native",
    "application/vnd.vgr.telemetry+json": "native",
    "application/fhir+json": "phd-fhir",
}


def parser(name: str) -> Parse | None:
    return FORMATS.get(name)


def dose_alarm_parser(name: str) -> Parse | None:
    return DOSE_ALARM_FORMATS.get(name)


def names() -> list[str]:
    return sorted(FORMATS)
