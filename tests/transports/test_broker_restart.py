"""The broker restarts while devices keep sending: ingest reconnects to its persistent session
and every reading the devices sent is stored exactly once."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from adapters import native
from gateway.demo import embedded
from gateway.roles.ingest import Runtime, serve
from gateway.settings import Settings
from gateway.store.connector import Store
from tests.support import Keys, register_device, wait_until

pytestmark = pytest.mark.integration


async def test_readings_survive_a_broker_restart(
        needs_redelivering_broker: None, database_url: str, store: Store, keys: Keys,
        tmp_path: Path) -> None:
    port = embedded.free_port()
    broker = embedded.start_mosquitto(tmp_path / "broker", port)
    settings = dataclasses.replace(
        Settings(), database_url=database_url, mqtt_url=broker.url,
        http_port=embedded.free_port(), sip_port=0,
        mqtt_client_id=f"restart-{uuid.uuid4().hex[:8]}",
        pseudonym_secret_file=keys.pseudonym_secret,
        quarantine_public_key_file=keys.quarantine_public)
    device = await register_device(store)
    started: asyncio.Future[Runtime] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, install_signals=False, started=started,
                                     stop_event=stop))
    runtime = await asyncio.wait_for(started, 30)
    await asyncio.wait_for(runtime.mqtt.connected.wait(), 10)  # type: ignore[union-attr]
    while runtime.registry.device(device.id) is None:
        await asyncio.sleep(0.01)

    # The device keeps its own persistent session, as a device that buffers would.
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{device.id}",
                         clean_session=False)
    sender.reconnect_delay_set(1, 2)
    sender.connect("127.0.0.1", port)
    sender.loop_start()
    t0 = datetime(2026, 11, 22, 5, 0, tzinfo=UTC)
    topic = f"devices/{device.id}/up/native"
    total = 300
    try:
        for i in range(total):
            if i == 100:
                await asyncio.to_thread(broker.stop)        # a clean broker restart
                await asyncio.sleep(0.5)
            if i == 200:
                broker = await asyncio.to_thread(
                    embedded.start_mosquitto, tmp_path / "broker", port)
            sender.publish(topic, native.encode_message([native.encode_reading(
                "weight", t0 + timedelta(minutes=i), value=70.0, unit="kg")]), qos=1)
            await asyncio.sleep(0.005)

        async def all_stored() -> bool:
            n = await store.pool.fetchval("SELECT count(*) FROM event WHERE device_id = $1",
                                          device.id)
            return int(n) == total

        assert await wait_until(all_stored, timeout=30), "readings were lost"
        await asyncio.sleep(0.5)
        assert await store.pool.fetchval(
            "SELECT count(DISTINCT event_id) FROM event WHERE device_id = $1",
            device.id) == total
    finally:
        sender.loop_stop()
        sender.disconnect()
        stop.set()
        await asyncio.wait_for(task, 30)
        broker.stop()
