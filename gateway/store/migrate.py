"""Apply migrations/NNNN_name.sql in order, each once, each in its own transaction.

Idempotent and safe to run from several processes at once: an advisory lock serialises runners,
and a checksum per applied file catches a migration edited after it shipped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import asyncpg

_LOCK_KEY = 0x76677267  # "vgrg": any constant unique to this application

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migration (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    sha256      text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def available() -> list[Migration]:
    folder = resources.files("gateway.store").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"),
                                   entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    return found


async def migrate(dsn: str) -> list[str]:
    """Bring the database to the newest schema; returns the names of migrations applied now."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(_BOOTSTRAP)
            applied = {r["version"]: r["sha256"]
                       for r in await conn.fetch("SELECT version, sha256 FROM schema_migration")}
            done = []
            for m in available():
                if m.version in applied:
                    if applied[m.version] != m.sha256:
                        raise MigrationError(
                            f"migration {m.version:04d}_{m.name} was changed after it was "
                            "applied; add a new migration instead")
                    continue
                async with conn.transaction():
                    await conn.execute(m.sql)
                    await conn.execute(
                        "INSERT INTO schema_migration (version, name, sha256) VALUES ($1,$2,$3)",
                        m.version, m.name, m.sha256)
                done.append(f"{m.version:04d}_{m.name}")
            return done
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()
