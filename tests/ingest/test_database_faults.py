"""Ingest heals itself after database faults: connections terminated again and again under
load, PostgreSQL restarted, PostgreSQL refusing connections for a while. Each ends with every
reading the broker acknowledged to its device stored exactly once, the readiness check back to
ready, and while it lasted `/readyz` saying `commits: false`.

The database is a private PostgreSQL (pgserver) that the tests may stop and start; the broker is
the session's."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from adapters import native
from gateway.demo import embedded
from gateway.ownership import erasure, lifecycle
from gateway.ownership.keyring import pseudonymizer
from gateway.store.connector import Store
from tests.databases import PrivateDatabase
from tests.support import (
    FakeDevice,
    Keys,
    MqttProbe,
    RunningGateway,
    register_device,
    running_gateway,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def database(tmp_path: Path, keys: Keys) -> AsyncIterator[PrivateDatabase]:
    db = PrivateDatabase(tmp_path / "pg")
    await asyncio.to_thread(db.start)
    await db.prepare(keys)
    yield db
    await asyncio.to_thread(db.stop)


@pytest.fixture
async def faulty(database: PrivateDatabase, gateway: RunningGateway,
                 keys: Keys) -> AsyncIterator[tuple[RunningGateway, FakeDevice, Store]]:
    """A gateway on the private database, with a registered device, and a store to look."""
    store = await Store.connect(database.url, application_name="test-observer")
    device = await register_device(store)
    settings = dataclasses.replace(
        gateway.settings, database_url=database.runtime_url, http_port=embedded.free_port(),
        sip_port=0, mqtt_client_id=f"gw-faults-{uuid.uuid4().hex[:8]}",
        supervision_enabled=False)
    async with running_gateway(settings) as running:
        await running.knows(device)
        yield running, device, store
    await store.close()


class Publisher:
    """A device publishing readings at a steady pace from its own thread, each acknowledged
    by the broker (QoS 1) before the next."""

    def __init__(self, broker_url: str, device: FakeDevice, count: int, per_s: float) -> None:
        self.probe = MqttProbe(broker_url)
        self.device, self.count, self.per_s = device, count, per_s
        self.acknowledged = 0
        self.start_at = datetime(2026, 11, 29, tzinfo=UTC) + timedelta(days=uuid.uuid4().int % 30)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for i in range(self.count):
            body = native.encode_message([native.encode_reading(
                "weight", self.start_at + timedelta(seconds=i), value=60 + i / 1000,
                unit="kg")])
            self.probe.publish(f"devices/{self.device.id}/up/native", body)
            self.acknowledged += 1
            time.sleep(1 / self.per_s)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join(120)
        self.probe.close()


async def _stored(store: Store, device: FakeDevice) -> int:
    for _ in range(50):  # the observer's own connection may have been cut as well
        try:
            return int(await store.pool.fetchval(
                "SELECT count(*) FROM event WHERE device_id = $1", device.id))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await asyncio.sleep(0.2)
    raise AssertionError("the private database never answered")


async def _all_stored_once(store: Store, device: FakeDevice, count: int,
                           timeout: float = 60) -> None:
    async def done() -> bool:
        return await _stored(store, device) >= count
    assert await wait_until(done, timeout=timeout), \
        f"{await _stored(store, device)} of {count} stored"
    assert await _stored(store, device) == count  # and none twice (ids are deterministic)


async def _ready(running: RunningGateway) -> dict[str, bool]:
    async with httpx.AsyncClient(base_url=running.http) as client:
        answer = await client.get("/readyz")
    checks: dict[str, bool] = answer.json()["checks"]
    return checks


async def test_connections_terminated_again_and_again_under_load(
        database: PrivateDatabase, faulty: tuple[RunningGateway, FakeDevice, Store],
        broker: embedded.Service, needs_redelivering_broker: None) -> None:
    running, device, store = faulty
    publisher = Publisher(broker.url, device, 1500, per_s=400)
    publisher.start()
    cut = 0
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        cut += await database.terminate_gateway_connections()
        await asyncio.sleep(0.15)
    await asyncio.to_thread(publisher.join)
    assert cut > 20 and publisher.acknowledged == 1500
    await _all_stored_once(store, device, 1500)
    assert await wait_until(lambda: _ready_now(running), timeout=15)


async def _ready_now(running: RunningGateway) -> bool:
    return all((await _ready(running)).values())


async def test_postgresql_restarted_under_load(
        database: PrivateDatabase, faulty: tuple[RunningGateway, FakeDevice, Store],
        broker: embedded.Service, needs_redelivering_broker: None) -> None:
    running, device, store = faulty
    publisher = Publisher(broker.url, device, 1000, per_s=300)
    publisher.start()
    await asyncio.sleep(1.0)
    await asyncio.to_thread(database.stop)  # fast shutdown: every connection goes
    await asyncio.sleep(1.0)
    await asyncio.to_thread(database.start)
    await asyncio.to_thread(publisher.join)
    assert publisher.acknowledged == 1000
    await _all_stored_once(store, device, 1000)
    assert await wait_until(lambda: _ready_now(running), timeout=15)


async def test_postgresql_away_for_a_while_then_back(
        database: PrivateDatabase, faulty: tuple[RunningGateway, FakeDevice, Store],
        broker: embedded.Service, needs_redelivering_broker: None, store: Store) -> None:
    """While the database refuses connections the instance says it is not ready (commits
    failing) and stores nothing; then it catches up by itself, and its registry listener is
    back: a device registered afterwards is known at once, not after the minute's safety
    reload."""
    running, device, observer = faulty
    await asyncio.to_thread(database.stop)
    publisher = Publisher(broker.url, device, 300, per_s=100)
    publisher.start()

    async def not_ready() -> bool:
        return not (await _ready(running))["commits"]

    assert await wait_until(not_ready, timeout=15)
    checks = await _ready(running)
    assert not checks["database"] and not checks["listening"]
    await asyncio.sleep(OUTAGE_S)
    await asyncio.to_thread(database.start)
    await asyncio.to_thread(publisher.join)
    await _all_stored_once(observer, device, 300)
    assert await wait_until(lambda: _ready_now(running), timeout=15)
    late = await register_device(observer)
    await running.knows(late, timeout=3.0)


# `make faults` runs it for a minute.
OUTAGE_S = float(os.environ.get("FAULT_OUTAGE_S", "5"))


# --- revocations and erasures take effect at once, whatever happened to the connections ------

SUBJECT = "test-subject-faults-191212121212"


async def _post(running: RunningGateway, device: FakeDevice, at: datetime) -> httpx.Response:
    body = native.encode_message([native.encode_reading("weight", at, value=71.5, unit="kg")])
    async with httpx.AsyncClient(base_url=running.http) as client:
        return await client.post(f"/v1/devices/{device.id}/readings", content=body,
                                 headers={"Authorization": f"Bearer {device.token}"})


async def _copy_key(store: Store, event_id: str) -> bytes:
    key = await store.pool.fetchval(
        "SELECT key_id FROM event_copy WHERE event_id = $1 AND recipient = '14'",
        uuid.UUID(event_id))
    return bytes(key)


async def _key_exists(store: Store, key_id: bytes) -> bool:
    return bool(await store.pool.fetchval("SELECT EXISTS (SELECT 1 FROM data_key "
                                          "WHERE key_id = $1)", key_id))


async def test_a_retired_credential_stops_working_at_once_after_the_connections_were_cut(
        database: PrivateDatabase, faulty: tuple[RunningGateway, FakeDevice, Store]) -> None:
    running, device, store = faulty
    at = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    assert (await _post(running, device, at)).status_code == 200
    assert await database.terminate_gateway_connections() > 0  # its LISTEN among them
    await lifecycle.retire(store, device.id)

    async def refused() -> bool:
        return (await _post(running, device, at + timedelta(minutes=1))).status_code == 401

    assert await wait_until(refused, timeout=3.0)  # not at the next safety reload, a minute on


@pytest.fixture
async def assigned(faulty: tuple[RunningGateway, FakeDevice, Store]) -> FakeDevice:
    running, _, store = faulty
    device = await register_device(store, assignments=[
        {"huvudman": "14", "subject_ref": SUBJECT, "legal_basis": "HSL", "kinds": ["weight"],
         "valid_from": "2026-01-01T00:00:00+00:00"}])
    await running.knows(device)
    return device


async def test_an_erasure_is_honoured_after_the_connections_were_cut(
        database: PrivateDatabase, faulty: tuple[RunningGateway, FakeDevice, Store],
        assigned: FakeDevice, keys: Keys) -> None:
    """New readings of an erased subject are sealed under a fresh key, never under the
    destroyed one the gateway had cached (the region could never open them)."""
    running, _, store = faulty
    at = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    first = (await _post(running, assigned, at)).json()["accepted"][0]
    destroyed = await _copy_key(store, first)
    assert await database.terminate_gateway_connections() > 0
    settings = dataclasses.replace(running.settings, pseudonym_secret_file=keys.pseudonym_secret)
    plan = await erasure.erase_subject(store, pseudonymizer(settings), "14", SUBJECT,
                                       dry_run=False)
    assert plan.data_keys >= 1 and not await _key_exists(store, destroyed)
    second = (await _post(running, assigned, at + timedelta(minutes=1))).json()["accepted"][0]
    fresh = await _copy_key(store, second)
    assert fresh != destroyed and await _key_exists(store, fresh)


async def test_a_key_destroyed_without_notice_is_caught_at_commit(
        faulty: tuple[RunningGateway, FakeDevice, Store], assigned: FakeDevice) -> None:
    """Even with the notification lost altogether (here: the row deleted without one), the
    commit itself refuses copies under a key that no longer exists, and ingest seals again."""
    running, _, store = faulty
    at = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    first = (await _post(running, assigned, at)).json()["accepted"][0]
    gone = await _copy_key(store, first)
    await store.pool.execute("DELETE FROM data_key WHERE key_id = $1", gone)
    answer = await _post(running, assigned, at + timedelta(minutes=1))
    assert answer.status_code == 200, answer.text
    fresh = await _copy_key(store, answer.json()["accepted"][0])
    assert fresh != gone and await _key_exists(store, fresh)
