"""The device lifecycle end to end, through the CLI and through the admin HTTP API, against the
running gateway: routing follows each step, the state machine refuses what is impossible, the
admin API needs an enabled operator, and every step is in the audit log without a subject
reference."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from adapters import native
from gateway.cli import common
from gateway.cli.main import app
from gateway.ownership import audit, operators
from gateway.ownership.lifecycle import TRANSITIONS, Action, State, possible, refusal
from gateway.store.connector import Store
from tests.support import RunningGateway

pytestmark = pytest.mark.integration

SUBJECT_OLD = "test-subject-lc-19121212-old"
SUBJECT_NEW = "test-subject-lc-19121212-new"
CLI_ACTOR = "test-cli-operator"

Run = Callable[..., Awaitable[str]]


@pytest.fixture
def run(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Run:
    """The CLI, in a thread (it runs its own event loop), as the operator CLI_ACTOR."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("GATEWAY_ACTOR", CLI_ACTOR)
    monkeypatch.setattr(common, "console", Console(width=250, force_terminal=False))
    runner = CliRunner()

    async def invoke(*args: str, ok: bool = True) -> str:
        result = await asyncio.to_thread(runner.invoke, app, list(args))
        assert (result.exit_code == 0) == ok, result.output
        return result.output

    return invoke


@pytest.mark.parametrize(("state", "action", "message"), [
    (State.ASSIGNED, Action.RECONDITION,
     "device SCALE-0001 is assigned; it must be returned before it can be reconditioned. "
     "Possible from here: return."),
    (State.ASSIGNED, Action.ASSIGN,
     "device SCALE-0001 is assigned; it must be returned, reconditioned and made ready before "
     "it can be assigned again. Possible from here: return."),
    (State.RETURNED, Action.READY,
     "device SCALE-0001 is returned; it must be reconditioned before it can be made ready. "
     "Possible from here: recondition, retire."),
    (State.IN_STOCK, Action.RETURN,
     "device SCALE-0001 is in stock; only a device that is assigned can be returned. "
     "Possible from here: assign, retire."),
    (State.RETIRED, Action.READY,
     "device SCALE-0001 is retired; it cannot be made ready. Nothing is possible from here."),
    (State.RETIRED, Action.RETIRE,
     "device SCALE-0001 is already retired. Nothing is possible from here."),
])
def test_refusal_says_state_transition_and_what_is_possible(
        state: State, action: Action, message: str) -> None:
    assert state not in TRANSITIONS[action].sources
    assert refusal("SCALE-0001", state, action) == message


def test_the_state_machine_as_data() -> None:
    assert {s: possible(s) for s in State} == {
        State.IN_STOCK: [Action.ASSIGN, Action.RETIRE],
        State.ASSIGNED: [Action.RETURN],  # a device out with a person is returned first
        State.RETURNED: [Action.RECONDITION, Action.RETIRE],
        State.RECONDITIONING: [Action.READY, Action.RETIRE],
        State.RETIRED: [],
    }


def _token_after(output: str, marker: str = "shown only now") -> str:
    lines = output.splitlines()
    index = next(i for i, line in enumerate(lines) if marker in line)
    return lines[index + 1].strip()


async def _reflects(gateway: RunningGateway, device_id: str, state: str,
                    timeout: float = 5.0) -> None:
    """Wait until the running gateway's registry has reloaded and shows the device in `state`."""
    registry = gateway.runtime.registry
    deadline = asyncio.get_running_loop().time() + timeout
    while (d := registry.device(device_id)) is None or d.state != state:
        assert asyncio.get_running_loop().time() < deadline, f"registry never saw {state}"
        await asyncio.sleep(0.01)


async def _post(gateway: RunningGateway, device_id: str, token: str,
                at: datetime | None = None) -> httpx.Response:
    body = native.encode_message([native.encode_reading(
        "weight", at or datetime.now(UTC), value=70.0 + uuid.uuid4().int % 100 / 10, unit="kg")])
    async with httpx.AsyncClient(base_url=gateway.http) as client:
        return await client.post(f"/v1/devices/{device_id}/readings", content=body,
                                 headers={"Authorization": f"Bearer {token}"})


