"""An alarm leaves for its alarm centre while it is being committed, never waiting for the commit
(issue 12): with the commit held up by a slow database, with the database away, and with the
gateway killed between the relay and the commit. The device is acknowledged only after the
commit in each case, and the alarm is stored once and is one alarm (one ref) at the centre.

The database is slowed by a lock on `event` taken by its owner (every commit waits for it) and
sent away by refusing the runtime role its logins and cutting its connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from adapters import native, scaip
from adapters.scaip import Mty, Snu
from gateway.delivery import alarm_history
from gateway.delivery.scaip_alarm import ref_for
from gateway.demo import embedded
from gateway.store.connector import Store
from simulator.arc import ScaipArc
from simulator.scaip_device import ScaipUnit, UnitSpec
from tests.processes import IngestProcess
from tests.support import (
    ARC_TEST_TIMING,
    FakeDevice,
    Keys,
    MqttProbe,
    RunningGateway,
    register_device,
    register_scaip_unit,
    wait_until,
)

pytestmark = pytest.mark.integration
NO_SINK = "1447"
RUNTIME_LOGIN = "gateway_test_runtime"
Arcs = dict[str, tuple[ScaipArc, ScaipArc]]


@contextlib.asynccontextmanager
async def commits_held(owner_url: str) -> AsyncIterator[asyncpg.Connection]:
    """Every commit of an event waits until the block ends; reads go on."""
    conn = await asyncpg.connect(owner_url)
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("LOCK TABLE event IN EXCLUSIVE MODE")
        try:
            yield conn
        finally:
            await tx.rollback()
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def database_away(owner_url: str) -> AsyncIterator[None]:
    """The gateway's role can neither keep nor open a connection until the block ends."""
    conn = await asyncpg.connect(owner_url)
    try:
        await conn.execute(f"ALTER ROLE {RUNTIME_LOGIN} NOLOGIN")
        await conn.fetch("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE usename = $1", RUNTIME_LOGIN)
        try:
            yield
        finally:
            await conn.execute(f"ALTER ROLE {RUNTIME_LOGIN} LOGIN")
    finally:
        await conn.close()


async def _stored(owner_url: str, device_id: str) -> list[uuid.UUID]:
    conn = await asyncpg.connect(owner_url)
    try:
        return [r["event_id"] for r in await conn.fetch(
            "SELECT event_id FROM event WHERE device_id = $1 AND event_type = 'alarm'",
            device_id)]
    finally:
        await conn.close()


def _messages(arc: ScaipArc) -> list[tuple[str, int | None]]:
    """(ref, snu) of every alarm the centre was sent (resets and heartbeats left out)."""
    return [(r.ref, r.snu) for r in arc.received if r.mty == Mty.MESSAGE]


def _pair(arcs: Arcs, name: str) -> tuple[ScaipArc, ScaipArc]:
    primary, secondary = arcs[name]
    primary.clear()
    secondary.clear()
    return primary, secondary


async def _alarmed_device(store: Store, gateway: RunningGateway, receiver: str) -> FakeDevice:
    device = await register_device(store, device_type="gps_alarm", assignments=[
        {"huvudman": NO_SINK, "subject_ref": "test-relay-subject", "legal_basis": "SoL",
         "kinds": ["alarm"], "valid_from": "2026-01-01T00:00:00+00:00",
         "alarm_route": receiver}])
    await gateway.knows(device)
    return device


def _alarm_body(at: str = "2026-11-22T05:00:00+00:00") -> bytes:
    return native.encode_message([], alarms=[{"type": "fall", "priority": 9, "time": at}])


async def _post(gateway: RunningGateway, device: FakeDevice) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.http, timeout=30) as client:
        return await client.post(f"/v1/devices/{device.id}/readings", content=_alarm_body(),
                                 headers={"Authorization": f"Bearer {device.token}"})


async def _history(store: Store, event_id: uuid.UUID, wanted: str) -> list[str]:
    async def written() -> list[str] | None:
        found = await alarm_history.history(store, event_id)
        texts = [s.what for s in found.steps] if found is not None else []
        return texts if wanted in texts else None
    result: list[str] = await wait_until(written, timeout=10)
    return result


