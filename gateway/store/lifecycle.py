"""The device lifecycle's statements (gateway/ownership/lifecycle.py): a device row locked for
its transition, its state and credential, the assignments a return ends, pairings, and the
operator's view of a device."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.store.credentials import StoredCredential
from gateway.store.errors import references
from gateway.store.statements import Queries


@dataclass(frozen=True, slots=True)
class LockedDevice:
    id: str
    state: str
    state_since: datetime


@dataclass(frozen=True, slots=True)
class OpenAssignment:
    id: uuid.UUID
    huvudman: str


@dataclass(frozen=True, slots=True)
class DeviceView:
    id: str
    device_type: str
    model: str | None
    state: str
    state_since: datetime
    has_credential: bool
    hub_id: str | None
    paired: list[str]


class LifecycleQueries(Queries, area="lifecycle"):
    async def lock_device(self, device_id: str) -> LockedDevice | None:
        """The device row, locked until the transaction ends (run it in one)."""
        r = await self._fetchrow("lock_device", device_id)
        return None if r is None else LockedDevice(r["id"], r["state"], r["state_since"])

    async def insert_device(self, device_id: str, device_type: str, model: str | None,
                            credential: StoredCredential | None,
                            heartbeat_interval: timedelta | None,
                            hub_id: str | None) -> bool:
        """A new device, in stock since now; False when the id is taken. Raises
        UnknownReference for an unknown hub."""
        with references():
            sha256, ha1_md5, ha1_sha256 = _columns(credential)
            inserted = await self._fetchval("insert_device", device_id, device_type, model,
                                            sha256, heartbeat_interval, hub_id, ha1_md5,
                                            ha1_sha256)
        return inserted is not None

    async def set_state(self, device_id: str, state: str) -> datetime:
        """The device enters `state` now (`state_since`)."""
        since: datetime = await self._fetchval("set_state", device_id, state)
        return since

    async def set_credential(self, device_id: str, credential: StoredCredential | None) -> None:
        """A new credential, or None to remove it."""
        await self._execute("set_credential", device_id, *_columns(credential))

    async def open_assignments(self, device_id: str, at: datetime) -> list[OpenAssignment]:
        """The device's assignments still covering some time from `at` on, oldest first."""
        return [OpenAssignment(r["id"], r["huvudman"])
                for r in await self._fetch("open_assignments", device_id, at)]

    async def end_assignment(self, assignment_id: uuid.UUID, at: datetime) -> datetime | None:
        """End it at `at`, or at its own start if it had not begun; its new end."""
        valid_to: datetime | None = await self._fetchval("end_assignment", assignment_id, at)
        return valid_to

    async def last_assignment_end(self, device_id: str) -> datetime | None:
        """Where the device's history ends (infinity while one is open); None: no history."""
        end: datetime | None = await self._fetchval("last_assignment_end", device_id)
        return end

    async def unpair(self, device_id: str) -> list[str]:
        """Devices paired to it lose their hub, and it leaves its own; the ids changed."""
        return sorted(r["id"] for r in await self._fetch("unpair", device_id))

    async def device(self, device_id: str) -> DeviceView | None:
        r = await self._fetchrow("device", device_id)
        return None if r is None else DeviceView(
            r["id"], r["device_type"], r["model"], r["state"], r["state_since"],
            r["has_credential"], r["hub_id"], list(r["paired"]))


def _columns(credential: StoredCredential | None,
             ) -> tuple[bytes | None, str | None, str | None]:
    """(sha256, sip_ha1_md5, sip_ha1_sha256), all None for no credential."""
    if credential is None:
        return None, None, None
    return credential.sha256, credential.sip_ha1_md5, credential.sip_ha1_sha256
