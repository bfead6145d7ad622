"""Alarms to alarm receiving centres over SCAIP, end to end: device → gateway → simulated ARC.

The test gateway (tests/conftest.py) has an `[[arc]]` per name in ARC_TEST_RECEIVERS, each with
a simulated primary and secondary ARC (simulator/arc.py) and short timings (ARC_TEST_TIMING:
answer within 1 s, accept within 3 s, resend after hold in 0.2-0.4 s). Each test uses its own
receiver, so no test sees another's traffic. The owning huvudman (NO_SINK) has no webhook:
only the ARC path is under test here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest

from adapters import native, scaip
from adapters.codes import Kind
from adapters.events import Alarm, AlarmType, DeviceEvent, Location, Position
from adapters.scaip import Mty, Snu
from gateway.crypto import Opener, WrappedKey, load_private_key
from gateway.delivery import alarm_history
from gateway.delivery.arc import ArcForwarder, ArcJob, jobs_from
from gateway.delivery.arc_config import ArcSpec
from gateway.delivery.scaip_alarm import did_for, ref_for
from gateway.ingest.pipeline import CommittedBatch
from gateway.ingest.sealing import RelayPlaintext, build_sealing
from gateway.ownership.registry import Registry
from gateway.settings import Settings
from gateway.store.alarms import AlarmDelivery
from gateway.store.connector import Store
from gateway.store.events import BatchRows, DeliveryRow
from simulator.arc import ScaipArc
from simulator.scaip_device import ScaipUnit, UnitSpec
from tests.support import (
    ARC_TEST_TIMING,
    FakeDevice,
    Keys,
    MqttProbe,
    RunningGateway,
    open_copies,
    register_device,
    register_scaip_unit,
    wait_until,
)

pytestmark = pytest.mark.integration
NO_SINK = "1447"
Arcs = dict[str, tuple[ScaipArc, ScaipArc]]


@pytest.fixture(autouse=True)
def _arcs_answer_ok_again(arcs: Arcs) -> Iterator[None]:
    yield
    for primary, secondary in arcs.values():
        primary.mode = secondary.mode = "ok"


def _pair(arcs: Arcs, name: str) -> tuple[ScaipArc, ScaipArc]:
    primary, secondary = arcs[name]
    primary.clear()
    secondary.clear()
    return primary, secondary


def _answers(arc: ScaipArc, ref: str) -> list[int | None]:
    """What `arc` answered to each sending of the alarm `ref` (resets left out)."""
    return [r.snu for r in arc.requests(ref) if r.mty == Mty.MESSAGE]


async def _alarmed_device(store: Store, gateway: RunningGateway, receiver: str) -> FakeDevice:
    device = await register_device(store, device_type="gps_alarm", assignments=[
        {"huvudman": NO_SINK, "subject_ref": "test-arc-subject", "legal_basis": "SoL",
         "kinds": ["alarm", "position"], "valid_from": "2026-01-01T00:00:00+00:00",
         "alarm_route": receiver, "position_consent": True}])
    await gateway.knows(device)
    return device


async def _raise(gateway: RunningGateway, device: FakeDevice, kind: str = "button") -> uuid.UUID:
    body = native.encode_message([], alarms=[{
        "type": kind, "priority": 9, "time": "2026-11-22T05:00:00+00:00",
        "position": {"lat": 57.70887, "lon": 11.97456}}])
    async with httpx.AsyncClient(base_url=gateway.http) as client:
        answer = await client.post(f"/v1/devices/{device.id}/readings", content=body,
                                   headers={"Authorization": f"Bearer {device.token}"})
    assert answer.status_code == 200, answer.text
    stored = answer.json()
    return uuid.UUID((stored["accepted"] + stored["duplicates"])[0])


async def _arc_delivery(store: Store, event_id: uuid.UUID) -> AlarmDelivery:
    rows = [r for r in await store.alarms.deliveries(event_id) if r.target == "arc"]
    assert len(rows) == 1
    return rows[0]


async def _done(store: Store, event_id: uuid.UUID, timeout: float = 10.0) -> AlarmDelivery:
    async def settled() -> AlarmDelivery | None:
        row = await _arc_delivery(store, event_id)
        return row if row.state == "done" else None
    return await wait_until(settled, timeout=timeout)


async def _incidents(store: Store, event_id: uuid.UUID) -> set[str]:
    return {r.reason for r in await store.alarms.incidents(event_id)}


async def test_an_alarm_reaches_the_primary_arc_and_is_done(
        gateway: RunningGateway, store: Store, arcs: Arcs) -> None:
    primary, secondary = _pair(arcs, "test-arc-ok")
    device = await _alarmed_device(store, gateway, "test-arc-ok")
    event_id = await _raise(gateway, device)
    ref = ref_for(event_id, "test-arc-ok")

    await wait_until(lambda: primary.requests(ref), timeout=5)
    row = await _done(store, event_id)
    assert row.huvudman == NO_SINK and row.lane == "alarm"
    got = primary.requests(ref)
    assert [(r.mty, r.snu) for r in got] == [(Mty.MESSAGE, Snu.OK)]
    # Not a SCAIP unit: the gateway's caller id at this ARC, the device as `did`.
    assert got[0].device_id == scaip.device_id("4600000001", did_for(device.id))
    assert secondary.requests(ref) == []
    assert await _incidents(store, event_id) == set()
    # The owner's own delivery is a separate row, untouched by the ARC path.
    owner = [r for r in await store.alarms.deliveries(event_id) if r.target == "owner"]
    assert [r.huvudman for r in owner] == [NO_SINK]

    history = await alarm_history.history(store, event_id)
    assert history is not None
    texts = [s.what for s in history.steps]
    assert "answer from alarm centre test-arc-ok (primary): accepted (snu 0)" in texts
    assert any(t.startswith("delivered to alarm centre test-arc-ok") for t in texts)


async def test_a_resent_alarm_is_not_forwarded_twice(
        gateway: RunningGateway, store: Store, arcs: Arcs) -> None:
    primary, _ = _pair(arcs, "test-arc-ok")
    device = await _alarmed_device(store, gateway, "test-arc-ok")
    first = await _raise(gateway, device)
    await _done(store, first)
    again = await _raise(gateway, device)  # the device resends: same event id, stored once
    assert again == first
    await asyncio.sleep(0.5)
    assert primary.sends[ref_for(first, "test-arc-ok")] == 1


async def test_an_alarm_on_the_mqtt_alarm_channel_reaches_the_arc(
        gateway: RunningGateway, store: Store, arcs: Arcs, mqtt_probe: MqttProbe) -> None:
    """`devices/{id}/alarm/{format}`: the gateway reads it on a connection of its own."""
    primary, _ = _pair(arcs, "test-arc-ok")
    device = await _alarmed_device(store, gateway, "test-arc-ok")
    mqtt_probe.publish(f"devices/{device.id}/alarm/native", native.encode_message(
        [], alarms=[{"type": "fall", "priority": 9, "time": "2026-11-22T05:30:00+00:00"}]))
    await wait_until(lambda: [r for r in primary.received if r.mty == Mty.MESSAGE], timeout=5)
    rows = await store.pool.fetch(
        "SELECT event_id FROM event WHERE device_id = $1 AND event_type = 'alarm'", device.id)
    assert len(rows) == 1
    await _done(store, rows[0]["event_id"])
    assert gateway.runtime.mqtt_alarm is not None and gateway.runtime.mqtt is not None
    assert gateway.runtime.mqtt_alarm.client is not gateway.runtime.mqtt.client


async def test_hold_then_ok_resends_the_same_ref_to_the_same_arc(
        gateway: RunningGateway, store: Store, arcs: Arcs) -> None:
    primary, secondary = _pair(arcs, "test-arc-hold")
    primary.mode, primary.holds = "hold_then_ok", 2
    device = await _alarmed_device(store, gateway, "test-arc-hold")
    event_id = await _raise(gateway, device)
    row = await _done(store, event_id)
    ref = ref_for(event_id, "test-arc-hold")
    answers = _answers(primary, ref)
    assert answers == [Snu.HOLD, Snu.HOLD, Snu.OK]
    low, high = ARC_TEST_TIMING["hold_resend_s"]  # type: ignore[misc]
    arrivals = [r.at for r in primary.requests(ref)]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(low - 0.05 <= g <= high + 0.5 for g in gaps), gaps
    assert secondary.requests(ref) == []
    assert row.attempts == 3
    assert await _incidents(store, event_id) == set()


async def test_busy_goes_to_the_secondary_at_once_and_raises_an_incident(
        gateway: RunningGateway, store: Store, arcs: Arcs) -> None:
    primary, secondary = _pair(arcs, "test-arc-busy")
    primary.mode = "busy"
    device = await _alarmed_device(store, gateway, "test-arc-busy")
    event_id = await _raise(gateway, device)
    await _done(store, event_id)
    ref = ref_for(event_id, "test-arc-busy")
    assert _answers(primary, ref) == [Snu.BUSY]
    assert _answers(secondary, ref) == [Snu.OK]
    # The ARC left behind is told the alarm is handled elsewhere (SS 91100 §5: mty=RE).
    await wait_until(lambda: any(r.mty == Mty.RESET for r in primary.requests(ref)), timeout=3)
    assert await _incidents(store, event_id) == {"arc_escalated"}
    history = await alarm_history.history(store, event_id)
    assert history is not None
    texts = [s.what for s in history.steps]
    assert "answer from alarm centre test-arc-busy (primary): busy (snu 6)" in texts
    assert "answer from alarm centre test-arc-busy (secondary): accepted (snu 0)" in texts
    assert "incident raised: arc_escalated" in texts


async def test_an_arc_that_never_answers_escalates_within_the_configured_time(
        gateway: RunningGateway, store: Store, arcs: Arcs) -> None:
    primary, secondary = _pair(arcs, "test-arc-silent")
    device = await _alarmed_device(store, gateway, "test-arc-silent")
    for mode in ("silent", "drop"):  # answers the SIP hop but never the alarm; answers nothing
        primary.mode = mode
        primary.clear()
        secondary.clear()
        started = time.monotonic()
        event_id = await _raise(gateway, device, kind="fall" if mode == "silent" else "button")
        ref = ref_for(event_id, "test-arc-silent")
        await wait_until(lambda ref=ref: secondary.requests(ref), timeout=10)
        took = secondary.requests(ref)[0].at - started
        limit = float(ARC_TEST_TIMING["answer_timeout_s"])  # type: ignore[arg-type]
        assert took <= limit + 0.5, f"{mode}: secondary reached after {took:.2f} s"
        await _done(store, event_id)
        assert await _incidents(store, event_id) == {"arc_escalated"}
        if mode == "silent":
            assert primary.requests(ref)[0].snu is None


async def test_an_alarm_left_unfinished_is_taken_over_after_its_lease(
        gateway: RunningGateway, store: Store, arcs: Arcs) -> None:
    """The instance sending an alarm dies (its task is cancelled here, so its lease is no
    longer extended); an instance holding the relay key opens the relay copy and sends it."""
    primary, secondary = _pair(arcs, "test-arc-recover")
    primary.mode = secondary.mode = "drop"
    device = await _alarmed_device(store, gateway, "test-arc-recover")
    event_id = await _raise(gateway, device)
    forwarder = gateway.runtime.arc
    key = (event_id, "test-arc-recover")
    await wait_until(lambda: key in forwarder._jobs, timeout=5)
    forwarder._jobs[key].cancel()
    await wait_until(lambda: key not in forwarder._jobs, timeout=5)
    primary.mode = secondary.mode = "ok"
    primary.clear()
    started = time.monotonic()
    await _done(store, event_id, timeout=15)
    assert time.monotonic() - started >= 0.5  # waited for the lease, not sent at once
    assert [r.snu for r in primary.requests(ref_for(event_id, "test-arc-recover"))] == [Snu.OK]
    opened = await store.pool.fetch(
        "SELECT action, target FROM audit_log WHERE action = 'alarm_relay.open' AND target = $1",
        str(event_id))
    assert len(opened) == 1


async def _scaip_unit(store: Store, gateway: RunningGateway, receiver: str,
                      did: str) -> tuple[FakeDevice, ScaipUnit]:
    """A registered SCAIP unit whose alarm route is `receiver`, and its simulator."""
    device = await register_scaip_unit(store, did=did, assignments=[
        {"huvudman": NO_SINK, "subject_ref": receiver, "legal_basis": "SoL",
         "kinds": ["alarm"], "valid_from": "2026-01-01T00:00:00+00:00",
         "alarm_route": receiver}])
    await gateway.knows(device)
    unit = ScaipUnit(UnitSpec("gps_alarm", device.id.split(":")[1], did, device.token),
                     ("127.0.0.1", gateway.settings.sip_port), answer_timeout_s=5.0)
    return device, unit


async def test_a_scaip_unit_alarm_is_relayed_under_the_units_own_ids(
        gateway: RunningGateway, store: Store, arcs: Arcs) -> None:
    primary, _ = _pair(arcs, "test-arc-scaip")
    unit_device, unit = await _scaip_unit(store, gateway, "test-arc-scaip", "TRK-9")
    try:
        ref = "ARCRELAY1"
        outcome = await asyncio.to_thread(
            unit.send, unit.mrq(ref, stc=scaip.STC_MANUAL, pri=9), ref=ref)
    finally:
        unit.close()
    assert outcome.snu == Snu.OK
    await wait_until(lambda: any(r.mty == Mty.MESSAGE for r in primary.received), timeout=5)
    relayed = [r for r in primary.received if r.mty == Mty.MESSAGE]
    assert [r.device_id for r in relayed] == [unit_device.id]


async def test_a_bed_sensors_room_reaches_the_centre_and_the_huvudman(
        gateway: RunningGateway, store: Store, arcs: Arcs, keys: Keys) -> None:
    """Issue 16: the unit's `lco` and `lte` (where in the home) are kept with the alarm, in the
    huvudman's sealed copy and in the `<mrq>` to the centre."""
    primary, _ = _pair(arcs, "test-arc-scaip")
    unit_device, unit = await _scaip_unit(store, gateway, "test-arc-scaip", "BED-1")
    try:
        ref = "ROOM1"
        body = scaip.build_mrq(ref=ref, cid=unit.spec.cid, dty=scaip.DTY_BED, did="BED-1",
                               lco=12, lte="Sovrum")
        outcome = await asyncio.to_thread(unit.send, body, ref=ref)
    finally:
        unit.close()
    assert outcome.snu == Snu.OK
    await wait_until(lambda: any(r.mty == Mty.MESSAGE for r in primary.received), timeout=5)
    [relayed] = [r for r in primary.received if r.mty == Mty.MESSAGE]
    assert relayed.location == Location(code=12, text="Sovrum")
    rows = await store.pool.fetch(
        "SELECT event_id FROM event WHERE device_id = $1 AND event_type = 'alarm'",
        unit_device.id)
    copies = await open_copies(store, keys, rows[0]["event_id"])
    assert copies[NO_SINK].event.location == Location(code=12, text="Sovrum")


