"""`[[arc]]` entries of config/sinks.toml: the alarm receiving centres alarms are forwarded to.

```toml
[[arc]]
receiver = "larmcentral-1480"       # what assignments name as their alarm route
primary = "udp://10.20.0.5:5060"    # the ARC's SCAIP/SIP address
secondary = "udp://10.20.9.5:5060"  # where alarms go when the primary refuses or is silent
cid = "4600001480"                  # the gateway's caller id at this ARC (digits)
answer_timeout_s = 10               # no SIP answer or no <mrs> within this: next ARC
accept_within_s = 60                # still on hold (snu=4) after this: next ARC
hold_resend_s = [5, 20]             # resend the same ref after snu=4, uniformly in this range
```
SS 91100 over SIP over UDP; the address scheme is there so TCP/TLS can be added without
changing the file's shape (they are refused today, naming the field).
"""

from __future__ import annotations

import re
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Receiver = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
_ADDRESS = re.compile(r"^udp://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")


def parse_address(text: str) -> tuple[str, int]:
    """`udp://host:port` as (host, port); ValueError naming what is wrong."""
    match = _ADDRESS.fullmatch(text)
    if match is None:
        raise ValueError("not udp://HOST:PORT (only SIP over UDP is supported)")
    port = int(match.group(2))
    if not 1 <= port <= 65535:
        raise ValueError("port outside 1-65535")
    return match.group(1).strip("[]"), port


class ArcSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    receiver: Receiver
    primary: str
    secondary: str | None = None
    cid: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,32}$")]
    answer_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    accept_within_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    hold_resend_s: tuple[Annotated[float, Field(gt=0, le=600)],
                         Annotated[float, Field(gt=0, le=600)]] = (5.0, 20.0)
    # After every ARC failed: wait this long (jittered) and start again from the primary.
    retry_s: Annotated[float, Field(gt=0, le=600)] = 10.0

    @model_validator(mode="after")
    def _addresses(self) -> Self:
        parse_address(self.primary)
        if self.secondary is not None:
            parse_address(self.secondary)
        low, high = self.hold_resend_s
        if low > high:
            raise ValueError("hold_resend_s: the first value must not exceed the second")
        return self

    @property
    def targets(self) -> list[tuple[str, tuple[str, int]]]:
        """("primary" | "secondary", address) in the order alarms try them."""
        out = [("primary", parse_address(self.primary))]
        if self.secondary is not None:
            out.append(("secondary", parse_address(self.secondary)))
        return out
