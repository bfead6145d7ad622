"""Crypto-shredding: make data unreadable by destroying the keys that open it.

Every sealed copy is encrypted under a data key per (huvudman, subject, epoch), stored only
wrapped. Deleting those wrapped keys makes the copies unreadable in the database and wherever a
copy went without its own unwrapped key. Backups taken earlier still hold the wrapped keys, so a
restore must replay the erasures the audit log records since (docs/operations.md). Each
operation has a dry run that says what would become unreadable, and each real run is recorded in
the audit log in the same transaction.

Ingest processes cache data keys; a NOTIFY on `keys_erased` makes them drop their caches so
nothing new is sealed under a destroyed key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from gateway.crypto import Pseudonymizer
from gateway.ownership import audit
from gateway.ownership.subjects import subject_key
from gateway.store.connector import Store


@dataclass(frozen=True, slots=True)
class Plan:
    what: str
    data_keys: int
    copies: int
    partitions: tuple[str, ...] = ()
    assignments: int = 0
    done: bool = False

    def describe(self) -> str:
        verb = "made unreadable" if self.done else "would become unreadable"
        text = (f"{self.what}: {self.data_keys} data keys destroyed, {self.copies} sealed "
                f"copies {verb}")
        if self.partitions:
            text += f"; partitions dropped: {', '.join(self.partitions)}"
        if self.assignments:
            text += f"; subject reference removed from {self.assignments} assignments"
        return text


async def _shred(store: Store, plan: Plan, keys: list[bytes], action: str, target: str, *,
                 forget_subject: tuple[str, str] | None = None,
                 partitions: tuple[str, ...] = ()) -> Plan:
    """Destroy `keys` (and forget a subject's sealed references, drop `partitions`) in one
    transaction with its audit entry; ingest processes are told to drop cached keys."""
    async with store.transaction() as tx:
        await tx.erasure.lock_keys()
        await tx.erasure.delete_keys(keys)
        assignments = 0
        if forget_subject is not None:
            assignments = await tx.erasure.forget_subject_refs(*forget_subject)
        for partition in partitions:
            await tx.erasure.drop_partition(partition)
        await audit.record(tx, action, target, data_keys=len(keys), copies=plan.copies,
                           partitions=list(plan.partitions))
        await tx.erasure.notify_keys_erased(target)
    return Plan(plan.what, plan.data_keys, plan.copies, plan.partitions,
                assignments or plan.assignments, done=True)


async def erase_subject(store: Store, pseudonyms: Pseudonymizer, huvudman: str,
                        subject_ref: str, *, dry_run: bool) -> Plan:
    """All of one person's data at one huvudman (an erasure request)."""
    # Assignments hold the subject's key; data keys are filed under the pseudonym of that key
    # (the Sealer pseudonymises whatever subject it is given).
    pseudonym = subject_key(pseudonyms, huvudman, subject_ref)
    keys = await store.erasure.subject_keys(huvudman, pseudonyms.of(huvudman, pseudonym))
    copies = await store.erasure.copies_under_keys(keys)
    plan = Plan(f"subject {pseudonym} at huvudman {huvudman}", len(keys), copies)
    if dry_run:
        return plan
    return await _shred(store, plan, keys, "erase.subject", f"{huvudman}/{pseudonym}",
                        forget_subject=(huvudman, pseudonym))


async def erase_huvudman(store: Store, huvudman: str, *, dry_run: bool) -> Plan:
    """Everything sealed for a huvudman that leaves the collaboration."""
    keys = await store.erasure.huvudman_keys(huvudman)
    copies = await store.erasure.copies_under_keys(keys)
    plan = Plan(f"huvudman {huvudman}", len(keys), copies)
    if dry_run:
        return plan
    return await _shred(store, plan, keys, "erase.huvudman", huvudman)


async def apply_retention(store: Store, before: date, *, huvudman: str | None,
                          dry_run: bool) -> Plan:
    """Data measured before `before` (a month start): its epochs' keys, and, for everyone at
    once, the monthly partitions that hold nothing newer."""
    epoch = before.year * 100 + before.month
    keys = await store.erasure.epoch_keys(epoch, huvudman)
    copies = await store.erasure.copies_under_keys(keys)
    partitions = () if huvudman else tuple(await store.erasure.old_partitions(before))
    plan = Plan(f"data measured before {before:%Y-%m}" + (f" at huvudman {huvudman}"
                                                          if huvudman else ""),
                len(keys), copies, partitions)
    if dry_run:
        return plan
    done = await _shred(store, plan, keys, "retention.apply", huvudman or "all",
                        partitions=partitions)
    return Plan(done.what, done.data_keys, done.copies, done.partitions, 0, True)


async def purge_quarantine(store: Store, now: datetime, *, dry_run: bool) -> int:
    """Delete quarantined copies whose fault-finding time is over."""
    if dry_run:
        return await store.erasure.expired_quarantine(now)
    return await store.erasure.purge_quarantine(now)
