"""Operators act within their roles: each HMC role does its own tasks and is refused the others,
a huvudman's integrator acts only on its own huvudman's assignments (and cannot find out about
other devices), and every refusal is in the audit log. Against the running gateway's admin API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from gateway.ownership import audit, operators
from gateway.ownership.operators import TASKS, Role, Task
from gateway.ownership.specs import Refusal
from gateway.store.connector import Store
from tests.support import RunningGateway

pytestmark = pytest.mark.integration

SUBJECT = "test-subject-roles-19121212"
Api = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def api(gateway: RunningGateway, store: Store) -> AsyncIterator[Api]:
    """A client of /admin/v1 for a new operator with the given roles (and huvudman)."""
    clients: list[httpx.AsyncClient] = []

    async def make(*roles: str, huvudman: str | None = None) -> httpx.AsyncClient:
        name = f"test-role-{uuid.uuid4().hex[:8]}"
        token = await operators.add(store, name, roles, huvudman)
        client = httpx.AsyncClient(base_url=f"{gateway.http}/admin/v1",
                                   headers={"Authorization": f"Bearer {token}"})
        client.operator_name = name  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.aclose()


def _assignment(huvudman: str, legal_basis: str = "SoL") -> dict[str, Any]:
    return {"huvudman": huvudman, "subject_ref": SUBJECT, "legal_basis": legal_basis,
            "kinds": ["weight"]}


async def _refusals(store: Store, name: str) -> list[dict[str, Any]]:
    rows = await store.pool.fetch(
        "SELECT target, details->>'task' AS task, details->>'reason' AS reason FROM audit_log"
        " WHERE action = 'operator.refused' AND actor = $1 ORDER BY seq",
        operators.actor(name))
    return [dict(r) for r in rows]


async def _step(client: httpx.AsyncClient, task: Task, dev: str) -> httpx.Response:
    """Do `task` to `dev` with a body that is valid for it."""
    if task is Task.SHOW:
        return await client.get(f"/devices/{dev}")
    if task is Task.REGISTER:
        return await client.post("/devices", json={"id": dev, "type": "scale"})
    if task is Task.ASSIGN:
        return await client.post(f"/devices/{dev}/assignments",
                                 json={"assignments": [_assignment("1490")]})
    return await client.post(f"/devices/{dev}/{task.value}")


# Each step in lifecycle order, so a device walks register → ... → retire.
WALK = [Task.REGISTER, Task.SHOW, Task.ASSIGN, Task.RETURN, Task.RECONDITION, Task.READY,
        Task.RETIRE]


@pytest.mark.parametrize("role", [Role.INVENTORY, Role.DISPATCH, Role.WORKSHOP])
async def test_each_hmc_role_does_its_tasks_and_is_refused_the_others(
        api: Api, store: Store, role: Role) -> None:
    admin = await api("admin")
    narrow = await api(role.value)
    dev = f"T-ROLE-{uuid.uuid4().hex[:10]}"
    refused = []
    for task in WALK:
        answer = await _step(narrow, task, dev)
        if task in TASKS[role]:
            assert answer.status_code in (200, 201), (task, answer.text)
            continue
        assert answer.status_code == 403, (task, answer.text)
        assert answer.json()["error"] == (
            f"operator {narrow.operator_name} may not {task.value} (roles: {role.value}); "  # type: ignore[attr-defined]
            f"that needs one of: {', '.join(sorted(r.value for r in Role if task in TASKS[r]))}")
        refused.append(task)
        # The step is done by an admin instead, so the walk goes on.
        assert (await _step(admin, task, dev)).status_code in (200, 201)
    assert refused, "every role is refused something"
    entries = await _refusals(store, narrow.operator_name)  # type: ignore[attr-defined]
    assert [e["task"] for e in entries] == [t.value for t in refused]
    assert all(e["target"] in (dev, "-") for e in entries)
    assert all("may not" in e["reason"] for e in entries)
    assert (await audit.verify(store)).intact


async def test_an_integrator_acts_only_within_its_huvudmans_assignments(
        api: Api, store: Store, gateway: RunningGateway) -> None:
    admin = await api("admin")
    boras = await api("integrator", huvudman="1490")
    name = boras.operator_name  # type: ignore[attr-defined]
    own, other, shared, stock = (f"T-INT-{k}-{uuid.uuid4().hex[:8]}"
                                 for k in ("own", "other", "shared", "stock"))
    for dev in (own, other, shared, stock):
        assert (await admin.post("/devices", json={"id": dev, "type": "scale"})).status_code \
            == 201
    assert (await admin.post(f"/devices/{other}/assignments",
                             json={"assignments": [_assignment("1480")]})).status_code == 201
    assert (await admin.post(f"/devices/{shared}/assignments", json={"assignments": [
        _assignment("1490"), _assignment("14", "HSL")]})).status_code == 201

    # Another huvudman's device looks exactly like one that does not exist.
    for dev in (other, stock, "T-NO-SUCH-DEVICE"):
        answer = await boras.get(f"/devices/{dev}")
        assert answer.status_code == 403
        assert answer.json()["error"] == f"device {dev} has no assignment of huvudman 1490"
    answer = await boras.post(f"/devices/{other}/return")
    assert answer.status_code == 403
    assert answer.json()["error"] == f"device {other} has no assignment of huvudman 1490"
    # Nor does assigning tell them apart (not "already assigned" for the other's device).
    for dev in (other, "T-NO-SUCH-DEVICE"):
        answer = await boras.post(f"/devices/{dev}/assignments",
                                  json={"assignments": [_assignment("1490")]})
        assert answer.status_code == 403
        assert answer.json()["error"] == f"device {dev} has no assignment of huvudman 1490"

    # It assigns only to itself.
    answer = await boras.post(f"/devices/{stock}/assignments", json={"assignments": [
        _assignment("1490"), _assignment("1480")]})
    assert answer.status_code == 403
    assert answer.json()["error"].startswith("assignments.1.huvudman: an integrator of "
                                             "huvudman 1490 may assign only to 1490")
    answer = await boras.post(f"/devices/{own}/assignments",
                              json={"assignments": [_assignment("1490")]})
    assert answer.status_code == 201, answer.text
    assert [a["huvudman"] for a in answer.json()["view"]["assignments"]] == ["1490"]

    # A shared device is seen with its own assignment only, and returned by HMC.
    answer = await boras.get(f"/devices/{shared}")
    assert answer.status_code == 200
    assert [a["huvudman"] for a in answer.json()["assignments"]] == ["1490"]
    assert SUBJECT not in answer.text
    answer = await boras.post(f"/devices/{shared}/return")
    assert answer.status_code == 403
    assert "is not assigned to huvudman 1490 alone" in answer.json()["error"]
    assert (await admin.get(f"/devices/{shared}")).json()["state"] == "assigned"

    # Its own device it returns, and still sees afterwards; reconditioning (a new credential)
    # and retiring are HMC's.
    answer = await boras.post(f"/devices/{own}/return")
    assert answer.status_code == 200, answer.text
    assert answer.json()["view"]["state"] == "returned"
    for step in ("recondition", "retire", "ready"):
        answer = await boras.post(f"/devices/{own}/{step}")
        assert answer.status_code == 403
        assert "token" not in answer.json()
    assert (await boras.post("/devices", json={"id": "T-INT-NEW", "type": "scale"})
            ).status_code == 403

    # The attack of issue 11: an operator retiring another's device, or returning and
    # reconditioning it to get a working credential, gets nothing.
    for step in ("return", "recondition", "retire"):
        assert (await boras.post(f"/devices/{other}/{step}")).status_code == 403
    assert (await admin.get(f"/devices/{other}")).json()["state"] == "assigned"

    # Once HMC has lent it to another huvudman, the device is that one's business.
    for step in ("recondition", "ready"):
        assert (await admin.post(f"/devices/{own}/{step}")).status_code == 200
    assert (await admin.post(f"/devices/{own}/assignments",
                             json={"assignments": [_assignment("1480")]})).status_code == 201
    answer = await boras.get(f"/devices/{own}")
    assert answer.status_code == 403
    assert answer.json()["error"] == f"device {own} has no assignment of huvudman 1490"

    tasks = [(e["target"], e["task"]) for e in await _refusals(store, name)]
    assert tasks == [
        (other, "show"), (stock, "show"), ("T-NO-SUCH-DEVICE", "show"), (other, "return"),
        (other, "assign"), ("T-NO-SUCH-DEVICE", "assign"), (stock, "assign"),
        (shared, "return"), (own, "recondition"), (own, "retire"),
        (own, "ready"), ("-", "register"), (other, "return"), (other, "recondition"),
        (other, "retire"), (own, "show")]
    assert (await audit.verify(store)).intact


@pytest.mark.parametrize(("roles", "huvudman", "message"), [
    ((), None, "roles: name at least one"),
    (("boss",), None, "roles: use admin, inventory, dispatch, workshop, integrator"),
    (("integrator",), None, "an integrator acts for exactly one huvudman"),
    (("dispatch",), "1490", "an integrator acts for exactly one huvudman"),
    (("integrator", "dispatch"), "1490", "an integrator acts for exactly one huvudman"),
    (("integrator",), "9999", "huvudman 9999 does not exist"),
])
async def test_operator_roles_are_checked_when_added(
        store: Store, roles: tuple[str, ...], huvudman: str | None, message: str) -> None:
    with pytest.raises(Refusal, match=message):
        await operators.add(store, f"test-bad-{uuid.uuid4().hex[:8]}", roles, huvudman)


async def test_the_database_refuses_an_integrator_without_huvudman(store: Store) -> None:
    """The rule holds for whatever writes the table, not only for `operator add`."""
    import asyncpg

    with pytest.raises(asyncpg.CheckViolationError):
        await store.pool.execute(
            "INSERT INTO operator (name, token_sha256, roles) VALUES ($1, $2, $3)",
            f"test-raw-{uuid.uuid4().hex[:8]}", uuid.uuid4().bytes * 2, ["integrator"])
