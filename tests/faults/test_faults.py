"""The fault runs of `make faults` (issue 11, point 9): each puts the gateway under steady load
from MQTT and HTTP devices, does something bad to it, and ends with the reconciliation of what
the devices sent against what was stored and delivered: lost = 0, duplicates = 0.

Not in `make test` (they take minutes): FAULT_KILLS (default 10) sets how many SIGKILLs,
FAULT_RECEIVER_DOWN_S (default 300) how long the receiver is away, FAULT_DATABASE_AWAY_S
(default 60) how long PostgreSQL refuses connections."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.delivery.scaip_alarm import ref_for
from gateway.store.connector import Store
from simulator.arc import ScaipArc
from tests.databases import PrivateDatabase
from tests.faults.bench import ARC_RECEIVER, OWNER, fault_bench
from tests.support import Keys, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults]

KILLS = int(os.environ.get("FAULT_KILLS", "10"))
RECEIVER_DOWN_S = float(os.environ.get("FAULT_RECEIVER_DOWN_S", "300"))
DATABASE_AWAY_S = float(os.environ.get("FAULT_DATABASE_AWAY_S", "60"))
# Batches that take a moment to fill, so a kill often lands between receipt and commit.
SLOW_BATCHES = {"BATCH_MAX_WAIT_S": "0.2"}


async def test_sigkill_at_random_moments(tmp_path: Path, store: Store, database_url: str,
                                         keys: Keys) -> None:
    rng = random.Random(11)
    async with fault_bench(tmp_path, store, database_url, keys, **SLOW_BATCHES) as bench:
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            await bench.kill_gateway()
            await asyncio.sleep(rng.uniform(0.0, 1.0))  # devices keep sending meanwhile
            await bench.start_gateway(**SLOW_BATCHES)
        await asyncio.sleep(2)
        result = await bench.settle(f"{KILLS} SIGKILLs")
    assert result.ok, result.line()
    assert result.acknowledged > 500


async def test_sigterm_stops_within_its_time_committing_or_leaving_unacknowledged(
        tmp_path: Path, store: Store, database_url: str, keys: Keys) -> None:
    stop_s = 5.0
    async with fault_bench(tmp_path, store, database_url, keys,
                           SHUTDOWN_TIMEOUT_S=str(stop_s), **SLOW_BATCHES) as bench:
        for _ in range(3):
            await asyncio.sleep(2)
            t0 = time.monotonic()
            code = await asyncio.to_thread(bench.gateway.terminate, stop_s + 10)
            took = time.monotonic() - t0
            assert code == 0, f"a stop with the database up commits all it holds (exit {code})"
            assert took < stop_s + 2, f"the stop took {took:.1f} s"
            await bench.start_gateway(**SLOW_BATCHES)
        await asyncio.sleep(2)
        result = await bench.settle("SIGTERM ×3")
    assert result.ok, result.line()


async def test_a_receiver_away_for_minutes_gets_everything_once_back(
        tmp_path: Path, store: Store, database_url: str, keys: Keys) -> None:
    async with fault_bench(tmp_path, store, database_url, keys, interval_s=0.5) as bench:
        await asyncio.sleep(2)
        await bench.receiver.stop()
        await asyncio.sleep(RECEIVER_DOWN_S)
        before = len(bench.delivered())
        await bench.receiver.start()
        await asyncio.sleep(2)
        result = await bench.settle(f"receiver down {RECEIVER_DOWN_S:g} s")
        assert result.delivered > before
        assert max(bench.receiver.endpoints[OWNER].accepted.values()) >= 1
    assert result.ok, result.line()


@pytest.fixture
async def private_database(tmp_path: Path, keys: Keys) -> AsyncIterator[PrivateDatabase]:
    db = PrivateDatabase(tmp_path / "pg")
    await asyncio.to_thread(db.start)
    await db.prepare(keys)
    yield db
    await asyncio.to_thread(db.stop)


async def test_database_connections_cut_postgresql_restarted_and_away(
        tmp_path: Path, keys: Keys, private_database: PrivateDatabase) -> None:
    db = private_database
    store = await Store.connect(db.url, application_name="fault-observer")
    try:
        async with fault_bench(tmp_path, store, db.runtime_url, keys, **SLOW_BATCHES) as bench:
            for _ in range(20):  # connections cut under load
                await asyncio.sleep(0.3)
                await db.terminate_gateway_connections()
            await asyncio.sleep(1)
            await asyncio.to_thread(db.stop)  # PostgreSQL restarted
            await asyncio.sleep(1)
            await asyncio.to_thread(db.start)
            await asyncio.sleep(2)
            await asyncio.to_thread(db.stop)  # and away for a while
            await asyncio.sleep(DATABASE_AWAY_S)
            await asyncio.to_thread(db.start)
            await store.close()
            bench.store = store = await Store.connect(db.url, application_name="fault-observer")
            await asyncio.sleep(2)
            result = await bench.settle(f"database cut ×20, restarted, away {DATABASE_AWAY_S:g} s")
        assert result.ok, result.line()
    finally:
        await store.close()


async def test_sigterm_while_the_database_is_away_stops_in_time_and_loses_nothing(
        tmp_path: Path, keys: Keys, private_database: PrivateDatabase) -> None:
    db = private_database
    stop_s = 5.0
    store = await Store.connect(db.url, application_name="fault-observer")
    try:
        async with fault_bench(tmp_path, store, db.runtime_url, keys,
                               SHUTDOWN_TIMEOUT_S=str(stop_s)) as bench:
            await asyncio.sleep(2)
            await asyncio.to_thread(db.stop)
            await asyncio.sleep(2)  # readings arrive that cannot be committed
            t0 = time.monotonic()
            code = await asyncio.to_thread(bench.gateway.terminate, stop_s + 20)
            took = time.monotonic() - t0
            assert code == 1, "a stop that could not commit everything says so"
            # The deadline holds the HTTP commit wait too; then at most the tidying up.
            assert took < stop_s + 10, f"the stop took {took:.1f} s"
            await asyncio.to_thread(db.start)
            await store.close()
            bench.store = store = await Store.connect(db.url, application_name="fault-observer")
            await bench.start_gateway()
            await asyncio.sleep(2)
            result = await bench.settle("SIGTERM with the database away")
        assert result.ok, result.line()
        log = (tmp_path / "gateway.log").read_text()
        assert "stop_deadline_passed" in log
    finally:
        await store.close()


async def test_broker_restarted_with_the_shipped_configuration(
        tmp_path: Path, store: Store, database_url: str, keys: Keys) -> None:
    """Once while everything runs, once with the gateway away: what the broker acknowledged to
    devices for the gateway's persistent session is on disk and survives the restart."""
    async with fault_bench(tmp_path, store, database_url, keys) as bench:
        await asyncio.sleep(2)
        await asyncio.to_thread(bench.broker.stop)
        await asyncio.sleep(2)  # devices keep what they cannot send
        await asyncio.to_thread(bench.broker.start)
        await asyncio.sleep(3)
        await bench.kill_gateway()
        await asyncio.sleep(3)  # the broker queues for the gateway's session
        await asyncio.to_thread(bench.broker.stop)
        await asyncio.to_thread(bench.broker.start)
        await asyncio.sleep(2)
        await bench.start_gateway()
        await asyncio.sleep(2)
        result = await bench.settle("broker restarted ×2 (once with the gateway away)")
    assert result.ok, result.line()


