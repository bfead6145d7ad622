"""Which adapter reads which payload format. Transports name the format (MQTT topic suffix,
HTTP content type or path); adapters stay unaware of transports."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from adapters import native
from adapters.errors import Parsed


class Parse(Protocol):
    def __call__(self, payload: bytes, *, device_id: str, received_at: datetime) -> Parsed: ...


FORMATS: dict[str, Parse] = {
    "native": native.parse,
}

HTTP_CONTENT_TYPES: dict[str, str] = {
    "application/json": "native",
    "application/vnd.vgr.telemetry+json": "native",
}


def parser(name: str) -> Parse | None:
    return FORMATS.get(name)


def names() -> list[str]:
    return sorted(FORMATS)


Register = Callable[[str, Parse], None]
