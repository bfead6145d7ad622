"""Crypto-shredding and the audit chain, against the running gateway and real database."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime

import asyncpg
import httpx
import pytest

from adapters import native
from gateway.crypto import Pseudonymizer
from gateway.ownership import audit, erasure
from gateway.store.connector import Store, Transaction
from tests.support import FakeDevice, Keys, RunningGateway, open_copies, register_device

pytestmark = pytest.mark.integration


async def _send(gateway: RunningGateway, device: FakeDevice, at: datetime,
                value: float) -> uuid.UUID:
    body = native.encode_message([native.encode_reading("weight", at, value=value, unit="kg")])
    async with httpx.AsyncClient(base_url=gateway.http) as client:
        answer = await client.post(f"/v1/devices/{device.id}/readings", content=body,
                                   headers={"Authorization": f"Bearer {device.token}"})
    assert answer.status_code == 200, answer.text
    return uuid.UUID(answer.json()["accepted"][0])


def _pseudonyms(keys: Keys) -> Pseudonymizer:
    return Pseudonymizer(keys.pseudonym_secret.read_bytes())


async def test_erasing_a_subject_makes_their_data_unreadable_and_nobody_elses(
        gateway: RunningGateway, store: Store, keys: Keys) -> None:
    subject = f"test-erase-{uuid.uuid4().hex[:6]}"
    device = await register_device(store, assignments=[
        {"huvudman": "1480", "subject_ref": subject, "legal_basis": "SoL",
         "kinds": ["weight"], "valid_from": "2026-01-01T00:00:00+00:00"},
        {"huvudman": "14", "subject_ref": "test-keep-region", "legal_basis": "HSL",
         "kinds": ["weight"], "valid_from": "2026-01-01T00:00:00+00:00"}])
    await gateway.knows(device)
    first = await _send(gateway, device, datetime(2026, 11, 10, 7, tzinfo=UTC), 80.0)
    assert set(await open_copies(store, keys, first)) == {"14", "1480"}

    plan = await erasure.erase_subject(store, _pseudonyms(keys), "1480", subject, dry_run=True)
    assert (plan.data_keys, plan.copies, plan.done) == (1, 1, False)
    assert set(await open_copies(store, keys, first)) == {"14", "1480"}  # dry run: unchanged

    done = await erasure.erase_subject(store, _pseudonyms(keys), "1480", subject, dry_run=False)
    assert (done.data_keys, done.copies, done.assignments, done.done) == (1, 1, 1, True)
    assert set(await open_copies(store, keys, first)) == {"14"}  # the region's copy stays
    envelope = await store.pool.fetchval(
        "SELECT envelope FROM event_copy WHERE event_id = $1 AND recipient = '1480'", first)
    assert envelope is not None  # still stored, no longer openable: no wrapped key exists
    assert await store.pool.fetchval(
        "SELECT count(*) FROM assignment WHERE device_id = $1 AND huvudman = '1480'"
        " AND subject_sealed IS NULL", device.id) == 1

    # Ingest forgot its cached key: the next reading is sealed under a new, stored key.
    await asyncio.sleep(0.3)
    later = await _send(gateway, device, datetime(2026, 11, 11, 7, tzinfo=UTC), 80.4)
    assert set(await open_copies(store, keys, later)) == {"14", "1480"}


async def test_retention_destroys_old_epochs(gateway: RunningGateway, store: Store,
                                             keys: Keys) -> None:
    device = await register_device(store, assignments=[
        {"huvudman": "1495", "subject_ref": "test-retention", "legal_basis": "SoL",
         "kinds": ["weight"], "valid_from": "2020-01-01T00:00:00+00:00"}])
    await gateway.knows(device)
    old = await _send(gateway, device, datetime(2021, 3, 4, 7, tzinfo=UTC), 70.0)
    new = await _send(gateway, device, datetime(2026, 11, 4, 7, tzinfo=UTC), 71.0)
    plan = await erasure.apply_retention(store, date(2022, 1, 1), huvudman="1495",
                                         dry_run=True)
    assert (plan.data_keys, plan.copies) == (1, 1)
    await erasure.apply_retention(store, date(2022, 1, 1), huvudman="1495", dry_run=False)
    assert set(await open_copies(store, keys, old)) == set()
    assert set(await open_copies(store, keys, new)) == {"1495"}


async def test_audit_chain_records_changes_and_finds_the_first_break(
        gateway: RunningGateway, store: Store, keys: Keys, owner_database_url: str) -> None:
    await register_device(store, assignments=[
        {"huvudman": "1401", "subject_ref": "test-audit", "legal_basis": "SoL",
         "kinds": ["weight"], "valid_from": "2026-01-01T00:00:00+00:00"}])
    rows = await store.pool.fetch(
        "SELECT action, details::text AS details FROM audit_log ORDER BY seq DESC LIMIT 2")
    assert [r["action"] for r in rows] == ["assignment.add", "device.upsert"]
    assert "test-audit" not in rows[0]["details"]  # ids only, never the subject reference
    assert (await audit.verify(store)).intact

    # The gateway's role may not change it (tests/store/test_privileges.py), and even the
    # schema's owner is stopped by the trigger ...
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await store.pool.execute("UPDATE audit_log SET actor = 'someone else' WHERE seq = 1")
    conn = await asyncpg.connect(owner_database_url)
    try:
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("UPDATE audit_log SET actor = 'someone else' WHERE seq = 1")
        # ... until it switches the trigger off and edits an entry: verify finds it.
        async with conn.transaction():
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
            target = await conn.fetchval("SELECT max(seq) - 1 FROM audit_log")
            await conn.execute("UPDATE audit_log SET target = 'forged' WHERE seq = $1", target)
            await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update")
            broken = await audit.verify(Transaction(conn))
            assert (broken.first_break, broken.problem) == (target, "its content was changed")
            raise _Rollback
    except _Rollback:
        pass
    finally:
        await conn.close()
    assert (await audit.verify(store)).intact


class _Rollback(Exception):
    pass