async def _routed(gateway: RunningGateway, store: Store, device_id: str,
                  token: str) -> tuple[bool, list[str]]:
    """Send a reading measured now; (quarantined?, huvudmän it is queued for)."""
    answer = await _post(gateway, device_id, token)
    assert answer.status_code == 200, answer.text
    (event_id,) = answer.json()["accepted"]
    eid = uuid.UUID(event_id)
    quarantined = await store.pool.fetchval("SELECT quarantined FROM event WHERE event_id = $1",
                                            eid)
    owners = [r["huvudman"] for r in await store.pool.fetch(
        "SELECT huvudman FROM delivery WHERE event_id = $1 ORDER BY huvudman", eid)]
    return bool(quarantined), owners


async def _audit(store: Store, device_id: str) -> list[dict[str, Any]]:
    rows = await store.pool.fetch(
        "SELECT actor, action, target, details::text AS details FROM audit_log"
        " WHERE target = $1 OR details->>'device' = $1 ORDER BY seq", device_id)
    return [dict(r) for r in rows]


def _assert_audited(entries: list[dict[str, Any]], actor: str) -> None:
    actions = [e["action"] for e in entries]
    for expected in ("device.register", "assignment.add", "device.assign", "device.return",
                     "assignment.end", "device.recondition", "device.ready", "device.reissue",
                     "device.retire"):
        assert expected in actions, actions
    assert {e["actor"] for e in entries} == {actor}
    text = repr(entries)
    assert SUBJECT_OLD not in text and SUBJECT_NEW not in text and "19121212" not in text


