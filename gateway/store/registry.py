"""What ingest holds in memory (gateway/ownership/registry.py): every device, assignment and
active public key, read whole on every registry change."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.store.statements import Queries


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    device_type: str
    state: str
    credential_sha256: bytes | None
    heartbeat_interval: timedelta | None
    hub_id: str | None = None
    # SIP Digest H(A1) of its credential, by algorithm (SCAIP units authenticate with it).
    sip_ha1_md5: str | None = None
    sip_ha1_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class AssignmentRow:
    id: uuid.UUID
    device_id: str
    huvudman: str
    subject_key: str
    subject_sealed: bytes | None
    legal_basis: str
    kinds: tuple[str, ...]
    valid_from: datetime
    valid_to: datetime | None
    alarm_route: str | None
    position_consent: bool
    dose_alarm: bool


class RegistryQueries(Queries, area="registry"):
    async def devices(self) -> list[Device]:
        return [Device(r["id"], r["device_type"], r["state"],
                          bytes(r["credential_sha256"]) if r["credential_sha256"] else None,
                          r["heartbeat_interval"], r["hub_id"], r["sip_ha1_md5"],
                          r["sip_ha1_sha256"])
                for r in await self._fetch("devices")]

    async def assignments(self) -> list[AssignmentRow]:
        return [AssignmentRow(
            id=r["id"], device_id=r["device_id"], huvudman=r["huvudman"],
            subject_key=r["subject_key"],
            subject_sealed=bytes(r["subject_sealed"]) if r["subject_sealed"] else None,
            legal_basis=r["legal_basis"], kinds=tuple(r["kinds"]), valid_from=r["valid_from"],
            valid_to=r["valid_to"], alarm_route=r["alarm_route"],
            position_consent=r["position_consent"], dose_alarm=r["dose_alarm"])
            for r in await self._fetch("assignments")]

    async def public_keys(self) -> dict[str, str]:
        """Each huvudman's active public key, PEM."""
        return {r["huvudman"]: r["public_pem"] for r in await self._fetch("public_keys")}
