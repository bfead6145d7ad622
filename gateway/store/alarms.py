"""What ingest and delivery recorded of an alarm (gateway/delivery/alarm_history.py): ids,
states and times only; the alarm itself is sealed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from gateway.store.statements import Queries


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    event_id: uuid.UUID
    device_id: str
    measured_at: datetime
    received_at: datetime
    stored_at: datetime
    source: str


@dataclass(frozen=True, slots=True)
class AlarmDelivery:
    id: int
    huvudman: str | None
    receiver: str | None
    lane: str
    target: str
    state: str
    attempts: int
    created_at: datetime
    finished_at: datetime | None
    next_attempt_at: datetime
    last_error: str | None


@dataclass(frozen=True, slots=True)
class ArcAttempt:
    receiver: str
    arc: str
    outcome: str
    snu: int | None
    at: datetime  # the answer, or the end of waiting for one
    sent_at: datetime | None  # the request (None: recorded before migration 0016)
    after_commit: bool | None  # whether the alarm's commit was confirmed when it was sent


@dataclass(frozen=True, slots=True)
class AlarmIncident:
    reason: str
    created_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class RecentAlarm:
    event_id: uuid.UUID
    device_id: str
    received_at: datetime
    stored_at: datetime
    deliveries: int
    delivered: int
    incident: bool


class AlarmQueries(Queries, area="alarms"):
    async def event(self, event_id: uuid.UUID) -> AlarmEvent | None:
        r = await self._fetchrow("event", event_id)
        return None if r is None else AlarmEvent(r["event_id"], r["device_id"],
                                                 r["measured_at"], r["received_at"],
                                                 r["stored_at"], r["source"])

    async def deliveries(self, event_id: uuid.UUID) -> list[AlarmDelivery]:
        return [AlarmDelivery(r["id"], r["huvudman"], r["receiver"], r["lane"], r["target"],
                              r["state"], r["attempts"], r["created_at"], r["finished_at"],
                              r["next_attempt_at"], r["last_error"])
                for r in await self._fetch("deliveries", event_id)]

    async def arc_attempts(self, event_id: uuid.UUID) -> list[ArcAttempt]:
        return [ArcAttempt(r["receiver"], r["arc"], r["outcome"], r["snu"], r["at"],
                           r["sent_at"], r["after_commit"])
                for r in await self._fetch("arc_attempts", event_id)]

    async def incidents(self, event_id: uuid.UUID) -> list[AlarmIncident]:
        return [AlarmIncident(r["reason"], r["created_at"], r["resolved_at"])
                for r in await self._fetch("incidents", event_id)]

    async def recent(self, since: datetime, limit: int) -> list[RecentAlarm]:
        return [RecentAlarm(r["event_id"], r["device_id"], r["received_at"], r["stored_at"],
                            int(r["deliveries"]), int(r["delivered"]), bool(r["incident"]))
                for r in await self._fetch("recent", since, limit)]