async def test_full_lifecycle_through_the_cli(run: Run, gateway: RunningGateway,
                                              store: Store) -> None:
    dev = f"T-LC-{uuid.uuid4().hex[:10]}"
    paired = f"T-LCP-{uuid.uuid4().hex[:10]}"
    token1 = _token_after(await run("device", "register", dev, "scale"))
    await run("device", "register", paired, "pulse_oximeter", "--hub", dev)
    refused = await run("device", "register", dev, "scale", ok=False)
    assert f"device {dev} is already registered (in stock)" in refused
    await _reflects(gateway, dev, "in_stock")
    assert await _routed(gateway, store, dev, token1) == (True, [])  # in stock: nobody's

    out = await run("device", "assign", dev, "1490", "--subject-ref", SUBJECT_OLD,
                    "--legal-basis", "SoL", "--kind", "weight")
    first = re.search(r"assignments: ([0-9a-f-]{36})", out).group(1)  # type: ignore[union-attr]
    await _reflects(gateway, dev, "assigned")
    assert await _routed(gateway, store, dev, token1) == (False, ["1490"])

    refused = await run("device", "assign", dev, "1481", "--subject-ref", SUBJECT_NEW,
                        "--legal-basis", "SoL", "--kind", "weight", ok=False)
    assert (f"device {dev} is assigned; it must be returned, reconditioned and made ready "
            "before it can be assigned again. Possible from here: return.") in refused
    refused = await run("device", "recondition", dev, ok=False)
    assert f"device {dev} is assigned; it must be returned before it can be reconditioned" \
        in refused

    out = await run("device", "return", dev)
    assert "now returned" in out and f"ended assignments: {first}" in out
    await _reflects(gateway, dev, "returned")
    # Measured after the return: reaches no huvudman (kept in quarantine).
    assert await _routed(gateway, store, dev, token1) == (True, [])
    refused = await run("device", "ready", dev, ok=False)
    assert (f"device {dev} is returned; it must be reconditioned before it can be made ready. "
            "Possible from here: recondition, retire.") in refused
    refused = await run("device", "reissue", dev, "1481", "--subject-ref", SUBJECT_NEW,
                        "--legal-basis", "SoL", "--kind", "weight", ok=False)
    assert "it must be reconditioned and made ready before it can be assigned" in refused

    out = await run("device", "recondition", dev)
    token2 = _token_after(out)
    assert token2 != token1 and f"unpaired: {dev}" not in out and paired in out
    await _reflects(gateway, dev, "reconditioning")
    old = await _post(gateway, dev, token1)
    assert old.status_code == 401, old.text  # the old credential stopped working at once
    assert await _routed(gateway, store, dev, token2) == (True, [])
    assert "hub: —" in await run("device", "show", paired)

    await run("device", "ready", dev)
    out = await run("device", "reissue", dev, "1481", "--subject-ref", SUBJECT_NEW,
                    "--legal-basis", "SoL", "--kind", "weight")
    second = re.search(r"assignments: ([0-9a-f-]{36})", out).group(1)  # type: ignore[union-attr]
    await _reflects(gateway, dev, "assigned")
    assert await _routed(gateway, store, dev, token2) == (False, ["1481"])

    shown = await run("device", "show", dev)
    assert "state: assigned" in shown and "credential: yes" in shown
    assert first in shown and second in shown and "1490" in shown and "1481" in shown
    assert SUBJECT_OLD not in shown and SUBJECT_NEW not in shown

    refused = await run("device", "retire", dev, ok=False)
    assert f"device {dev} is assigned; it must be returned before it can be retired" in refused
    await run("device", "return", dev)
    out = await run("device", "retire", dev)
    assert "now retired" in out
    await _reflects(gateway, dev, "retired")
    assert (await _post(gateway, dev, token2)).status_code == 401  # credential removed
    for step in (("assign", dev, "1481", "--subject-ref", SUBJECT_NEW, "--legal-basis", "SoL",
                  "--kind", "weight"), ("return", dev), ("recondition", dev), ("ready", dev),
                 ("retire", dev)):
        refused = await run("device", *step, ok=False)
        assert f"device {dev} is retired;" in refused or f"device {dev} is already retired" \
            in refused
        assert "Nothing is possible from here." in refused
    shown = await run("device", "show", dev)
    assert "credential: no" in shown and "nothing (retired)" in shown
    # The old path cannot bypass the state machine either.
    refused = await run("assignment", "add", dev, "1481", "--subject-ref", SUBJECT_NEW,
                        "--legal-basis", "SoL", "--kind", "weight", ok=False)
    assert f"device {dev} is retired" in refused
    assert "is not registered" in await run("device", "show", "T-NOPE-0", ok=False)

    _assert_audited(await _audit(store, dev), CLI_ACTOR)
    assert (await audit.verify(store)).intact


@pytest.fixture
async def operator(store: Store) -> tuple[str, dict[str, str]]:
    name = f"test-op-{uuid.uuid4().hex[:8]}"
    token = await operators.add(store, name, ["admin"])
    return name, {"Authorization": f"Bearer {token}"}


def _assign_body(huvudman: str, subject: str) -> dict[str, Any]:
    return {"assignments": [{"huvudman": huvudman, "subject_ref": subject,
                             "legal_basis": "SoL", "kinds": ["weight"]}]}


