"""The shipped broker configuration against a device that tries to take the gateway's session:
it connects with the gateway's client id and a clean session, which on a broker that trusts the
client id would discard the gateway's persistent session and every reading queued in it. The
broker is config/mosquitto as shipped (TLS, users, ACL, durability), and the gateway connects to
it as in production (mqtts, a broker user per channel)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from adapters import native
from gateway.demo import embedded
from gateway.store.connector import Store
from gateway.tls import client_context
from tests.broker import ShippedBroker, shipped_broker
from tests.support import FakeDevice, RunningGateway, register_device, running_gateway, wait_until

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(embedded.mosquitto_binary() is None,
                                 reason="the shipped configuration is Mosquitto's")]

GATEWAY_USERS = {"gateway-ingest": f"test-up-{uuid.uuid4().hex}",
                 "gateway-ingest-alarm": f"test-alarm-{uuid.uuid4().hex}"}
READINGS = 200


def _client(broker: ShippedBroker, user: str, password: str, client_id: str, *,
            clean: bool) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=clean, protocol=mqtt.MQTTv311)
    client.username_pw_set(user, password)
    client.tls_set_context(client_context(broker.ca_file))
    connected: list[object] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: connected.append(reason)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    deadline = time.monotonic() + 5
    while not connected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert connected and not getattr(connected[0], "is_failure", True), connected
    return client


def _take_over(broker: ShippedBroker, device: FakeDevice) -> None:
    """What an attacker with any device's credential can do: connect as the gateway's client
    ids with a clean session."""
    for client_id in GATEWAY_USERS:
        attacker = _client(broker, device.id, device.token, client_id, clean=True)
        time.sleep(0.2)
        attacker.disconnect()
        attacker.loop_stop()


def _publish(broker: ShippedBroker, device: FakeDevice, n: int, start: datetime) -> None:
    """`n` readings, each acknowledged by the broker (QoS 1) before the next."""
    client = _client(broker, device.id, device.token, f"{device.id}-sender", clean=True)
    try:
        for i in range(n):
            body = native.encode_message([native.encode_reading(
                "weight", start + timedelta(minutes=i), value=70.0 + i / 100, unit="kg")])
            client.publish(f"devices/{device.id}/up/native", body, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


async def _stored(store: Store, device: FakeDevice) -> int:
    return int(await store.pool.fetchval("SELECT count(*) FROM event WHERE device_id = $1",
                                         device.id))


@pytest.fixture
async def device(store: Store, gateway: RunningGateway) -> FakeDevice:
    registered = await register_device(store)
    await gateway.knows(registered)
    return registered


async def test_a_device_cannot_take_the_gateways_session_or_knock_it_off(
        gateway: RunningGateway, store: Store, device: FakeDevice, tmp_path: Path) -> None:
    users = GATEWAY_USERS | {device.id: device.token}
    with shipped_broker(tmp_path / "broker", users) as broker:
        settings = dataclasses.replace(
            gateway.settings, http_port=embedded.free_port(), sip_port=0,
            delivery_enabled=False, supervision_enabled=False, mqtt_ca_file=broker.ca_file,
            mqtt_client_id="gateway-ingest",  # the default: the ids the attacker uses
            mqtt_url=broker.url("gateway-ingest", GATEWAY_USERS["gateway-ingest"]),
            mqtt_alarm_url=broker.url("gateway-ingest-alarm",
                                      GATEWAY_USERS["gateway-ingest-alarm"]))
        async with running_gateway(settings) as first:  # its sessions now exist at the broker
            assert first.runtime.mqtt is not None and first.runtime.mqtt_alarm is not None
            await asyncio.wait_for(first.runtime.mqtt.connected.wait(), 10)
            await asyncio.wait_for(first.runtime.mqtt_alarm.connected.wait(), 10)
        start = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
        await asyncio.to_thread(_publish, broker, device, READINGS, start)
        await asyncio.to_thread(_take_over, broker, device)
        async with running_gateway(settings) as second:
            # Every reading the broker acknowledged while the gateway was away arrives.
            assert await wait_until(
                lambda: _count_is(store, device, READINGS), timeout=30), \
                f"{await _stored(store, device)} of {READINGS} stored"
            # The same trick while it runs does not knock it off its session.
            assert second.runtime.mqtt is not None
            client = second.runtime.mqtt.client
            await asyncio.to_thread(_take_over, broker, device)
            await asyncio.sleep(0.5)
            assert client.is_connected()
            await asyncio.to_thread(_publish, broker, device, 1, start + timedelta(days=1))
            assert await wait_until(lambda: _count_is(store, device, READINGS + 1), timeout=10)


async def _count_is(store: Store, device: FakeDevice, n: int) -> bool:
    return await _stored(store, device) == n


def test_the_gateway_refuses_two_channels_as_one_broker_user() -> None:
    from gateway.settings import Settings
    from gateway.transports.mqtt_ingest import MqttConfigError, check_settings

    one_user = dataclasses.replace(Settings(), mqtt_url="mqtts://gateway-ingest:x@broker:8883")
    with pytest.raises(MqttConfigError, match="MQTT_ALARM_URL: the alarm channel needs"):
        check_settings(one_user)
    check_settings(dataclasses.replace(one_user, mqtt_channels=("up",)))  # one channel: fine
    check_settings(dataclasses.replace(
        one_user, mqtt_alarm_url="mqtts://gateway-ingest-alarm:y@broker:8883"))
    with pytest.raises(MqttConfigError, match="MQTT_URL must look like"):
        check_settings(dataclasses.replace(Settings(), mqtt_url="http://broker:8883"))


async def test_a_message_too_large_is_refused_not_acknowledged_and_lost(
        gateway: RunningGateway, store: Store, device: FakeDevice, tmp_path: Path) -> None:
    """Over the shipped broker's packet limit: no PUBACK (the device knows, and keeps it). Over
    the gateway's payload limit only: an answer on the device's error topic."""
    with shipped_broker(tmp_path / "broker", GATEWAY_USERS | {device.id: device.token}) as broker:
        settings = dataclasses.replace(
            gateway.settings, http_port=embedded.free_port(), sip_port=0,
            delivery_enabled=False, supervision_enabled=False, mqtt_ca_file=broker.ca_file,
            mqtt_url=broker.url("gateway-ingest", GATEWAY_USERS["gateway-ingest"]),
            mqtt_alarm_url=broker.url("gateway-ingest-alarm",
                                      GATEWAY_USERS["gateway-ingest-alarm"]))
        async with running_gateway(settings) as running:
            assert running.runtime.mqtt is not None
            await asyncio.wait_for(running.runtime.mqtt.connected.wait(), 10)
            client = _client(broker, device.id, device.token, f"{device.id}-big", clean=True)
            errors: list[bytes] = []
            client.on_message = lambda _c, _u, msg: errors.append(msg.payload)
            client.subscribe(f"devices/{device.id}/down/error", 1)
            await asyncio.sleep(0.2)
            try:
                over_gateway = client.publish(f"devices/{device.id}/up/native", b" " * 263_000,
                                              qos=1)
                await asyncio.to_thread(over_gateway.wait_for_publish, 5)
                assert over_gateway.is_published()  # the broker took it; the gateway answers
                assert await wait_until(lambda: bool(errors), timeout=5)
                assert b"payload larger than 262144 bytes" in errors[0]
                too_large = client.publish(f"devices/{device.id}/up/native", b" " * 300_000,
                                           qos=1)
                with contextlib.suppress(RuntimeError):  # paho: the connection was dropped
                    await asyncio.to_thread(too_large.wait_for_publish, 3)
                assert not too_large.is_published()  # never acknowledged: the device keeps it
            finally:
                client.disconnect()
                client.loop_stop()
    assert await _stored(store, device) == 0
