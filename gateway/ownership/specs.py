"""What a valid device id, huvudman code and device are, and the refusal operators are shown:
shared by config files and the CLI (registration), the device lifecycle and the admin API, so
each accepts exactly the same input and refuses it in the same words."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

DeviceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
HuvudmanCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{2}([0-9]{2})?$")]


class Refusal(Exception):
    """A refusal with a message meant for the operator (ids only, never a subject reference)."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceSpec(Strict):
    id: DeviceId
    type: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,40}$")]
    model: str | None = None
    token: str | None = Field(None, min_length=16, description="demo only: plain credential")
    token_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    heartbeat_interval_s: int | None = Field(None, gt=0)
    hub: DeviceId | None = Field(None, description="the hub that uploads for this device")