async def test_full_lifecycle_through_the_admin_api(
        gateway: RunningGateway, store: Store, operator: tuple[str, dict[str, str]]) -> None:
    name, auth = operator
    dev = f"T-LA-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=f"{gateway.http}/admin/v1", headers=auth) as api:
        created = await api.post("/devices", json={"id": dev, "type": "scale"})
        assert created.status_code == 201, created.text
        token1 = created.json()["token"]
        assert created.json()["view"]["state"] == "in_stock"
        again = await api.post("/devices", json={"id": dev, "type": "scale"})
        assert again.status_code == 409

        answer = await api.post(f"/devices/{dev}/assignments",
                                json=_assign_body("1490", SUBJECT_OLD))
        assert answer.status_code == 201, answer.text
        (first,) = answer.json()["assignments"]
        assert SUBJECT_OLD not in answer.text
        await _reflects(gateway, dev, "assigned")
        assert await _routed(gateway, store, dev, token1) == (False, ["1490"])

        refused = await api.post(f"/devices/{dev}/assignments",
                                 json=_assign_body("1481", SUBJECT_NEW))
        assert refused.status_code == 409
        assert refused.json()["state"] == "assigned" and refused.json()["possible"] == ["return"]
        assert "must be returned, reconditioned and made ready" in refused.json()["error"]
        refused = await api.post(f"/devices/{dev}/recondition")
        assert refused.status_code == 409
        assert refused.json()["error"].startswith(
            f"device {dev} is assigned; it must be returned before it can be reconditioned")

        # Two operators return it at once: the row lock lets exactly one through.
        racing = await asyncio.gather(api.post(f"/devices/{dev}/return"),
                                      api.post(f"/devices/{dev}/return", json={}))
        assert sorted(r.status_code for r in racing) == [200, 409], [r.text for r in racing]
        winner = next(r for r in racing if r.status_code == 200)
        assert winner.json()["ended_assignments"] == [first]
        await _reflects(gateway, dev, "returned")
        assert await _routed(gateway, store, dev, token1) == (True, [])
        refused = await api.post(f"/devices/{dev}/ready")
        assert refused.status_code == 409
        assert "is returned; it must be reconditioned before it can be made ready" in \
            refused.json()["error"]

        answer = await api.post(f"/devices/{dev}/recondition")
        assert answer.status_code == 200, answer.text
        token2 = answer.json()["token"]
        await _reflects(gateway, dev, "reconditioning")
        assert (await _post(gateway, dev, token1)).status_code == 401
        assert (await api.post(f"/devices/{dev}/ready")).status_code == 200
        answer = await api.post(f"/devices/{dev}/assignments",
                                json=_assign_body("1481", SUBJECT_NEW))
        assert answer.status_code == 201, answer.text
        await _reflects(gateway, dev, "assigned")
        assert await _routed(gateway, store, dev, token2) == (False, ["1481"])

        view = await api.get(f"/devices/{dev}")
        assert view.status_code == 200
        assert [a["huvudman"] for a in view.json()["assignments"]] == ["1490", "1481"]
        assert view.json()["assignments"][0]["valid_to"] is not None
        assert SUBJECT_OLD not in view.text and SUBJECT_NEW not in view.text

        assert (await api.post(f"/devices/{dev}/return",
                               json={"at": datetime.now(UTC).isoformat()})).status_code == 200
        assert (await api.post(f"/devices/{dev}/retire")).status_code == 200
        for path in ("return", "recondition", "ready", "retire"):
            refused = await api.post(f"/devices/{dev}/{path}")
            assert refused.status_code == 409 and "retired" in refused.json()["error"]
        refused = await api.post(f"/devices/{dev}/assignments",
                                 json=_assign_body("1481", SUBJECT_NEW))
        assert refused.status_code == 409 and refused.json()["possible"] == []

    _assert_audited(await _audit(store, dev), operators.actor(name))


