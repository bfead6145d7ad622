"""The outbox: a lane's due deliveries claimed with their sealed payload (leased, `SKIP LOCKED`),
what the sinks answered settled in one statement, and the operators' listing, replay and purge
(gateway/delivery/outbox.py, gateway/delivery/dead_letters.py; docs/delivery.md)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from gateway.crypto import KeySuite, WrappedKey
from gateway.store.statements import Queries


@dataclass(frozen=True, slots=True)
class ClaimedRow:
    """One leased delivery: its metadata and, unless erased, its sealed copy and data key."""

    id: int
    event_id: uuid.UUID
    measured_at: datetime
    huvudman: str | None
    receiver: str | None
    lane: str
    attempts: int
    kind: str | None
    event_type: str | None
    stored_at: datetime | None
    envelope: bytes | None
    data_key: WrappedKey | None
    assignment_ids: tuple[uuid.UUID, ...] = ()  # the assignments the copy came under


@dataclass(frozen=True, slots=True)
class Settlement:
    """What to do with one claimed delivery: done, retry, dead or defer (not counted)."""

    id: int
    outcome: str
    delay_s: float = 0.0
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A delivery as operators see it: metadata only, never its envelope."""

    id: int
    event_id: uuid.UUID
    measured_at: datetime
    huvudman: str | None
    assignment_id: uuid.UUID | None
    receiver: str | None
    lane: str
    state: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime
    created_at: datetime
    finished_at: datetime | None


def wrapped_key(r: asyncpg.Record) -> WrappedKey | None:
    """The data key joined into a claim (columns key_id, key_owner, ...), None when erased."""
    if r["key_id"] is None:
        return None
    return WrappedKey(key_id=bytes(r["key_id"]), huvudman=r["key_owner"],
                      subject_pseudonym=bytes(r["subject_pseudonym"]), epoch=r["epoch"],
                      recipient_key_id=bytes(r["recipient_key_id"]),
                      suite=KeySuite(r["suite"]), wrapped=bytes(r["wrapped"]))


def _entry(r: asyncpg.Record) -> OutboxEntry:
    return OutboxEntry(r["id"], r["event_id"], r["measured_at"], r["huvudman"],
                       r["assignment_id"], r["receiver"], r["lane"], r["state"], r["attempts"],
                       r["last_error"], r["next_attempt_at"], r["created_at"], r["finished_at"])


class OutboxQueries(Queries, area="outbox"):
    async def claim(self, lane: str, limit: int, lease: timedelta, huvudmän: list[str],
                    receivers: list[str]) -> list[ClaimedRow]:
        """Up to `limit` due deliveries of `lane` for these destinations, leased for `lease`."""
        return [ClaimedRow(
            id=r["id"], event_id=r["event_id"], measured_at=r["measured_at"],
            huvudman=r["huvudman"], receiver=r["receiver"], lane=r["lane"],
            attempts=r["attempts"], kind=r["kind"], event_type=r["event_type"],
            stored_at=r["stored_at"],
            envelope=bytes(r["envelope"]) if r["envelope"] is not None else None,
            data_key=wrapped_key(r),
            assignment_ids=((r["assignment_id"],) if r["assignment_id"] else ())
            + tuple(r["more_assignment_ids"] or ()))
            for r in await self._fetch("claim", lane, limit, lease, huvudmän, receivers)]

    async def subjects(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[str, bytes]]:
        return {r["id"]: (r["huvudman"], bytes(r["subject_sealed"]))
                for r in await self._fetch("subjects", ids)}

    async def settle(self, settlements: Sequence[Settlement],
                     max_attempts: int) -> dict[int, str]:
        """Apply a batch's answers; each row's new state (rows no longer pending are left
        alone and missing)."""
        rows = await self._fetch(
            "settle", [s.id for s in settlements], [s.outcome for s in settlements],
            [s.delay_s for s in settlements], [s.reason for s in settlements], max_attempts)
        return {r["id"]: r["state"] for r in rows}

    async def pending_by_lane(self) -> dict[str, int]:
        return {r["lane"]: int(r["count"]) for r in await self._fetch("pending_by_lane")}

    async def listing(self, state: str | None, huvudman: str | None,
                      limit: int) -> list[OutboxEntry]:
        """Pending and dead deliveries (or one state), oldest first."""
        return [_entry(r) for r in await self._fetch("listing", state, huvudman, limit)]

    async def inspect(self, delivery_id: int) -> OutboxEntry | None:
        r = await self._fetchrow("inspect", delivery_id)
        return None if r is None else _entry(r)

    async def replay(self, delivery_id: int | None, huvudman: str | None) -> list[int]:
        """Dead letters back to pending, attempts reset; the ids."""
        return [r["id"] for r in await self._fetch("replay", delivery_id, huvudman)]

    async def purge_candidates(self, delivery_id: int | None, huvudman: str | None,
                               older_than_days: int) -> list[int]:
        return [r["id"] for r in await self._fetch("purge_candidates", delivery_id, huvudman,
                                                   older_than_days)]

    async def purge(self, ids: list[int]) -> list[int]:
        """Delete these dead letters; the ids deleted."""
        return [r["id"] for r in await self._fetch("purge", ids)]