async def test_a_unit_that_cancels_its_alarm_has_the_cancellation_relayed_to_the_arc(
        gateway: RunningGateway, store: Store, arcs: Arcs) -> None:
    """SS 91100: the unit updates its open alarm (same ref) with `mty=IN`, `stc=0019`; the ARC
    that accepted the relayed alarm gets `mty=IN`, `stc=0019` under the relayed alarm's ref."""
    primary, secondary = _pair(arcs, "test-arc-cancel")
    unit_device, unit = await _scaip_unit(store, gateway, "test-arc-cancel", "TRK-C")
    try:
        pressed = await asyncio.to_thread(unit.send, unit.mrq("CANCELME1", stc=scaip.STC_MANUAL),
                                          ref="CANCELME1")
        assert pressed.snu == Snu.OK
        assert await wait_until(lambda: [r.mty for r in primary.received] == [Mty.MESSAGE], 5)
        relayed_ref = primary.received[0].ref
        cancelled = await asyncio.to_thread(
            unit.send, unit.mrq("CANCELME1", mty=Mty.INFO, stc=scaip.STC_CANCEL),
            ref="CANCELME1", mty=Mty.INFO)
        assert cancelled.snu == Snu.OK
    finally:
        unit.close()
    assert await wait_until(lambda: [(r.ref, r.mty, r.snu) for r in primary.received] == [
        (relayed_ref, Mty.MESSAGE, Snu.OK), (relayed_ref, Mty.INFO, Snu.OK)], 5)
    assert secondary.received == []
    alarm_id = await store.pool.fetchval(
        "SELECT event_id FROM event WHERE device_id = $1 AND event_type = 'alarm'",
        unit_device.id)

    async def cancellation_in_history() -> bool:
        history = await alarm_history.history(store, alarm_id)
        return any("cancellation accepted" in step.what for step in history.steps)

    assert await wait_until(cancellation_in_history, 5)


