"""An alarm's history, from what ingest and delivery recorded: received, committed, each delivery
(attempts, done or dead, when), and any incident. Ids and times only: the alarm itself is sealed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from gateway.store.connector import Store


@dataclass(frozen=True, slots=True)
class Step:
    at: datetime
    what: str


@dataclass(frozen=True, slots=True)
class History:
    event_id: uuid.UUID
    device_id: str
    steps: tuple[Step, ...]


async def history(store: Store, event_id: uuid.UUID) -> History | None:
    event = await store.alarms.event(event_id)
    if event is None:
        return None
    steps = [Step(event.measured_at, "raised by the device (its clock)"),
             Step(event.received_at, f"received by the gateway ({event.source})"),
             Step(event.stored_at, "committed: stored and queued for delivery")]
    for d in await store.alarms.deliveries(event_id):
        if d.target == "arc":
            target, route = f"alarm centre {d.receiver}", ""
        else:
            target = (f"huvudman {d.huvudman}" if d.huvudman
                      else f"fallback receiver {d.receiver}")
            route = f" (alarm route {d.receiver})" if d.huvudman and d.receiver else ""
        if d.state == "done":
            steps.append(Step(d.finished_at or d.created_at,
                              f"delivered to {target}{route} after {d.attempts} attempt(s)"))
        elif d.state == "dead":
            steps.append(Step(d.finished_at or d.created_at,
                              f"dead letter for {target}{route}: {d.last_error or 'unknown'}"))
        else:
            why = f", last: {d.last_error}" if d.last_error else ""
            steps.append(Step(d.next_attempt_at,
                              f"pending for {target}{route}, {d.attempts} attempt(s) so far"
                              f"{why}; next attempt"))
    for a in await store.alarms.arc_attempts(event_id):
        snu = f" (snu {a.snu})" if a.snu is not None else ""
        centre = f"alarm centre {a.receiver} ({a.arc})"
        if a.sent_at is not None:  # the alarm is relayed while it is committed: either first
            when = "after" if a.after_commit else "before"
            steps.append(Step(a.sent_at, f"sent to {centre}, {when} the alarm was committed"))
        steps.append(Step(a.at, f"answer from {centre}: {a.outcome.replace('_', ' ')}{snu}"))
    for i in await store.alarms.incidents(event_id):
        steps.append(Step(i.created_at, f"incident raised: {i.reason}"))
        if i.resolved_at:
            steps.append(Step(i.resolved_at, "incident resolved"))
    steps.sort(key=lambda s: s.at)
    return History(event_id, event.device_id, tuple(steps))
