"""Registering huvudmän, devices and assignments: from the CLI, and from files in config/.

Config files are TOML, validated with pydantic so a mistake is reported with its file, entry and
field. Loading is idempotent: loading the same file twice changes nothing.
"""

from __future__ import annotations

import tomllib
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, ValidationError, field_validator

from adapters.codes import Kind
from gateway.ownership import audit, credentials, lifecycle, subjects
from gateway.ownership.assignment import LegalBasis
from gateway.ownership.credentials import new_token
from gateway.ownership.specs import (
    DeviceId,
    DeviceSpec,
    HuvudmanCode,
    Name,
    Refusal,
    Strict,
    SubjectRef,
    validate_dose_alarm,
)
from gateway.store.connector import Store, Transaction
from gateway.store.credentials import StoredCredential
from gateway.store.errors import UnknownReference
from gateway.store.registration import NewAssignmentRow


class HuvudmanSpec(Strict):
    code: HuvudmanCode
    name: Name
    kind: Literal["region", "kommun"]


class AssignmentSpec(Strict):
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    device: DeviceId
    huvudman: HuvudmanCode
    subject_ref: SubjectRef
    legal_basis: LegalBasis
    kinds: Annotated[list[Kind], Field(min_length=1)]
    valid_from: AwareDatetime
    valid_to: AwareDatetime | None = None
    alarm_route: Name | None = None
    position_consent: bool = False
    dose_alarm: bool = False  # a missed medicine dose is an alarm (gateway/ingest/dose_alarms.py)

    _dose_alarm_needs_medication_and_route = field_validator("dose_alarm")(
        validate_dose_alarm)


class ConfigFile(Strict):
    huvudman: list[HuvudmanSpec] = Field(default_factory=list)
    device: list[DeviceSpec] = Field(default_factory=list)
    assignment: list[AssignmentSpec] = Field(default_factory=list)


def read_config(path: Path) -> ConfigFile:
    """Read one TOML file, or every *.toml directly in a folder (sorted), as one config."""
    files = sorted(path.glob("*.toml")) if path.is_dir() else [path]
    merged = ConfigFile()
    for file in files:
        try:
            raw = tomllib.loads(file.read_text("utf-8"))
            part = ConfigFile.model_validate(raw)
        except tomllib.TOMLDecodeError as err:
            raise Refusal(f"{file}: not valid TOML: {err}") from None
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise Refusal(f"{file}: {where}: {first['msg']}") from None
        merged = ConfigFile(huvudman=merged.huvudman + part.huvudman,
                            device=merged.device + part.device,
                            assignment=merged.assignment + part.assignment)
    return merged


async def apply_config(store: Store, config: ConfigFile) -> dict[str, int]:
    """Upsert everything in `config`; returns how many of each kind were read."""
    async with store.transaction() as tx:
        for h in config.huvudman:
            await _put_huvudman(tx, h)
        # Hubs first: a device's hub must exist before the device can name it.
        for d in sorted(config.device, key=lambda d: d.hub is not None):
            credential = (credentials.stored_hash_only(bytes.fromhex(d.token_sha256))
                          if d.token_sha256 else credentials.stored(d.id, d.token)
                          if d.token else None)
            if await _put_device(tx, d, credential):
                await audit.record(tx, "device.upsert", d.id, type=d.type, hub=d.hub,
                                   credential=credential is not None)
        for a in config.assignment:
            await _insert_assignment(tx, a)
    return {"huvudman": len(config.huvudman), "device": len(config.device),
            "assignment": len(config.assignment)}


async def _put_huvudman(tx: Transaction, spec: HuvudmanSpec) -> None:
    if await tx.registration.upsert_huvudman(spec.code, spec.name, spec.kind):
        await audit.record(tx, "huvudman.upsert", spec.code, kind=spec.kind)


async def _put_device(tx: Transaction, spec: DeviceSpec,
                      credential: StoredCredential | None) -> bool:
    try:
        return await lifecycle.put_device(tx, spec, credential)
    except UnknownReference:
        raise Refusal(f"device {spec.id}: unknown hub {spec.hub}") from None


async def _insert_assignment(tx: Transaction, a: AssignmentSpec) -> bool:
    """Add an assignment (once: loading the same file again changes nothing); its device is
    assigned from then on, by the lifecycle's rules (a retired or returned device is refused,
    and a device back in stock is not lent from before it was made ready)."""
    if await tx.registration.assignment_exists(a.id):
        return False
    await lifecycle.enter_assigned(tx, a.device, a.valid_from)
    try:
        key, sealed = await subjects.protect(tx, a.huvudman, a.id, a.subject_ref)
    except subjects.SubjectError as err:
        raise Refusal(f"assignment {a.id}: {err}") from None
    try:
        await tx.registration.insert_assignment(NewAssignmentRow(
            id=a.id, device_id=a.device, huvudman=a.huvudman, subject_key=key,
            legal_basis=a.legal_basis.value, kinds=[k.value for k in a.kinds],
            valid_from=a.valid_from, valid_to=a.valid_to, alarm_route=a.alarm_route,
            position_consent=a.position_consent, subject_sealed=sealed,
            dose_alarm=a.dose_alarm))
    except UnknownReference as err:
        what = "device" if "device" in err.constraint else "huvudman"
        raise Refusal(f"assignment {a.id}: unknown {what}") from None
    await audit.record(tx, "assignment.add", str(a.id), device=a.device,
                       huvudman=a.huvudman, legal_basis=a.legal_basis.value,
                       kinds=[k.value for k in a.kinds], valid_from=a.valid_from,
                       valid_to=a.valid_to, alarm_route=a.alarm_route,
                       position_consent=a.position_consent, dose_alarm=a.dose_alarm)
    return True


async def add_huvudman(store: Store, spec: HuvudmanSpec) -> None:
    """Register or rename a huvudman (audit-logged, as a config file's would be)."""
    async with store.transaction() as tx:
        await _put_huvudman(tx, spec)


async def add_device(store: Store, device_id: str, device_type: str, model: str | None,
                     heartbeat_interval_s: int | None = None, hub: str | None = None) -> str:
    """Register (or update) a device with a new credential; returns the token, shown once.
    The lifecycle decides: a new device is in stock, a retired one is refused."""
    spec = DeviceSpec(id=device_id, type=device_type, model=model,
                      heartbeat_interval_s=heartbeat_interval_s, hub=hub)
    token = new_token()
    async with store.transaction() as tx:
        await _put_device(tx, spec, credentials.stored(spec.id, token))
        await audit.record(tx, "device.credential_issued", spec.id, type=spec.type,
                           hub=spec.hub)
    return token


async def add_assignment(store: Store, spec: AssignmentSpec) -> uuid.UUID:
    async with store.transaction() as tx:
        if not await _insert_assignment(tx, spec):
            raise Refusal(f"assignment {spec.id} already exists")
    return spec.id


async def end_assignment(store: Store, assignment_id: uuid.UUID, at: datetime) -> None:
    """The device is returned: the assignment stops covering readings measured from `at`."""
    async with store.transaction() as tx:
        if not await tx.registration.end_assignment(assignment_id, at):
            raise Refusal(f"assignment {assignment_id} does not exist, has already ended "
                          "before that time, or starts after it")
        await audit.record(tx, "assignment.end", str(assignment_id), valid_to=at)