async def test_a_cancel_that_comes_while_the_alarm_is_on_hold_follows_it_once_accepted(
        store: Store) -> None:
    arc = ScaipArc(mode="hold_then_ok", holds=2, tcp=False)
    await arc.start()
    spec = ArcSpec(receiver="test-arc-cancel-early", cid="4600000001",
                   primary=f"udp://127.0.0.1:{arc.udp_port}", hold_resend_s=(0.1, 0.2))
    forwarder = ArcForwarder(store, {spec.receiver: spec}, heartbeats=False, lease_s=30.0)
    await forwarder.start()
    try:
        at = datetime(2026, 11, 22, 5, tzinfo=UTC)
        alarm = Alarm(event_id=uuid.uuid4(), device_id="T-CANCEL-EARLY",
                      alarm_type=AlarmType.BUTTON, measured_at=at, received_at=at,
                      source="scaip")
        forwarder.forward(ArcJob(alarm.event_id, spec.receiver, alarm, False))
        ref = ref_for(alarm.event_id, spec.receiver)
        assert await wait_until(lambda: len(arc.requests(ref)) == 1, 2)
        forwarder.cancelled(DeviceEvent(uuid.uuid4(), alarm.device_id, "alarm_cancelled",
                                        Kind.ALARM, at + timedelta(seconds=5),
                                        at + timedelta(seconds=5), "scaip"))
        assert await wait_until(lambda: [(r.mty, r.snu) for r in arc.requests(ref)] == [
            (Mty.MESSAGE, Snu.HOLD), (Mty.MESSAGE, Snu.HOLD), (Mty.MESSAGE, Snu.OK),
            (Mty.INFO, Snu.OK)], 5)
        # A later alarm of the same device is not cancelled by the earlier cancel.
        later = Alarm(event_id=uuid.uuid4(), device_id=alarm.device_id,
                      alarm_type=AlarmType.BUTTON, measured_at=at + timedelta(minutes=1),
                      received_at=at + timedelta(minutes=1), source="scaip")
        arc.mode = "ok"
        forwarder.forward(ArcJob(later.event_id, spec.receiver, later, False))
        later_ref = ref_for(later.event_id, spec.receiver)
        assert await wait_until(lambda: [r.mty for r in arc.requests(later_ref)] ==
                                [Mty.MESSAGE], 3)
        await asyncio.sleep(0.3)
        assert [r.mty for r in arc.requests(later_ref)] == [Mty.MESSAGE]
    finally:
        await forwarder.stop()
        await arc.stop()


