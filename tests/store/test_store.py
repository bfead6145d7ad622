"""Schema, migrations and the batch write, against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from gateway.store import migrate as migrate_module
from gateway.store.connector import Store
from gateway.store.events import BatchRows, DeliveryRow, EventRow
from gateway.store.migrate import Migration, MigrationError, migrate

pytestmark = pytest.mark.integration


def _row(device: str, measured_at: datetime, event_id: uuid.UUID | None = None) -> EventRow:
    return EventRow(event_id or uuid.uuid4(), measured_at, datetime.now(UTC), device, "reading",
                    "weight", 188736, "native", ("converted_unit",), measured_at, False)


async def test_migrate_is_idempotent_and_concurrent_safe(owner_database_url: str) -> None:
    results = await asyncio.gather(migrate(owner_database_url), migrate(owner_database_url))
    assert results == [[], []]


async def test_a_changed_migration_is_refused(owner_database_url: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    real = migrate_module.available()
    edited = [Migration(m.version, m.name, m.sql + "\n-- edited") if m.version == 1 else m
              for m in real]
    monkeypatch.setattr(migrate_module, "available", lambda: edited)
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(owner_database_url)


async def test_batch_write_dedupes_and_queues_only_new_events(store: Store) -> None:
    device = f"T-STORE-{uuid.uuid4().hex[:8]}"
    await store.pool.execute("INSERT INTO device (id, device_type) VALUES ($1, 'scale')", device)
    now = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    rows = [_row(device, now + timedelta(seconds=i)) for i in range(3)]
    deliveries = [DeliveryRow(r.event_id, "14", None, "bulk", None) for r in rows]
    batch = BatchRows(events=rows, deliveries=deliveries)
    first = await store.events.write_batch(batch)
    assert first.new_ids == {r.event_id for r in rows} and first.queued == 3
    again = await store.events.write_batch(batch)
    assert again.new_ids == frozenset() and again.queued == 0
    flags = await store.pool.fetchval("SELECT flags FROM event WHERE event_id = $1",
                                      rows[0].event_id)
    assert flags == ["converted_unit"]


async def test_rows_outside_monthly_partitions_land_in_default_and_move_out(
        store: Store) -> None:
    device = f"T-PART-{uuid.uuid4().hex[:8]}"
    long_ago = datetime(2019, 3, 15, tzinfo=UTC)
    row = _row(device, long_ago)
    await store.events.write_batch(BatchRows(events=[row]))
    where = await store.pool.fetchval(
        "SELECT tableoid::regclass::text FROM event WHERE event_id = $1", row.event_id)
    assert where == "event_default"
    # Creating that month's partition later moves the row into it; dedup still holds.
    await store.pool.execute("SELECT ensure_event_partitions($1::int, 1 - $1::int)",
                             _months_since(long_ago))
    where = await store.pool.fetchval(
        "SELECT tableoid::regclass::text FROM event WHERE event_id = $1", row.event_id)
    assert where == "event_2019_03"
    assert (await store.events.write_batch(BatchRows(events=[row]))).new_ids == frozenset()


def _months_since(ts: datetime) -> int:
    now = datetime.now(UTC)
    return (now.year - ts.year) * 12 + now.month - ts.month


async def test_schema_refuses_impossible_registry_rows(store: Store) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await store.pool.execute("INSERT INTO huvudman VALUES ('999', 'x', 'kommun')")
    with pytest.raises(asyncpg.CheckViolationError):
        await store.pool.execute(
            "INSERT INTO device (id, device_type, state) VALUES ('ok-id', 'scale', 'lost')")
    with pytest.raises(asyncpg.CheckViolationError):
        await store.pool.execute(
            "INSERT INTO assignment (id, device_id, huvudman, subject_key, legal_basis, kinds,"
            " valid_from, valid_to) VALUES ($1, 'x', '14', 's', 'HSL', '{weight}', now(),"
            " now() - interval '1 day')", uuid.uuid4())
