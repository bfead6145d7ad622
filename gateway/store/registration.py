"""Huvudmän, devices and assignments as config files and the CLI register them
(gateway/ownership/registration.py), and the listings the CLI shows. No subject reference is
ever read back: assignments store its keyed pseudonym and its sealed form only."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.store.credentials import StoredCredential
from gateway.store.errors import references
from gateway.store.statements import Queries, affected


@dataclass(frozen=True, slots=True)
class HuvudmanRow:
    code: str
    name: str
    kind: str


@dataclass(frozen=True, slots=True)
class DeviceListing:
    id: str
    device_type: str
    model: str | None
    state: str
    has_credential: bool
    active_assignments: int


@dataclass(frozen=True, slots=True)
class NewAssignmentRow:
    """An assignment as stored: `subject_key` is the subject's keyed pseudonym and
    `subject_sealed` the reference sealed to the huvudman (gateway/ownership/subjects.py)."""

    id: uuid.UUID
    device_id: str
    huvudman: str
    subject_key: str
    legal_basis: str
    kinds: list[str]
    valid_from: datetime
    valid_to: datetime | None
    alarm_route: str | None
    position_consent: bool
    subject_sealed: bytes
    dose_alarm: bool


@dataclass(frozen=True, slots=True)
class AssignmentListing:
    id: uuid.UUID
    device_id: str
    huvudman: str
    legal_basis: str
    kinds: list[str]
    valid_from: datetime
    valid_to: datetime | None
    alarm_route: str | None
    position_consent: bool
    dose_alarm: bool


class RegistrationQueries(Queries, area="registration"):
    async def upsert_huvudman(self, code: str, name: str, kind: str) -> bool:
        """Whether anything changed (a config file loaded twice changes nothing)."""
        return affected(await self._execute("upsert_huvudman", code, name, kind)) > 0

    async def huvudman_listing(self) -> list[HuvudmanRow]:
        return [HuvudmanRow(r["code"], r["name"], r["kind"])
                for r in await self._fetch("huvudman_listing")]

    async def huvudman_exists(self, code: str) -> bool:
        return bool(await self._fetchval("huvudman_exists", code))

    async def upsert_device(self, device_id: str, device_type: str, model: str | None,
                            credential: StoredCredential | None,
                            heartbeat_interval: timedelta | None, hub_id: str | None) -> bool:
        """Insert or update a device (keeping its credential unless a new one is given);
        whether anything changed. Raises UnknownReference for an unknown hub."""
        sha256, ha1_md5, ha1_sha256 = (
            (credential.sha256, credential.sip_ha1_md5, credential.sip_ha1_sha256)
            if credential is not None else (None, None, None))
        with references():
            status = await self._execute("upsert_device", device_id, device_type, model,
                                         sha256, heartbeat_interval, hub_id, ha1_md5,
                                         ha1_sha256)
        return affected(status) > 0

    async def devices(self) -> list[DeviceListing]:
        return [DeviceListing(r["id"], r["device_type"], r["model"], r["state"],
                              r["has_credential"], int(r["active_assignments"]))
                for r in await self._fetch("devices")]

    async def assignment_exists(self, assignment_id: uuid.UUID) -> bool:
        return bool(await self._fetchval("assignment_exists", assignment_id))

    async def insert_assignment(self, a: NewAssignmentRow) -> bool:
        """Whether it was inserted now (False: that id exists). Raises UnknownReference for an
        unknown device or huvudman (its `constraint` names which)."""
        with references():
            inserted = await self._fetchval(
                "insert_assignment", a.id, a.device_id, a.huvudman, a.subject_key,
                a.legal_basis, a.kinds, a.valid_from, a.valid_to, a.alarm_route,
                a.position_consent, a.subject_sealed, a.dose_alarm)
        return inserted is not None

    async def end_assignment(self, assignment_id: uuid.UUID, at: datetime) -> bool:
        """End an assignment that has begun and is still open at `at`; whether it did."""
        return await self._fetchval("end_assignment", assignment_id, at) is not None

    async def assignments(self, device_id: str | None = None) -> list[AssignmentListing]:
        """Every assignment (or one device's), oldest first: ids, huvudman, basis, kinds,
        times. No subject reference."""
        return [AssignmentListing(r["id"], r["device_id"], r["huvudman"], r["legal_basis"],
                                  list(r["kinds"]), r["valid_from"], r["valid_to"],
                                  r["alarm_route"], r["position_consent"], r["dose_alarm"])
                for r in await self._fetch("assignments", device_id)]