async def test_heartbeats_go_to_every_arc_at_the_interval_it_asks_for(
        gateway: RunningGateway, arcs: Arcs) -> None:
    forwarder = gateway.runtime.arc
    for name in arcs:
        for which in ("primary", "secondary"):
            await wait_until(lambda n=name, w=which: (n, w) in forwarder.up, timeout=5)
    # Every simulated ARC got a PI with hbo=001 and answered with <hbi>1</hbi> (one minute).
    up = [key for key, answering in forwarder.up.items() if answering]
    assert len(up) >= len(arcs)  # tests may have set some to drop meanwhile, not most
    assert all(forwarder.intervals[key] == 60.0 for key in up)


async def test_an_unclaimed_alarm_goes_to_a_fallback_receiver_that_is_an_alarm_centre(
        keys: Keys) -> None:
    """The fallback receiver may itself be an alarm centre: the unclaimed alarm then gets an
    ARC delivery and a relay copy, without its position (there is no consent to follow)."""
    settings = dataclasses.replace(
        Settings(), pseudonym_secret_file=keys.pseudonym_secret,
        quarantine_public_key_file=keys.quarantine_public,
        alarm_relay_public_key_file=keys.relay_public,
        fallback_alarm_receiver="hmc-fallback-arc")
    sealing = build_sealing(settings, Registry(), arc_receivers=frozenset({"hmc-fallback-arc"}),
                            arc_lease_s=30.0)
    at = datetime(2026, 11, 22, 5, tzinfo=UTC)
    alarm = Alarm(event_id=uuid.uuid4(), device_id="T-IN-STOCK", alarm_type=AlarmType.FALL,
                  measured_at=at, received_at=at, source="native",
                  position=Position(lat=57.7, lon=11.97))
    rows = sealing.prepare([alarm])
    arc_rows = [d for d in rows.deliveries if d.target == "arc"]
    assert [(d.huvudman, d.receiver, d.lane, d.delay_s, d.with_position) for d in arc_rows] == [
        (None, "hmc-fallback-arc", "alarm", 30.0, False)]
    assert {c.recipient for c in rows.copies} == {"hmc-quarantine", "hmc-alarm-relay"}
    relay = next(c for c in rows.copies if c.recipient == "hmc-alarm-relay")
    assert keys.relay_private is not None
    opener = Opener("hmc-alarm-relay", [load_private_key(keys.relay_private.read_bytes())])
    plain = msgspec.json.decode(opener.open(relay.envelope, event_id=alarm.event_id,
                                            kind="alarm",
                                            wrapped_key=_relay_key(rows)),
                                type=RelayPlaintext)
    assert plain.event.position is None and plain.positions_for == ()
    jobs = jobs_from(rows.deliveries, [alarm], frozenset({alarm.event_id}))
    assert [(j.receiver, j.with_position) for j in jobs] == [("hmc-fallback-arc", False)]


