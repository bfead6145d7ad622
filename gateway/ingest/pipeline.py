"""Group commit: collect what the transports received, write it in one transaction, then ack.

Transports hand over a *submission* (the events of one device message, possibly none when the
message was rejected) with a callback. The pipeline batches submissions for at most
`max_wait_s` or `max_events`, stores the batch with one statement (events + outbox), and only
then calls every callback in the batch: the MQTT PUBACK, the HTTP 2xx, the SCAIP response.

A batch that fails to commit is retried, with backoff, until it succeeds: the devices' messages
stay unacknowledged meanwhile, so nothing is lost and nothing is acknowledged early. A batch the
database refuses for its own data (SQLSTATE class 22 or 23: retrying the same rows can never
succeed) is halved until the refused events are alone: the rest is stored and acknowledged, and
the messages holding a refused event are left unacknowledged, as if never committed (the broker
keeps an MQTT message for the next session; HTTP answers 503 and SCAIP `snu=4` at their commit
timeout, and the device sends again). One bad event never stops a lane. Batches grow
by themselves under load (submissions pile up while a commit runs), which is what lifts
durability from ~2.5k to tens of thousands of rows per second (docs/performance.md).

Submissions holding an alarm go through a separate lane with its own commit loop, flushed at
once, so an alarm never waits behind a large telemetry batch. Once a batch is routed and sealed,
and before its commit starts, the `PreparedListener`s hear of it: the alarm relay sends its
alarms to their alarm centres then, while the commit runs (the devices' acks still wait for it).

After each commit the listeners hear of it (`CommitListener`), in the order of their `Stage`,
and only then are the devices acknowledged: the alarm relay first (a person who has fallen must
not wait for anything else), then sealing (the data keys now stored stop being offered), then
delivery (it wakes for the lane), then supervision (who was heard), then the acks.
"""

from __future__ import annotations

import asyncio
import enum
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from adapters.events import Alarm, Event
from gateway.observability import metrics
from gateway.observability.logs import get as get_logger
from gateway.store.connector import Store
from gateway.store.errors import DB_ERRORS, data_fault
from gateway.store.events import BatchRows

log = get_logger("pipeline")
# Events routed and sealed, or submissions acknowledged, between two yields to the event loop.
CHUNK = 200


class Stage(enum.IntEnum):
    """When a listener hears of a commit: in this order, then the devices' acks."""

    RELAY = 1  # alarms leave for their alarm centres from memory (gateway.delivery.arc)
    CONFIRM = 2  # sealing stops offering the data keys now stored (gateway.ingest.sealing)
    DELIVER = 3  # delivery wakes for the lane (gateway.delivery.dispatcher)
    OBSERVE = 4  # supervision learns who was heard, resends included (supervision)


@dataclass(frozen=True, slots=True)
class CommittedBatch:
    """What one commit stored."""

    lane: str
    rows: BatchRows  # as stored (rows the database refused for their data are not in it)
    events: Sequence[Event]  # every event of the batch, resends included, each once
    new_ids: frozenset[uuid.UUID]  # stored by this commit; the others were already stored


class CommitListener(Protocol):
    """Hears of every commit, on the commit loop: it must be quick. An exception is logged and
    never stops the loop or the acks."""

    stage: ClassVar[Stage]

    def committed(self, batch: CommittedBatch) -> None: ...


class PreparedListener(Protocol):
    """Hears of a batch once it is routed and sealed, before its commit starts (and again if
    it is sealed again): it must be quick and must not assume the commit will succeed."""

    def prepared(self, rows: BatchRows, events: Sequence[Event]) -> None: ...


class Preparer(CommitListener, Protocol):
    """Turns a batch of events into rows to store (routing and encryption:
    gateway.ingest.sealing), and hears of their commit."""

    def prepare(self, events: Sequence[Event]) -> BatchRows: ...

    def forget_cached_keys(self) -> None:
        """Data keys it sealed under were destroyed: seal under fresh ones from now on."""


