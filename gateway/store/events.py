"""What ingest stores for each batch (`write_batch`: events, sealed copies, outbox rows, data
keys and incidents in one statement, one round trip), the monthly partitions, and counts.

The row types are what `gateway.ingest.sealing` prepares in memory before the commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from gateway.crypto import WrappedKey
from gateway.store.statements import Queries


@dataclass(frozen=True, slots=True)
class EventRow:
    event_id: uuid.UUID
    measured_at: datetime
    received_at: datetime
    device_id: str
    event_type: str
    kind: str
    code: int | None
    source: str
    flags: tuple[str, ...]
    routed_at: datetime
    quarantined: bool


@dataclass(frozen=True, slots=True)
class CopyRow:
    event_id: uuid.UUID
    measured_at: datetime
    recipient: str
    key_id: bytes
    envelope: bytes
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    event_id: uuid.UUID
    huvudman: str | None
    assignment_id: uuid.UUID | None
    lane: str
    receiver: str | None
    # 'owner': the owner's copy to its sink; 'arc': the alarm to the alarm centre `receiver`.
    target: str = "owner"
    # Stored as due this much later: an ARC row is leased to this instance's fast path.
    delay_s: float = 0.0
    with_position: bool = False  # ARC rows: the assignment lets this receiver see positions
    # Owner rows: the huvudman's other assignments the copy came under (HSL and SoL both).
    more_assignment_ids: tuple[uuid.UUID, ...] = ()


@dataclass(frozen=True, slots=True)
class IncidentRow:
    event_id: uuid.UUID
    device_id: str
    reason: str


@dataclass(slots=True)
class BatchRows:
    events: list[EventRow] = field(default_factory=list)
    copies: list[CopyRow] = field(default_factory=list)
    deliveries: list[DeliveryRow] = field(default_factory=list)
    data_keys: dict[bytes, WrappedKey] = field(default_factory=dict)
    incidents: list[IncidentRow] = field(default_factory=list)

    def extend(self, other: BatchRows) -> None:
        self.events.extend(other.events)
        self.copies.extend(other.copies)
        self.deliveries.extend(other.deliveries)
        self.data_keys.update(other.data_keys)
        self.incidents.extend(other.incidents)

    def only(self, ids: Collection[uuid.UUID]) -> BatchRows:
        """The rows of the events `ids`, with only the data keys their copies are sealed
        under (so a bad key sinks only the events that need it)."""
        wanted = set(ids)
        copies = [c for c in self.copies if c.event_id in wanted]
        used = {c.key_id for c in copies}
        return BatchRows([e for e in self.events if e.event_id in wanted], copies,
                         [d for d in self.deliveries if d.event_id in wanted],
                         {k: v for k, v in self.data_keys.items() if k in used},
                         [i for i in self.incidents if i.event_id in wanted])


@dataclass(frozen=True, slots=True)
class BatchResult:
    new_ids: frozenset[uuid.UUID]
    queued: int
    copies: int = 0
    keys: int = 0
    incidents: int = 0
    # Data keys the copies were sealed under that no longer exist: nothing was written.
    missing_keys: frozenset[bytes] = frozenset()


class EventQueries(Queries, area="events"):
    async def write_batch(self, rows: BatchRows) -> BatchResult:
        """Store a prepared batch in one statement, which is its own transaction."""
        ev, cp, dl, inc = rows.events, rows.copies, rows.deliveries, rows.incidents
        keys = list(rows.data_keys.values())
        row = await self._named(
            "write_batch",
            event_id=[e.event_id for e in ev], measured_at=[e.measured_at for e in ev],
            received_at=[e.received_at for e in ev], device_id=[e.device_id for e in ev],
            event_type=[e.event_type for e in ev], kind=[e.kind for e in ev],
            code=[e.code for e in ev], source=[e.source for e in ev],
            flags=[",".join(e.flags) for e in ev], routed_at=[e.routed_at for e in ev],
            quarantined=[e.quarantined for e in ev],
            copy_event_id=[c.event_id for c in cp], copy_measured_at=[c.measured_at for c in cp],
            copy_recipient=[c.recipient for c in cp], copy_key_id=[c.key_id for c in cp],
            copy_envelope=[c.envelope for c in cp], copy_expires_at=[c.expires_at for c in cp],
            delivery_event_id=[d.event_id for d in dl], delivery_huvudman=[d.huvudman for d in dl],
            delivery_assignment_id=[d.assignment_id for d in dl],
            delivery_lane=[d.lane for d in dl], delivery_receiver=[d.receiver for d in dl],
            delivery_target=[d.target for d in dl], delivery_delay_s=[d.delay_s for d in dl],
            delivery_more=[",".join(map(str, d.more_assignment_ids)) or None for d in dl],
            key_id=[k.key_id for k in keys], key_huvudman=[k.huvudman for k in keys],
            key_subject_pseudonym=[k.subject_pseudonym for k in keys],
            key_epoch=[k.epoch for k in keys],
            key_recipient_key_id=[k.recipient_key_id for k in keys],
            key_suite=[k.suite.value for k in keys], key_wrapped=[k.wrapped for k in keys],
            incident_event_id=[i.event_id for i in inc],
            incident_device_id=[i.device_id for i in inc],
            incident_reason=[i.reason for i in inc],
        )
        assert row is not None
        return BatchResult(frozenset(row["new_ids"] or ()), int(row["queued"]),
                           int(row["copies"]), int(row["keys"]), int(row["incidents"]),
                           frozenset(bytes(k) for k in row["missing_keys"] or ()))

    async def ensure_partitions(self, months_back: int = 2, months_ahead: int = 3) -> list[str]:
        """The monthly partitions around now exist; the names of those created now."""
        return [r[0] for r in await self._fetch("ensure_partitions", months_back, months_ahead)]

    async def ping(self) -> bool:
        """The database answers within 2 s (readiness must not hang on a stuck server)."""
        return bool(await self._db.fetchval(self._sql("ping"), timeout=2))

    async def counts_by_type(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in await self._fetch("counts_by_type")}
