"""Operators of the admin HTTP API (gateway/ownership/operators.py): names and token hashes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.store.statements import Queries


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    enabled: bool
    created_at: datetime
    disabled_at: datetime | None


class OperatorQueries(Queries, area="operators"):
    async def insert(self, name: str, token_sha256: bytes) -> bool:
        """False when the name is taken."""
        return await self._fetchval("insert", name, token_sha256) is not None

    async def by_token(self, token_sha256: bytes) -> str | None:
        """The enabled operator holding this token hash."""
        name: str | None = await self._fetchval("by_token", token_sha256)
        return name

    async def disable(self, name: str) -> bool:
        """False when there is no such enabled operator."""
        return await self._fetchval("disable", name) is not None

    async def listing(self) -> list[Operator]:
        return [Operator(r["name"], r["enabled"], r["created_at"], r["disabled_at"])
                for r in await self._fetch("listing")]