async def test_admin_api_validation_and_unknown_device(
        gateway: RunningGateway, store: Store, operator: tuple[str, dict[str, str]]) -> None:
    _, auth = operator
    dev = f"T-LV-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=f"{gateway.http}/admin/v1", headers=auth) as api:
        assert (await api.get("/devices/T-NOPE-1")).status_code == 404
        assert (await api.post("/devices/T-NOPE-1/recondition")).status_code == 404
        bad = await api.post("/devices", json={"id": "has space", "type": "scale"})
        assert bad.status_code == 422 and bad.json()["field"] == "id"
        assert (await api.post("/devices", json={"id": dev, "type": "scale"})).status_code == 201

        body = _assign_body("1490", SUBJECT_OLD)
        body["assignments"][0]["kinds"] = ["weight", "nonsense"]
        bad = await api.post(f"/devices/{dev}/assignments", json=body)
        assert bad.status_code == 422 and bad.json()["field"] == "assignments.0.kinds.1"
        assert SUBJECT_OLD not in bad.text
        body = _assign_body("1490", SUBJECT_OLD)
        del body["assignments"][0]["legal_basis"]
        bad = await api.post(f"/devices/{dev}/assignments", json=body)
        assert bad.status_code == 422 and bad.json()["field"] == "assignments.0.legal_basis"
        assert SUBJECT_OLD not in bad.text  # the input is never echoed
        bad = await api.post(f"/devices/{dev}/assignments", json=_assign_body("1234", SUBJECT_OLD))
        assert bad.status_code == 422 and bad.json()["field"] == "assignments.0.huvudman"
        body = _assign_body("1490", SUBJECT_OLD)
        body["assignments"][0]["kinds"] = ["position"]
        bad = await api.post(f"/devices/{dev}/assignments", json=body)
        assert bad.status_code == 422
        assert bad.json()["field"] == "assignments.0.position_consent"
        bad = await api.post(f"/devices/{dev}/assignments", json={"assignments": []})
        assert bad.status_code == 422 and bad.json()["field"] == "assignments"
        bad = await api.post(f"/devices/{dev}/assignments", content=b"{not json")
        assert bad.status_code == 422
        # What schemathesis found as server errors (issue 11): refused, naming the field.
        for field, value in (("subject_ref", "test\u0000x"), ("alarm_route", "route\u001b[2J"),
                             ("subject_ref", "\ud800")):
            body = _assign_body("1490", SUBJECT_OLD)
            body["assignments"][0][field] = value
            raw = json.dumps(body).encode()  # a lone surrogate passes only as a JSON escape
            bad = await api.post(f"/devices/{dev}/assignments", content=raw,
                                 headers={"Content-Type": "application/json"})
            assert bad.status_code == 422, bad.text
            if value == "\ud800":  # the JSON parser refuses it already
                assert bad.json()["field"] == "body"
                continue
            assert bad.json() == {"field": f"assignments.0.{field}", "error": (
                f"assignments.0.{field}: Value error, must not contain control characters")}
        for spec, field in (({"heartbeat_interval_s": 10**20}, "heartbeat_interval_s"),
                            ({"heartbeat_interval_s": 7 * 86400 + 1}, "heartbeat_interval_s"),
                            ({"model": "M\u0000"}, "model")):
            bad = await api.post("/devices", json={"id": f"{dev}-x", "type": "scale", **spec})
            assert bad.status_code == 422 and bad.json()["field"] == field, bad.text
        # A body over the limit is refused before it is read whole.
        big = await api.post(f"/devices/{dev}/assignments", content=b" " * (1 << 20),
                             headers={"Content-Type": "application/json"})
        assert big.status_code == 413
        assert big.json()["error"] == "body: larger than 65536 bytes"
        # Nothing of the refused requests was stored.
        assert (await api.get(f"/devices/{dev}")).json()["assignments"] == []


async def test_admin_api_refuses_without_a_valid_enabled_operator(
        run: Run, gateway: RunningGateway, store: Store) -> None:
    name = f"test-op-{uuid.uuid4().hex[:8]}"
    token = _token_after(await run("operator", "add", name, "--role", "inventory",
                                   "--role", "workshop"))
    assert len(token) >= 40
    assert "already exists" in await run("operator", "add", name, "--role", "admin", ok=False)
    assert "Missing option '--role'" in await run("operator", "add", "test-op-x", ok=False)
    assert "an integrator acts for exactly one huvudman" in await run(
        "operator", "add", "test-op-x", "--role", "integrator", ok=False)
    stored = await store.pool.fetchval("SELECT token_sha256 FROM operator WHERE name = $1", name)
    assert token.encode() not in bytes(stored)
    async with httpx.AsyncClient(base_url=f"{gateway.http}/admin/v1") as api:
        for headers in ({}, {"Authorization": "Bearer wrong-token"},
                        {"Authorization": f"Basic {token}"}):
            answer = await api.post("/devices", json={"id": "T-X-1", "type": "scale"},
                                    headers=headers)
            assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
            assert (await api.get("/devices/T-NOPE-2", headers=headers)).status_code == 401
        good = {"Authorization": f"Bearer {token}"}
        assert (await api.get("/devices/T-NOPE-2", headers=good)).status_code == 404
        await run("operator", "disable", name)
        assert (await api.get("/devices/T-NOPE-2", headers=good)).status_code == 401
    listing = await run("operator", "list")
    assert re.search(rf"{re.escape(name)}\W+inventory, workshop\W+no\b", listing), listing
    actions = [(r["actor"], r["action"]) for r in await store.pool.fetch(
        "SELECT actor, action FROM audit_log WHERE target = $1 ORDER BY seq", name)]
    assert actions == [(CLI_ACTOR, "operator.add"), (CLI_ACTOR, "operator.disable")]