async def test_the_centre_has_the_alarm_while_its_commit_waits_for_a_slow_database(
        gateway: RunningGateway, store: Store, arcs: Arcs, owner_database_url: str) -> None:
    primary, _ = _pair(arcs, "test-arc-slowdb")
    device = await _alarmed_device(store, gateway, "test-arc-slowdb")
    async with commits_held(owner_database_url):
        post = asyncio.create_task(_post(gateway, device))
        await wait_until(lambda: _messages(primary), timeout=5)
        # The centre has it and accepted it; the device has no answer and nothing is stored.
        await asyncio.sleep(0.3)
        assert [snu for _, snu in _messages(primary)] == [Snu.OK]
        assert not post.done(), "the device was answered before its alarm was committed"
        assert await _stored(owner_database_url, device.id) == []
    answer = await post
    assert answer.status_code == 200, answer.text
    [event_id] = await _stored(owner_database_url, device.id)
    assert _messages(primary) == [(ref_for(event_id, "test-arc-slowdb"), Snu.OK)]

    texts = await _history(store, event_id,
                           "answer from alarm centre test-arc-slowdb (primary): accepted (snu 0)")
    assert "sent to alarm centre test-arc-slowdb (primary), before the alarm was committed" \
        in texts
    assert any(t.startswith("delivered to alarm centre test-arc-slowdb") for t in texts)


async def test_a_scaip_units_alarm_reaches_the_centre_before_the_unit_is_answered(
        gateway: RunningGateway, store: Store, arcs: Arcs, owner_database_url: str) -> None:
    """Over SIP: the centre's `<mrq>` goes out while the commit waits; the unit's `<mrs>`
    (snu 0) only once the alarm is committed."""
    primary, _ = _pair(arcs, "test-arc-sipslow")
    device = await register_scaip_unit(store, assignments=[
        {"huvudman": NO_SINK, "subject_ref": "test-relay-sip", "legal_basis": "SoL",
         "kinds": ["alarm"], "valid_from": "2026-01-01T00:00:00+00:00",
         "alarm_route": "test-arc-sipslow"}])
    await gateway.knows(device)
    unit = ScaipUnit(UnitSpec("gps_alarm", device.id.split(":")[1], None, device.token),
                     ("127.0.0.1", gateway.settings.sip_port), answer_timeout_s=10.0)
    try:
        async with commits_held(owner_database_url):
            answered = asyncio.create_task(asyncio.to_thread(
                unit.send, unit.mrq("SIPSLOW1", stc=scaip.STC_MANUAL, pri=9), ref="SIPSLOW1"))
            await wait_until(lambda: _messages(primary), timeout=5)
            await asyncio.sleep(0.3)
            assert not answered.done(), "the unit was answered before its alarm was committed"
            assert await _stored(owner_database_url, device.id) == []
        outcome = await answered
    finally:
        unit.close()
    assert outcome.snu == Snu.OK and outcome.attempts == 1
    [event_id] = await _stored(owner_database_url, device.id)
    assert _messages(primary) == [(ref_for(event_id, "test-arc-sipslow"), Snu.OK)]


async def test_with_the_database_away_the_alarm_is_relayed_and_escalated_then_stored_once(
        gateway: RunningGateway, store: Store, arcs: Arcs, owner_database_url: str) -> None:
    primary, secondary = _pair(arcs, "test-arc-dbaway")
    primary.mode = "busy"
    device = await _alarmed_device(store, gateway, "test-arc-dbaway")
    async with database_away(owner_database_url):
        post = asyncio.create_task(_post(gateway, device))
        await wait_until(lambda: _messages(secondary), timeout=5)
        assert [snu for _, snu in _messages(primary)] == [Snu.BUSY]
        assert [snu for _, snu in _messages(secondary)] == [Snu.OK]
        await asyncio.sleep(0.5)
        assert not post.done(), "the device was answered while nothing could be committed"
    answer = await post  # the pipeline commits what it held once the database is back
    assert answer.status_code == 200, answer.text
    [event_id] = await _stored(owner_database_url, device.id)
    ref = ref_for(event_id, "test-arc-dbaway")
    # The device sends it again (as one would after a lost answer): one alarm at the centre.
    again = await _post(gateway, device)
    assert again.status_code == 200 and again.json()["duplicates"] == [str(event_id)]
    await asyncio.sleep(0.5)
    assert _messages(primary) == [(ref, Snu.BUSY)]
    assert _messages(secondary) == [(ref, Snu.OK)]
    assert await _stored(owner_database_url, device.id) == [event_id]

    texts = await _history(store, event_id,
                           "answer from alarm centre test-arc-dbaway (secondary): accepted (snu 0)")
    assert "sent to alarm centre test-arc-dbaway (primary), before the alarm was committed" \
        in texts
    assert "sent to alarm centre test-arc-dbaway (secondary), before the alarm was committed" \
        in texts
    assert "incident raised: arc_escalated" in texts


