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
SS 91100 over SIP, on the transport the address names: `udp://`, `tcp://` (SIS-TR 91102 §7.6:
above 1,000 bytes use TCP rather than fragments) or `tls://` (SIP over TLS; the ARC's
certificate is checked against `tls_ca_file`, or the system's CAs, and its host name):

```toml
primary = "tls://larm.example.se:5061"
tls_ca_file = "larm-ca.pem"          # relative to the sinks file
tls_cert_file = "gateway.pem"        # only when the ARC asks for a client certificate
tls_key_file = "gateway.key"
auth_user = "gateway-vgr"            # SIP Digest, for an ARC that challenges (SS 91100 §8)
auth_password_file = "larm.secret"   # or auth_password_env = "ARC_1480_PASSWORD"
```
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Annotated, NamedTuple, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from gateway.tls import client_context

Receiver = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
_ADDRESS = re.compile(r"^(udp|tcp|tls)://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")


class ArcAddress(NamedTuple):
    """Where an ARC listens: SIP over `transport` ("udp", "tcp" or "tls") at host:port."""

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


def parse_address(text: str) -> ArcAddress:
    """`udp://host:port`, `tcp://…` or `tls://…`; ValueError naming what is wrong."""
    match = _ADDRESS.fullmatch(text)
    if match is None:
        raise ValueError("not udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT")
    port = int(match.group(3))
    if not 1 <= port <= 65535:
        raise ValueError("port outside 1-65535")
    return ArcAddress(match.group(1), match.group(2).strip("[]"), port)


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
    # tls:// only: who signed the ARC's certificate (default: the system's CAs), and the
    # gateway's own certificate and key for an ARC that asks for one.
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # SIP Digest (SS 91100 §8), for an ARC that challenges: the user, and the password from a
    # file (relative to the sinks file) or an environment variable.
    auth_user: Annotated[str, StringConstraints(pattern=r"^[!-~]{1,64}$")] | None = None
    auth_password_file: Path | None = None
    auth_password_env: Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]*$")] | None \
        = None

    @model_validator(mode="after")
    def _addresses(self) -> Self:
        parse_address(self.primary)
        if self.secondary is not None:
            parse_address(self.secondary)
        low, high = self.hold_resend_s
        if low > high:
            raise ValueError("hold_resend_s: the first value must not exceed the second")
        tls_files = (self.tls_ca_file, self.tls_cert_file, self.tls_key_file)
        if any(f is not None for f in tls_files) and not self.uses_tls:
            raise ValueError("tls_ca_file, tls_cert_file and tls_key_file need a tls:// address")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("give both tls_cert_file and tls_key_file, or neither")
        passwords = (self.auth_password_file is not None) + (self.auth_password_env is not None)
        if (self.auth_user is None and passwords) or (self.auth_user is not None
                                                      and passwords != 1):
            raise ValueError("auth_user needs exactly one of auth_password_file and "
                             "auth_password_env, and they need auth_user")
        return self

    @property
    def targets(self) -> list[tuple[str, ArcAddress]]:
        """("primary" | "secondary", address) in the order alarms try them."""
        out = [("primary", parse_address(self.primary))]
        if self.secondary is not None:
            out.append(("secondary", parse_address(self.secondary)))
        return out

    @property
    def uses_tls(self) -> bool:
        return any(address.transport == "tls" for _, address in self.targets)

    def tls_context(self) -> ssl.SSLContext | None:
        """For the tls:// addresses (None when there are none); OSError/ssl.SSLError when a
        file will not do."""
        if not self.uses_tls:
            return None
        return client_context(self.tls_ca_file, self.tls_cert_file, self.tls_key_file)
