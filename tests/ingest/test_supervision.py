"""Device supervision: silent devices and low batteries raise technical alarms, once.

The decision functions are tested on their own; the integration tests drive the running
gateway's supervisor (tests/conftest.py `gateway`) with per-device intervals of seconds and a
short grace, against the real database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from adapters import native
from adapters.events import Alarm, AlarmType, DeviceStatus, event_id
from gateway.ingest.supervision import (
    SOURCE,
    Supervisor,
    battery_transition,
    due_for_silence_alarm,
    expected_interval,
    parse_intervals,
    silence_start,
)
from gateway.ownership import registration
from gateway.ownership.credentials import token_hash
from gateway.ownership.registry import Device
from gateway.settings import Settings
from gateway.store.connector import Store
from tests.support import FakeDevice, Keys, RunningGateway, open_copies, wait_until

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
ROUTE = "test-arc-supervision"


# --- the pure decisions --------------------------------------------------------------------

def _due(since: datetime | None, now: datetime, *, interval: timedelta | None = 15 * MIN,
         watching: datetime = T0 - timedelta(days=1), alarmed: datetime | None = None) -> bool:
    return due_for_silence_alarm(since=since, interval=interval, grace=MIN, now=now,
                                 watching_since=watching, alarmed_for=alarmed)


def test_silence_is_due_after_interval_and_grace_and_only_once_per_silence() -> None:
    assert not _due(T0, T0 + 15 * MIN)
    assert not _due(T0, T0 + 16 * MIN - timedelta(seconds=1))
    assert _due(T0, T0 + 16 * MIN)
    assert not _due(T0, T0 + 60 * MIN, alarmed=T0)  # already alarmed for this silence
    # Heard again at T0+20: a new silence, alarmed again once it lasts.
    later = T0 + 20 * MIN
    assert not _due(later, later + 10 * MIN, alarmed=T0)
    assert _due(later, later + 16 * MIN, alarmed=T0)


def test_unsupervised_or_unknown_devices_are_never_due() -> None:
    assert not _due(T0, T0 + timedelta(days=30), interval=None)  # scales, BP meters
    assert not _due(None, T0 + timedelta(days=30))  # nothing to count from


def test_a_starting_supervisor_gives_every_device_a_full_interval() -> None:
    started = T0 + 120 * MIN  # the gateway was down for two hours
    assert not _due(T0, started + MIN, watching=started)
    assert _due(T0, started + 16 * MIN, watching=started)


def test_silence_counts_from_the_later_of_last_heard_and_assignment_start() -> None:
    assert silence_start(T0, T0 + MIN) == T0 + MIN  # in stock long ago, lent out now
    assert silence_start(T0 + 2 * MIN, T0) == T0 + 2 * MIN
    assert silence_start(None, T0) == T0  # lent out and never heard
    assert silence_start(None, None) is None


def test_expected_interval_device_then_scaip_hbi_then_type() -> None:
    types = parse_intervals("gps_alarm=15, night_sensor=15,medicine_robot=60,scale=none")
    assert types == {"gps_alarm": 15 * MIN, "night_sensor": 15 * MIN,
                     "medicine_robot": 60 * MIN}
    gps = Device("g", "gps_alarm", "assigned", None, None)
    assert expected_interval(gps, types) == 15 * MIN
    assert expected_interval(gps, types, scaip_hbi_min=10) == 10 * MIN
    own = dataclasses.replace(gps, heartbeat_interval=timedelta(minutes=5))
    assert expected_interval(own, types, scaip_hbi_min=10) == 5 * MIN
    assert expected_interval(Device("s", "scale", "assigned", None, None), types) is None
    with pytest.raises(ValueError):
        parse_intervals("gps_alarm")


def _status(battery: float | None, at: datetime, charging: bool | None = None) -> DeviceStatus:
    return DeviceStatus(event_id=event_id("d", "status", at), device_id="d", measured_at=at,
                        received_at=at, source="native", battery_pct=battery,
                        charging=charging)


def test_battery_low_starts_once_per_low_period_with_hysteresis() -> None:
    low, starts = battery_transition(None, _status(14, T0), 15)
    assert (low, starts) == (T0, True)
    assert battery_transition(low, _status(9, T0 + MIN), 15) == (T0, False)  # still low
    assert battery_transition(low, _status(17, T0 + MIN), 15) == (T0, False)  # wavering
    assert battery_transition(low, _status(20, T0 + MIN), 15) == (None, False)  # recovered
    assert battery_transition(low, _status(10, T0 + MIN, charging=True), 15) == (None, False)
    assert battery_transition(None, _status(None, T0), 15) == (None, False)
    assert battery_transition(None, _status(50, T0), 15) == (None, False)


# --- against the real database and the running gateway ---------------------------------------

async def _device(store: Store, gateway: RunningGateway, *, interval_s: int | None,
                  assigned: bool = True) -> FakeDevice:
    device = FakeDevice(f"T-SUPV-{uuid.uuid4().hex[:10]}", f"test-token-{uuid.uuid4().hex}")
    assignments = [registration.AssignmentSpec.model_validate({
        "device": device.id, "huvudman": "1480", "subject_ref": "test-subject-supervision",
        "legal_basis": "SoL", "kinds": ["alarm", "status"], "alarm_route": ROUTE,
        "valid_from": "2026-01-01T00:00:00+00:00"})] if assigned else []
    await registration.apply_config(store, registration.ConfigFile(
        device=[registration.DeviceSpec(id=device.id, type="gps_alarm",
                                 token_sha256=token_hash(device.token).hex(),
                                 heartbeat_interval_s=interval_s)],
        assignment=assignments))
    await gateway.knows(device)
    return device


async def _send_status(gateway: RunningGateway, device: FakeDevice, **status: Any) -> None:
    body = native.encode_message([], status={"time": datetime.now(UTC).isoformat(), **status})
    async with httpx.AsyncClient(base_url=gateway.http) as client:
        answer = await client.post(f"/v1/devices/{device.id}/readings", content=body,
                                   headers={"Authorization": f"Bearer {device.token}"})
    assert answer.status_code == 200, answer.text


async def _raised(store: Store, device: FakeDevice) -> list[uuid.UUID]:
    rows = await store.pool.fetch(
        "SELECT event_id FROM event WHERE device_id = $1 AND source = $2 ORDER BY measured_at",
        device.id, SOURCE)
    return [r["event_id"] for r in rows]


def _supervisor(gateway: RunningGateway) -> Supervisor:
    supervisor = gateway.runtime.supervisor
    assert isinstance(supervisor, Supervisor)
    return supervisor


async def test_a_silent_assigned_device_raises_one_routed_sealed_alarm(
        gateway: RunningGateway, store: Store, keys: Keys,
        monkeypatch: pytest.MonkeyPatch) -> None:
    supervisor = _supervisor(gateway)
    monkeypatch.setattr(supervisor, "grace", timedelta(seconds=1))
    silent = await _device(store, gateway, interval_s=1)
    talking = await _device(store, gateway, interval_s=3)
    in_stock = await _device(store, gateway, interval_s=1, assigned=False)
    for device in (silent, talking, in_stock):
        await _send_status(gateway, device, battery=80)
    await asyncio.sleep(2.5)
    await _send_status(gateway, talking, battery=79)  # keeps sending

    raised = await supervisor.check()
    assert [a.device_id for a in raised] == [silent.id]
    assert await supervisor.check() == []  # the same silence is not raised again
    (eid,) = await _raised(store, silent)
    assert await _raised(store, talking) == [] and await _raised(store, in_stock) == []

    delivery = await store.pool.fetchrow(
        "SELECT huvudman, receiver, lane FROM delivery WHERE event_id = $1", eid)
    assert dict(delivery) == {"huvudman": "1480", "receiver": ROUTE, "lane": "alarm"}
    copies = await open_copies(store, keys, eid)
    assert set(copies) == {"1480"}
    alarm = copies["1480"].event
    assert isinstance(alarm, Alarm)
    assert (alarm.alarm_type, alarm.technical) == (AlarmType.DEVICE_SILENT, True)

    # A restarted supervisor (or a second instance) knows when the device was last heard,
    # and raising the same silence again stores nothing new.
    await supervisor.flush()
    restarted = Supervisor(store, gateway.runtime.registry, gateway.settings,
                           sink=gateway.runtime.pipeline)
    restarted.grace, restarted.watching_since = supervisor.grace, supervisor.watching_since
    await restarted.load()
    assert restarted.last_seen[silent.id] == supervisor.last_seen[silent.id]
    again = await restarted.check()
    assert [a.event_id for a in again if a.device_id == silent.id] == [eid]
    assert await _raised(store, silent) == [eid]

    # Heard again, then silent again: a new silence, a new alarm.
    await _send_status(gateway, silent, battery=78)
    await asyncio.sleep(2.2)
    (second,) = [a for a in await supervisor.check() if a.device_id == silent.id]
    assert second.event_id != eid
    assert len(await _raised(store, silent)) == 2


async def test_low_battery_raises_one_alarm_per_low_period(
        gateway: RunningGateway, store: Store, keys: Keys) -> None:
    device = await _device(store, gateway, interval_s=None)  # gps_alarm: 15 min by type
    for level in (12, 9, 8):
        await _send_status(gateway, device, battery=level)
    (eid,) = await wait_until(lambda: _raised(store, device))
    await asyncio.sleep(0.2)
    assert await _raised(store, device) == [eid]
    copies = await open_copies(store, keys, eid)
    alarm = copies["1480"].event
    assert isinstance(alarm, Alarm)
    assert (alarm.alarm_type, alarm.technical) == (AlarmType.BATTERY_LOW, True)
    lane = await store.pool.fetchval("SELECT lane FROM delivery WHERE event_id = $1", eid)
    assert lane == "alarm"

    # The low period is persisted: a restarted supervisor does not start a new one.
    supervisor = _supervisor(gateway)
    await supervisor.flush()
    restarted = Supervisor(store, gateway.runtime.registry, gateway.settings)
    await restarted.load()
    assert restarted.battery_low_since[device.id] == supervisor.battery_low_since[device.id]

    # Charged, then low again: a new period, a second alarm.
    await _send_status(gateway, device, battery=60, charging=True)
    await _send_status(gateway, device, battery=10)
    raised = await wait_until(
        lambda: _count_at_least(store, device, 2))
    assert len(raised) == 2


async def _count_at_least(store: Store, device: FakeDevice, n: int) -> list[uuid.UUID] | None:
    raised = await _raised(store, device)
    return raised if len(raised) >= n else None


def test_settings_defaults() -> None:
    settings = Settings()
    assert settings.supervision_grace_s == 60.0
    assert settings.supervision_battery_low_pct == 15.0
    assert parse_intervals(settings.supervision_intervals_min)["gps_alarm"] == 15 * MIN
