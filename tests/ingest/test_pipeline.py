"""Group commit against the real database: batching, the alarm lane, surviving lost connections."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from adapters.codes import Kind
from adapters.events import Alarm, AlarmType, Event, Quantity, Reading, event_id
from gateway.ingest.pipeline import CommittedBatch, Pipeline, Stage, SubmissionResult
from gateway.ingest.sealing import Sealing
from gateway.store.connector import Store
from gateway.store.events import BatchRows
from tests.support import wait_until

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def _weight(device: str, i: int) -> Reading:
    at = T0 + timedelta(seconds=i)
    return Reading(event_id(device, "188736", at), device, 188736, Kind.WEIGHT,
                   (Quantity(188736, 70.0, "kg"),), at, at, "test")


def _alarm(device: str) -> Alarm:
    return Alarm(event_id(device, "alarm:fall", T0), device, AlarmType.FALL, T0, T0, "test")


@pytest.fixture
async def own_store(database_url: str) -> AsyncIterator[Store]:
    name = f"pipeline-test-{uuid.uuid4().hex[:8]}"
    store = await Store.connect(database_url, application_name=name)
    yield store
    await store.close()


def _failures() -> float:
    return REGISTRY.get_sample_value("gateway_batch_commit_failures_total") or 0.0


async def _run(pipeline: Pipeline) -> asyncio.Task[None]:
    return asyncio.create_task(pipeline.run())


async def _count(store: Store, device: str) -> int:
    return int(await store.pool.fetchval("SELECT count(*) FROM event WHERE device_id = $1",
                                         device))


async def test_many_messages_commit_in_few_transactions(own_store: Store,
                                                        sealing: Sealing) -> None:
    device = f"T-GC-{uuid.uuid4().hex[:8]}"
    pipeline = Pipeline(own_store, sealing, max_events=500, max_wait_s=0.02)
    task = await _run(pipeline)
    outcomes = await asyncio.gather(*(pipeline.commit([_weight(device, i)])
                                      for i in range(2000)))
    pipeline.stop()
    await task
    assert all(len(o.new) == 1 for o in outcomes)
    assert await _count(own_store, device) == 2000
    assert pipeline.commits <= 10  # 2000 messages, batches of up to 500


async def test_resend_within_one_batch_counts_as_duplicate(own_store: Store,
                                                          sealing: Sealing) -> None:
    device = f"T-DUP-{uuid.uuid4().hex[:8]}"
    pipeline = Pipeline(own_store, sealing, max_wait_s=0.05)
    task = await _run(pipeline)
    reading = _weight(device, 0)
    first, second = await asyncio.gather(pipeline.commit([reading]), pipeline.commit([reading]))
    pipeline.stop()
    await task
    assert (first, second) == (SubmissionResult((reading.event_id,), ()),
                               SubmissionResult((), (reading.event_id,)))
    assert pipeline.commits == 1


async def test_alarm_does_not_wait_for_a_forming_bulk_batch(own_store: Store,
                                                           sealing: Sealing) -> None:
    device = f"T-ALARM-{uuid.uuid4().hex[:8]}"
    pipeline = Pipeline(own_store, sealing, max_wait_s=30.0)  # bulk waits long
    task = await _run(pipeline)
    done: list[str] = []
    pipeline.submit([_weight(device, 1)], lambda o: done.append("bulk"))
    outcome = await asyncio.wait_for(pipeline.commit([_alarm(device)]), 2.0)
    assert len(outcome.new) == 1 and done == []
    pipeline.stop()
    await task
    assert done == ["bulk"]  # stop still commits what was received


async def test_connection_lost_mid_commit_is_retried_not_acknowledged(
        own_store: Store, store: Store, sealing: Sealing) -> None:
    """The commit's connection dies while it waits on a lock: the batch is retried, and the
    submitter hears of success only once the retry committed."""
    device = f"T-RETRY-{uuid.uuid4().hex[:8]}"
    pipeline = Pipeline(own_store, sealing, max_wait_s=0.001)
    task = await _run(pipeline)
    name = await own_store.pool.fetchval("SHOW application_name")
    failures_before = _failures()
    async with store.pool.acquire() as blocker:
        locked = blocker.transaction()
        await locked.start()
        await blocker.execute("LOCK TABLE delivery IN ACCESS EXCLUSIVE MODE")
        commit = asyncio.create_task(pipeline.commit([_weight(device, i) for i in range(5)]))
        waiting = await wait_until(lambda: blocker.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 "
            "AND wait_event_type = 'Lock'", name))
        assert waiting
        await blocker.execute("SELECT pg_terminate_backend($1)", waiting)
        await asyncio.sleep(0.2)
        assert not commit.done()  # not acknowledged: nothing is stored yet
        await locked.rollback()
    outcome = await asyncio.wait_for(commit, 10)
    assert len(outcome.new) == 5
    assert _failures() > failures_before
    pipeline.stop()
    await task
    assert await _count(own_store, device) == 5


def _unstorable() -> float:
    return REGISTRY.get_sample_value("gateway_unstorable_events_total", {"lane": "bulk"}) or 0.0


@pytest.mark.parametrize("fault", ["code-out-of-int4", "nul-in-text"])
async def test_an_event_the_database_refuses_stays_unacknowledged_and_the_rest_is_stored(
        own_store: Store, sealing: Sealing, fault: str) -> None:
    """Whatever let a bad event through the adapters (here: a code the column cannot hold, a
    NUL PostgreSQL text refuses), it must not stop the lane: its batch is halved until it is
    alone, everything else is stored and acknowledged, and its own message is not."""
    device = f"T-POISON-{uuid.uuid4().hex[:8]}"
    good = [_weight(device, i) for i in range(9)]
    at = T0 + timedelta(hours=1)
    bad = Reading(event_id(device, "bad", at), device,
                  2**40 if fault == "code-out-of-int4" else 188736, Kind.WEIGHT,
                  (Quantity(188736, 70.0, "kg"),), at, at,
                  "test" if fault == "code-out-of-int4" else "te\x00st")
    pipeline = Pipeline(own_store, sealing, max_events=500, max_wait_s=0.05)
    task = await _run(pipeline)
    before = _unstorable()
    acked: dict[int, SubmissionResult] = {}
    messages = [[e] for e in good[:4]] + [[good[4], bad]] + [[e] for e in good[5:]]
    for n, events in enumerate(messages):
        pipeline.submit(events, lambda outcome, n=n: acked.__setitem__(n, outcome))
    assert await wait_until(lambda: len(acked) == len(messages) - 1, 10)
    assert 4 not in acked  # the message holding the bad event
    assert all(len(o.new) == 1 for o in acked.values())
    assert _unstorable() == before + 1
    # The lane goes on.
    later = await asyncio.wait_for(pipeline.commit([_weight(device, 100)]), 5)
    assert len(later.new) == 1
    await asyncio.sleep(0.2)
    assert 4 not in acked
    pipeline.stop()
    await task
    stored = {r["event_id"] for r in await own_store.pool.fetch(
        "SELECT event_id FROM event WHERE device_id = $1", device)}
    assert stored == {e.event_id for e in good} | {later.new[0]}


class _Heard:
    """A commit listener of one stage that records when it was told, and what."""

    def __init__(self, stage: Stage, log: list[str]) -> None:
        self.stage = stage  # type: ignore[misc]  # the protocol's ClassVar, per instance here
        self._log = log
        self.batches: list[CommittedBatch] = []

    def committed(self, batch: CommittedBatch) -> None:
        self._log.append(self.stage.name)
        self.batches.append(batch)


class _RecordingSealing:
    """The real sealing, noting when it hears of its own rows' commit."""

    stage = Stage.CONFIRM

    def __init__(self, sealing: Sealing, log: list[str]) -> None:
        self._sealing = sealing
        self._log = log

    def prepare(self, events: Sequence[Event]) -> BatchRows:
        return self._sealing.prepare(events)

    def committed(self, batch: CommittedBatch) -> None:
        self._log.append("CONFIRM")
        self._sealing.committed(batch)

    def forget_cached_keys(self) -> None:
        self._sealing.forget_cached_keys()


