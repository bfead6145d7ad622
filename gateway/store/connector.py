"""The one module that holds PostgreSQL connections: `Store` owns ingest's pool and offers the
per-area queries on it, each statement its own transaction, or on one connection inside a
transaction (`Store.transaction()`), for changes that must commit together with their audit
entry. SQL lives in sql/*.sql and migrations/; nothing outside gateway/store opens a connection
or names a statement.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import asyncpg

from gateway.observability import metrics
from gateway.observability.logs import get as get_logger
from gateway.store.alarms import AlarmQueries
from gateway.store.arc import ArcQueries
from gateway.store.audit import AuditQueries
from gateway.store.erasure import ErasureQueries
from gateway.store.errors import DB_ERRORS
from gateway.store.events import EventQueries
from gateway.store.keys import KeyQueries
from gateway.store.lifecycle import LifecycleQueries
from gateway.store.operators import OperatorQueries
from gateway.store.outbox import OutboxQueries
from gateway.store.privileges import PrivilegeQueries
from gateway.store.reconciliation import ReconciliationQueries
from gateway.store.registration import RegistrationQueries
from gateway.store.registry import RegistryQueries
from gateway.store.statements import Executor, open_pool
from gateway.store.supervision import SupervisionQueries

log = get_logger("store")


class Areas:
    """Every area's queries, bound to one executor (the pool, or a transaction's connection)."""

    def __init__(self, db: Executor) -> None:
        self.events = EventQueries(db)
        self.registry = RegistryQueries(db)
        self.registration = RegistrationQueries(db)
        self.lifecycle = LifecycleQueries(db)
        self.keys = KeyQueries(db)
        self.audit = AuditQueries(db)
        self.erasure = ErasureQueries(db)
        self.operators = OperatorQueries(db)
        self.outbox = OutboxQueries(db)
        self.supervision = SupervisionQueries(db)
        self.alarms = AlarmQueries(db)
        self.arc = ArcQueries(db)
        self.privileges = PrivilegeQueries(db)
        self.reconciliation = ReconciliationQueries(db)


class Transaction(Areas):
    """The areas on one connection inside one transaction: all of it commits, or none."""


class Store(Areas):
    """A pool of connections and every area's queries on it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 1, max_size: int = 4,
                      application_name: str = "gateway") -> Store:
        return cls(await open_pool(dsn, min_size=min_size, max_size=max_size,
                                   application_name=application_name))

    async def close(self, timeout_s: float = 5.0) -> None:
        """Close gracefully, or cut the connections after `timeout_s` (a database that went
        silent must not hold a stopping process)."""
        try:
            await asyncio.wait_for(self._pool.close(), timeout_s)
        except TimeoutError:
            self._pool.terminate()

    @property
    def pool(self) -> asyncpg.Pool:
        """The raw pool, for tests and benchmarks that look at the tables themselves; the
        product goes through the queries (tests/test_layout.py checks that)."""
        return self._pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield Transaction(conn)

    async def ping(self) -> bool:
        try:
            return await self.events.ping()
        except DB_ERRORS:
            return False

    async def listen(self, channel: str, on_change: Callable[[], Awaitable[None]],
                     stop: asyncio.Event, *, safety_interval: float | None = 60.0,
                     listening: asyncio.Event | None = None) -> None:
        """Call `on_change` on every NOTIFY on `channel`, reconnecting until `stop` is set.

        It is also called on every (re)connection, for what changed while nobody listened, and
        every `safety_interval` seconds in case a notification was lost (None: never). A
        connection the server cuts is noticed at once (a termination listener) and replaced:
        a LISTEN must never be silently gone. `listening` is set while one is established."""
        while not stop.is_set():
            try:
                conn = await self._pool.acquire()
            except DB_ERRORS:
                await asyncio.sleep(1)
                continue
            wake, lost = asyncio.Event(), asyncio.Event()

            def notified(*_: object, wake: asyncio.Event = wake) -> None:
                wake.set()

            def terminated(*_: object, lost: asyncio.Event = lost,
                           wake: asyncio.Event = wake) -> None:
                lost.set()
                wake.set()

            conn.add_termination_listener(terminated)
            try:
                await conn.add_listener(channel, notified)
                _listening(channel, listening, True)
                await on_change()  # anything that changed while we were not listening
                while not stop.is_set() and not lost.is_set():
                    waiter = asyncio.create_task(wake.wait())
                    stopper = asyncio.create_task(stop.wait())
                    await asyncio.wait({waiter, stopper}, timeout=safety_interval,
                                       return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    stopper.cancel()
                    if stop.is_set() or lost.is_set():
                        break
                    wake.clear()
                    # Coalesce bursts (a config load fires many statements).
                    await asyncio.sleep(0.05)
                    wake.clear()
                    await on_change()
            except DB_ERRORS:
                await asyncio.sleep(1)
            finally:
                _listening(channel, listening, False)
                # A connection the server cut is already back in the pool (asyncpg released
                # it): then each of these refuses, and there is nothing left to undo.
                with contextlib.suppress(*DB_ERRORS):
                    conn.remove_termination_listener(terminated)
                with contextlib.suppress(*DB_ERRORS):
                    await conn.remove_listener(channel, notified)
                with contextlib.suppress(*DB_ERRORS):
                    await self._pool.release(conn)
            if lost.is_set() and not stop.is_set():
                log.warning("listen_connection_lost", channel=channel)


def _listening(channel: str, flag: asyncio.Event | None, up: bool) -> None:
    metrics.LISTENING.labels(channel).set(1 if up else 0)
    if flag is not None:
        (flag.set if up else flag.clear)()


def as_interval(seconds: float | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)