def _relay_key(rows: BatchRows) -> WrappedKey:
    return next(k for k in rows.data_keys.values() if k.huvudman == "hmc-alarm-relay")


async def test_a_database_outage_does_not_hold_up_escalation(database_url: str) -> None:
    """The answers are written down by a background writer: with the database gone, an alarm
    still moves from a busy centre to the secondary at once."""
    store = await Store.connect(database_url)
    await store.pool.close()  # every write now fails, as with a database that is away
    busy, ok = ScaipArc(mode="busy", tcp=False), ScaipArc(tcp=False)
    await busy.start()
    await ok.start()
    spec = ArcSpec(receiver="test-arc-db-down", cid="4600000001",
                   primary=f"udp://127.0.0.1:{busy.udp_port}",
                   secondary=f"udp://127.0.0.1:{ok.udp_port}", answer_timeout_s=1.0)
    forwarder = ArcForwarder(store, {spec.receiver: spec}, heartbeats=False, lease_s=30.0)
    await forwarder.start()
    try:
        at = datetime(2026, 11, 22, 5, tzinfo=UTC)
        alarm = Alarm(event_id=uuid.uuid4(), device_id="T-DB-DOWN", alarm_type=AlarmType.BUTTON,
                      measured_at=at, received_at=at, source="native")
        forwarder.forward(ArcJob(alarm.event_id, spec.receiver, alarm, False))
        ref = ref_for(alarm.event_id, spec.receiver)
        assert await wait_until(lambda: _answers(ok, ref) == [Snu.OK], timeout=3)
        assert _answers(busy, ref) == [Snu.BUSY]
    finally:
        await forwarder.stop()
        await busy.stop()
        await ok.stop()


