"""The one module that talks to PostgreSQL. SQL lives in queries.sql and migrations/*.sql.

Everything on the ingest hot path is a batch: `write_batch` stores any number of events and their
deliveries in one transaction and one round trip.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from typing import Any

import asyncpg

from gateway.ingest.sealing import BatchRows

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.M)


def load_queries(package: str, filename: str = "queries.sql") -> dict[str, str]:
    """Named statements from a .sql file in `package`, split at `-- name: <name>` lines."""
    text = resources.files(package).joinpath(filename).read_text("utf-8")
    parts = _NAME.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


QUERIES = load_queries("gateway.store")


@dataclass(frozen=True, slots=True)
class BatchResult:
    new_ids: frozenset[uuid.UUID]
    queued: int
    copies: int = 0
    keys: int = 0
    incidents: int = 0


class Store:
    """A pool of connections and the named queries, nothing else."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 4,
                      application_name: str = "gateway") -> Store:
        pool = await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, command_timeout=30,
            server_settings={"application_name": application_name})
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    async def fetch(self, name: str, *args: Any) -> list[asyncpg.Record]:
        return list(await self.pool.fetch(QUERIES[name], *args))

    async def fetchval(self, name: str, *args: Any) -> Any:
        return await self.pool.fetchval(QUERIES[name], *args)

    async def execute(self, name: str, *args: Any) -> str:
        return str(await self.pool.execute(QUERIES[name], *args))

    async def write_batch(self, rows: BatchRows) -> BatchResult:
        """Store a prepared batch in one statement, which is its own transaction."""
        ev, cp, dl, inc = rows.events, rows.copies, rows.deliveries, rows.incidents
        keys = list(rows.data_keys.values())
        row = await self.pool.fetchrow(
            QUERIES["write_batch"],
            [e.event_id for e in ev], [e.measured_at for e in ev], [e.received_at for e in ev],
            [e.device_id for e in ev], [e.event_type for e in ev], [e.kind for e in ev],
            [e.code for e in ev], [e.source for e in ev], [",".join(e.flags) for e in ev],
            [e.routed_at for e in ev], [e.quarantined for e in ev],
            [c.event_id for c in cp], [c.measured_at for c in cp], [c.recipient for c in cp],
            [c.key_id for c in cp], [c.envelope for c in cp], [c.expires_at for c in cp],
            [d.event_id for d in dl], [d.huvudman for d in dl], [d.assignment_id for d in dl],
            [d.lane for d in dl], [d.receiver for d in dl],
            [k.key_id for k in keys], [k.huvudman for k in keys],
            [k.subject_pseudonym for k in keys], [k.epoch for k in keys],
            [k.recipient_key_id for k in keys], [k.suite.value for k in keys],
            [k.wrapped for k in keys],
            [i.event_id for i in inc], [i.device_id for i in inc], [i.reason for i in inc],
            [d.target for d in dl], [d.delay_s for d in dl],
        )
        assert row is not None
        return BatchResult(frozenset(row["new_ids"] or ()), int(row["queued"]),
                           int(row["copies"]), int(row["keys"]), int(row["incidents"]))

    async def ensure_partitions(self, months_back: int = 2, months_ahead: int = 3) -> list[str]:
        return [r[0] for r in await self.fetch("ensure_partitions", months_back, months_ahead)]

    async def ping(self) -> bool:
        try:
            return bool(await self.pool.fetchval("SELECT 1", timeout=2))
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False

    async def listen(self, channel: str, on_change: Callable[[], Awaitable[None]],
                     stop: asyncio.Event, *, safety_interval: float | None = 60.0) -> None:
        """Call `on_change` on every NOTIFY on `channel`, reconnecting until `stop` is set.

        It is also called on every (re)connection, for what changed while nobody listened, and
        every `safety_interval` seconds in case a notification was lost (None: never)."""
        while not stop.is_set():
            try:
                conn = await self.pool.acquire()
            except (OSError, asyncpg.PostgresError):
                await asyncio.sleep(1)
                continue
            wake = asyncio.Event()

            def notified(*_: object, wake: asyncio.Event = wake) -> None:
                wake.set()

            try:
                await conn.add_listener(channel, notified)
                await on_change()  # anything that changed while we were not listening
                while not stop.is_set():
                    waiter = asyncio.create_task(wake.wait())
                    stopper = asyncio.create_task(stop.wait())
                    await asyncio.wait({waiter, stopper}, timeout=safety_interval,
                                       return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    stopper.cancel()
                    if stop.is_set():
                        break
                    wake.clear()
                    # Coalesce bursts (a config load fires many statements).
                    await asyncio.sleep(0.05)
                    wake.clear()
                    await on_change()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await asyncio.sleep(1)
            finally:
                try:
                    await conn.remove_listener(channel, notified)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    pass
                await self.pool.release(conn)


def as_interval(seconds: float | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)
