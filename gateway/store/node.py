"""The huvudman node's own storage: its migrations (gateway/store/migrations/node, tracked in
`node_schema_migration`) and statements (sql/node.sql), in the PostgreSQL schema
`huvudman_node` of NODE_DATABASE_URL: the opened copies, and their forwarding to the huvudman's
FHIR server. One batch is one statement, so one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources

import asyncpg

from gateway.store.errors import DB_ERRORS
from gateway.store.migrate import migrate
from gateway.store.statements import Queries, open_pool

MIGRATION_TABLE = "node_schema_migration"


async def migrate_node(dsn: str) -> list[str]:
    """Bring the node's schema to the newest version; the names of migrations applied now."""
    folder = resources.files("gateway.store").joinpath("migrations", "node")
    return await migrate(dsn, folder=folder, table=MIGRATION_TABLE)


@dataclass(frozen=True, slots=True)
class OpenedCopy:
    """One delivered item as the node keeps it: opened, with its subjects."""

    event_id: uuid.UUID
    measured_at: datetime
    kind: str
    event_type: str
    lane: str
    content: str  # the opened event, JSON
    subjects: str  # [{assignment_id, subject_ref}], JSON
    routed_at: datetime | None


@dataclass(frozen=True, slots=True)
class KnownSubject:
    """An assignment's subject reference, opened, with the digest of its sealed form."""

    assignment_id: uuid.UUID
    digest: bytes
    subject_ref: str


@dataclass(frozen=True, slots=True)
class FhirClaim:
    event_id: uuid.UUID
    measured_at: datetime
    content: str
    subjects: str
    attempts: int


@dataclass(frozen=True, slots=True)
class FhirSettlement:
    event_id: uuid.UUID
    outcome: str  # done, dead, or retry (pending again after `delay_s`)
    delay_s: float
    status: int | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class FhirCounts:
    pending: int
    dead: int
    oldest_pending_s: float | None


@dataclass(frozen=True, slots=True)
class FhirDead:
    """A reading the FHIR server refused for good: ids, kind, times, status and the
    letters-only reason; never content."""

    event_id: uuid.UUID
    kind: str
    measured_at: datetime
    status: int | None
    reason: str | None
    attempts: int
    done_at: datetime | None


class NodeQueries(Queries, area="node"):
    async def store_copies(self, huvudman: str,
                           copies: Sequence[OpenedCopy]) -> frozenset[uuid.UUID]:
        rows = await self._fetch(
            "store_copies", huvudman,
            [c.event_id for c in copies], [c.measured_at for c in copies],
            [c.kind for c in copies], [c.event_type for c in copies],
            [c.lane for c in copies], [c.content for c in copies],
            [c.subjects for c in copies], [c.routed_at for c in copies])
        return frozenset(r["event_id"] for r in rows)

    async def store_subjects(self, huvudman: str, subjects: Sequence[KnownSubject]) -> None:
        await self._execute("store_subjects", huvudman, [s.assignment_id for s in subjects],
                            [s.digest for s in subjects], [s.subject_ref for s in subjects])

    async def subjects(self, huvudman: str, ids: list[uuid.UUID]) -> list[KnownSubject]:
        return [KnownSubject(r["assignment_id"], bytes(r["digest"]), r["subject_ref"])
                for r in await self._fetch("subjects", huvudman, ids)]

    async def ping(self) -> bool:
        return bool(await self._fetchval("ping") == 1)

    async def fhir_claim(self, limit: int, lease: timedelta) -> list[FhirClaim]:
        return [FhirClaim(r["event_id"], r["measured_at"], r["content"], r["subjects"],
                          r["fhir_attempts"])
                for r in await self._fetch("fhir_claim", limit, lease)]

    async def fhir_settle(self, results: Sequence[FhirSettlement]) -> None:
        await self._execute("fhir_settle", [r.event_id for r in results],
                            [r.outcome for r in results], [r.delay_s for r in results],
                            [r.status for r in results], [r.reason for r in results])

    async def fhir_release(self, event_ids: list[uuid.UUID]) -> None:
        await self._execute("fhir_release", event_ids)

    async def fhir_counts(self) -> FhirCounts:
        r = await self._fetchrow("fhir_counts")
        assert r is not None
        return FhirCounts(int(r["pending"]), int(r["dead"]), r["oldest_s"])

    async def fhir_dead(self, huvudman: str, limit: int) -> list[FhirDead]:
        return [FhirDead(r["event_id"], r["kind"], r["measured_at"], r["fhir_status"],
                         r["fhir_reason"], r["fhir_attempts"], r["fhir_done_at"])
                for r in await self._fetch("fhir_dead", huvudman, limit)]

    async def fhir_replay(self, huvudman: str, event_id: uuid.UUID | None) -> list[uuid.UUID]:
        return [r["event_id"] for r in await self._fetch("fhir_replay", huvudman, event_id)]


class NodeStore:
    """One huvudman's node storage: a pool and the node's statements."""

    def __init__(self, pool: asyncpg.Pool, huvudman: str) -> None:
        self._pool = pool
        self.huvudman = huvudman
        self.queries = NodeQueries(pool)

    @classmethod
    async def connect(cls, dsn: str, huvudman: str, *, max_size: int = 4) -> NodeStore:
        return cls(await open_pool(dsn, max_size=max_size,
                                   application_name=f"gateway-node-{huvudman}"), huvudman)

    async def close(self) -> None:
        await self._pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        """The raw pool, for tests and benchmarks that look at the tables themselves; the
        product goes through the queries (tests/test_layout.py checks that)."""
        return self._pool

    async def store(self, copies: Sequence[OpenedCopy],
                    subjects: Sequence[KnownSubject] = ()) -> frozenset[uuid.UUID]:
        """Store the opened copies of one batch, and the subjects it taught, at once; returns
        the ids that are new."""
        if not subjects:
            if not copies:
                return frozenset()
            return await self.queries.store_copies(self.huvudman, copies)
        async with self._pool.acquire() as conn, conn.transaction():
            queries = NodeQueries(conn)
            await queries.store_subjects(self.huvudman, subjects)
            if not copies:
                return frozenset()
            return await queries.store_copies(self.huvudman, copies)

    async def subjects(self, ids: Sequence[uuid.UUID]) -> list[KnownSubject]:
        """The subjects this node learned earlier, of these assignments."""
        return await self.queries.subjects(self.huvudman, list(ids))

    async def fhir_dead(self, limit: int = 100) -> list[FhirDead]:
        """This huvudman's readings the FHIR server refused for good (metadata only)."""
        return await self.queries.fhir_dead(self.huvudman, limit)

    async def fhir_replay(self, event_id: uuid.UUID | None) -> list[uuid.UUID]:
        """One dead reading (or all: None) due again now; the ids that were dead."""
        return await self.queries.fhir_replay(self.huvudman, event_id)

    async def ready(self) -> bool:
        try:
            return await self.queries.ping()
        except DB_ERRORS:
            return False
