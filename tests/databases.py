"""A PostgreSQL of the test's own (pgserver), to stop, start and cut connections of: for the
database fault tests and the fault runs. Prepared as the session's database is (the 50
huvudmän, keys), with the gateway's runtime role."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import asyncpg

from gateway.demo import embedded
from gateway.ownership import key_management, registration
from gateway.store import privileges
from gateway.store.connector import Store
from gateway.store.migrate import migrate
from tests.paths import ROOT
from tests.support import Keys


@dataclasses.dataclass
class PrivateDatabase:
    """A PostgreSQL of the test's own, to stop and start."""

    folder: Path
    service: embedded.Service | None = None

    @property
    def url(self) -> str:
        assert self.service is not None
        return self.service.url

    def start(self) -> None:
        self.service = embedded.start_postgres(self.folder)

    @property
    def runtime_url(self) -> str:
        """As the gateway connects: a member of gateway_runtime (after `prepare`)."""
        return privileges.dsn_as(self.url, "gateway_test_runtime")

    async def prepare(self, keys: Keys) -> None:
        """Migrated, with the huvudmän and their keys (the session's key files)."""
        await migrate(self.url)
        await privileges.runtime_login(self.url, "gateway_test_runtime")
        store = await Store.connect(self.url)
        try:
            config = registration.read_config(ROOT / "config" / "huvudman.toml")
            await registration.apply_config(store, config)
            await key_management.provision(store, keys.node.parent,
                                           [h.code for h in config.huvudman])
        finally:
            await store.close()

    async def terminate_gateway_connections(self) -> int:
        conn = await asyncpg.connect(self.url)
        try:
            return len(await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE 'gateway%' AND pid <> pg_backend_pid()"))
        finally:
            await conn.close()

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None


