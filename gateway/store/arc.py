"""Alarms to alarm centres (gateway/delivery/arc.py): the fast path's leases, recovery of
alarms whose lease ran out (with the relay's sealed copy), and what each centre answered."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.crypto import WrappedKey
from gateway.store.outbox import wrapped_key
from gateway.store.statements import Queries


@dataclass(frozen=True, slots=True)
class ArcClaim:
    id: int
    event_id: uuid.UUID
    measured_at: datetime
    receiver: str
    envelope: bytes | None  # the relay's copy; None when it is gone (erased)
    data_key: WrappedKey | None


class ArcQueries(Queries, area="arc"):
    async def claim(self, limit: int, receivers: list[str], handling: list[uuid.UUID],
                    lease: timedelta) -> list[ArcClaim]:
        """Alarms for `receivers` whose lease ran out, except those this instance is handling
        (`handling`), leased for `lease`."""
        return [ArcClaim(r["id"], r["event_id"], r["measured_at"], r["receiver"],
                         bytes(r["envelope"]) if r["envelope"] is not None else None,
                         wrapped_key(r))
                for r in await self._fetch("claim", limit, receivers, handling, lease)]

    async def extend_lease(self, event_ids: list[uuid.UUID], receivers: list[str],
                           lease: timedelta) -> None:
        """The alarms this instance still handles (pairwise event id, receiver) stay its own."""
        await self._execute("extend_lease", event_ids, receivers, lease)

    async def done(self, event_id: uuid.UUID, receiver: str, requests: int,
                   at: datetime) -> None:
        """A centre accepted the alarm at `at`, after `requests` requests."""
        await self._execute("done", event_id, receiver, requests, at)

    async def dead(self, delivery_id: int, reason: str) -> None:
        await self._execute("dead", delivery_id, reason)

    async def add_attempt(self, event_id: uuid.UUID, receiver: str, arc: str, outcome: str,
                          snu: int | None, sent_at: datetime, at: datetime,
                          after_commit: bool) -> None:
        await self._execute("add_attempt", event_id, receiver, arc, outcome, snu, sent_at, at,
                            after_commit)

    async def add_incident(self, event_id: uuid.UUID, device_id: str, reason: str,
                           at: datetime) -> None:
        await self._execute("add_incident", event_id, device_id, reason, at)
