"""Huvudmän's public keys: the active one (ingest seals to it), rotation, the CLI's listing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.store.errors import references
from gateway.store.statements import Queries


@dataclass(frozen=True, slots=True)
class KeyListing:
    """A huvudman and one of its keys (key fields None when it has none yet)."""

    code: str
    name: str
    key_id: bytes | None
    suite: str | None
    created_at: datetime | None
    retired_at: datetime | None


class KeyQueries(Queries, area="keys"):
    async def active_pem(self, huvudman: str) -> str | None:
        pem: str | None = await self._fetchval("active_pem", huvudman)
        return pem

    async def active_key_id(self, huvudman: str) -> bytes | None:
        key_id = await self._fetchval("active_key_id", huvudman)
        return None if key_id is None else bytes(key_id)

    async def insert(self, key_id: bytes, huvudman: str, suite: str, public_pem: str) -> None:
        """Raises UnknownReference for an unknown huvudman."""
        with references():
            await self._execute("insert", key_id, huvudman, suite, public_pem)

    async def retire(self, huvudman: str) -> list[bytes]:
        """Retire the huvudman's active key(s) now; their ids."""
        return [bytes(r["key_id"]) for r in await self._fetch("retire", huvudman)]

    async def listing(self) -> list[KeyListing]:
        return [KeyListing(r["code"], r["name"],
                           bytes(r["key_id"]) if r["key_id"] is not None else None,
                           r["suite"], r["created_at"], r["retired_at"])
                for r in await self._fetch("listing")]
