"""The envelope shared by the gateway-designed vendor formats (night sensors, medicine robots).

    {"v": 1, "device": "<optional, must match the authenticated device>",
     "events": [{"type": …, "time": "<ISO 8601 with offset>", "seq": <optional int>, …}],
     "status": {"time": …, "battery": 0–100, "charging": bool, "heartbeat": bool}}

Each event is decoded and judged on its own, so one bad event is a Rejection (index, field,
reason) while the others in the message are kept. The format modules supply the event decoder
and the mapping to canonical events.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import msgspec

from adapters import plausibility
from adapters.errors import AdapterError, Parsed
from adapters.events import DeviceStatus, Event, Flag, event_id
from adapters.json_errors import DECODE_ERRORS, explain

VERSION = 1
MAX_BYTES = 256 * 1024
MAX_EVENTS = 1000

AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class Envelope(msgspec.Struct, forbid_unknown_fields=False):
    v: int
    device: str | None = None
    events: list[msgspec.Raw] = []
    status: msgspec.Raw = msgspec.Raw()


class StatusItem(msgspec.Struct, forbid_unknown_fields=False):
    time: AwareTime
    battery: Annotated[float, msgspec.Meta(ge=0, le=100)] | None = None
    charging: bool | None = None
    heartbeat: bool = False


_envelope = msgspec.json.Decoder(Envelope)
_status = msgspec.json.Decoder(StatusItem)

# Builds the events of one decoded item; raises AdapterError for a rule the item breaks.
Mapper = Callable[[Any, str, datetime], list[Event]]


to_utc = plausibility.to_utc


def flags(measured_at: datetime, received_at: datetime) -> tuple[str, ...]:
    if not plausibility.clock_plausible(measured_at, received_at):
        return (Flag.CLOCK_IMPLAUSIBLE,)
    return ()


def parse(payload: bytes, *, device_id: str, received_at: datetime, source: str,
          decoder: msgspec.json.Decoder[Any], mapper: Mapper,
          type_names: tuple[str, ...]) -> Parsed:
    if len(payload) > MAX_BYTES:
        raise AdapterError("$", f"message longer than {MAX_BYTES} bytes")
    try:
        env = _envelope.decode(payload)
    except DECODE_ERRORS as err:
        raise explain(err) from None
    if env.v != VERSION:
        raise AdapterError("v", f"unsupported format version; this gateway speaks v={VERSION}")
    if env.device is not None and env.device != device_id:
        raise AdapterError("device", "does not match the authenticated device")
    if len(env.events) > MAX_EVENTS:
        raise AdapterError("events", f"more than {MAX_EVENTS} events in one message")

    out = Parsed()
    for index, raw in enumerate(env.events):
        field = f"events[{index}]"
        try:
            out.events.extend(mapper(decoder.decode(raw), device_id, received_at))
        except DECODE_ERRORS as err:
            out.rejections.append(_explain_item(err, raw, field, type_names).rejection(index))
        except AdapterError as err:
            out.rejections.append(AdapterError(f"{field}.{err.field}", err.reason)
                                  .rejection(index))
    if len(env.status) and bytes(env.status) != b"null":
        try:
            out.events.append(status_event(_status.decode(env.status), device_id, received_at,
                                           source))
        except DECODE_ERRORS as err:
            out.rejections.append(explain(err, "status").rejection())
        except AdapterError as err:
            out.rejections.append(AdapterError(f"status.{err.field}", err.reason).rejection())
    if not out.events and not out.rejections:
        raise AdapterError("events", "message holds no events or status")
    return out


def _explain_item(err: Exception, raw: msgspec.Raw,
                  field: str, type_names: tuple[str, ...]) -> AdapterError:
    explained = explain(err, field)
    if explained.field == f"{field}.type":
        # msgspec would say "Invalid enum value"; tell the integrator what is accepted instead.
        return AdapterError(explained.field, "unknown type; expected one of "
                            + ", ".join(type_names))
    return explained


def status_event(item: StatusItem, device_id: str, received_at: datetime,
                 source: str) -> DeviceStatus:
    measured_at = to_utc(item.time)
    return DeviceStatus(
        event_id=event_id(device_id, f"{source}:status", measured_at), device_id=device_id,
        measured_at=measured_at, received_at=received_at, source=source,
        battery_pct=item.battery, charging=item.charging, heartbeat=item.heartbeat,
        flags=flags(measured_at, received_at))


def encode(events: list[dict[str, object]], *, status: dict[str, object] | None = None,
           device: str | None = None) -> bytes:
    doc: dict[str, object] = {"v": VERSION}
    if device is not None:
        doc["device"] = device
    doc["events"] = events
    if status is not None:
        doc["status"] = status
    return msgspec.json.encode(doc)


def encode_status(time: datetime, *, battery: float | None = None, charging: bool | None = None,
                  heartbeat: bool = False) -> dict[str, object]:
    status: dict[str, object] = {"time": time.isoformat(), "heartbeat": heartbeat}
    if battery is not None:
        status["battery"] = battery
    if charging is not None:
        status["charging"] = charging
    return status
