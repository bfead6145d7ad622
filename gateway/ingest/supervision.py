"""Device supervision: a device that falls silent or runs low on battery raises a technical alarm.

Swedish guidance since the national trial of digital alarms is supervision at minute level
(docs/protocols.md §5). Operators' view: docs/supervision.md.

How it works, and why:
- **Last seen, without a round trip per message.** The supervisor hears of every committed
  batch (a commit listener, stage `OBSERVE`, before the acks); it keeps `last_seen[device]` in
  memory and writes what changed to `device_seen` in one statement every
  `SUPERVISION_FLUSH_S` (and on stop), so a restarted ingest, or another instance, knows who
  was heard when. `device_seen` is its own
  table: an UPDATE of `device` would make every instance reload its registry (0009_supervision).
- **Expected interval** per device: its own `heartbeat_interval`; else, for a SCAIP unit that let
  the receiver set it (`hbo=001`), the `hbi` the gateway answered; else the default of its type
  (`SUPERVISION_INTERVALS_MIN`). Devices with none (scales, BP meters) are not supervised.
- **Who is supervised**: devices in state `assigned` with an assignment covering now. The
  silence starts at the later of the last time the device was heard and the start of its
  current assignment (so a device reissued after months in stock is not silent at once, and one
  lent out and never switched on is).
- **The check** (`SUPERVISION_CHECK_S`) flushes, finds devices past
  `silence start + interval + grace` (`due_for_silence_alarm`), re-reads their last-seen from
  the database (another instance may have heard them), and submits one technical
  `Alarm(DEVICE_SILENT)` per silence through the pipeline, so it is routed to the assignment's
  alarm route (or the fallback receiver with an incident) and sealed like any alarm. Its event
  id is derived from the device and the silence start, its measurement time is the deadline:
  two instances, or a restart, produce the same event, which the store keeps once. When the
  device is heard again the silence ends; a later silence is a new alarm.
- **Start-up hold.** A starting supervisor counts silences from no earlier than its own start:
  after an ingest outage every device gets a full interval to be heard again, instead of every
  device alarming at once (the outage is the gateway's fault, not the devices').
- **Battery.** SCAIP `stc` 0016/0023/0024/0085 and vendor `lowBattery`/`powerCut` already arrive
  as technical alarms from the adapters. A `DeviceStatus` with a battery level (native, vendor,
  PHD) below `SUPERVISION_BATTERY_LOW_PCT`, not charging, starts a low period and raises one
  BATTERY_LOW alarm for a supervised device; the period ends when the device charges or reports
  `threshold + 5` % or more (hysteresis, so a level wavering around the threshold is one alarm).
  The period's start is persisted with last-seen; the alarm id is derived from it.

Nothing of a device's data is logged: device ids, alarm types and event ids only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Protocol

from adapters.events import Alarm, AlarmType, DeviceStatus, Event, event_id
from gateway.ingest.pipeline import CommittedBatch, Stage, SubmissionResult
from gateway.observability import metrics
from gateway.observability.logs import get as get_logger
from gateway.ownership.registry import Device, Registry
from gateway.settings import Settings
from gateway.store.connector import Store
from gateway.store.errors import DB_ERRORS
from gateway.store.supervision import SeenUpdate

log = get_logger("supervision")

SOURCE = "gateway-supervision"  # the source of the alarms raised here (never counts as heard)
BATTERY_HYSTERESIS_PCT = 5.0
SILENT_PRIORITY = 5  # the person may have no working alarm: as urgent as a device's own alarm
BATTERY_PRIORITY = 3


class AlarmSink(Protocol):
    """What the supervisor needs of the pipeline."""

    def submit(self, events: Sequence[Event],
               on_done: Callable[[SubmissionResult], None]) -> None: ...

    async def commit(self, events: Sequence[Event]) -> SubmissionResult: ...


def parse_intervals(spec: str) -> dict[str, timedelta]:
    """`gps_alarm=15,night_sensor=15` (minutes) -> {type: interval}. `0` or `none`: unsupervised."""
    out: dict[str, timedelta] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"SUPERVISION_INTERVALS_MIN: expected type=minutes, got {item!r}")
        value = value.strip().lower()
        minutes = 0.0 if value in ("none", "off") else float(value)
        if minutes < 0:
            raise ValueError(f"SUPERVISION_INTERVALS_MIN: negative interval for {name!r}")
        if minutes:
            out[name.strip()] = timedelta(minutes=minutes)
    return out


def expected_interval(device: Device, type_defaults: dict[str, timedelta],
                      scaip_hbi_min: int | None = None) -> timedelta | None:
    """The device's own interval, else the SCAIP hbi it was given, else its type's default."""
    if device.heartbeat_interval is not None:
        return device.heartbeat_interval
    if scaip_hbi_min is not None:
        return timedelta(minutes=scaip_hbi_min)
    return type_defaults.get(device.device_type)


def silence_start(last_seen: datetime | None, assigned_since: datetime | None) -> datetime | None:
    """When the current silence began: the later of last heard and the current assignment."""
    known = [t for t in (last_seen, assigned_since) if t is not None]
    return max(known) if known else None


def silence_deadline(since: datetime, interval: timedelta, grace: timedelta) -> datetime:
    """The alarm's measurement time: deterministic from the silence, for the event id."""
    return since + interval + grace


