"""Operators of the admin HTTP API: named bearer tokens (stored only as SHA-256 hashes), each
with the roles of its tasks.

`gateway operator add NAME --role ROLE` prints a token once. Every admin request looks its
token up with one query (no cache: admin requests are rare, and a disabled operator is refused
at once). The operator's name is the actor of the audit entries the request appends
(`operator:NAME`), and a request its roles do not allow is refused (403) and audited.

HMC's roles follow its tasks, so a person gets what their work needs and no more: `inventory`
registers and retires devices, `dispatch` lends them out and takes them back, `workshop`
reconditions them, `admin` does all of it. A huvudman's `integrator` (its own system, or its
staff) may see, assign and return devices only within that huvudman's own assignments: it
cannot touch another huvudman's device, nor recondition one, which is what hands out a new
credential.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from gateway.ownership import audit
from gateway.ownership.credentials import new_token, token_hash
from gateway.ownership.lifecycle import Forbidden
from gateway.ownership.specs import Refusal
from gateway.store.connector import Store
from gateway.store.errors import UnknownReference
from gateway.store.operators import Operator

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class Task(StrEnum):
    SHOW = "show"
    REGISTER = "register"
    ASSIGN = "assign"
    RETURN = "return"
    RECONDITION = "recondition"
    READY = "ready"
    RETIRE = "retire"


class Role(StrEnum):
    ADMIN = "admin"
    INVENTORY = "inventory"
    DISPATCH = "dispatch"
    WORKSHOP = "workshop"
    INTEGRATOR = "integrator"


TASKS: dict[Role, frozenset[Task]] = {
    Role.ADMIN: frozenset(Task),
    Role.INVENTORY: frozenset({Task.SHOW, Task.REGISTER, Task.RETIRE}),
    Role.DISPATCH: frozenset({Task.SHOW, Task.ASSIGN, Task.RETURN}),
    Role.WORKSHOP: frozenset({Task.SHOW, Task.RECONDITION, Task.READY}),
    # Within its huvudman's own assignments only (`Principal.within`).
    Role.INTEGRATOR: frozenset({Task.SHOW, Task.ASSIGN, Task.RETURN}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated operator: who, with which roles, and for an integrator its huvudman."""

    name: str
    roles: frozenset[Role]
    huvudman: str | None = None

    @property
    def actor(self) -> str:
        return actor(self.name)

    @property
    def within(self) -> str | None:
        """The huvudman whose assignments bound what this operator may act on (None: HMC)."""
        return self.huvudman

    def may(self, task: Task) -> bool:
        return any(task in TASKS[r] for r in self.roles)

    def check(self, task: Task) -> None:
        """Raise Forbidden unless one of the roles allows `task`."""
        if not self.may(task):
            needed = sorted(r.value for r, tasks in TASKS.items() if task in tasks)
            raise Forbidden(f"operator {self.name} may not {task.value} "
                            f"(roles: {', '.join(sorted(self.roles))}); "
                            f"that needs one of: {', '.join(needed)}")


def actor(name: str) -> str:
    """How an operator appears in the audit log."""
    return f"operator:{name}"


def _roles(roles: Iterable[str], huvudman: str | None) -> tuple[Role, ...]:
    try:
        chosen = tuple(sorted({Role(r) for r in roles}))
    except ValueError:
        raise Refusal(f"roles: use {', '.join(r.value for r in Role)}") from None
    if not chosen:
        raise Refusal("roles: name at least one (" + ", ".join(r.value for r in Role) + ")")
    if (Role.INTEGRATOR in chosen) != (huvudman is not None) or (
            huvudman is not None and chosen != (Role.INTEGRATOR,)):
        raise Refusal("roles: an integrator acts for exactly one huvudman and has no other "
                      "role; give --huvudman with --role integrator, and only then")
    return chosen


async def add(store: Store, name: str, roles: Iterable[str],
              huvudman: str | None = None) -> str:
    """A new operator with these roles (an integrator: of `huvudman`); returns the token,
    shown once."""
    if not NAME.fullmatch(name):
        raise Refusal(f"operator name {name!r}: use 1–64 of a-z, 0-9, '.', '_', '-', "
                      "starting with a letter or digit")
    chosen = _roles(roles, huvudman)
    token = new_token()
    async with store.transaction() as tx:
        try:
            inserted = await tx.operators.insert(name, token_hash(token),
                                                 [r.value for r in chosen], huvudman)
        except UnknownReference:
            raise Refusal(f"huvudman {huvudman} does not exist") from None
        if not inserted:
            raise Refusal(f"operator {name} already exists")
        await audit.record(tx, "operator.add", name, roles=[r.value for r in chosen],
                           huvudman=huvudman)
    return token


async def disable(store: Store, name: str) -> None:
    """Refuse the operator's token from the next request on."""
    async with store.transaction() as tx:
        if not await tx.operators.disable(name):
            raise Refusal(f"operator {name} does not exist or is already disabled")
        await audit.record(tx, "operator.disable", name)


async def listing(store: Store) -> list[Operator]:
    return await store.operators.listing()


async def authenticate(store: Store, token: str | None) -> Principal | None:
    """The enabled operator holding `token`, or None."""
    if not token:
        return None
    grant = await store.operators.by_token(token_hash(token))
    if grant is None:
        return None
    return Principal(grant.name, frozenset(Role(r) for r in grant.roles), grant.huvudman)


async def refused(store: Store, who: Principal, task: Task, target: str,
                  err: Forbidden) -> None:
    """Audit a refusal in a transaction of its own (the refused one rolled back)."""
    async with store.transaction() as tx:
        await audit.record(tx, "operator.refused", target, actor=who.actor, task=task.value,
                           reason=str(err))
