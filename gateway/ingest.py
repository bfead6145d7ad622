"""What every transport does with a device's bytes: parse, check, route, hand to the pipeline.

Transports own the sockets and the acknowledgement; this module owns the rules in between.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapters.errors import AdapterError, Parsed, Rejection
from gateway import formats, metrics, model
from gateway.model import Alarm, Event
from gateway.pipeline import Router
from gateway.registry import Registry
from gateway.store.connector import DeliveryRow


@dataclass(frozen=True, slots=True)
class Decoded:
    events: list[Event]
    rejections: list[Rejection]


def decode(registry: Registry, transport: str, device_id: str, fmt: str, payload: bytes,
           received_at: datetime) -> Decoded:
    """Parse one message. Never raises: each failure becomes a rejection naming field and reason."""
    _received(transport).inc()
    device = registry.device(device_id)
    if device is None or device.state == "retired":
        return _reject(transport, Rejection("device", "device is not registered"))
    parse = formats.parser(fmt)
    if parse is None:
        return _reject(transport, Rejection(
            "format", f"unknown format; expected one of {', '.join(formats.names())}"))
    try:
        parsed: Parsed = parse(payload, device_id=device_id, received_at=received_at)
    except AdapterError as err:
        return _reject(transport, err.rejection())
    for r in parsed.rejections:
        metrics.REJECTED.labels(transport, _reason_label(r)).inc()
    return Decoded(parsed.events, parsed.rejections)


@functools.cache
def _received(transport: str) -> Any:
    return metrics.RECEIVED.labels(transport)


def _reject(transport: str, rejection: Rejection) -> Decoded:
    metrics.REJECTED.labels(transport, _reason_label(rejection)).inc()
    return Decoded([], [rejection])


def _reason_label(r: Rejection) -> str:
    # Bounded label: the top-level field name only (readings, status, device, format, $ ...).
    return r.field.split("[", 1)[0].split(".", 1)[0] or "$"


def router(registry: Registry) -> Router:
    """Deliveries for an event: every huvudman whose assignment covers device, kind and time."""

    def route(event: Event) -> Sequence[DeliveryRow]:
        kind = model.kind_of(event)
        lane = "alarm" if isinstance(event, Alarm) else "bulk"
        return [DeliveryRow(event.event_id, a.huvudman, a.id, lane)
                for a in registry.assignments(event.device_id)
                if kind in a.kinds and a.covers(event.measured_at)]

    return route