@dataclass(frozen=True, slots=True)
class SubmissionResult:
    """What happened to one submission's events."""

    new: tuple[uuid.UUID, ...]
    duplicates: tuple[uuid.UUID, ...]


class _KeysDestroyed(Exception):
    """Copies of the batch were sealed under data keys that no longer exist (crypto-shredded
    while cached): nothing was written."""


class _Unstorable(Exception):
    """The database refused these rows for their own data (sqlstate)."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@dataclass(slots=True)
class _Submission:
    events: Sequence[Event]
    on_done: Callable[[SubmissionResult], None]
    received: float = field(default_factory=time.monotonic)


class _Lane:
    def __init__(self, name: str, max_events: int, max_wait_s: float) -> None:
        self.name = name
        self.max_events = max_events
        self.max_wait_s = max_wait_s
        self.queue: deque[_Submission] = deque()
        self.queued_events = 0
        self.wakeup = asyncio.Event()


class Pipeline:
    def __init__(self, store: Store, preparer: Preparer, *,
                 max_events: int = 2000, max_wait_s: float = 0.005) -> None:
        self._store = store
        self._preparer = preparer
        self._listeners: list[CommitListener] = [preparer]
        self._before_commit: list[PreparedListener] = []
        self._bulk = _Lane("bulk", max_events, max_wait_s)
        self._alarm = _Lane("alarm", max_events, 0.0)
        self._stopping = False
        self._bulk_done = False
        self.last_commit = time.monotonic()
        self.stalled_since: float | None = None
        self.commits = 0

    # --- transports call these, on the event loop's thread -------------------------------

    def submit(self, events: Sequence[Event], on_done: Callable[[SubmissionResult], None]) -> None:
        """Queue a message's events; `on_done` runs after they are committed."""
        lane = self._alarm if any(isinstance(e, Alarm) for e in events) else self._bulk
        lane.queue.append(_Submission(events, on_done))
        lane.queued_events += len(events)
        metrics.PENDING.inc(len(events))
        lane.wakeup.set()

    async def commit(self, events: Sequence[Event]) -> SubmissionResult:
        """Submit and wait for the commit (HTTP, SIP)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[SubmissionResult] = loop.create_future()

        def resolve(outcome: SubmissionResult) -> None:
            if not done.done():
                done.set_result(outcome)

        self.submit(events, resolve)
        return await done

    def listen(self, listener: CommitListener) -> None:
        """Tell `listener` of every commit from now on, in its stage's turn."""
        self._listeners.append(listener)
        self._listeners.sort(key=lambda each: each.stage)  # stable: same stage, added order

    def before_commit(self, listener: PreparedListener) -> None:
        """Tell `listener` of every batch routed and sealed, before its commit."""
        self._before_commit.append(listener)

    @property
    def pending(self) -> int:
        return self._bulk.queued_events + self._alarm.queued_events

    # --- the commit loops ------------------------------------------------------------------

    async def run(self) -> None:
        """Run both lanes until `stop()`; what was received before stop is still committed.

        The alarm lane stops last: committing the final bulk batches can still raise alarms
        (supervision), and those must be committed too."""
        self._bulk_done = False
        try:
            await asyncio.gather(self._run_bulk_then_release(), self._run_lane(self._alarm))
        finally:
            self._bulk_done = True

    async def _run_bulk_then_release(self) -> None:
        try:
            await self._run_lane(self._bulk)
        finally:
            self._bulk_done = True
            self._alarm.wakeup.set()

    def stop(self) -> None:
        self._stopping = True
        self._bulk.wakeup.set()
        self._alarm.wakeup.set()

    async def _run_lane(self, lane: _Lane) -> None:
        while True:
            if not lane.queue:
                if self._stopping and (lane is self._bulk or self._bulk_done):
                    return
                lane.wakeup.clear()
                await lane.wakeup.wait()
                continue
            if lane.max_wait_s > 0 and lane.queued_events < lane.max_events and not self._stopping:
                # Let a batch form: wait until it is full or the oldest entry is max_wait old.
                age = time.monotonic() - lane.queue[0].received
                if age < lane.max_wait_s:
                    lane.wakeup.clear()
                    try:
                        await asyncio.wait_for(lane.wakeup.wait(), lane.max_wait_s - age)
                    except TimeoutError:
                        pass
                    if lane.queued_events < lane.max_events and \
                            time.monotonic() - lane.queue[0].received < lane.max_wait_s:
                        continue
            batch = self._take(lane)
            await self._commit(lane, batch)

    def _take(self, lane: _Lane) -> list[_Submission]:
        batch: list[_Submission] = []
        count = 0
        while lane.queue and (not batch or count + len(lane.queue[0].events) <= lane.max_events):
            sub = lane.queue.popleft()
            batch.append(sub)
            count += len(sub.events)
        lane.queued_events -= count
        return batch

    async def _commit(self, lane: _Lane, batch: list[_Submission]) -> None:
        unique: dict[uuid.UUID, Event] = {}
        for sub in batch:
            for event in sub.events:
                # A resend in the same batch is stored once; counted as duplicate below.
                unique.setdefault(event.event_id, event)
        while True:
            prepared, unpreparable = await self._prepare(lane, list(unique.values()))
            if self._before_commit and lane is self._alarm:  # only alarm batches hold alarms
                self._tell_prepared(prepared, list(unique.values()))
            # Preparing took CPU, and so will encoding the statement's arguments: an alarm that
            # arrived meanwhile goes first (and the relay's first sends before the commit).
            await asyncio.sleep(0)
            try:
                result, rows, unstorable = await self._write_isolating(lane, prepared)
                break
            except _KeysDestroyed:
                # The notification of an erasure was missed or is still on its way; the
                # database said so in the commit itself. Seal again under fresh keys.
                log.warning("sealed_under_destroyed_keys_resealing", lane=lane.name,
                            events=len(unique))
                self._preparer.forget_cached_keys()
        unstorable |= unpreparable
        self._tell(CommittedBatch(lane.name, rows, list(unique.values()), result))
        await asyncio.sleep(0)  # the listeners took their time; the acks will take theirs
        metrics.BATCH_SIZE.observe(len(unique))
        metrics.PENDING.dec(sum(len(s.events) for s in batch))
        claimed: set[uuid.UUID] = set()
        for n, sub in enumerate(batch, 1):
            if n % CHUNK == 0:
                await asyncio.sleep(0)  # acks cost a socket write each: let alarms through
            if unstorable and any(e.event_id in unstorable for e in sub.events):
                continue  # unacknowledged: the device or broker sends it again
            new: list[uuid.UUID] = []
            dup: list[uuid.UUID] = []
            for event in sub.events:
                if event.event_id in result and event.event_id not in claimed:
                    claimed.add(event.event_id)
                    new.append(event.event_id)
                else:
                    dup.append(event.event_id)
            try:
                sub.on_done(SubmissionResult(tuple(new), tuple(dup)))
            except Exception:  # a transport's callback must not stop the commit loop
                log.exception("ack_callback_failed", lane=lane.name)

    def _tell_prepared(self, rows: BatchRows, events: Sequence[Event]) -> None:
        for listener in self._before_commit:
            try:
                listener.prepared(rows, events)
            except Exception:  # the batch must still be committed
                log.exception("prepared_listener_failed", listener=type(listener).__name__)

    def _tell(self, batch: CommittedBatch) -> None:
        for listener in self._listeners:
            try:
                listener.committed(batch)
            except Exception:  # the rows are stored: the acks must still go out
                log.exception("commit_listener_failed", listener=type(listener).__name__,
                              lane=batch.lane)

    async def _prepare(self, lane: _Lane, events: list[Event],
                       ) -> tuple[BatchRows, frozenset[uuid.UUID]]:
        """Route and seal in chunks, yielding to the event loop between them: a large batch
        takes tens of milliseconds of CPU, and an alarm arriving meanwhile must not wait for
        all of it. An event that cannot be prepared (a bug: adapters only produce what routing
        and sealing take) is left out, unacknowledged, as an unstorable one is; the rest
        goes on. Returns the rows and the ids left out."""
        rows = BatchRows()
        left_out: set[uuid.UUID] = set()
        for start in range(0, len(events), CHUNK):
            if start:
                await asyncio.sleep(0)
            chunk = events[start:start + CHUNK]
            try:
                rows.extend(self._preparer.prepare(chunk))
                continue
            except Exception as err:  # find the one at fault; the others must not pay for it
                log.warning("batch_prepare_failed", lane=lane.name, events=len(chunk),
                            error=type(err).__name__)
            for event in chunk:
                try:
                    rows.extend(self._preparer.prepare([event]))
                except Exception as err:
                    metrics.UNSTORABLE.labels(lane.name).inc()
                    log.error("event_not_preparable", lane=lane.name,
                              event_id=str(event.event_id), device_id=event.device_id,
                              error=type(err).__name__)
                    left_out.add(event.event_id)
        return rows, frozenset(left_out)

    async def _write_isolating(self, lane: _Lane, rows: BatchRows,
                               ) -> tuple[frozenset[uuid.UUID], BatchRows, frozenset[uuid.UUID]]:
        """Store `rows`; if the database refuses them for their own data, store the halves,
        down to single events. Returns the new ids, the rows that were stored, and the ids of
        the events that could not be."""
        try:
            return await self._write_until_committed(lane, rows), rows, frozenset()
        except _Unstorable as refused:
            if len(rows.events) == 1:
                event = rows.events[0]
                metrics.UNSTORABLE.labels(lane.name).inc()
                # Ids and the SQLSTATE only: the database's message can quote a value.
                log.error("event_not_storable", lane=lane.name, event_id=str(event.event_id),
                          device_id=event.device_id, sqlstate=refused.sqlstate)
                return frozenset(), BatchRows(), frozenset({event.event_id})
        ids = [e.event_id for e in rows.events]
        half = len(ids) // 2
        new, stored, unstorable = frozenset[uuid.UUID](), BatchRows(), frozenset[uuid.UUID]()
        for part in (ids[:half], ids[half:]):
            part_new, part_stored, part_unstorable = await self._write_isolating(
                lane, rows.only(part))
            new, unstorable = new | part_new, unstorable | part_unstorable
            stored.extend(part_stored)
        return new, stored, unstorable

    async def _write_until_committed(self, lane: _Lane,
                                     rows: BatchRows) -> frozenset[uuid.UUID]:
        if not rows.events:
            return frozenset()
        delay = 0.05
        while True:
            started = time.monotonic()
            try:
                result = await self._store.events.write_batch(rows)
            except Exception as err:  # whatever the driver raises, the loop must live on
                sqlstate = data_fault(err)
                if sqlstate is not None:
                    raise _Unstorable(sqlstate) from None
                if not isinstance(err, DB_ERRORS):  # not the database being away: a bug
                    log.error("commit_failed_unexpectedly", lane=lane.name,
                              error=type(err).__name__)
                metrics.COMMIT_FAILURES.inc()
                if self.stalled_since is None:
                    self.stalled_since = started
                log.warning("commit_failed_retrying", lane=lane.name, events=len(rows.events),
                            error=type(err).__name__, retry_in_s=round(delay, 2))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if result.missing_keys:
                raise _KeysDestroyed
            now = time.monotonic()
            metrics.COMMIT_SECONDS.observe(now - started)
            self.last_commit = now
            self.stalled_since = None
            self.commits += 1
            return result.new_ids
