"""The reconciliation that ends every fault run counts what it must: readings sent over HTTP
to the running gateway reconcile clean, and a reading acknowledged but never stored, one stored
twice under different events, or one not delivered are each caught."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from adapters import native
from gateway.store.connector import Store
from simulator.reconcile import Ledger, key, reconcile
from tests.support import RunningGateway, register_device

pytestmark = pytest.mark.integration


async def test_reconciliation_is_clean_and_catches_loss_and_duplicates(
        gateway: RunningGateway, store: Store, owner_database_url: str) -> None:
    device = await register_device(store)
    await gateway.knows(device)
    ledger = Ledger()
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    times = [t0 + timedelta(seconds=i) for i in range(5)]
    message = ledger.sent(device.id, "http", [key(device.id, "weight", t) for t in times])
    body = native.encode_message([native.encode_reading("weight", t, value=70.0, unit="kg")
                                  for t in times])
    async with httpx.AsyncClient(base_url=gateway.http) as client:
        answer = await client.post(f"/v1/devices/{device.id}/readings", content=body,
                                   headers={"Authorization": f"Bearer {device.token}"})
    assert answer.status_code == 200, answer.text
    ledger.acked(message)
    ids = {uuid.UUID(i) for i in answer.json()["accepted"]}

    clean = await reconcile(ledger, store)
    assert (clean.sent, clean.acknowledged, clean.stored, clean.lost, clean.duplicates) == \
        (5, 5, 5, 0, 0)

    # Delivered: only what the receiver holds counts (the device has no owner's sink here,
    # so its deliveries are not pending; four of five reached the receiver).
    partly = await reconcile(ledger, store, set(list(ids)[:4]))
    assert (partly.delivered, partly.lost) == (4, 1) and not partly.ok

    # A reading the device was told is safe, but that no event holds: lost.
    lost = ledger.sent(device.id, "http", [key(device.id, "weight", t0 - timedelta(days=1))])
    ledger.acked(lost)
    missing = await reconcile(ledger, store)
    assert (missing.acknowledged, missing.stored, missing.lost) == (6, 5, 1)
    assert not missing.ok

    # The same reading stored under a second event id: a duplicate.
    conn = await asyncpg.connect(owner_database_url)
    try:
        await conn.execute(
            "INSERT INTO event (event_id, measured_at, received_at, device_id, event_type, kind,"
            " source) VALUES ($1, $2, now(), $3, 'reading', 'weight', 'native')",
            uuid.uuid4(), times[0], device.id)
    finally:
        await conn.close()
    twice = await reconcile(ledger, store)
    assert twice.duplicates == 1 and not twice.ok
