"""What a valid device id, huvudman code, device and dose-alarm assignment are, and the refusal
operators are shown: shared by config files and the CLI (registration), the device lifecycle
and the admin API, so each accepts exactly the same input and refuses it in the same words.
(Who acts on a missed dose is gateway/ingest/dose_alarms.py.)"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
)

from adapters.codes import Kind

DeviceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
HuvudmanCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{2}([0-9]{2})?$")]


def printable(value: str) -> str:
    """Free text may not hold control characters (NUL cannot even be stored): refused as a
    value, not failed on as a server error. (Pydantic refuses lone surrogates itself.)"""
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ValueError("must not contain control characters")
    return value


# The rule of `printable` for the JSON schema (the validator gives the clearer message).
_NO_CONTROL = Field(json_schema_extra={"pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"})
Name = Annotated[str, StringConstraints(min_length=1, max_length=100), AfterValidator(printable),
                 _NO_CONTROL]
SubjectRef = Annotated[str, StringConstraints(min_length=1, max_length=200),
                       AfterValidator(printable), _NO_CONTROL]
DeviceType = Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,40}$")]
# A week: longer would not be supervision; far longer does not fit an interval.
HeartbeatSeconds = Annotated[int, Field(gt=0, le=7 * 86400)]


class Refusal(Exception):
    """A refusal with a message meant for the operator (ids only, never a subject reference)."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceSpec(Strict):
    id: DeviceId
    type: DeviceType
    model: Name | None = None
    token: str | None = Field(None, min_length=16, description="demo only: plain credential")
    token_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    heartbeat_interval_s: HeartbeatSeconds | None = None
    hub: DeviceId | None = Field(None, description="the hub that uploads for this device")


def dose_alarm_refusal(kinds: Collection[Kind], alarm_route: str | None) -> str | None:
    """Why an assignment with these kinds and route cannot make a missed dose an alarm, or None.

    The one rule the CLI, the admin API and config files check (the database checks it too)."""
    if Kind.MEDICATION not in kinds:
        return ("a missed dose can be an alarm only where the assignment grants the medication "
                "kind; add medication to kinds")
    if not alarm_route:
        return "a missed dose as an alarm needs someone to act on it; set alarm_route"
    return None


def validate_dose_alarm(dose_alarm: bool, info: ValidationInfo) -> bool:
    """Pydantic field validator for `dose_alarm` (assignment specs of config files and of the
    lifecycle commands): the rule of `dose_alarm_refusal`. Kinds that are invalid are refused
    under their own name, not a second time here."""
    if dose_alarm and "kinds" in info.data:
        reason = dose_alarm_refusal(info.data["kinds"], info.data.get("alarm_route"))
        if reason is not None:
            raise ValueError(reason)
    return dose_alarm
