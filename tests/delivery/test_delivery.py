"""Delivery end to end: readings stored by the running gateway reach the recording webhook
receiver (simulator/receivers.py) over real HTTP, signed, each exactly once, through 503s,
an outage, rejections, an open breaker, competing dispatchers; alarms never wait for bulk.

Each test uses its own huvudman (tests.support.DELIVERY_TEST_HUVUDMAN), whose sink points at
its own endpoint of the receiver. The test gateway retries with a 50 ms backoff base and opens
a breaker for 1 s."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from adapters import native
from gateway.crypto import Opener
from gateway.crypto.subject import open_subject, subject_digest
from gateway.delivery import dead_letters, wire
from gateway.delivery.dispatcher import Dispatcher
from gateway.delivery.sink import ItemResult, Sink
from gateway.delivery.sink_config import build_sinks
from gateway.ingest.sealing import CopyPlaintext, Subject
from gateway.store.connector import Store
from simulator.receivers import RecordingReceiver
from tests.support import (
    FakeDevice,
    Keys,
    RunningGateway,
    native_weights,
    register_device,
    send_native,
    wait_until,
)

pytestmark = pytest.mark.integration
BASE = datetime(2026, 11, 10, 6, tzinfo=UTC)


async def _device(store: Store, gateway: RunningGateway, code: str, *,
                  alarm_route: str | None = None) -> FakeDevice:
    device = await register_device(store, assignments=[
        {"huvudman": code, "subject_ref": f"test-delivery-{code}", "legal_basis": "SoL",
         "kinds": ["weight", "alarm"], "alarm_route": alarm_route,
         "valid_from": "2026-01-01T00:00:00+00:00"}])
    await gateway.knows(device)
    return device


async def _send(gateway: RunningGateway, device: FakeDevice, body: bytes) -> list[uuid.UUID]:
    return await send_native(gateway, device, body)


def _weights(n: int, start: datetime = BASE, value: float = 70.0) -> bytes:
    return native_weights(n, start, value)


async def _states(store: Store, ids: Sequence[uuid.UUID]) -> list[str]:
    rows = await store.pool.fetch("SELECT state FROM delivery WHERE event_id = ANY($1)", ids)
    return sorted(r["state"] for r in rows)


async def _all_stored(receiver: RecordingReceiver, code: str, ids: Sequence[uuid.UUID],
                      timeout: float = 10.0) -> None:
    ep = receiver.endpoints[code]

    async def done() -> bool:
        return all(i in ep.stored for i in ids)

    assert await wait_until(done, timeout), f"{len(set(ids) - set(ep.stored))} never arrived"


async def test_readings_arrive_signed_and_sealed_once_through_503s(
        gateway: RunningGateway, store: Store, keys: Keys, receiver: RecordingReceiver) -> None:
    ep = receiver.endpoints["1440"]
    ep.fail_next = 3
    device = await _device(store, gateway, "1440")
    ids = await _send(gateway, device, _weights(5, value=80.0))
    await _all_stored(receiver, "1440", ids)
    assert ep.answered(503) == 3 and ep.answered(401) == 0  # every batch was signed right
    assert all(ep.accepted[i] == 1 for i in ids)  # nothing twice
    assert await _states(store, ids) == ["done"] * 5
    attempts = await store.pool.fetch(
        "SELECT attempts, last_error FROM delivery WHERE event_id = ANY($1)", ids)
    # Full jitter spreads the retries, so the items may come back in different batches.
    assert {r["last_error"] for r in attempts} == {None}
    assert 2 <= min(r["attempts"] for r in attempts) <= max(r["attempts"] for r in attempts) <= 4
    item = ep.stored[ids[0]]
    assert (item.huvudman, item.kind, item.event_type, item.lane) == ("1440", "weight",
                                                                       "reading", "bulk")
    # The node opens what arrived with its private key alone: the wire carries the sealed copy
    # and the wrapped data key, nothing in clear.
    plain = Opener("1440", [keys.private("1440")]).open(
        item.envelope_bytes, event_id=item.event_id, kind=item.kind,
        wrapped_key=item.wrapped_key)
    assert msgspec.json.decode(plain, type=CopyPlaintext).event.values[0].value == 80.0
    assert b"80.0" not in wire.encode_batch([item])


async def test_a_sink_gets_the_subject_reference_once_not_with_every_copy(
        gateway: RunningGateway, store: Store, receiver: RecordingReceiver, keys: Keys) -> None:
    """Format 2 (issue 12): the copies name their assignment and the digest of its sealed
    subject reference; the reference itself reaches the sink once, in a `subject` line."""
    ep = receiver.endpoints["1460"]
    device = await _device(store, gateway, "1460")
    first = await _send(gateway, device, _weights(3))
    await _all_stored(receiver, "1460", first)
    assert await wait_until(lambda: _done(store, first))
    later = await _send(gateway, device, _weights(3, BASE + timedelta(hours=1)))
    await _all_stored(receiver, "1460", later)
    assignment = await store.pool.fetchval("SELECT id FROM assignment WHERE device_id = $1",
                                           device.id)
    assert ep.subject_lines == {assignment: 1}
    line = ep.subjects[assignment]
    assert (line.huvudman, line.v) == ("1460", 2)
    assert open_subject(keys.private("1460"), assignment, line.sealed_bytes) == \
        "test-delivery-1460"
    for event_id in first + later:
        item = ep.stored[event_id]
        assert item.v == 2
        plain = Opener("1460", [keys.private("1460")]).open(
            item.envelope_bytes, event_id=item.event_id, kind=item.kind,
            wrapped_key=item.wrapped_key)
        [subject] = msgspec.json.decode(plain, type=CopyPlaintext).subjects
        assert subject == Subject(assignment, digest=subject_digest(line.sealed_bytes))
    # What each stored copy saves: the sealed reference is about 1.5 KB.
    sizes = await store.pool.fetch(
        "SELECT octet_length(envelope) AS n FROM event_copy WHERE event_id = ANY($1)"
        " AND recipient = '1460'", first)
    assert max(r["n"] for r in sizes) < 800


async def test_receiver_down_for_a_while_gets_everything_once_when_back(
        gateway: RunningGateway, store: Store, receiver: RecordingReceiver) -> None:
    ep = receiver.endpoints["1441"]
    device = await _device(store, gateway, "1441")
    await receiver.stop()
    try:
        ids = await _send(gateway, device, _weights(20))
        ids += await _send(gateway, device, _weights(20, BASE + timedelta(hours=1)))
        await asyncio.sleep(1.5)
        assert await _states(store, ids) == ["pending"] * 40
        errors = await store.pool.fetch(
            "SELECT DISTINCT last_error FROM delivery WHERE event_id = ANY($1)", ids)
        assert {r["last_error"] for r in errors} <= {"connection failed", "circuit open"}
    finally:
        await receiver.start()
    await _all_stored(receiver, "1441", ids)
    assert all(ep.accepted[i] == 1 for i in ids)
    assert await wait_until(lambda: _done(store, ids))


async def _done(store: Store, ids: Sequence[uuid.UUID]) -> bool:
    return await _states(store, ids) == ["done"] * len(ids)


async def test_rejected_item_is_dead_lettered_and_replay_brings_it_back(
        gateway: RunningGateway, store: Store, receiver: RecordingReceiver) -> None:
    ep = receiver.endpoints["1442"]
    refused = BASE + timedelta(minutes=1)
    ep.reject_if = lambda item: item.measured_at == refused
    device = await _device(store, gateway, "1442")
    ids = await _send(gateway, device, _weights(3))

    async def settled() -> bool:
        return await _states(store, ids) == ["dead", "done", "done"]

    assert await wait_until(settled)
    dead = await store.pool.fetchrow(
        "SELECT id, event_id, attempts, last_error FROM delivery"
        " WHERE event_id = ANY($1) AND state = 'dead'", ids)
    assert dead["event_id"] == ids[1] and dead["attempts"] == 1
    assert dead["last_error"] == "rejected: test receiver refuses this item"
    listed = await dead_letters.list_deliveries(store, state="dead", huvudman="1442")
    assert [r.id for r in listed] == [dead["id"]]
    assert not hasattr(listed[0], "envelope")  # metadata only

    ep.reject_if = None
    assert await dead_letters.replay(store, None, huvudman="1442") == [dead["id"]]
    await _all_stored(receiver, "1442", ids)
    assert await wait_until(lambda: _done(store, ids))
    entry = await store.pool.fetchrow(
        "SELECT action, details FROM audit_log WHERE target = 'dead:1442'")
    assert entry["action"] == "delivery.replay"
    assert msgspec.json.decode(entry["details"])["ids"] == [dead["id"]]
    assert await dead_letters.replay(store, dead["id"]) == []  # no longer dead: nothing to replay


async def test_breaker_opens_one_request_per_open_period_then_closes(
        gateway: RunningGateway, store: Store, receiver: RecordingReceiver) -> None:
    ep = receiver.endpoints["1443"]
    ep.fail_always = True
    device = await _device(store, gateway, "1443")
    ids = await _send(gateway, device, _weights(3))

    async def five_failed() -> bool:
        return ep.answered(503) >= 5

    assert await wait_until(five_failed)
    breaker = gateway.runtime.dispatcher.breaker("webhook:1443")
    # The dispatcher records the fifth failure once it has read the answer: on a busy machine
    # that can take longer than the receiver's bookkeeping.
    assert await wait_until(lambda: breaker.is_open, 2)
    window_start = time.monotonic()
    await asyncio.sleep(2.5)  # open for 1 s at a time: one trial per second at most
    trials = [t for t, _ in ep.requests if t >= window_start]
    assert 1 <= len(trials) <= 3, len(trials)
    attempts = await store.pool.fetchval(
        "SELECT max(attempts) FROM delivery WHERE event_id = ANY($1)", ids)
    assert attempts <= 5 + 3  # held back while open: no attempt counted per item
    ep.fail_always = False
    await _all_stored(receiver, "1443", ids)
    assert not breaker.is_open


async def test_retry_after_pauses_the_receiver_for_as_long_as_it_asked(
        gateway: RunningGateway, store: Store, receiver: RecordingReceiver) -> None:
    ep = receiver.endpoints["1452"]
    ep.fail_next, ep.fail_status, ep.fail_headers = 1, 503, {"Retry-After": "2"}
    device = await _device(store, gateway, "1452")
    ids = await _send(gateway, device, _weights(3))

    async def refused() -> bool:
        return ep.answered(503) == 1

    assert await wait_until(refused)
    assert gateway.runtime.dispatcher.breaker("webhook:1452").is_open
    await _all_stored(receiver, "1452", ids)
    # Without Retry-After the test gateway would have asked again within a few hundred ms
    # (50 ms backoff base); it waited the 2 s the receiver asked for, then sent once more.
    (refused_at, _), (next_at, status) = ep.requests[0], ep.requests[1]
    assert status == 200 and next_at - refused_at >= 1.9, next_at - refused_at
    assert await _states(store, ids) == ["done"] * 3


class _Counting:
    """A sink that counts the items it was given (which dispatcher sent what)."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self.name, self.batch_max, self.timeout_s = inner.name, inner.batch_max, inner.timeout_s
        self.sent: list[uuid.UUID] = []

    async def send(self, items: Sequence[wire.Item]) -> Sequence[ItemResult]:
        self.sent += [i.event_id for i in items]
        return await self.inner.send(items)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_competing_dispatchers_never_send_the_same_delivery_concurrently(
        gateway: RunningGateway, store: Store, receiver: RecordingReceiver,
        database_url: str) -> None:
    ep = receiver.endpoints["1444"]
    ep.delay_s = 0.2  # requests overlap: the dispatchers are busy side by side
    extra: list[tuple[Dispatcher, _Counting, Store]] = []
    for _ in range(2):  # two more claim loops, each on its own connections
        own = await Store.connect(database_url, max_size=3)
        sink = _Counting(build_sinks(gateway.settings.sinks_file)["1444"])
        dispatcher = Dispatcher(own, {"1444": sink}, backoff_base_s=0.05, poll_s=0.05,
                                listen=False)
        dispatcher.start()
        extra.append((dispatcher, sink, own))
    try:
        device = await _device(store, gateway, "1444")
        ids = [i for batch in await asyncio.gather(*(
            _send(gateway, device, _weights(5, BASE + timedelta(hours=h))) for h in range(12)))
            for i in batch]
        await _all_stored(receiver, "1444", ids)
    finally:
        for dispatcher, _, own in extra:
            await dispatcher.stop()
            await own.close()
    assert ep.max_concurrent == 1
    assert all(ep.accepted[i] == 1 for i in ids)
    by_extra = [set(s.sent) for _, s, _ in extra]
    assert not by_extra[0] & by_extra[1]
    assert await wait_until(lambda: _done(store, ids))


