"""The audit log's statements. The hash chain is computed by the database itself
(`audit_append`, migration 0005), so every writer extends the same chain."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.store.statements import Queries


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    details: str  # JSON: ids, counts and times only


@dataclass(frozen=True, slots=True)
class AuditBreak:
    """The first entry whose link or content does not match a recomputation."""

    seq: int
    problem: str


@dataclass(frozen=True, slots=True)
class AuditHead:
    entries: int
    head: bytes | None


class AuditQueries(Queries, area="audit"):
    async def append(self, actor: str, action: str, target: str, details_json: str) -> int:
        """Append an entry (in the caller's transaction: it commits with the change); its seq."""
        seq: int = await self._fetchval("append", actor, action, target, details_json)
        return seq

    async def first_break(self) -> AuditBreak | None:
        r = await self._fetchrow("first_break")
        return None if r is None else AuditBreak(r["seq"], r["problem"])

    async def head(self) -> AuditHead:
        r = await self._fetchrow("head")
        assert r is not None
        return AuditHead(int(r["entries"]), bytes(r["head"]) if r["head"] else None)

    async def recent(self, limit: int) -> list[AuditEntry]:
        return [AuditEntry(r["seq"], r["at"], r["actor"], r["action"], r["target"],
                           str(r["details"]))
                for r in await self._fetch("recent", limit)]
