"""What every transport does with a device's bytes: parse, check, route, hand to the pipeline.

Transports own the sockets and the acknowledgement; this module owns the rules in between.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapters.errors import AdapterError, Parsed, Rejection
from adapters.events import Event
from gateway.ingest import dose_alarms, formats
from gateway.observability import metrics
from gateway.ownership.registry import Registry


@dataclass(frozen=True, slots=True)
class Decoded:
    events: list[Event]
    rejections: list[Rejection]


def decode(registry: Registry, transport: str, device_id: str, fmt: str, payload: bytes,
           received_at: datetime, parse: formats.Parse | None = None) -> Decoded:
    """Parse one message. Never raises: each failure becomes a rejection naming field and reason.

    `device_id` is the authenticated uploader; a reading of another device is kept only when
    the uploader may speak for it (its hub). `parse` overrides the format's parser (OMH schema).
    """
    _received(transport).inc()
    device = registry.device(device_id)
    if device is None or device.state == "retired":
        return _reject(transport, Rejection("device", "device is not registered"))
    # An overriding parser (OMH schema) is never the medicine robot's: no dose alarms there.
    alarm_parse = None if parse is not None else formats.dose_alarm_parser(fmt)
    parse = parse or formats.parser(fmt)
    if parse is None:
        return _reject(transport, Rejection(
            "format", f"unknown format; expected one of {', '.join(formats.names())}"))
    try:
        parsed: Parsed = parse(payload, device_id=device_id, received_at=received_at)
    except AdapterError as err:
        return _reject(transport, err.rejection())
    produced: list[Event] = parsed.events
    if alarm_parse is not None:
        again = alarm_parse
        produced = dose_alarms.apply(
            produced, registry.assignment_index(),
            lambda: again(payload, device_id=device_id, received_at=received_at).events)
    events: list[Event] = []
    rejections = list(parsed.rejections)
    for e in produced:
        if registry.may_speak_for(device_id, e.device_id):
            events.append(e)
        else:  # position: the refused device's id (an id, not personal data)
            rejections.append(Rejection("device", "the uploader is neither this device nor "
                                        "its paired hub", position=e.device_id))
    for r in rejections:
        metrics.REJECTED.labels(transport, _reason_label(r)).inc()
    return Decoded(events, rejections)


@functools.cache
def _received(transport: str) -> Any:
    return metrics.RECEIVED.labels(transport)


def _reject(transport: str, rejection: Rejection) -> Decoded:
    metrics.REJECTED.labels(transport, _reason_label(rejection)).inc()
    return Decoded([], [rejection])


def _reason_label(r: Rejection) -> str:
    # Bounded label: the top-level field name only (readings, status, device, format, $ ...).
    return r.field.split("[", 1)[0].split(".", 1)[0] or "$"