async def _state(store: Store, device_id: str) -> tuple[str, datetime]:
    view = await store.lifecycle.device(device_id)
    assert view is not None
    return view.state, view.state_since


async def test_the_older_commands_move_devices_through_the_lifecycle_too(
        run: Run, store: Store, tmp_path: Any) -> None:
    """`device add`, `assignment add` and `config load` change a device's state only as the
    state machine does: `state_since` says when it was assigned (a reissue's check depends on
    it), a retired device gets no credential and no assignment."""
    dev, listed = f"T-OLD-{uuid.uuid4().hex[:8]}", f"T-OLDCFG-{uuid.uuid4().hex[:8]}"
    await run("device", "add", dev, "scale")
    state, added = await _state(store, dev)
    assert state == "in_stock"
    await asyncio.sleep(0.05)
    await run("assignment", "add", dev, "1490", "--subject-ref", SUBJECT_OLD,
              "--legal-basis", "SoL", "--kind", "weight")
    state, assigned = await _state(store, dev)
    assert state == "assigned" and assigned > added  # it was left at registration time
    # A second huvudman for the same person: still assigned, since the first assignment.
    await run("assignment", "add", dev, "14", "--subject-ref", SUBJECT_OLD,
              "--legal-basis", "HSL", "--kind", "weight")
    assert await _state(store, dev) == ("assigned", assigned)

    config = tmp_path / "devices.toml"
    config.write_text(f'[[device]]\nid = "{listed}"\ntype = "scale"\n\n[[assignment]]\n'
                      f'device = "{listed}"\nhuvudman = "1490"\nsubject_ref = "{SUBJECT_NEW}"\n'
                      'legal_basis = "SoL"\nkinds = ["weight"]\n'
                      'valid_from = "2026-01-01T00:00:00+00:00"\n')
    before = datetime.now(UTC)
    await run("config", "load", str(config))
    state, since = await _state(store, listed)
    assert state == "assigned" and since >= before

    # Back in stock after a return: not lent again from before it was made ready.
    returned_at = datetime.now(UTC)
    await run("device", "return", dev)
    await run("device", "recondition", dev)
    await run("device", "ready", dev)
    refused = await run("assignment", "add", dev, "1490", "--subject-ref", SUBJECT_NEW,
                        "--legal-basis", "SoL", "--kind", "weight",
                        "--valid-from", returned_at.strftime("%Y-%m-%dT%H:%M:%S.%f%z"), ok=False)
    assert "valid_from: must not be before the device's last assignment ended" in refused
    assert (await _state(store, dev))[0] == "in_stock"

    await run("device", "retire", dev)
    refused = await run("device", "add", dev, "scale", ok=False)
    assert f"device {dev} is retired; it cannot be registered" in refused
    retired = tmp_path / "retired.toml"
    retired.write_text(f'[[device]]\nid = "{dev}"\ntype = "scale"\n'
                       f'token = "test-token-for-a-retired-device"\n')
    refused = await run("config", "load", str(retired), ok=False)
    assert f"device {dev} is retired; it cannot be registered" in refused
    refused = await run("device", "add", "T-HB-0", "scale", "--heartbeat-interval-s", "0",
                        ok=False)
    assert "heartbeat_interval_s: Input should be greater than 0" in refused
    refused = await run("assignment", "add", dev, "1490", "--subject-ref", SUBJECT_NEW,
                        "--legal-basis", "SoL", "--kind", "weight", ok=False)
    assert f"device {dev} is retired; it cannot be assigned" in refused
    view = await store.lifecycle.device(dev)
    assert view is not None and view.state == "retired" and not view.has_credential
