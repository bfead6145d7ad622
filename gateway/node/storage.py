"""The node's own storage: its migrations (gateway/node/migrations, tracked in
`node_schema_migration`) and its named queries (gateway/node/queries.sql), in the PostgreSQL
schema `huvudman_node` of NODE_DATABASE_URL. One batch is one statement, so one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from importlib import resources

import asyncpg

from gateway.node.opening import Opened
from gateway.store.connector import load_queries
from gateway.store.migrate import migrate

MIGRATION_TABLE = "node_schema_migration"
QUERIES = load_queries("gateway.node")


async def migrate_node(dsn: str) -> list[str]:
    """Bring the node's schema to the newest version; the names of migrations applied now."""
    folder = resources.files("gateway.node").joinpath("migrations")
    return await migrate(dsn, folder=folder, table=MIGRATION_TABLE)


class NodeStore:
    def __init__(self, pool: asyncpg.Pool, huvudman: str) -> None:
        self.pool = pool
        self.huvudman = huvudman

    @classmethod
    async def connect(cls, dsn: str, huvudman: str, *, max_size: int = 4) -> NodeStore:
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=max_size, command_timeout=30,
            server_settings={"application_name": f"gateway-node-{huvudman}"})
        return cls(pool, huvudman)

    async def close(self) -> None:
        await self.pool.close()

    async def store(self, copies: Sequence[Opened]) -> frozenset[uuid.UUID]:
        """Store the opened copies of one batch at once; returns the ids that are new."""
        if not copies:
            return frozenset()
        rows = await self.pool.fetch(
            QUERIES["store_copies"], self.huvudman,
            [c.event_id for c in copies], [c.measured_at for c in copies],
            [c.kind for c in copies], [c.event_type for c in copies],
            [c.lane for c in copies], [c.content for c in copies],
            [c.subjects for c in copies], [c.routed_at for c in copies])
        return frozenset(r["event_id"] for r in rows)

    async def fhir_dead(self, limit: int = 100) -> list[asyncpg.Record]:
        """This huvudman's readings the FHIR server refused for good (metadata only)."""
        return list(await self.pool.fetch(QUERIES["fhir_dead"], self.huvudman, limit))

    async def fhir_replay(self, event_id: uuid.UUID | None) -> list[uuid.UUID]:
        """One dead reading (or all: None) due again now; the ids that were dead."""
        rows = await self.pool.fetch(QUERIES["fhir_replay"], self.huvudman, event_id)
        return [r["event_id"] for r in rows]

    async def ready(self) -> bool:
        try:
            return bool(await self.pool.fetchval(QUERIES["ping"]) == 1)
        except (OSError, asyncpg.PostgresError):
            return False
