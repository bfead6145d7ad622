"""The outbox side of delivery: claim a lane's due deliveries, and settle what sinks answered.

Both are one statement per batch (queries.sql `delivery_claim`, `delivery_settle`). A claim
leases its rows by moving `next_attempt_at` forward by the lease, so several dispatchers, in
one process or many, never hold the same row at once, and a crashed dispatcher's claims come
due again when the lease ends (then it is sent again: delivery is at least once, and the event
id is the receiver's idempotency key).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from gateway.crypto import KeySuite, WrappedKey
from gateway.delivery import wire
from gateway.delivery.sink import RECEIVER_PREFIX
from gateway.store.connector import Store

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


@dataclass(frozen=True, slots=True)
class Settlement:
    """What to do with one claimed delivery: done, retry, dead or defer (not counted)."""

    id: int
    outcome: str
    delay_s: float = 0.0
    reason: str | None = None


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
        """Due deliveries of `lane` for these destinations (sinks.destination keys) only:
        deliveries nobody can send yet are not claimed again and again."""
        keys = list(destinations)
        huvudman = [k for k in keys if not k.startswith(RECEIVER_PREFIX)]
        receivers = [k.removeprefix(RECEIVER_PREFIX) for k in keys
                     if k.startswith(RECEIVER_PREFIX)]
        if not keys:
            return []
        rows = await self._store.fetch("delivery_claim", lane, limit, self.lease, huvudman,
                                       receivers)
        return [_claimed(r) for r in rows]

    async def settle(self, settlements: Sequence[Settlement]) -> dict[int, str]:
        """Apply a batch's answers; returns each row's new state (rows no longer pending, e.g.
        replayed or purged meanwhile, are left alone and missing)."""
        if not settlements:
            return {}
        rows = await self._store.fetch(
            "delivery_settle", [s.id for s in settlements], [s.outcome for s in settlements],
            [s.delay_s for s in settlements], [s.reason for s in settlements],
            self.max_attempts)
        return {r["id"]: r["state"] for r in rows}


def _claimed(row: asyncpg.Record) -> Claimed:
    item = None
    if row["envelope"] is not None and row["key_id"] is not None and row["kind"] is not None:
        key = WrappedKey(key_id=bytes(row["key_id"]), huvudman=row["key_owner"],
                         subject_pseudonym=bytes(row["subject_pseudonym"]), epoch=row["epoch"],
                         recipient_key_id=bytes(row["recipient_key_id"]),
                         suite=KeySuite(row["suite"]), wrapped=bytes(row["wrapped"]))
        item = wire.item(event_id=row["event_id"], huvudman=row["huvudman"], kind=row["kind"],
                         event_type=row["event_type"], measured_at=row["measured_at"],
                         lane=row["lane"], envelope=bytes(row["envelope"]), data_key=key,
                         receiver=row["receiver"])
    return Claimed(id=row["id"], lane=row["lane"], huvudman=row["huvudman"],
                   receiver=row["receiver"], attempts=row["attempts"],
                   stored_at=row["stored_at"], item=item)
