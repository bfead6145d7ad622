"""The database role the gateway runs as: a member of `gateway_runtime` (migration 0015), not
the schema's owner and not a superuser (docs/operations.md, Database roles).

`standing` is what `gateway serve` checks at start, to say when it runs with more power than it
needs. `runtime_login` makes a passwordless login role in gateway_runtime, for the embedded
PostgreSQL of the demo and the tests (trusted local connections); production roles are made by
the database's administrator, with passwords or certificates."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from gateway.store.statements import Queries

RUNTIME_ROLE = "gateway_runtime"
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class Standing:
    name: str
    superuser: bool
    runtime: bool  # a member of gateway_runtime
    owner: bool  # may act as the schema's owner

    def too_powerful(self) -> str | None:
        """Why this role has more than the gateway needs, or None."""
        if self.superuser:
            return f"database role {self.name} is a superuser"
        if self.owner:
            return f"database role {self.name} owns the schema (the migrations' role)"
        if not self.runtime:
            return f"database role {self.name} is not a member of {RUNTIME_ROLE}"
        return None


class PrivilegeQueries(Queries, area="privileges"):
    async def standing(self) -> Standing:
        r = await self._fetchrow("standing")
        assert r is not None
        return Standing(r["name"], bool(r["superuser"]), bool(r["runtime"]), bool(r["owner"]))


def dsn_as(dsn: str, user: str) -> str:
    """`dsn` with another user (and no password): the same server and database."""
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}@{host}"))


async def runtime_login(owner_dsn: str, name: str) -> str:
    """A login role `name` in gateway_runtime (made if missing); the DSN to connect as it."""
    if not _ROLE_NAME.fullmatch(name):
        raise ValueError(f"not a role name: {name!r}")
    statements = PrivilegeQueries._statements
    conn = await asyncpg.connect(owner_dsn)
    try:
        if not await conn.fetchval(statements["role_exists"].sql, name):
            try:
                await conn.execute(await conn.fetchval(statements["create_login"].sql, name))
            except asyncpg.DuplicateObjectError:
                pass  # made meanwhile by another database of the same cluster
    finally:
        await conn.close()
    return dsn_as(owner_dsn, name)
