"""Ack after commit, proven with a real crash: the ingest process is SIGKILLed after receiving a
reading and before committing it; after a restart the reading is stored exactly once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from adapters import native
from gateway.demo import embedded
from gateway.store.connector import Store
from tests.processes import IngestProcess
from tests.support import FakeDevice, Keys, MqttProbe, register_device, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def ingest_process(database_url: str, broker: embedded.Service,
                   keys: Keys) -> Iterator[IngestProcess]:
    process = IngestProcess({"DATABASE_URL": database_url, "MQTT_URL": broker.url,
                             "MQTT_CLIENT_ID": f"crash-test-{uuid.uuid4().hex[:8]}",
                             **keys.env()})
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.kill()


# A batch that never fills and never times out: the process holds what it received, uncommitted.
NEVER_COMMIT = {"BATCH_MAX_WAIT_S": "3600", "BATCH_MAX_EVENTS": "1000000"}


async def _count(store: Store, device: FakeDevice) -> int:
    return int(await store.pool.fetchval("SELECT count(*) FROM event WHERE device_id = $1",
                                         device.id))


async def test_sigkill_between_receive_and_commit_loses_nothing_and_stores_once(
        needs_redelivering_broker: None, ingest_process: IngestProcess, store: Store,
        broker: embedded.Service) -> None:
    device = await register_device(store)
    ingest_process.start(**NEVER_COMMIT)
    probe = MqttProbe(broker.url)
    try:
        reading = native.encode_message([native.encode_reading(
            "weight", datetime(2026, 11, 22, 6, 0, tzinfo=UTC), value=77.7, unit="kg")])
        probe.publish(f"devices/{device.id}/up/native", reading)
        deadline = time.monotonic() + 10
        while ingest_process.metric("gateway_ingest_messages_received_total", "mqtt") < 1:
            assert time.monotonic() < deadline, "the gateway never received the reading"
            await asyncio.sleep(0.05)
        assert ingest_process.metric("gateway_ingest_messages_acked_total", "mqtt") == 0
        assert await _count(store, device) == 0
        ingest_process.kill()

        ingest_process.start()  # same persistent session: the broker redelivers
        assert await wait_until(lambda: _count_reaches(store, device, 1), timeout=15)
        deadline = time.monotonic() + 10
        while ingest_process.metric("gateway_ingest_messages_acked_total", "mqtt") < 1:
            assert time.monotonic() < deadline, "the redelivered reading was never acked"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert await _count(store, device) == 1
        assert ingest_process.terminate() == 0
    finally:
        probe.close()


async def _count_reaches(store: Store, device: FakeDevice, n: int) -> bool:
    return await _count(store, device) >= n


async def test_http_request_cut_by_a_crash_is_retried_and_stored_once(
        ingest_process: IngestProcess, store: Store) -> None:
    device = await register_device(store)
    ingest_process.start(**NEVER_COMMIT)
    body = native.encode_message([native.encode_reading(
        "weight", datetime(2026, 11, 22, 6, 5, tzinfo=UTC), value=65.0, unit="kg")])
    headers = {"Authorization": f"Bearer {device.token}"}
    async with httpx.AsyncClient(base_url=ingest_process.url, timeout=10) as client:
        request = asyncio.create_task(
            client.post(f"/v1/devices/{device.id}/readings", content=body, headers=headers))
        while ingest_process.metric("gateway_ingest_messages_received_total", "http") < 1:
            await asyncio.sleep(0.05)
        ingest_process.kill()
        with pytest.raises(httpx.HTTPError):
            await request  # no answer: the device must retry
        assert await _count(store, device) == 0

        ingest_process.start()
        first = await client.post(f"/v1/devices/{device.id}/readings", content=body,
                                  headers=headers)
        retry = await client.post(f"/v1/devices/{device.id}/readings", content=body,
                                  headers=headers)
    assert first.status_code == 200 and len(first.json()["accepted"]) == 1
    assert retry.json()["duplicates"] == first.json()["accepted"]
    assert await _count(store, device) == 1


async def test_sigterm_commits_and_acks_what_was_received(
        ingest_process: IngestProcess, store: Store,
        broker: embedded.Service) -> None:
    """A clean stop drains the pipeline: received readings are committed before exit."""
    device = await register_device(store)
    ingest_process.start(BATCH_MAX_WAIT_S="3600", BATCH_MAX_EVENTS="1000000")
    probe = MqttProbe(broker.url)
    try:
        for minute in range(5):
            probe.publish(f"devices/{device.id}/up/native", native.encode_message([
                native.encode_reading("weight", datetime(2026, 11, 22, 7, minute, tzinfo=UTC),
                                      value=70.0 + minute, unit="kg")]))
        while ingest_process.metric("gateway_ingest_messages_received_total", "mqtt") < 5:
            await asyncio.sleep(0.05)
        assert await _count(store, device) == 0
        assert ingest_process.terminate() == 0
        assert await _count(store, device) == 5
    finally:
        probe.close()
