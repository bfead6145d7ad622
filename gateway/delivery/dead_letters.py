"""Operators' view of the outbox (`gateway deliveries`): metadata only, never envelopes.

Replaying and purging dead letters change what reaches a huvudman, so each is audit-logged in
the same transaction as the change (gateway/ownership/audit.py), ids only.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.ownership import audit
from gateway.store.connector import Store
from gateway.store.outbox import OutboxEntry

AUDIT_IDS_MAX = 100  # an audit entry lists at most this many ids (and always the count)


async def list_deliveries(store: Store, *, state: str | None = None,
                          huvudman: str | None = None, limit: int = 100) -> list[OutboxEntry]:
    """Pending and dead deliveries (or one state), oldest first."""
    return await store.outbox.listing(state, huvudman, limit)


async def inspect(store: Store, delivery_id: int) -> OutboxEntry | None:
    return await store.outbox.inspect(delivery_id)


async def replay(store: Store, delivery_id: int | None, *,
                 huvudman: str | None = None) -> list[int]:
    """Dead letters back to pending with attempts reset: one (`delivery_id`) or every dead one
    (of `huvudman`, or all). Returns the ids replayed."""
    async with store.transaction() as tx:
        ids = await tx.outbox.replay(delivery_id, huvudman)
        if ids:
            await audit.record(tx, "delivery.replay", _target(delivery_id, huvudman),
                               count=len(ids), ids=ids[:AUDIT_IDS_MAX])
    return ids


@dataclass(frozen=True, slots=True)
class PurgePlan:
    ids: list[int]
    done: bool

    def describe(self) -> str:
        verb = "were" if self.done else "would be"
        return f"{len(self.ids)} dead deliveries {verb} deleted (their sealed copies stay)"


async def purge(store: Store, delivery_id: int | None, *, huvudman: str | None = None,
                older_than_days: int = 0, dry_run: bool = True) -> PurgePlan:
    """Delete dead letters that ended at least `older_than_days` ago: one or all (of
    `huvudman`). The event and its sealed copies are not touched."""
    async with store.transaction() as tx:
        ids = await tx.outbox.purge_candidates(delivery_id, huvudman, older_than_days)
        if dry_run or not ids:
            return PurgePlan(ids, done=False)
        deleted = await tx.outbox.purge(ids)
        await audit.record(tx, "delivery.purge", _target(delivery_id, huvudman),
                           count=len(deleted), ids=deleted[:AUDIT_IDS_MAX],
                           older_than_days=older_than_days)
    return PurgePlan(deleted, done=True)


def _target(delivery_id: int | None, huvudman: str | None) -> str:
    if delivery_id is not None:
        return f"delivery:{delivery_id}"
    return f"dead:{huvudman or 'all'}"
