"""Operators of the admin HTTP API: named bearer tokens, stored only as SHA-256 hashes.

`gateway operator add NAME` prints a token once. Every admin request looks its token up with one
query (no cache: admin requests are rare, and a disabled operator is refused at once). The
operator's name is the actor of the audit entries the request appends (`operator:NAME`).
"""

from __future__ import annotations

import re

from gateway.ownership import audit
from gateway.ownership.credentials import new_token, token_hash
from gateway.ownership.specs import Refusal
from gateway.store.connector import Store
from gateway.store.operators import Operator

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def actor(name: str) -> str:
    """How an operator appears in the audit log."""
    return f"operator:{name}"


async def add(store: Store, name: str) -> str:
    """A new operator; returns the token, shown once."""
    if not NAME.fullmatch(name):
        raise Refusal(f"operator name {name!r}: use 1–64 of a-z, 0-9, '.', '_', '-', "
                         "starting with a letter or digit")
    token = new_token()
    async with store.transaction() as tx:
        if not await tx.operators.insert(name, token_hash(token)):
            raise Refusal(f"operator {name} already exists")
        await audit.record(tx, "operator.add", name)
    return token


async def disable(store: Store, name: str) -> None:
    """Refuse the operator's token from the next request on."""
    async with store.transaction() as tx:
        if not await tx.operators.disable(name):
            raise Refusal(f"operator {name} does not exist or is already disabled")
        await audit.record(tx, "operator.disable", name)


async def listing(store: Store) -> list[Operator]:
    return await store.operators.listing()


async def authenticate(store: Store, token: str | None) -> str | None:
    """The name of the enabled operator holding `token`, or None."""
    if not token:
        return None
    return await store.operators.by_token(token_hash(token))
