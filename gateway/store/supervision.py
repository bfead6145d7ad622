"""Device supervision's memory (gateway/ingest/supervision.py): when each device was last heard
and since when its battery is low, shared by every ingest instance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from gateway.store.statements import Queries


@dataclass(frozen=True, slots=True)
class Seen:
    device_id: str
    last_seen_at: datetime
    battery_low_since: datetime | None


@dataclass(frozen=True, slots=True)
class SeenUpdate(Seen):
    battery_known: bool  # whether this instance learned the battery state


class SupervisionQueries(Queries, area="supervision"):
    async def load(self) -> list[Seen]:
        return [Seen(r["device_id"], r["last_seen_at"], r["battery_low_since"])
                for r in await self._fetch("load")]

    async def last_seen(self, device_ids: list[str]) -> dict[str, datetime]:
        return {r["device_id"]: r["last_seen_at"]
                for r in await self._fetch("last_seen", device_ids)}

    async def flush(self, rows: Sequence[SeenUpdate]) -> None:
        """One statement: last-seen only moves forward; the battery state is written only
        where `battery_known`."""
        await self._execute("flush", [r.device_id for r in rows],
                            [r.last_seen_at for r in rows],
                            [r.battery_low_since for r in rows],
                            [r.battery_known for r in rows])
