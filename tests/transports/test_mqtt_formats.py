"""The standard and vendor formats over MQTT (`devices/{id}/up/{format}`), against a real broker
and database; a hub's topic carries only the readings of devices paired with it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from adapters import vendor_gps, vendor_medicine, vendor_night
from gateway.store.connector import Store
from simulator import standards_devices as sim
from tests.support import MqttProbe, RunningGateway, wait_until
from tests.transports.test_http_standards import SOCIAL, register

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


async def _kinds(store: Store, device_id: str) -> set[tuple[str, str]]:
    rows = await store.pool.fetch("SELECT event_type, kind FROM event WHERE device_id = $1",
                                  device_id)
    return {(r["event_type"], r["kind"]) for r in rows}


async def _wait_kinds(store: Store, device_id: str, expected: set[tuple[str, str]]) -> bool:
    async def check() -> bool:
        return await _kinds(store, device_id) == expected
    return bool(await wait_until(check))


async def test_vendor_and_omh_formats(gateway: RunningGateway, store: Store,
                                      mqtt_probe: MqttProbe) -> None:
    gps = await register(store, gateway, device_type="gps_alarm", assignments=SOCIAL)
    night = await register(store, gateway, device_type="night_sensor", assignments=SOCIAL)
    robot = await register(store, gateway, device_type="medicine_robot", assignments=SOCIAL)
    scale = await register(store, gateway, device_type="omh_scale")
    mqtt_probe.publish(f"devices/{gps.id}/up/vendor-gps", vendor_gps.encode_json(
        gps.id, time=T0, lat=57.7, lon=11.97, accuracy=8.0, battery_level=0.5))
    mqtt_probe.publish(f"devices/{night.id}/up/vendor-night", vendor_night.encode_message(
        [vendor_night.encode_event("fall", T0, seq=7)]))
    mqtt_probe.publish(f"devices/{robot.id}/up/vendor-medicine", vendor_medicine.encode_message(
        [vendor_medicine.encode_event("fault", T0, code="E42")]))
    mqtt_probe.publish(f"devices/{scale.id}/up/omh",
                       msgspec.json.encode(sim.omh_body_weight(74.2, T0)))
    assert await _wait_kinds(store, gps.id, {("position", "position"), ("status", "status")})
    assert await _wait_kinds(store, night.id, {("alarm", "alarm")})
    assert await _wait_kinds(store, robot.id, {("alarm", "alarm")})
    assert await _wait_kinds(store, scale.id, {("reading", "weight")})


async def test_bad_vendor_message_is_answered_on_the_error_topic(
        gateway: RunningGateway, store: Store, mqtt_probe: MqttProbe) -> None:
    night = await register(store, gateway, device_type="night_sensor")
    mqtt_probe.subscribe(f"devices/{night.id}/down/error")
    mqtt_probe.publish(f"devices/{night.id}/up/vendor-night", vendor_night.encode_message([
        vendor_night.encode_event("movement", T0),
        {"type": "inactivity", "time": "2026-11-21T09:00:00"}]))
    answers = mqtt_probe.wait_for(1)
    rejected = msgspec.json.decode(answers[0][1])["rejected"]
    assert [(r["field"], r["index"]) for r in rejected] == [("events[1].time", 1)]
    assert await _wait_kinds(store, night.id, {("event", "activity")})


async def test_phd_fhir_from_a_hub_keeps_only_its_paired_devices(
        gateway: RunningGateway, store: Store, mqtt_probe: MqttProbe) -> None:
    hub = await register(store, gateway, device_type="fhir_hub")
    other = await register(store, gateway, device_type="fhir_hub")
    paired = await register(store, gateway, uuid.uuid4().hex[:16].upper(), hub=hub,
                            device_type="pulse_oximeter", token=False)
    foreign = await register(store, gateway, uuid.uuid4().hex[:16].upper(), hub=other,
                             device_type="scale", token=False)
    mqtt_probe.subscribe(f"devices/{hub.id}/down/error")
    bundle = sim.phd_fhir_bundle("ECDE3D4E58532D31", [
        sim.FhirObservation(paired.id, 150456, T0, 97),
        sim.FhirObservation(foreign.id, 188736, T0 + timedelta(minutes=1), 80.5)])
    mqtt_probe.publish(f"devices/{hub.id}/up/phd-fhir", bundle)
    answers = mqtt_probe.wait_for(1)
    rejected = msgspec.json.decode(answers[0][1])["rejected"]
    assert rejected == [{"field": "device", "position": foreign.id,
                         "reason": "the uploader is neither this device nor its paired hub"}]
    assert await _wait_kinds(store, paired.id, {("reading", "spo2")})
    assert await _kinds(store, foreign.id) == set()
