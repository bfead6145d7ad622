"""The in-memory registry: devices, their credentials and assignments.

Ingest must not ask the database who a device is on every message, so the whole registry is held
in memory and replaced wholesale when PostgreSQL notifies a change (and once a minute as a safety
net). For the forecast fleet (tens of thousands of devices) a full reload takes milliseconds.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from adapters.codes import Kind
from gateway.crypto import HuvudmanPublicKey, load_public_key
from gateway.crypto.subject import subject_digest
from gateway.ownership.assignment import Assignment, LegalBasis
from gateway.ownership.credentials import token_hash
from gateway.ownership.routing import AssignmentIndex
from gateway.store.connector import Store
from gateway.store.registry import Device as Device  # re-exported: as ingest knows it


@dataclass(frozen=True, slots=True)
class Snapshot:
    devices: dict[str, Device] = field(default_factory=dict)
    by_credential: dict[bytes, str] = field(default_factory=dict)
    assignments: AssignmentIndex = field(default_factory=lambda: AssignmentIndex(()))
    public_keys: dict[str, HuvudmanPublicKey] = field(default_factory=dict)


class AuthError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Registry:
    def __init__(self) -> None:
        self.snapshot = Snapshot()
        self.version = 0
        self._digests: dict[bytes, bytes] = {}
        self._digests_now: dict[bytes, bytes] = {}

    async def reload(self, store: Store) -> None:
        devices = {d.id: d for d in await store.registry.devices()}
        assignments = AssignmentIndex(
            Assignment(
                id=r.id, device_id=r.device_id, huvudman=r.huvudman, subject_key=r.subject_key,
                subject_sealed=r.subject_sealed, subject_digest=self._digest(r.subject_sealed),
                legal_basis=LegalBasis(r.legal_basis),
                kinds=frozenset(Kind(k) for k in r.kinds), valid_from=r.valid_from,
                valid_to=r.valid_to, alarm_route=r.alarm_route,
                position_consent=r.position_consent, dose_alarm=r.dose_alarm)
            for r in await store.registry.assignments())
        public_keys = {huvudman: load_public_key(pem)
                       for huvudman, pem in (await store.registry.public_keys()).items()}
        self.snapshot = Snapshot(
            devices=devices,
            by_credential={d.credential_sha256: d.id for d in devices.values()
                           if d.credential_sha256 is not None},
            assignments=assignments,
            public_keys=public_keys,
        )
        self.version += 1
        self._digests = self._digests_now
        self._digests_now = {}

    def _digest(self, sealed: bytes | None) -> bytes | None:
        """The digest of a sealed subject reference, kept from the last reload: the registry
        reloads on every change, and the references themselves change only when made."""
        if sealed is None:
            return None
        digest = self._digests.get(sealed) or subject_digest(sealed)
        self._digests_now[sealed] = digest
        return digest

    def device(self, device_id: str) -> Device | None:
        return self.snapshot.devices.get(device_id)

    def assignment_index(self) -> AssignmentIndex:
        return self.snapshot.assignments

    def may_speak_for(self, uploader: str, device_id: str) -> bool:
        """Whether an authenticated uploader may send readings of `device_id`: its own, or
        those of devices paired with it as their hub."""
        if uploader == device_id:
            return True
        device = self.snapshot.devices.get(device_id)
        return device is not None and device.hub_id == uploader and device.state != "retired"

    def authenticate(self, device_id: str, token: str | None) -> Device:
        """The device a bearer token may speak for; 401 for a wrong token, 403 for another's."""
        if not token:
            raise AuthError(401, "missing bearer token")
        digest = token_hash(token)
        owner = self.snapshot.by_credential.get(digest)
        if owner is None:
            raise AuthError(401, "invalid credentials")
        device = self.snapshot.devices[owner]
        if owner != device_id:
            raise AuthError(403, "credentials belong to another device")
        # Constant-time compare for form's sake; the dict lookup already matched the digest.
        if device.credential_sha256 is None or not hmac.compare_digest(
                device.credential_sha256, digest):
            raise AuthError(401, "invalid credentials")
        if device.state == "retired":
            raise AuthError(403, "device is retired")
        return device
