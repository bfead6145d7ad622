"""What became of given devices' readings (sql/reconciliation.sql): the stored events and their
deliveries, for a reconciliation against what the devices sent (simulator/reconcile.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from gateway.store.statements import Queries


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event_id: uuid.UUID
    device_id: str
    kind: str
    measured_at: datetime


@dataclass(frozen=True, slots=True)
class DeliveryState:
    event_id: uuid.UUID
    target: str
    state: str  # pending, done, dead


class ReconciliationQueries(Queries, area="reconciliation"):
    async def events_of(self, devices: Sequence[str]) -> list[StoredEvent]:
        return [StoredEvent(r["event_id"], r["device_id"], r["kind"], r["measured_at"])
                for r in await self._fetch("events_of", list(devices))]

    async def deliveries_of(self, devices: Sequence[str]) -> list[DeliveryState]:
        return [DeliveryState(r["event_id"], r["target"], r["state"])
                for r in await self._fetch("deliveries_of", list(devices))]