async def test_a_resend_of_an_alarm_stored_earlier_is_left_to_its_own_sender(
        store: Store) -> None:
    """After a restart (nothing in memory) a device resends an alarm stored before (its
    acknowledgement was lost): the relay that started while it was committed stops once the
    commit says it was stored already; the stored row has its own sender (its lease, then
    recovery), and no history is written for the resend."""
    arc = ScaipArc(tcp=False)
    await arc.start()
    spec = ArcSpec(receiver="test-arc-resend", cid="4600000001",
                   primary=f"udp://127.0.0.1:{arc.udp_port}", answer_timeout_s=1.0)
    forwarder = ArcForwarder(store, {spec.receiver: spec}, heartbeats=False, lease_s=30.0)
    await forwarder.start()
    try:
        at = datetime(2026, 11, 22, 5, tzinfo=UTC)
        alarm = Alarm(event_id=uuid.uuid4(), device_id="T-RESEND", alarm_type=AlarmType.FALL,
                      measured_at=at, received_at=at, source="native")
        rows = BatchRows(deliveries=[DeliveryRow(alarm.event_id, NO_SINK, None, "alarm",
                                                 spec.receiver, target="arc")])
        forwarder.prepared(rows, [alarm])
        forwarder.committed(CommittedBatch("alarm", rows, [alarm], frozenset()))
        await asyncio.sleep(0.5)
        assert arc.requests(ref_for(alarm.event_id, spec.receiver)) == []
        # A new one in the same situation goes out, and its history waits for its commit.
        fresh = msgspec.structs.replace(alarm, event_id=uuid.uuid4())
        rows = BatchRows(deliveries=[DeliveryRow(fresh.event_id, NO_SINK, None, "alarm",
                                                 spec.receiver, target="arc")])
        forwarder.prepared(rows, [fresh])
        assert await wait_until(lambda: arc.requests(ref_for(fresh.event_id, spec.receiver)),
                                timeout=3)
    finally:
        await forwarder.stop()
        await arc.stop()
    assert await store.alarms.arc_attempts(alarm.event_id) == []
    assert await store.alarms.arc_attempts(fresh.event_id) == []  # never committed