def is_overdue(since: datetime | None, interval: timedelta | None, grace: timedelta,
               now: datetime, watching_since: datetime) -> bool:
    if since is None or interval is None:
        return False
    return now >= max(since, watching_since) + interval + grace


def due_for_silence_alarm(*, since: datetime | None, interval: timedelta | None,
                          grace: timedelta, now: datetime, watching_since: datetime,
                          alarmed_for: datetime | None) -> bool:
    """Whether a DEVICE_SILENT alarm is to be raised now.

    `since`: start of the silence (None: nothing to supervise from); `interval`: expected
    heartbeat interval (None: not supervised); `watching_since`: when this supervisor started
    (the start-up hold); `alarmed_for`: the silence start an alarm was already raised for.
    """
    if since is not None and alarmed_for is not None and alarmed_for >= since:
        return False
    return is_overdue(since, interval, grace, now, watching_since)


def battery_transition(low_since: datetime | None, status: DeviceStatus,
                       threshold_pct: float) -> tuple[datetime | None, bool]:
    """(new start of the low period or None, whether a low period starts with this status)."""
    level = status.battery_pct
    if level is None:
        return low_since, False
    if status.charging or level >= threshold_pct + BATTERY_HYSTERESIS_PCT:
        return None, False
    if level < threshold_pct and low_since is None:
        return status.measured_at, True
    return low_since, False


def silent_alarm(device_id: str, since: datetime, deadline: datetime, now: datetime) -> Alarm:
    return Alarm(event_id=event_id(device_id, f"{SOURCE}:{AlarmType.DEVICE_SILENT}", since),
                 device_id=device_id, alarm_type=AlarmType.DEVICE_SILENT, measured_at=deadline,
                 received_at=now, source=SOURCE, priority=SILENT_PRIORITY, technical=True)


def battery_alarm(device_id: str, low_since: datetime, now: datetime) -> Alarm:
    return Alarm(event_id=event_id(device_id, f"{SOURCE}:{AlarmType.BATTERY_LOW}", low_since),
                 device_id=device_id, alarm_type=AlarmType.BATTERY_LOW, measured_at=low_since,
                 received_at=now, source=SOURCE, priority=BATTERY_PRIORITY, technical=True)


@dataclass(frozen=True, slots=True)
class _Watched:
    device_id: str
    interval: timedelta
    since: datetime | None


def _now() -> datetime:
    return datetime.now(UTC)