async def test_a_device_trying_to_take_the_gateways_session(
        tmp_path: Path, store: Store, database_url: str, keys: Keys) -> None:
    """With a device's credential, connect as the gateway's client ids with a clean session,
    while the gateway runs and while it is away with a backlog queued in its session."""
    async with fault_bench(tmp_path, store, database_url, keys) as bench:
        await asyncio.sleep(2)
        await asyncio.to_thread(bench.take_over)
        await asyncio.sleep(2)
        await bench.kill_gateway()
        await asyncio.sleep(3)
        await asyncio.to_thread(bench.take_over)
        await bench.start_gateway()
        await asyncio.sleep(2)
        result = await bench.settle("client-id takeover attempts")
    assert result.ok, result.line()


async def test_a_silent_alarm_centre(tmp_path: Path, store: Store, database_url: str,
                                     keys: Keys) -> None:
    """The primary alarm centre takes the SIP hop and never answers the alarm: every alarm
    reaches the secondary within the answer timeout, is recorded as escalated, and is done."""
    primary, secondary = ScaipArc(hbi=1, tcp=False), ScaipArc(hbi=1, tcp=False)
    await primary.start()
    await secondary.start()
    primary.mode = "silent"
    try:
        async with fault_bench(tmp_path, store, database_url, keys, mqtt_devices=2,
                               http_devices=1, alarm_devices=4, arcs=(primary, secondary),
                               interval_s=0.5) as bench:
            await asyncio.sleep(20)
            result = await bench.settle("primary alarm centre silent")
            alarms = {k for k in bench.ledger.readings() if k[1] == "alarm"}
            events = {(e.device_id, e.kind, e.measured_at): e.event_id
                      for e in await store.reconciliation.events_of(bench.ledger.devices)}
            arc = {d.event_id: d.state for d in
                   await store.reconciliation.deliveries_of(bench.ledger.devices)
                   if d.target == "arc"}

            async def all_done() -> bool:
                nonlocal arc
                arc = {d.event_id: d.state for d in
                       await store.reconciliation.deliveries_of(bench.ledger.devices)
                       if d.target == "arc"}
                return bool(arc) and set(arc.values()) == {"done"}

            await wait_until(all_done, timeout=30)
        assert result.ok, result.line()
        alarm_ids = {events[k] for k in alarms if k in events}
        assert len(alarm_ids) == len(alarms) > 20
        assert set(arc) == alarm_ids and set(arc.values()) == {"done"}, Counter(arc.values())
        refs = {ref_for(e, ARC_RECEIVER) for e in alarm_ids}
        assert refs <= {r.ref for r in secondary.received}, "an alarm never reached the secondary"
        escalated = [e for e in alarm_ids
                     if "arc_escalated" in {i.reason for i in await store.alarms.incidents(e)}]
        assert len(escalated) == len(alarm_ids)
        print(f"alarms: {len(alarm_ids)} raised, {len(arc)} forwarded, all done at the "
              f"secondary, {len(escalated)} escalations recorded")
    finally:
        await primary.stop()
        await secondary.stop()