async def test_listeners_hear_each_commit_in_stage_order_then_the_device_is_acked(
        own_store: Store, sealing: Sealing) -> None:
    """Relay, confirm, deliver, observe, then ack: whatever order they were added in, and a
    listener that raises stops neither the others nor the ack."""
    device = f"T-ORDER-{uuid.uuid4().hex[:8]}"
    order: list[str] = []
    pipeline = Pipeline(own_store, _RecordingSealing(sealing, order), max_wait_s=0.001)
    observe, deliver, relay = (_Heard(s, order) for s in (Stage.OBSERVE, Stage.DELIVER,
                                                          Stage.RELAY))

    class _Broken:
        stage = Stage.DELIVER

        def committed(self, batch: CommittedBatch) -> None:
            order.append("BROKEN")
            raise RuntimeError("a listener's bug")

    for listener in (observe, _Broken(), deliver, relay):
        pipeline.listen(listener)
    task = await _run(pipeline)
    reading = _weight(device, 0)
    pipeline.submit([reading], lambda done: order.append(f"ack {len(done.new)} new"))
    await wait_until(lambda: "ack 1 new" in order, timeout=5)
    pipeline.submit([reading], lambda done: order.append(f"ack {len(done.duplicates)} again"))
    await wait_until(lambda: "ack 1 again" in order, timeout=5)
    pipeline.stop()
    await task
    one_commit = ["RELAY", "CONFIRM", "BROKEN", "DELIVER", "OBSERVE"]
    assert order == [*one_commit, "ack 1 new", *one_commit, "ack 1 again"]
    assert relay.batches[0].new_ids == {reading.event_id} and relay.batches[0].lane == "bulk"
    # The resend: every listener hears of it (supervision counts it as a sign of life), with
    # nothing new in it.
    assert observe.batches[1].new_ids == frozenset()
    assert [e.event_id for e in observe.batches[1].events] == [reading.event_id]
