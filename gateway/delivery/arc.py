"""Alarms to alarm receiving centres (ARCs) over SCAIP, with escalation (docs/delivery.md).

Every alarm whose route names an ARC (an `[[arc]]` entry of config/sinks.toml) is stored with a
delivery row `target = 'arc'` and one more sealed copy, to the alarm relay's key
(`hmc-alarm-relay`). This module sends it:

- **Fast path, while committing.** As soon as an alarm is routed and sealed, before its commit
  starts, the pipeline hands it over (`prepared()`); it is still in memory, so it goes to the
  ARC at once, without a database round trip and without opening anything, while the commit
  runs. A person who has fallen waits for the alarm centre, not for the WAL flush. The device
  is still acknowledged only after the commit. The SCAIP `ref` is derived from the event and
  the centre (`ref_for`), so when the commit fails, or the process dies before it, the device's
  resend is the same alarm to the centre, never a second one. Until the commit is heard of
  (`committed()`), what the centres answer is kept in memory and written afterwards, in order,
  with the times it happened and whether it came before or after the commit; a commit that
  fails leaves the alarm relayed and escalated all the same, and its history is written when
  the device's resend is stored. The row is stored leased (`next_attempt_at` ahead) and the
  lease is extended while the alarm is being handled, so no other instance takes it meanwhile.
- **Recovery.** A row whose lease ran out (the instance handling it stopped or crashed) is
  claimed (`FOR UPDATE SKIP LOCKED`) by an instance holding the relay's *private* key, which
  opens the relay copy (audited, `alarm_relay.open`) and handles it the same way.

Handling one alarm follows SS 91100 §5 from the sender's side:
- `snu=0`: accepted; the delivery is done.
- `snu=4` hold: the *same* ref again after 5-20 s (`hold_resend_s`), to the same ARC, until it
  is accepted or `accept_within_s` has passed; then the next ARC.
- `snu=5`/`6` (not treated, busy), a message error, a SIP error, or no `<mrs>` within
  `answer_timeout_s`: the next ARC (the secondary) at once; the one left gets `mty=RE`.
- Moving to the next ARC raises an incident (`arc_escalated`); when every ARC has failed, an
  incident `arc_unreachable`, a pause of about `retry_s`, and the primary again. An alarm is
  never given up.
Every answer is recorded in `arc_attempt` (ids, which ARC, outcome, snu), so the alarm's history
shows when it was sent, held, escalated and accepted.

Cancellations: when a device cancels (a SCAIP unit's `stc=0019`, as `ME` or as an `IN` update)
an alarm that an ARC accepted in the last 30 minutes, that ARC gets `mty=IN` with `stc=0019` and
the alarm's ref, so the operator knows before dispatching anyone; a cancel that arrives while the
alarm is still being sent follows it once accepted. This instance relays the cancellations of
the alarms it sent (SCAIP units speak to the instance that runs the SIP listener, which is the
alarm instance); the huvudman gets every cancellation as an event in any case.

Heartbeats: each ARC address gets `mty=PI` with `hbo=001` at start and then at the interval the
ARC asks for in `<hbi>`; `gateway_arc_up{receiver,arc}` says whether it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import secrets
import string
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import msgspec

from adapters.events import Alarm, DeviceEvent, Event
from adapters.scaip import Snu
from gateway.crypto import CryptoError, Opener
from gateway.delivery.arc_config import ArcAddress, ArcSpec
from gateway.delivery.scaip_alarm import alarm_mrq, cancel_mrq, ping_mrq, ref_for, reset_mrq
from gateway.delivery.scaip_client import Answer, ScaipClient
from gateway.ingest.pipeline import CommittedBatch, Stage
from gateway.ingest.sealing import RelayPlaintext
from gateway.observability import metrics
from gateway.observability.logs import get as get_logger
from gateway.observability.tasks import keep_running
from gateway.ownership import audit
from gateway.store.arc import ArcClaim, ArcQueries
from gateway.store.connector import Store
from gateway.store.errors import DB_ERRORS
from gateway.store.events import BatchRows, DeliveryRow

log = get_logger("arc")
# One write of the background writer: a statement of the ARC area.
_Write = Callable[[ArcQueries], Awaitable[None]]

_OUTCOME_BY_SNU = {Snu.OK: "accepted", Snu.HOLD: "hold", Snu.NOT_TREATED: "not_treated",
                   Snu.BUSY: "busy"}
_REF_CHARS = string.ascii_uppercase + string.digits
HEARTBEAT_RETRY_S = 30.0
DEFAULT_HEARTBEAT_MIN = 10
CANCEL_WINDOW_S = 30 * 60.0  # SS 91100 §5: a unit polls a held alarm for at most 30 min
CANCELLED = "alarm_cancelled"
# An alarm relayed but never committed (its device never sent it again): its history is
# forgotten after this long, with an error in the log.
UNCOMMITTED_HISTORY_S = 6 * 3600.0
_Key = tuple[uuid.UUID, str]  # (event id, receiver)


@dataclass(frozen=True, slots=True)
class ArcJob:
    event_id: uuid.UUID
    receiver: str
    alarm: Alarm
    with_position: bool


@dataclass(slots=True)
class _Uncommitted:
    """An alarm relayed before its commit was heard of: its history, held back until then
    (the rows it refers to do not exist yet)."""

    since: float  # time.monotonic()
    writes: list[tuple[str, _Write]]


@dataclass(frozen=True, slots=True)
class _Accepted:
    """An alarm an ARC accepted, which its device may still cancel."""

    job: ArcJob
    which: str
    address: ArcAddress
    until: float  # time.monotonic()


class ArcForwarder:
    def __init__(self, store: Store, specs: Mapping[str, ArcSpec], *,
                 opener: Opener | None = None, client: ScaipClient | None = None,
                 lease_s: float = 30.0, poll_s: float = 1.0, heartbeats: bool = True,
                 rng: random.Random | None = None,
                 passwords: Mapping[str, str] | None = None) -> None:
        """`passwords`: per receiver, the Digest password of its `auth_user`."""
        self._store = store
        self._specs = dict(specs)
        self._opener = opener
        self.client = configure(client or ScaipClient(), self._specs.values(), passwords)
        self.lease_s = lease_s
        self._poll_s = poll_s
        self._heartbeats = heartbeats
        self._rng = rng or random.Random()
        self._jobs: dict[_Key, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._writer_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._writes: asyncio.Queue[tuple[str, _Write]] = asyncio.Queue()
        self._accepting = True
        # By device: accepted alarms it may cancel; cancels for alarms still being sent.
        self._accepted: dict[str, list[_Accepted]] = {}
        self._cancels: dict[str, DeviceEvent] = {}
        self._sending: dict[_Key, ArcJob] = {}
        self._uncommitted: dict[_Key, _Uncommitted] = {}
        # Accepted by a centre, until the cancel window ends: a resend is not relayed again.
        self._relayed: dict[_Key, float] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()
        # Per (receiver, "primary" | "secondary"): answering heartbeats, and at what interval.
        self.up: dict[tuple[str, str], bool] = {}
        self.intervals: dict[tuple[str, str], float] = {}

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.client.start()
        self._writer_task = keep_running("arc-history", self._writer)
        self._tasks.append(keep_running("arc-lease", self._lease_loop))
        if self._opener is not None:
            self._tasks.append(keep_running("arc-recover", self._recover_loop))
        if self._heartbeats:
            for spec in self._specs.values():
                for which, address in spec.targets:
                    self._tasks.append(keep_running(
                        f"arc-heartbeat-{spec.receiver}-{which}",
                        functools.partial(self._heartbeat_loop, spec, which, address)))
        log.info("arc_forwarder_started", receivers=len(self._specs), port=self.client.port,
                 recovery=self._opener is not None)

    async def stop(self) -> None:
        """Stop sending. Alarms not yet accepted stay pending; their leases run out and an
        instance holding the relay key takes them (docs/delivery.md)."""
        self._accepting = False
        tasks = [*self._tasks, *self._jobs.values(), *self._side_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._jobs.clear()
        # What was answered is written down if the database lets it within a few seconds; an
        # accepted alarm not marked done is sent again after its lease, with the same ref.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._writes.join(), 5.0)
        self._stopping.set()
        if self._writer_task is not None:
            self._writer_task.cancel()
            await asyncio.gather(self._writer_task, return_exceptions=True)
        await self.client.stop()

    # --- fast path ----------------------------------------------------------------------------

    def prepared(self, rows: BatchRows, events: Sequence[Event]) -> None:
        """Routed and sealed, about to be committed: its alarms leave for their alarm centres
        now, while the commit runs (resends included: the same ref, unless accepted already)."""
        for job in jobs_from(rows.deliveries, events, None):
            self.forward(job, committed=False)

    stage: ClassVar[Stage] = Stage.RELAY

    def committed(self, batch: CommittedBatch) -> None:
        """Right after a commit, before anything else hears of it: the history of its alarms
        can be written now; new alarms not relayed yet (a pipeline without `prepared`) leave
        now; and a device's cancellation follows its alarm."""
        arcs = [d for d in batch.rows.deliveries if d.target == "arc" and d.receiver is not None
                ] if batch.lane == "alarm" else []
        for d in arcs:
            key = (d.event_id, d.receiver or "")
            if d.event_id in batch.new_ids:
                self._now_committed(key)
            else:
                self._stored_before(key)
        if not batch.new_ids:
            return
        if arcs:
            for job in jobs_from(arcs, batch.events, batch.new_ids):
                self.forward(job)
        if self._accepted or self._jobs:  # else no cancel can concern us: no pass over bulk
            for event in batch.events:
                if isinstance(event, DeviceEvent) and event.event_type == CANCELLED and \
                        event.event_id in batch.new_ids:
                    self.cancelled(event)

    def cancelled(self, event: DeviceEvent) -> None:
        """The device cancelled: tell the ARCs that accepted its alarms (measured before the
        cancel, within CANCEL_WINDOW_S); alarms still being sent are told once accepted."""
        now = time.monotonic()
        mine = [a for a in self._accepted.pop(event.device_id, []) if a.until > now]
        keep = [a for a in mine if a.job.alarm.measured_at > event.measured_at]
        if keep:
            self._accepted[event.device_id] = keep
        for accepted in mine:
            if accepted.job.alarm.measured_at <= event.measured_at:
                self._spawn(self._send_cancel(accepted))
        if any(job.alarm.device_id == event.device_id and
               job.alarm.measured_at <= event.measured_at for job in self._sending.values()):
            self._cancels[event.device_id] = event

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name="arc-cancel")
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _send_cancel(self, accepted: _Accepted) -> None:
        job = accepted.job
        spec = self._specs.get(job.receiver)
        if spec is None:
            return
        ref = ref_for(job.event_id, job.receiver)
        sent_at = datetime.now(UTC)
        after_commit = (job.event_id, job.receiver) not in self._uncommitted
        answer = await self.client.request(
            accepted.address, cancel_mrq(job.alarm, receiver=job.receiver, gateway_cid=spec.cid),
            ref, timeout_s=spec.answer_timeout_s)
        outcome, snu = _outcome(answer)
        log.info("arc_cancellation_relayed", event_id=str(job.event_id), receiver=job.receiver,
                 arc=accepted.which, outcome=outcome)
        self._record(job, accepted.which, f"cancellation_{outcome}", snu, sent_at, after_commit)

    def forward(self, job: ArcJob, *, committed: bool = True, again: bool = False) -> None:
        """Start sending `job` unless it is being sent already, or was accepted within the
        cancel window (`again`: all the same; its lease ran out before the settlement was
        written). `committed`: its rows are stored, else its history waits for the commit."""
        key = (job.event_id, job.receiver)
        if not self._accepting or key in self._jobs or job.receiver not in self._specs:
            return
        if key in self._relayed and not again:
            return
        if not committed and key not in self._uncommitted:
            self._uncommitted[key] = _Uncommitted(time.monotonic(), [])
        task = asyncio.create_task(self._handle(job), name=f"arc-{job.event_id}")
        self._jobs[key] = task
        self._sending[key] = job
        task.add_done_callback(lambda _t: (self._jobs.pop(key, None),
                                           self._sending.pop(key, None)))

    # --- one alarm ----------------------------------------------------------------------------

    async def _handle(self, job: ArcJob) -> None:
        spec = self._specs[job.receiver]
        mrq = alarm_mrq(job.alarm, receiver=job.receiver, gateway_cid=spec.cid,
                        with_position=job.with_position)
        ref = ref_for(job.event_id, job.receiver)
        targets = spec.targets
        sent = 0
        while not self._stopping.is_set():
            for index, (which, address) in enumerate(targets):
                accepted, count = await self._try_target(job, spec, which, address, mrq, ref)
                sent += count
                if accepted:
                    self._finish(job, which, address, sent)
                    return
                if index + 1 < len(targets):
                    metrics.ARC_ESCALATED.labels(job.receiver).inc()
                    log.warning("arc_escalated", event_id=str(job.event_id),
                                receiver=job.receiver, to=targets[index + 1][0])
                    self._incident(job, "arc_escalated")
            self._incident(job, "arc_unreachable")
            log.error("arc_unreachable", event_id=str(job.event_id), receiver=job.receiver)
            await asyncio.sleep(self._rng.uniform(0.5, 1.5) * spec.retry_s)

    async def _try_target(self, job: ArcJob, spec: ArcSpec, which: str,
                          address: ArcAddress, mrq: bytes, ref: str) -> tuple[bool, int]:
        """Send to one ARC until it accepts (True), or refuses, holds too long or is silent."""
        give_up_at = time.monotonic() + spec.accept_within_s
        sent = 0
        while True:
            sent += 1
            sent_at = datetime.now(UTC)
            after_commit = (job.event_id, job.receiver) not in self._uncommitted
            answer = await self.client.request(address, mrq, ref, timeout_s=spec.answer_timeout_s)
            outcome, snu = _outcome(answer)
            metrics.ARC_ANSWERS.labels(job.receiver, which, outcome).inc()
            self._record(job, which, outcome, snu, sent_at, after_commit)
            if outcome == "accepted":
                return True, sent
            if outcome == "hold":
                wait = self._rng.uniform(*spec.hold_resend_s)
                if time.monotonic() + wait < give_up_at:
                    await asyncio.sleep(wait)
                    continue
            # Tell the ARC left behind that the alarm is handled elsewhere (SS 91100 §5).
            with contextlib.suppress(OSError, ValueError):
                self.client.send_only(address, reset_mrq(job.alarm, receiver=job.receiver,
                                                         gateway_cid=spec.cid))
            return False, sent

    def _finish(self, job: ArcJob, which: str, address: ArcAddress, sent: int) -> None:
        metrics.ARC_ACCEPTED.labels(job.receiver, which).inc()
        at = datetime.now(UTC)
        key = (job.event_id, job.receiver)
        self._later(key, "done", functools.partial(_done, job.event_id, job.receiver, sent, at))
        accepted = _Accepted(job, which, address, time.monotonic() + CANCEL_WINDOW_S)
        self._relayed[key] = accepted.until
        device = job.alarm.device_id
        cancel = self._cancels.get(device)
        if cancel is not None and job.alarm.measured_at <= cancel.measured_at:
            self._spawn(self._send_cancel(accepted))  # cancelled while it was being sent
            return
        now = time.monotonic()
        self._accepted[device] = [a for a in self._accepted.get(device, []) if a.until > now]
        self._accepted[device].append(accepted)

    def _record(self, job: ArcJob, which: str, outcome: str, snu: int | None,
                sent_at: datetime, after_commit: bool) -> None:
        at = datetime.now(UTC)
        self._later((job.event_id, job.receiver), "attempt", lambda q: q.add_attempt(
            job.event_id, job.receiver, which, outcome, snu, sent_at, at, after_commit))

    def _incident(self, job: ArcJob, reason: str) -> None:
        at = datetime.now(UTC)
        self._later((job.event_id, job.receiver), "incident", lambda q: q.add_incident(
            job.event_id, job.alarm.device_id, reason, at))

    def _later(self, key: _Key | None, what: str, write: _Write) -> None:
        """History, incidents and settlement go through one writer task, in order: a database
        that is away must never hold up the next send or an escalation. Those of an alarm not
        yet committed wait for its commit."""
        uncommitted = self._uncommitted.get(key) if key is not None else None
        if uncommitted is not None:
            uncommitted.writes.append((what, write))
        else:
            self._writes.put_nowait((what, write))

    def _now_committed(self, key: _Key) -> None:
        uncommitted = self._uncommitted.pop(key, None)
        if uncommitted is not None:
            for what, write in uncommitted.writes:
                self._writes.put_nowait((what, write))

    def _stored_before(self, key: _Key) -> None:
        """The device sent again an alarm stored earlier (its acknowledgement was lost): the
        stored row has its own sender (this instance, another, or recovery after its lease), so
        the resend's relay stops here. If it already reached the centre, it did so under the
        same ref: the same alarm to the centre."""
        uncommitted = self._uncommitted.pop(key, None)
        if uncommitted is None:
            return  # not relayed by this batch (being sent already, or accepted recently)
        task = self._jobs.get(key)
        if task is not None:
            task.cancel()
        log.info("arc_resend_of_stored_alarm", event_id=str(key[0]), receiver=key[1])

    async def _writer(self) -> None:
        while True:
            what, write = await self._writes.get()
            try:
                await self._write(what, write)
            finally:
                self._writes.task_done()

    async def _write(self, what: str, write: _Write) -> None:
        """Retried while the database is away (the alarm has already gone)."""
        delay = 0.1
        while not self._stopping.is_set():
            try:
                await write(self._store.arc)
                return
            except DB_ERRORS as err:
                log.warning("arc_write_failed", write=what, error=type(err).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # --- leases and recovery ------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        lease = timedelta(seconds=self.lease_s)
        while not self._stopping.is_set():
            await asyncio.sleep(self.lease_s / 3)
            self._forget_old_alarms()
            keys = list(self._jobs)
            if not keys:
                continue
            try:
                await self._store.arc.extend_lease([k[0] for k in keys],
                                                   [k[1] for k in keys], lease)
            except DB_ERRORS as err:
                log.warning("arc_lease_failed", error=type(err).__name__)

    def _forget_old_alarms(self) -> None:
        """Past CANCEL_WINDOW_S an alarm can no longer be cancelled: let it go. The history
        of an alarm relayed but never committed goes after UNCOMMITTED_HISTORY_S."""
        now = time.monotonic()
        for key in [k for k, t in self._relayed.items() if t <= now]:
            del self._relayed[key]
        for key in [k for k, u in self._uncommitted.items()
                    if k not in self._jobs and now - u.since > UNCOMMITTED_HISTORY_S]:
            del self._uncommitted[key]
            log.error("arc_history_never_committed", event_id=str(key[0]), receiver=key[1])
        for device in list(self._accepted):
            left = [a for a in self._accepted[device] if a.until > now]
            if left:
                self._accepted[device] = left
            else:
                del self._accepted[device]
        sending = {job.alarm.device_id for job in self._sending.values()}
        for device in [d for d in self._cancels if d not in sending]:
            del self._cancels[device]

    async def _recover_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.recover_once()
            except DB_ERRORS as err:
                log.warning("arc_recover_failed", error=type(err).__name__)
            await asyncio.sleep(self._poll_s)

    async def recover_once(self, limit: int = 50) -> int:
        """Claim alarms whose lease ran out and handle them; returns how many."""
        assert self._opener is not None
        rows = await self._store.arc.claim(limit, list(self._specs), [k[0] for k in self._jobs],
                                           timedelta(seconds=self.lease_s))
        for row in rows:
            key = (row.event_id, row.receiver)
            if key in self._relayed:  # accepted here; its settlement is still on its way
                at = datetime.now(UTC)
                self._later(None, "done", functools.partial(_done, row.event_id, row.receiver,
                                                            0, at))
                continue
            job = self._open(row)
            if job is None:
                self._later(None, "dead", _dead(row.id, "relay copy cannot be opened"))
                continue
            async with self._store.transaction() as tx:
                await audit.record(tx, "alarm_relay.open", str(row.event_id),
                                   receiver=row.receiver)
            log.info("arc_recovered", event_id=str(row.event_id), receiver=row.receiver)
            self.forward(job, again=True)
        return len(rows)

    def _open(self, row: ArcClaim) -> ArcJob | None:
        assert self._opener is not None
        if row.envelope is None or row.data_key is None:
            return None
        try:
            plain = msgspec.json.decode(
                self._opener.open(row.envelope, event_id=row.event_id, kind="alarm",
                                  wrapped_key=row.data_key), type=RelayPlaintext)
        except (CryptoError, msgspec.DecodeError, msgspec.ValidationError) as err:
            log.error("arc_relay_copy_unreadable", event_id=str(row.event_id),
                      error=type(err).__name__)
            return None
        return ArcJob(row.event_id, row.receiver, plain.event,
                      row.receiver in plain.positions_for)

    # --- heartbeats ---------------------------------------------------------------------------

    async def _heartbeat_loop(self, spec: ArcSpec, which: str, address: ArcAddress) -> None:
        interval = DEFAULT_HEARTBEAT_MIN * 60.0
        while not self._stopping.is_set():
            ref, mrq = ping(spec)
            answer = await self.client.request(address, mrq, ref,
                                               timeout_s=spec.answer_timeout_s)
            up = answer.mrs is not None and answer.mrs.snu == Snu.OK
            if answer.mrs is not None and answer.mrs.hbi is not None:
                interval = answer.mrs.hbi * 60.0
            key = (spec.receiver, which)
            self.intervals[key] = interval
            if self.up.get(key) is not up:
                (log.info if up else log.warning)(
                    "arc_heartbeat", receiver=spec.receiver, arc=which, up=up,
                    interval_s=interval)
            self.up[key] = up
            metrics.ARC_UP.labels(spec.receiver, which).set(1 if up else 0)
            await asyncio.sleep(interval if up else min(interval, HEARTBEAT_RETRY_S))


def configure(client: ScaipClient, specs: Iterable[ArcSpec],
              passwords: Mapping[str, str] | None) -> ScaipClient:
    """Give `client` each centre's TLS context and Digest credentials (`passwords` by
    receiver, for the entries with `auth_user`)."""
    for spec in specs:
        context = spec.tls_context()
        if context is not None:
            client.use_tls(context, *(address for _, address in spec.targets
                                      if address.transport == "tls"))
        if spec.auth_user is not None:
            password = (passwords or {}).get(spec.receiver)
            if password is None:
                raise ValueError(f"no Digest password for {spec.receiver}'s auth_user")
            client.use_digest(spec.auth_user, password,
                              *(address for _, address in spec.targets))
    return client


def ping(spec: ArcSpec) -> tuple[str, bytes]:
    """A heartbeat to this centre: a fresh ref and the `<mrq>`."""
    ref = "".join(secrets.choice(_REF_CHARS) for _ in range(12))
    return ref, ping_mrq(ref, gateway_cid=spec.cid)


def _outcome(answer: Answer) -> tuple[str, int | None]:
    if answer.mrs is None:
        return ("no_answer" if answer.sip_status is None or answer.sip_status < 300
                else "sip_error"), None
    snu = answer.mrs.snu
    return _OUTCOME_BY_SNU.get(Snu(snu) if snu in Snu._value2member_map_ else Snu.UNDEFINED,
                               "refused"), snu


def jobs_from(deliveries: Sequence[DeliveryRow], events: Sequence[Event],
              new_ids: frozenset[uuid.UUID] | None) -> list[ArcJob]:
    """The ARC jobs of a batch (of `new_ids` only, when given)."""
    arcs = [d for d in deliveries if d.target == "arc" and d.receiver is not None]
    if not arcs:  # every bulk batch: no second pass over its events
        return []
    alarms = {e.event_id: e for e in events
              if isinstance(e, Alarm) and (new_ids is None or e.event_id in new_ids)}
    return [ArcJob(d.event_id, d.receiver, alarms[d.event_id], d.with_position)
            for d in arcs if d.receiver is not None and d.event_id in alarms]


async def _done(event_id: uuid.UUID, receiver: str, requests: int, at: datetime,
                q: ArcQueries) -> None:
    await q.done(event_id, receiver, requests, at)


def _dead(delivery_id: int, reason: str) -> _Write:
    async def write(q: ArcQueries) -> None:
        await q.dead(delivery_id, reason)

    return write
