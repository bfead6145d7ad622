"""Apply migrations/NNNN_name.sql in order, each once, each in its own transaction.

Idempotent and safe to run from several processes at once: an advisory lock serialises runners,
and a checksum per applied file catches a migration edited after it shipped.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

import asyncpg

_LOCK_KEY = 0x76677267  # "vgrg": any constant unique to this application

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS {table} (
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


def available(folder: Traversable | None = None) -> list[Migration]:
    if folder is None:
        folder = resources.files("gateway.store").joinpath("migrations", "ingest")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"),
                                   entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    return found


async def migrate(dsn: str, *, folder: Traversable | None = None,
                  table: str = "schema_migration") -> list[str]:
    """Bring the database to the newest schema; returns the names of migrations applied now.
    `folder` and `table` serve another set of migrations (the huvudman node's)."""
    if not re.fullmatch(r"[a-z_][a-z0-9_.]*", table):
        raise ValueError(f"not a table name: {table!r}")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            try:
                await conn.execute(_BOOTSTRAP.format(table=table))
            except asyncpg.InsufficientPrivilegeError:
                who = await conn.fetchval("SELECT current_user")
                raise MigrationError(
                    f"database role {who} may not change the schema: migrate as the schema's "
                    "owner (MIGRATION_DATABASE_URL; docs/operations.md, Database roles)"
                ) from None
            applied = {r["version"]: r["sha256"]
                       for r in await conn.fetch(f"SELECT version, sha256 FROM {table}")}  # noqa: S608
            done = []
            for m in (available() if folder is None else available(folder)):
                if m.version in applied:
                    if applied[m.version] != m.sha256:
                        raise MigrationError(
                            f"migration {m.version:04d}_{m.name} was changed after it was "
                            "applied; add a new migration instead")
                    continue
                async with conn.transaction():
                    try:
                        await conn.execute(m.sql)
                    except asyncpg.PostgresError as err:  # e.g. may not create a role
                        hint = f" ({err.hint})" if getattr(err, "hint", None) else ""
                        raise MigrationError(f"migration {m.version:04d}_{m.name}: "
                                             f"{err}{hint}") from err
                    await conn.execute(
                        f"INSERT INTO {table} (version, name, sha256) VALUES ($1,$2,$3)",  # noqa: S608
                        m.version, m.name, m.sha256)
                done.append(f"{m.version:04d}_{m.name}")
            return done
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()