# --- the gateway killed between the relay and the commit --------------------------------------

@pytest.fixture
async def lone_arc() -> AsyncIterator[ScaipArc]:
    arc = ScaipArc(tcp=False)
    await arc.start()
    yield arc
    await arc.stop()


@pytest.fixture
def relaying_process(database_url: str, broker: embedded.Service, keys: Keys, lone_arc: ScaipArc,
                     tmp_path: Path) -> Iterator[IngestProcess]:
    timing = "\n".join(f"{k} = {list(v) if isinstance(v, tuple) else v}"
                       for k, v in ARC_TEST_TIMING.items())
    sinks = tmp_path / "sinks.toml"
    sinks.write_text(f'[[arc]]\nreceiver = "test-arc-killed"\ncid = "4600000001"\n'
                     f'primary = "udp://{lone_arc.host}:{lone_arc.udp_port}"\n{timing}\n')
    assert keys.relay_public is not None and keys.relay_private is not None
    process = IngestProcess({
        "DATABASE_URL": database_url, "MQTT_URL": broker.url,
        "MQTT_CLIENT_ID": f"relay-test-{uuid.uuid4().hex[:8]}", "SINKS_FILE": str(sinks),
        "ALARM_RELAY_PUBLIC_KEY_FILE": str(keys.relay_public),
        "ALARM_RELAY_PRIVATE_KEY_FILE": str(keys.relay_private), "ARC_LEASE_S": "2",
        "SUPERVISION": "off", **keys.env()}, log=tmp_path / "gateway.log")
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.kill()


async def test_killed_between_relay_and_commit_the_resend_is_the_same_alarm_stored_once(
        needs_redelivering_broker: None, relaying_process: IngestProcess, store: Store,
        broker: embedded.Service, lone_arc: ScaipArc, owner_database_url: str) -> None:
    device = await register_device(store, device_type="gps_alarm", assignments=[
        {"huvudman": NO_SINK, "subject_ref": "test-relay-killed", "legal_basis": "SoL",
         "kinds": ["alarm"], "valid_from": "2026-01-01T00:00:00+00:00",
         "alarm_route": "test-arc-killed"}])
    relaying_process.start()
    probe = MqttProbe(broker.url)
    try:
        async with commits_held(owner_database_url):
            probe.publish(f"devices/{device.id}/alarm/native", _alarm_body())
            await wait_until(lambda: _messages(lone_arc), timeout=10)
            assert await _stored(owner_database_url, device.id) == []
            assert relaying_process.metric("gateway_ingest_messages_acked_total", "mqtt") == 0
            relaying_process.kill()  # relayed, never committed, never acknowledged
        [(first_ref, snu)] = _messages(lone_arc)
        assert snu == Snu.OK

        relaying_process.start()  # the same persistent session: the broker sends it again
        stored = await wait_until(lambda: _stored(owner_database_url, device.id), timeout=15)
        await wait_until(lambda: len(_messages(lone_arc)) == 2, timeout=10)
        deadline = time.monotonic() + 10
        while relaying_process.metric("gateway_ingest_messages_acked_total", "mqtt") < 1:
            assert time.monotonic() < deadline, "the resent alarm was never acknowledged"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert stored == await _stored(owner_database_url, device.id)
        [event_id] = stored
        # The same alarm to the centre: the same ref both times, derived from the event.
        assert _messages(lone_arc) == [(first_ref, Snu.OK), (first_ref, Snu.OK)]
        assert first_ref == ref_for(event_id, "test-arc-killed")
        texts = await _history(store, event_id,
                               "answer from alarm centre test-arc-killed (primary): accepted "
                               "(snu 0)")
        assert any(t.startswith("delivered to alarm centre test-arc-killed") for t in texts)
        assert relaying_process.terminate() == 0
    finally:
        probe.close()
