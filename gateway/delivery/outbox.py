"""The outbox side of delivery: claim a lane's due deliveries, and settle what sinks answered.

Both are one statement per batch (gateway/store/sql/outbox.sql `claim`, `settle`). A claim
leases its rows by moving `next_attempt_at` forward by the lease, so several dispatchers, in
one process or many, never hold the same row at once, and a crashed dispatcher's claims come
due again when the lease ends (then it is sent again: delivery is at least once, and the event
id is the receiver's idempotency key).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.delivery import wire
from gateway.delivery.sink import RECEIVER_PREFIX
from gateway.store.connector import Store
from gateway.store.outbox import ClaimedRow, Settlement

BACKOFF_FACTOR = 2.0
BACKOFF_CAP_S = 600.0


@dataclass(frozen=True, slots=True)
class Claimed:
    """One leased delivery: its outbox metadata and, unless erased, its sealed payload."""

    id: int
    lane: str
    huvudman: str | None
    receiver: str | None
    attempts: int
    stored_at: datetime | None
    item: wire.Item | None  # None: the sealed copy or its data key no longer exists
    assignment_ids: tuple[uuid.UUID, ...] = ()  # whose subject references the item needs


def backoff(attempts: int, base_s: float, *, cap_s: float = BACKOFF_CAP_S,
            rng: random.Random | None = None) -> float:
    """Full jitter: uniform in [0, min(cap, base · 2^(attempts-1))]."""
    ceiling = min(cap_s, base_s * BACKOFF_FACTOR ** max(attempts - 1, 0))
    return (rng or random).uniform(0.0, ceiling)


class Outbox:
    def __init__(self, store: Store, *, max_attempts: int = 20, lease_s: float = 120.0) -> None:
        self._store = store
        self.max_attempts = max_attempts
        self.lease = timedelta(seconds=lease_s)

    async def claim(self, lane: str, limit: int, destinations: Iterable[str]) -> list[Claimed]:
        """Due deliveries of `lane` for these destinations (`sink.destination` keys) only:
        deliveries nobody can send yet are not claimed again and again."""
        keys = list(destinations)
        huvudman = [k for k in keys if not k.startswith(RECEIVER_PREFIX)]
        receivers = [k.removeprefix(RECEIVER_PREFIX) for k in keys
                     if k.startswith(RECEIVER_PREFIX)]
        if not keys:
            return []
        rows = await self._store.outbox.claim(lane, limit, self.lease, huvudman, receivers)
        return [_claimed(r) for r in rows]

    async def subjects(self, assignment_ids: Sequence[uuid.UUID],
                       ) -> dict[uuid.UUID, tuple[str, bytes]]:
        """The sealed subject references of these assignments, with their huvudman (those
        erased are left out)."""
        return await self._store.outbox.subjects(list(assignment_ids))

    async def settle(self, settlements: Sequence[Settlement]) -> dict[int, str]:
        """Apply a batch's answers; returns each row's new state (rows no longer pending, e.g.
        replayed or purged meanwhile, are left alone and missing)."""
        if not settlements:
            return {}
        return await self._store.outbox.settle(settlements, self.max_attempts)


def _claimed(row: ClaimedRow) -> Claimed:
    item = None
    if row.envelope is not None and row.data_key is not None and row.kind is not None \
            and row.event_type is not None:
        item = wire.item(event_id=row.event_id, huvudman=row.huvudman, kind=row.kind,
                         event_type=row.event_type, measured_at=row.measured_at, lane=row.lane,
                         envelope=row.envelope, data_key=row.data_key, receiver=row.receiver)
    return Claimed(id=row.id, lane=row.lane, huvudman=row.huvudman, receiver=row.receiver,
                   attempts=row.attempts, stored_at=row.stored_at, item=item,
                   assignment_ids=row.assignment_ids)
