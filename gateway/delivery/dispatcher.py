"""The dispatcher: one task per lane claims due deliveries, sends them to their sinks, and
settles the answers, each step one statement per batch (gateway.delivery.outbox).

- The **alarm lane** is woken in-process right after an alarm batch with new events commits
  (the dispatcher is a commit listener, stage `DELIVER`), and by `NOTIFY delivery_alarm` (a
  trigger on alarm rows) for alarms another instance stored.
- The **bulk lane** is woken the same way after a bulk commit, and claims up to 500 per cycle.
- Both also wake when a retry they scheduled comes due, and at the latest every `poll_s`
  (retries scheduled by other instances, replays, leases that ran out).

Within a cycle, the claimed batch is grouped by destination (the huvudman, or the fallback
alarm receiver); each sink gets its items in requests of up to its `batch_max`, sinks in
parallel. A sink's circuit breaker, while open, holds its items back without counting an
attempt. A destination with no sink keeps its deliveries pending (re-checked every minute).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from gateway.delivery.outbox import Claimed, Outbox, backoff
from gateway.delivery.sink import Breaker, ItemResult, Sink, Verdict, destination
from gateway.delivery.subjects import SubjectLines
from gateway.ingest.pipeline import CommittedBatch, Stage
from gateway.observability import metrics
from gateway.observability.logs import get as get_logger
from gateway.observability.tasks import keep_running
from gateway.store.connector import Store
from gateway.store.errors import DB_ERRORS
from gateway.store.outbox import Settlement

log = get_logger("delivery")

LANES = ("alarm", "bulk")
CLAIM_LIMIT = {"alarm": 100, "bulk": 500}
NO_SINK_RECHECK_S = 60.0
ERASED = "sealed copy or data key no longer exists"


@dataclass(frozen=True, slots=True)
class _Sent:
    claimed: Claimed
    sink: str
    settlement: Settlement


class Dispatcher:
    def __init__(self, store: Store, sinks: Mapping[str, Sink], *, max_attempts: int = 20,
                 backoff_base_s: float = 1.0, breaker_failures: int = 5,
                 breaker_open_s: float = 30.0, poll_s: float = 1.0,
                 listen: bool = True, bulk_workers: int = 2) -> None:
        self._store = store
        self._sinks = dict(sinks)
        self._breakers = {s.name: Breaker(breaker_failures, breaker_open_s)
                          for s in self._sinks.values()}
        # A lease outlasts the longest a cycle can spend on one sink (requests go one after
        # another per sink), so no other dispatcher claims a row while it is being sent.
        longest = max((s.timeout_s * math.ceil(CLAIM_LIMIT["bulk"] / s.batch_max)
                       for s in self._sinks.values()), default=0.0)
        self.outbox = Outbox(store, max_attempts=max_attempts, lease_s=60.0 + longest)
        self._subjects = SubjectLines(self.outbox)
        self._backoff_base_s = backoff_base_s
        self._poll_s = poll_s
        self._listen = listen
        # Bulk cycles are claim, send, settle, one after another: one cycle's database round
        # trips and the receiver's time add up. Two cycles side by side (SKIP LOCKED keeps
        # them apart) let one send while the other claims or settles.
        self._bulk_workers = max(1, bulk_workers)
        self._wake = {lane: asyncio.Event() for lane in LANES}
        self._due: dict[str, list[float]] = {lane: [] for lane in LANES}
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def breaker(self, sink_name: str) -> Breaker:
        return self._breakers[sink_name]

    # --- waking -------------------------------------------------------------------------------

    stage: ClassVar[Stage] = Stage.DELIVER

    def committed(self, batch: CommittedBatch) -> None:
        """A batch of this lane has just committed: what it queued is due now."""
        if batch.new_ids:
            self.wake(batch.lane)

    def wake(self, lane: str) -> None:
        event = self._wake.get(lane)
        if event is not None:
            event.set()

    async def _alarm_notified(self) -> None:
        self._wake["alarm"].set()

    # --- running ------------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [keep_running("delivery-alarm", lambda: self._lane_loop("alarm"))]
        self._tasks += [keep_running(f"delivery-bulk-{n}", lambda: self._lane_loop("bulk"))
                        for n in range(self._bulk_workers)]
        self._tasks.append(keep_running("delivery-gauge", self._gauge_loop))
        if self._listen:
            self._tasks.append(keep_running("delivery-alarm-listener", lambda: self._store.listen(
                "delivery_alarm", self._alarm_notified, self._stopping, safety_interval=None)))

    async def stop(self, grace_s: float = 5.0) -> None:
        """Finish the cycles under way (up to `grace_s`), then stop. What was claimed and not
        settled comes due again when its lease ends."""
        self._stopping.set()
        for event in self._wake.values():
            event.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for sink in self._sinks.values():
            with contextlib.suppress(Exception):
                await sink.aclose()

    async def _lane_loop(self, lane: str) -> None:
        wake = self._wake[lane]
        while not self._stopping.is_set():
            wake.clear()
            try:
                claimed = await self.cycle(lane)
            except DB_ERRORS as err:
                log.warning("delivery_cycle_failed", lane=lane, error=type(err).__name__)
                await self._wait(wake, 1.0)
                continue
            if claimed >= CLAIM_LIMIT[lane]:
                continue  # more may be due right now
            await self._wait(wake, self._until_due(lane))

    def _until_due(self, lane: str) -> float:
        due, now = self._due[lane], time.monotonic()
        while due and due[0] <= now:
            heapq.heappop(due)
        return min(self._poll_s, due[0] - now) if due else self._poll_s

    async def _wait(self, wake: asyncio.Event, seconds: float) -> None:
        if self._stopping.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), max(seconds, 0.0))

    async def _gauge_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                counts = dict.fromkeys(LANES, 0) | await self._store.outbox.pending_by_lane()
                for lane, count in counts.items():
                    metrics.DELIVERY_PENDING.labels(lane).set(count)
            except DB_ERRORS:
                pass
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 5.0)

    # --- one cycle ----------------------------------------------------------------------------

    async def cycle(self, lane: str) -> int:
        """Claim, send and settle one batch of `lane`; returns how many were claimed."""
        claimed = await self.outbox.claim(lane, CLAIM_LIMIT[lane], self._sinks)
        if not claimed:
            return 0
        groups: dict[str, list[Claimed]] = {}
        sent: list[_Sent] = []
        for c in claimed:
            dest = destination(c.huvudman, c.receiver)
            if c.item is None:
                sent.append(_Sent(c, "none", Settlement(c.id, "dead", reason=ERASED)))
            elif dest not in self._sinks:
                metrics.NO_SINK.labels(lane).inc()
                sent.append(_Sent(c, "none", Settlement(
                    c.id, "defer", NO_SINK_RECHECK_S, "no sink configured")))
            else:
                groups.setdefault(dest, []).append(c)
        for part in await asyncio.gather(*(self._send(self._sinks[d], items)
                                           for d, items in groups.items())):
            sent.extend(part)
        states = await self.outbox.settle([s.settlement for s in sent])
        self._account(lane, sent, states)
        return len(claimed)

    async def _send(self, sink: Sink, items: Sequence[Claimed]) -> list[_Sent]:
        breaker = self._breakers[sink.name]
        out: list[_Sent] = []
        for start in range(0, len(items), sink.batch_max):
            chunk = items[start:start + sink.batch_max]
            if not breaker.allow():
                delay = breaker.retry_in() + random.uniform(0.0, 0.1 * breaker.open_s)
                out.extend(_Sent(c, sink.name, Settlement(c.id, "defer", delay, "circuit open"))
                           for c in chunk)
                continue
            was_open = breaker.is_open
            results = await self._request(sink, chunk)
            failed = all(r.verdict is Verdict.RETRY for r in results)
            asked = [r.retry_after_s for r in results if r.retry_after_s is not None]
            breaker.record(not failed, open_now=any(r.open_breaker for r in results),
                           open_for=max(asked) if failed and asked else None)
            metrics.DELIVERY_REQUESTS.labels(sink.name, "failed" if failed else "ok").inc()
            metrics.BREAKER_OPEN.labels(sink.name).set(1 if breaker.is_open else 0)
            if breaker.is_open and not was_open:
                log.warning("sink_circuit_open", sink=sink.name,
                            open_s=round(breaker.retry_in(), 1),
                            reason=results[0].reason if results else None)
            elif was_open and not breaker.is_open:
                log.info("sink_circuit_closed", sink=sink.name)
            out.extend(_Sent(c, sink.name, self._settlement(c, r))
                       for c, r in zip(chunk, results, strict=True))
        return out

    async def _request(self, sink: Sink, chunk: Sequence[Claimed]) -> Sequence[ItemResult]:
        items = [c.item for c in chunk if c.item is not None]
        # The database's fault, not the sink's: raised to the cycle, which retries later.
        subjects = await self._subjects.needed(sink.name, chunk)
        try:
            results = await sink.send(items, subjects)
        except Exception as err:  # a sink's bug must not stop the lane; the items wait
            log.error("sink_failed", sink=sink.name, error=type(err).__name__)
            return [ItemResult(Verdict.RETRY, "sink error")] * len(chunk)
        if len(results) != len(chunk):
            return [ItemResult(Verdict.RETRY, "sink answered for the wrong number of items")] \
                * len(chunk)
        self._subjects.answered(sink.name, chunk, results)
        return results

    def _settlement(self, c: Claimed, r: ItemResult) -> Settlement:
        if r.verdict is Verdict.DONE:
            return Settlement(c.id, "done")
        if r.verdict is Verdict.REJECTED:
            return Settlement(c.id, "dead", reason=r.reason)
        # Never sooner than the receiver asked (Retry-After).
        delay = max(backoff(c.attempts, self._backoff_base_s), r.retry_after_s or 0.0)
        return Settlement(c.id, "retry", delay, r.reason or "retry")

    def _account(self, lane: str, sent: Sequence[_Sent], states: Mapping[int, str]) -> None:
        now, wall = time.monotonic(), datetime.now(UTC)
        dead: dict[str, int] = {}
        next_due = math.inf
        for s in sent:
            state = states.get(s.claimed.id)
            if state == "done":
                metrics.DELIVERED.labels(s.sink, lane).inc()
                if s.claimed.stored_at is not None:
                    metrics.DELIVERY_SECONDS.labels(lane).observe(
                        (wall - s.claimed.stored_at).total_seconds())
            elif state == "dead":
                metrics.DEAD_LETTERED.labels(s.sink, lane).inc()
                dead[s.sink] = dead.get(s.sink, 0) + 1
            elif state == "pending":
                if s.settlement.outcome == "retry":
                    metrics.RETRIED.labels(s.sink, lane).inc()
                next_due = min(next_due, s.settlement.delay_s)
        for sink, count in dead.items():
            log.warning("deliveries_dead_lettered", sink=sink, lane=lane, count=count)
        if next_due < math.inf:
            # A little after the row's own time (the database's clock set it just now).
            heapq.heappush(self._due[lane], now + next_due + 0.02)