async def test_alarm_is_delivered_without_waiting_for_the_bulk_batch(
        gateway: RunningGateway, store: Store, receiver: RecordingReceiver) -> None:
    ep = receiver.endpoints["1445"]
    ep.slow_lane, ep.slow_s = "bulk", 0.8  # each bulk request takes 0.8 s to answer
    device = await _device(store, gateway, "1445", alarm_route="test-arc")
    bulk = await _send(gateway, device, _weights(40))

    async def bulk_in_flight() -> bool:
        return any(ep.in_flight.values())

    assert await wait_until(bulk_in_flight, interval=0.005)
    sent = time.monotonic()
    (alarm,) = await _send(gateway, device, native.encode_message([], alarms=[
        {"type": "fall", "priority": 9, "time": "2026-11-20T03:12:00+00:00"}]))

    async def alarm_arrived() -> bool:
        return alarm in ep.stored

    assert await wait_until(alarm_arrived, timeout=5, interval=0.005)
    took = time.monotonic() - sent
    assert took < 0.5, took
    assert not all(i in ep.stored for i in bulk)  # the bulk batch was still being answered
    item = ep.stored[alarm]
    assert (item.lane, item.event_type, item.receiver) == ("alarm", "alarm", "test-arc")
    await _all_stored(receiver, "1445", bulk)


def test_deliveries_commands_show_metadata_and_purge_is_a_dry_run_by_default(
        database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    from typer.testing import CliRunner

    from gateway.cli.main import app
    from gateway.delivery.sink_config import SinkConfigError, read_sinks

    monkeypatch.setenv("DATABASE_URL", database_url)
    runner = CliRunner()
    listed = runner.invoke(app, ["deliveries", "list", "--state", "pending", "--limit", "5"])
    assert listed.exit_code == 0, listed.output
    assert "envelope" not in listed.output
    dry = runner.invoke(app, ["deliveries", "purge", "--all-dead"])
    assert dry.exit_code == 0 and "dry run" in dry.output, dry.output
    assert runner.invoke(app, ["deliveries", "replay"]).exit_code == 2
    assert runner.invoke(app, ["deliveries", "inspect", "999999999"]).exit_code == 1

    from pathlib import Path
    bad = Path(str(tmp_path)) / "sinks.toml"
    bad.write_text('[[webhook]]\nhuvudman = "1480"\nurl = "ftp://x"\nsecret_env = "S"\n')
    with pytest.raises(SinkConfigError, match=r"sinks.toml: webhook.0.url: "):
        read_sinks(bad)
