"""The one error type adapters raise, and the per-item rejections they return.

Every rejection names the field (a JSON-pointer-like path such as `readings[2].value`), the
position in the message where the format has one (an HL7 segment, an XML element), and the reason.
Reasons describe the rule that failed, never the offending value: values may be personal data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from adapters.events import Event


class AdapterError(ValueError):
    """The whole message is unusable (not JSON, wrong version, no device)."""

    def __init__(self, field: str, reason: str, position: str | None = None) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.position = position

    def rejection(self, index: int | None = None) -> Rejection:
        return Rejection(field=self.field, reason=self.reason, position=self.position, index=index)


class Rejection(msgspec.Struct, frozen=True, omit_defaults=True):
    """One refused item, as the device or integrator is told about it."""

    field: str
    reason: str
    position: str | None = None
    index: int | None = None
    # The refusal in the protocol's own table, where it has one and the field does not decide
    # it (PCD-01: HL7 table 0357, e.g. "204" unknown key identifier).
    code: str | None = None


@dataclass(slots=True)
class Parsed:
    """What a message yielded: the good events, and a rejection for each bad item."""

    events: list[Event] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
