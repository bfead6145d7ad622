"""The audit trail: who changed ownership, keys or data, and when. Ids only.

Entries are appended in the same transaction as the change they record (pass the
`Store.transaction()`), so a change and its audit entry commit or roll back together.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.store.connector import Areas, Transaction


def actor() -> str:
    """Who is acting: GATEWAY_ACTOR (set by the admin API from the authenticated operator), or
    the operating-system user running the command."""
    return os.environ.get("GATEWAY_ACTOR") or f"os:{getpass.getuser()}"


_default_actor = actor


async def record(tx: Transaction, action: str, target: str, *,
                 actor: str | None = None, **details: Any) -> int:
    """Append an entry; `actor` (an authenticated operator) overrides the default `actor()`."""
    who = actor if actor is not None else _default_actor()
    return await tx.audit.append(who, action, target, msgspec.json.encode(details).decode())


@dataclass(frozen=True, slots=True)
class Verification:
    entries: int
    head: bytes | None
    first_break: int | None
    problem: str | None

    @property
    def intact(self) -> bool:
        return self.first_break is None


async def verify(store: Areas) -> Verification:
    """Recompute the chain (on the pool, or inside a transaction)."""
    broken = await store.audit.first_break()
    head = await store.audit.head()
    return Verification(entries=head.entries, head=head.head,
                        first_break=broken.seq if broken else None,
                        problem=broken.problem if broken else None)
