"""MQTT ingest against a real broker and database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest
from prometheus_client import REGISTRY

from adapters import native
from gateway.store.connector import Store
from tests.support import FakeDevice, MqttProbe, RunningGateway, register_device, wait_until

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 21, 7, 30, tzinfo=UTC)


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _message(*weights: float, start: datetime = T0) -> bytes:
    return native.encode_message([
        native.encode_reading("weight", start + timedelta(minutes=i), value=w, unit="kg")
        for i, w in enumerate(weights)])


async def _count(store: Store, device: FakeDevice) -> int:
    return int(await store.pool.fetchval("SELECT count(*) FROM event WHERE device_id = $1",
                                         device.id))


async def test_reading_is_stored_and_acknowledged(gateway: RunningGateway, store: Store,
                                                  device: FakeDevice,
                                                  mqtt_probe: MqttProbe) -> None:
    acked_before = _metric("gateway_ingest_messages_acked_total", transport="mqtt")
    mqtt_probe.publish(f"devices/{device.id}/up/native", _message(81.5, 81.7))
    assert await wait_until(lambda: _count_is(store, device, 2))
    assert await wait_until(lambda: _acked_at_least(acked_before + 1))
    rows = await store.pool.fetch("SELECT kind, code, source FROM event "
                                  "WHERE device_id = $1", device.id)
    assert {(r["kind"], r["code"], r["source"]) for r in rows} == {("weight", 188736, "native")}
    deliveries = await store.pool.fetch(
        "SELECT d.huvudman, d.lane FROM delivery d JOIN event e USING (event_id) "
        "WHERE e.device_id = $1", device.id)
    assert [(d["huvudman"], d["lane"]) for d in deliveries] == [("14", "bulk")] * 2


async def _count_is(store: Store, device: FakeDevice, n: int) -> bool:
    return await _count(store, device) == n


async def _acked_at_least(n: float) -> bool:
    return _metric("gateway_ingest_messages_acked_total", transport="mqtt") >= n


async def test_redelivery_and_resend_over_another_transport_store_once(
        gateway: RunningGateway, store: Store, device: FakeDevice,
        mqtt_probe: MqttProbe) -> None:
    payload = _message(90.0, 90.1, 90.2)
    dup_before = _metric("gateway_ingest_events_duplicate_total", transport="mqtt")
    mqtt_probe.publish(f"devices/{device.id}/up/native", payload)
    mqtt_probe.publish(f"devices/{device.id}/up/native", payload)
    assert await wait_until(lambda: _duplicates_reach(dup_before + 3))
    # The same offline batch, sent late over HTTP: the deterministic ids absorb it too.
    async with httpx.AsyncClient(base_url=gateway.http) as client:
        answer = await client.post(f"/v1/devices/{device.id}/readings", content=payload,
                                   headers={"Authorization": f"Bearer {device.token}"})
    assert answer.status_code == 200
    assert answer.json()["accepted"] == [] and len(answer.json()["duplicates"]) == 3
    assert await _count(store, device) == 3


async def _duplicates_reach(n: float) -> bool:
    return _metric("gateway_ingest_events_duplicate_total", transport="mqtt") >= n


async def test_invalid_message_is_answered_acknowledged_and_counted(
        gateway: RunningGateway, store: Store, device: FakeDevice,
        mqtt_probe: MqttProbe) -> None:
    mqtt_probe.subscribe(f"devices/{device.id}/down/error")
    rejected_before = _metric("gateway_ingest_rejected_total", transport="mqtt",
                              reason="readings")
    acked_before = _metric("gateway_ingest_messages_acked_total", transport="mqtt")
    bad = native.encode_message([
        native.encode_reading("weight", T0, value=75.0, unit="kg"),
        native.encode_reading("spo2", T0, value=130, unit="%"),
        native.encode_reading("weight", T0 + timedelta(minutes=1), value=75.0, unit="stone"),
    ])
    mqtt_probe.publish(f"devices/{device.id}/up/native", bad)
    mqtt_probe.publish(f"devices/{device.id}/up/native", b"\xff\xfe not json")
    answers = mqtt_probe.wait_for(2)
    assert len(answers) == 2
    first = msgspec.json.decode(answers[0][1])["rejected"]
    assert first == [
        {"field": "readings[1].value", "reason": "physiologically impossible: outside 30–100 %",
         "index": 1},
        {"field": "readings[2].unit", "reason": "unknown unit; expected kg", "index": 2}]
    assert msgspec.json.decode(answers[1][1]) == {
        "rejected": [{"field": "$", "reason": "malformed JSON"}]}
    assert await wait_until(lambda: _acked_at_least(acked_before + 2))
    assert _metric("gateway_ingest_rejected_total", transport="mqtt",
                   reason="readings") == rejected_before + 2
    assert await _count(store, device) == 1  # the good reading of the first message


async def test_unregistered_device_is_told_so(gateway: RunningGateway,
                                              mqtt_probe: MqttProbe) -> None:
    mqtt_probe.subscribe("devices/NOT-REGISTERED-1/down/error")
    mqtt_probe.publish("devices/NOT-REGISTERED-1/up/native", _message(70.0))
    answers = mqtt_probe.wait_for(1)
    assert msgspec.json.decode(answers[0][1]) == {
        "rejected": [{"field": "device", "reason": "device is not registered"}]}


async def test_reading_outside_every_assignment_reaches_no_huvudman(
        gateway: RunningGateway, store: Store, mqtt_probe: MqttProbe) -> None:
    """Measured before the device was lent out: stored, but queued for nobody."""
    lent = await register_device(store, assignments=[
        {"huvudman": "1480", "subject_ref": "test-subject-2", "legal_basis": "SoL",
         "kinds": ["weight"], "valid_from": "2026-11-21T08:00:00+00:00"}])
    await gateway.knows(lent)
    before, after = T0, T0 + timedelta(hours=1)   # 07:30 and 08:30
    mqtt_probe.publish(f"devices/{lent.id}/up/native", _message(60.0, start=before))
    mqtt_probe.publish(f"devices/{lent.id}/up/native", _message(61.0, start=after))
    assert await wait_until(lambda: _count_is(store, lent, 2))
    rows = await store.pool.fetch(
        "SELECT e.measured_at, d.huvudman FROM event e LEFT JOIN delivery d USING (event_id) "
        "WHERE e.device_id = $1 ORDER BY e.measured_at", lent.id)
    assert [(r["measured_at"], r["huvudman"]) for r in rows] == [(before, None), (after, "1480")]
