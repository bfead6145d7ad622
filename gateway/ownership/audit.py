"""The audit trail: who changed ownership, keys or data, and when. Ids only.

Entries are appended in the same transaction as the change they record (pass the connection),
so a change and its audit entry commit or roll back together.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from gateway.store.connector import QUERIES, Store


def actor() -> str:
    """Who is acting: GATEWAY_ACTOR (set by the admin API from the authenticated operator), or
    the operating-system user running the command."""
    return os.environ.get("GATEWAY_ACTOR") or f"os:{getpass.getuser()}"


_default_actor = actor


async def record(conn: asyncpg.Connection, action: str, target: str, *,
                 actor: str | None = None, **details: Any) -> int:
    """Append an entry; `actor` (an authenticated operator) overrides the default `actor()`."""
    who = actor if actor is not None else _default_actor()
    seq: int = await conn.fetchval(QUERIES["audit_append"], who, action, target,
                                   msgspec.json.encode(details).decode())
    return seq


@dataclass(frozen=True, slots=True)
class Verification:
    entries: int
    head: bytes | None
    first_break: int | None
    problem: str | None

    @property
    def intact(self) -> bool:
        return self.first_break is None


async def verify(store: Store) -> Verification:
    broken = await store.fetch("audit_verify")
    head = (await store.fetch("audit_head"))[0]
    return Verification(
        entries=int(head["entries"]), head=bytes(head["head"]) if head["head"] else None,
        first_break=broken[0]["seq"] if broken else None,
        problem=broken[0]["problem"] if broken else None)