class Supervisor:
    stage: ClassVar[Stage] = Stage.OBSERVE

    def __init__(self, store: Store, registry: Registry, settings: Settings, *,
                 sink: AlarmSink | None = None, clock: Callable[[], datetime] = _now) -> None:
        """`sink` takes the technical alarms (the pipeline); without one they are only
        counted."""
        self._store = store
        self._registry = registry
        self._clock = clock
        self._sink = sink
        self.type_intervals = parse_intervals(settings.supervision_intervals_min)
        self.grace = timedelta(seconds=settings.supervision_grace_s)
        self.check_s = settings.supervision_check_s
        self.flush_s = settings.supervision_flush_s
        self.battery_low_pct = settings.supervision_battery_low_pct
        self.watching_since = clock()
        self.last_seen: dict[str, datetime] = {}
        self.battery_low_since: dict[str, datetime] = {}
        self._battery_at: dict[str, datetime] = {}  # newest status with a level, per device
        self._alarmed_silence: dict[str, datetime] = {}  # device -> silence start alarmed
        self._scaip_hbi: dict[str, int] = {}
        self._dirty_seen: set[str] = set()
        self._dirty_battery: set[str] = set()

    # --- state ----------------------------------------------------------------------------

    async def load(self) -> None:
        """What earlier runs (or other instances) recorded; merged, never moved backwards."""
        for row in await self._store.supervision.load():
            device_id, seen = row.device_id, row.last_seen_at
            if device_id not in self.last_seen or self.last_seen[device_id] < seen:
                self.last_seen[device_id] = seen
            if row.battery_low_since is not None and device_id not in self._dirty_battery:
                self.battery_low_since[device_id] = row.battery_low_since

    async def flush(self) -> int:
        """Write what changed since the last flush, in one statement. Returns rows sent."""
        ids = sorted(self._dirty_seen | self._dirty_battery)
        if not ids:
            return 0
        seen, battery = self._dirty_seen, self._dirty_battery
        self._dirty_seen, self._dirty_battery = set(), set()
        rows = [SeenUpdate(d, at, self.battery_low_since.get(d), battery_known=d in battery)
                for d in ids if (at := self.last_seen.get(d)) is not None]
        try:
            await self._store.supervision.flush(rows)
        except DB_ERRORS as err:
            self._dirty_seen |= seen  # kept for the next flush
            self._dirty_battery |= battery
            log.warning("supervision_flush_failed", devices=len(rows),
                        error=type(err).__name__)
            raise
        return len(rows)

    def heartbeat_granted(self, device_id: str, hbi_min: int) -> None:
        """A SCAIP unit asked (hbo=001) and was told to send heartbeats every `hbi_min`."""
        self._scaip_hbi[device_id] = hbi_min

    def interval_for(self, device: Device) -> timedelta | None:
        return expected_interval(device, self.type_intervals, self._scaip_hbi.get(device.id))

    def _supervised(self, device: Device, now: datetime) -> _Watched | None:
        if device.state != "assigned":
            return None
        interval = self.interval_for(device)
        if interval is None:
            return None
        active = [a.valid_from for a in self._registry.assignment_index().for_device(device.id)
                  if a.covers(now)]
        if not active:
            return None
        return _Watched(device.id, interval,
                        silence_start(self.last_seen.get(device.id), max(active)))

    # --- the pipeline calls this after every commit ----------------------------------------

    def committed(self, batch: CommittedBatch) -> None:
        self.observe(batch.events)

    def observe(self, events: Sequence[Event]) -> None:
        """Who was heard, and battery levels. Quick and in memory: runs on the commit loop."""
        statuses: list[DeviceStatus] = []
        for event in events:
            if event.source == SOURCE:
                continue  # our own alarms are not a sign of life
            device_id = event.device_id
            if self._registry.device(device_id) is None:
                continue
            previous = self.last_seen.get(device_id)
            if previous is None or event.received_at > previous:
                self.last_seen[device_id] = event.received_at
                self._dirty_seen.add(device_id)
                alarmed = self._alarmed_silence.get(device_id)
                if alarmed is not None and event.received_at > alarmed:
                    del self._alarmed_silence[device_id]
                    log.info("device_heard_again", device_id=device_id)
            if isinstance(event, DeviceStatus) and event.battery_pct is not None:
                statuses.append(event)
        if statuses:
            self._observe_battery(sorted(statuses, key=lambda s: s.measured_at))

    def _observe_battery(self, statuses: Iterable[DeviceStatus]) -> None:
        now = self._clock()
        alarms: list[Alarm] = []
        for status in statuses:
            device_id = status.device_id
            newest = self._battery_at.get(device_id)
            if newest is not None and status.measured_at <= newest:
                continue  # an older report (offline batch, resend) says nothing about now
            self._battery_at[device_id] = status.measured_at
            before = self.battery_low_since.get(device_id)
            after, starts = battery_transition(before, status, self.battery_low_pct)
            if after == before:
                continue
            if after is None:
                self.battery_low_since.pop(device_id, None)
            else:
                self.battery_low_since[device_id] = after
            device = self._registry.device(device_id)
            if starts and after is not None and device is not None \
                    and self._supervised(device, now) is not None and self._sink is not None:
                # Persisted only once the alarm is committed: a low period recorded with its
                # alarm lost (a stop in between) would never be alarmed again.
                alarms.append(battery_alarm(device_id, after, now))
            else:
                self._dirty_battery.add(device_id)
                self._dirty_seen.add(device_id)
        if alarms and self._sink is not None:
            for alarm in alarms:
                log.info("technical_alarm_raised", device_id=alarm.device_id,
                         alarm_type=alarm.alarm_type.value, event_id=str(alarm.event_id))
            counted = _count_new(alarms)

            def on_alarms_committed(outcome: SubmissionResult) -> None:
                counted(outcome)
                for alarm in alarms:
                    self._dirty_battery.add(alarm.device_id)
                    self._dirty_seen.add(alarm.device_id)

            self._sink.submit(alarms, on_alarms_committed)

    # --- the periodic check ----------------------------------------------------------------

    async def check(self, now: datetime | None = None) -> list[Alarm]:
        """Flush, then raise a DEVICE_SILENT alarm for each newly silent device. Returns the
        alarms submitted (committed when this returns; resends of known ones included)."""
        now = now or self._clock()
        await self.flush()
        supervised = 0
        silent = 0
        candidates: dict[str, _Watched] = {}
        for device in list(self._registry.snapshot.devices.values()):
            watched = self._supervised(device, now)
            if watched is None:
                continue
            supervised += 1
            if is_overdue(watched.since, watched.interval, self.grace, now,
                          self.watching_since):
                silent += 1
                if due_for_silence_alarm(
                        since=watched.since, interval=watched.interval, grace=self.grace,
                        now=now, watching_since=self.watching_since,
                        alarmed_for=self._alarmed_silence.get(device.id)):
                    candidates[device.id] = watched
        metrics.SUPERVISED_DEVICES.set(supervised)
        if candidates:
            # Another instance may have heard them: the database has its flushed last-seen.
            theirs = await self._store.supervision.last_seen(list(candidates))
            for device_id, seen in theirs.items():
                mine = self.last_seen.get(device_id)
                if mine is None or seen > mine:
                    self.last_seen[device_id] = seen
        alarms: list[Alarm] = []
        silences: dict[str, datetime] = {}
        for device_id in candidates:
            current = self._registry.device(device_id)
            fresh = self._supervised(current, now) if current is not None else None
            if fresh is None or fresh.since is None or not due_for_silence_alarm(
                    since=fresh.since, interval=fresh.interval, grace=self.grace, now=now,
                    watching_since=self.watching_since,
                    alarmed_for=self._alarmed_silence.get(device_id)):
                silent -= 1
                continue
            silences[device_id] = fresh.since
            alarms.append(silent_alarm(device_id, fresh.since,
                                       silence_deadline(fresh.since, fresh.interval,
                                                        self.grace), now))
        metrics.SILENT_DEVICES.set(silent)
        if alarms and self._sink is not None:
            outcome = await self._sink.commit(alarms)
            _count_new(alarms)(outcome)
            for alarm in alarms:
                self._alarmed_silence[alarm.device_id] = silences[alarm.device_id]
                log.info("technical_alarm_raised", device_id=alarm.device_id,
                         alarm_type=alarm.alarm_type.value, event_id=str(alarm.event_id),
                         new=alarm.event_id in outcome.new)
        return alarms

    # --- the task --------------------------------------------------------------------------

    async def run(self) -> None:
        """Flush every `flush_s`, check every `check_s`, until cancelled."""
        next_check = time.monotonic() + self.check_s
        while True:
            await asyncio.sleep(max(0.05, min(self.flush_s, next_check - time.monotonic())))
            try:
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.check_s
                    await self.check()
                else:
                    await self.flush()
            except DB_ERRORS:
                pass  # logged by flush, or the database is away: try again next round
            except Exception:
                log.exception("supervision_check_failed")


def _count_new(alarms: Sequence[Alarm]) -> Callable[[SubmissionResult], None]:
    types = {a.event_id: a.alarm_type.value for a in alarms}

    def done(outcome: SubmissionResult) -> None:
        for new_id in outcome.new:
            if new_id in types:
                metrics.TECHNICAL_ALARMS.labels(types[new_id]).inc()

    return done

