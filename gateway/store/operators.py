"""Operators of the admin HTTP API (gateway/ownership/operators.py): names, roles, token hashes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from gateway.store.errors import references
from gateway.store.statements import Queries


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    roles: tuple[str, ...]
    huvudman: str | None  # an integrator's huvudman
    enabled: bool
    created_at: datetime
    disabled_at: datetime | None


@dataclass(frozen=True, slots=True)
class OperatorGrant:
    """What an enabled operator's token lets it do."""

    name: str
    roles: tuple[str, ...]
    huvudman: str | None


class OperatorQueries(Queries, area="operators"):
    async def insert(self, name: str, token_sha256: bytes, roles: Sequence[str],
                     huvudman: str | None) -> bool:
        """False when the name is taken; UnknownReference for an unknown huvudman."""
        with references():
            return await self._fetchval("insert", name, token_sha256, list(roles),
                                        huvudman) is not None

    async def by_token(self, token_sha256: bytes) -> OperatorGrant | None:
        """The enabled operator holding this token hash."""
        row = await self._fetchrow("by_token", token_sha256)
        return None if row is None else OperatorGrant(row["name"], tuple(row["roles"]),
                                                      row["huvudman"])

    async def disable(self, name: str) -> bool:
        """False when there is no such enabled operator."""
        return await self._fetchval("disable", name) is not None

    async def listing(self) -> list[Operator]:
        return [Operator(r["name"], tuple(r["roles"]), r["huvudman"], r["enabled"],
                         r["created_at"], r["disabled_at"])
                for r in await self._fetch("listing")]
