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

import asyncpg
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from adapters.codes import Kind
from gateway.ingest import dose_alarms
from gateway.ownership import audit, subjects
from gateway.ownership.assignment import LegalBasis
from gateway.ownership.registry import new_token, token_hash
from gateway.store.connector import QUERIES, Store, as_interval

DeviceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
HuvudmanCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{2}([0-9]{2})?$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HuvudmanSpec(_Strict):
    code: HuvudmanCode
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    kind: Literal["region", "kommun"]


class DeviceSpec(_Strict):
    id: DeviceId
    type: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,40}$")]
    model: str | None = None
    token: str | None = Field(None, min_length=16, description="demo only: plain credential")
    token_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    heartbeat_interval_s: int | None = Field(None, gt=0)
    hub: DeviceId | None = Field(None, description="the hub that uploads for this device")


class AssignmentSpec(_Strict):
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    device: DeviceId
    huvudman: HuvudmanCode
    subject_ref: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    legal_basis: LegalBasis
    kinds: Annotated[list[Kind], Field(min_length=1)]
    valid_from: AwareDatetime
    valid_to: AwareDatetime | None = None
    alarm_route: str | None = None
    position_consent: bool = False
    dose_alarm: bool = False  # a missed medicine dose is an alarm (gateway/ingest/dose_alarms.py)

    _dose_alarm_needs_medication_and_route = field_validator("dose_alarm")(
        dose_alarms.validate_field)


class ConfigFile(_Strict):
    huvudman: list[HuvudmanSpec] = []
    device: list[DeviceSpec] = []
    assignment: list[AssignmentSpec] = []


class AdminError(Exception):
    """A refusal with a message meant for the operator."""


def read_config(path: Path) -> ConfigFile:
    """Read one TOML file, or every *.toml directly in a folder (sorted), as one config."""
    files = sorted(path.glob("*.toml")) if path.is_dir() else [path]
    merged = ConfigFile()
    for file in files:
        try:
            raw = tomllib.loads(file.read_text("utf-8"))
            part = ConfigFile.model_validate(raw)
        except tomllib.TOMLDecodeError as err:
            raise AdminError(f"{file}: not valid TOML: {err}") from None
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise AdminError(f"{file}: {where}: {first['msg']}") from None
        merged = ConfigFile(huvudman=merged.huvudman + part.huvudman,
                            device=merged.device + part.device,
                            assignment=merged.assignment + part.assignment)
    return merged


async def apply_config(store: Store, config: ConfigFile) -> dict[str, int]:
    """Upsert everything in `config`; returns how many of each kind were read."""
    async with store.pool.acquire() as conn, conn.transaction():
        for h in config.huvudman:
            if _changed(await conn.execute(QUERIES["upsert_huvudman"], h.code, h.name, h.kind)):
                await audit.record(conn, "huvudman.upsert", h.code, kind=h.kind)
        # Hubs first: a device's hub must exist before the device can name it.
        for d in sorted(config.device, key=lambda d: d.hub is not None):
            digest = (bytes.fromhex(d.token_sha256) if d.token_sha256
                      else token_hash(d.token) if d.token else None)
            try:
                status = await conn.execute(QUERIES["upsert_device"], d.id, d.type, d.model,
                                            digest, as_interval(d.heartbeat_interval_s), d.hub)
            except asyncpg.ForeignKeyViolationError:
                raise AdminError(f"device {d.id}: unknown hub {d.hub}") from None
            if _changed(status):
                await audit.record(conn, "device.upsert", d.id, type=d.type, hub=d.hub,
                                   credential=digest is not None)
        for a in config.assignment:
            await _insert_assignment(conn, a)
    return {"huvudman": len(config.huvudman), "device": len(config.device),
            "assignment": len(config.assignment)}


async def _insert_assignment(conn: asyncpg.Connection, a: AssignmentSpec) -> bool:
    try:
        key, sealed = await subjects.protect(conn, a.huvudman, a.id, a.subject_ref)
    except subjects.SubjectError as err:
        raise AdminError(f"assignment {a.id}: {err}") from None
    try:
        row = await conn.fetchval(
            QUERIES["insert_assignment"], a.id, a.device, a.huvudman, key,
            a.legal_basis.value, [k.value for k in a.kinds], a.valid_from, a.valid_to,
            a.alarm_route, a.position_consent, sealed, a.dose_alarm)
    except asyncpg.ForeignKeyViolationError as err:
        what = "device" if "device" in (err.constraint_name or "") else "huvudman"
        raise AdminError(f"assignment {a.id}: unknown {what}") from None
    if row is not None:
        state = await conn.fetchval(QUERIES["lifecycle_lock_device_state"], a.device)
        if state == "retired":
            raise AdminError(f"device {a.device} is retired; it cannot be assigned")
        if state in ("returned", "reconditioning"):
            raise AdminError(f"device {a.device} is {state}; it must be back in stock "
                             "(reconditioned and made ready) before it can be assigned")
        await conn.execute(QUERIES["set_device_state"], a.device, "assigned")
        await audit.record(conn, "assignment.add", str(a.id), device=a.device,
                           huvudman=a.huvudman, legal_basis=a.legal_basis.value,
                           kinds=[k.value for k in a.kinds], valid_from=a.valid_from,
                           valid_to=a.valid_to, alarm_route=a.alarm_route,
                           position_consent=a.position_consent, dose_alarm=a.dose_alarm)
    return row is not None


def _changed(status: str) -> bool:
    """Whether an INSERT ... ON CONFLICT DO UPDATE ... WHERE wrote a row ("INSERT 0 1")."""
    return status.rsplit(" ", 1)[-1] != "0"


async def add_device(store: Store, device_id: str, device_type: str, model: str | None,
                     heartbeat_interval_s: int | None = None, hub: str | None = None) -> str:
    """Register (or update) a device with a new credential; returns the token, shown once."""
    spec = DeviceSpec(id=device_id, type=device_type, model=model,
                      heartbeat_interval_s=heartbeat_interval_s, hub=hub)
    token = new_token()
    async with store.pool.acquire() as conn, conn.transaction():
        try:
            await conn.execute(QUERIES["upsert_device"], spec.id, spec.type, spec.model, None,
                               as_interval(spec.heartbeat_interval_s), spec.hub)
        except asyncpg.ForeignKeyViolationError:
            raise AdminError(f"device {spec.id}: unknown hub {spec.hub}") from None
        await conn.execute(QUERIES["set_device_credential"], spec.id, token_hash(token))
        await audit.record(conn, "device.credential_issued", spec.id, type=spec.type,
                           hub=spec.hub)
    return token


async def add_assignment(store: Store, spec: AssignmentSpec) -> uuid.UUID:
    async with store.pool.acquire() as conn, conn.transaction():
        if not await _insert_assignment(conn, spec):
            raise AdminError(f"assignment {spec.id} already exists")
    return spec.id


async def end_assignment(store: Store, assignment_id: uuid.UUID, at: datetime) -> None:
    """The device is returned: the assignment stops covering readings measured from `at`."""
    async with store.pool.acquire() as conn, conn.transaction():
        if await conn.fetchval(QUERIES["end_assignment"], assignment_id, at) is None:
            raise AdminError(f"assignment {assignment_id} does not exist, has already ended "
                             "before that time, or starts after it")
        await audit.record(conn, "assignment.end", str(assignment_id), valid_to=at)
