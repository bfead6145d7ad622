"""A device credential as stored: never the credential itself, only what checking it needs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StoredCredential:
    sha256: bytes  # HTTP bearer and MQTT password checks
    sip_ha1_md5: str | None = None  # SIP Digest (SCAIP units): H(A1), when it could be derived
    sip_ha1_sha256: str | None = None
