"""The huvudman node forwarding to the huvudman's FHIR server (gateway/node/fhir_forward.py), end
to end: readings sent to the running gateway for a device of tests.support.NODE_TEST_HUVUDMAN are
delivered to a real node in this process, which posts them as transaction Bundles to the
recording FHIR server (simulator/fhir_server.py). Real PostgreSQL, real HTTP everywhere."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from adapters import codes, native
from adapters.events import event_id
from gateway.node import fhir_bundle
from gateway.node.fhir_forward import load_fhir_config
from gateway.node.server import NodeConfig, RunningNode, load_config, start_node
from gateway.store.connector import Store
from simulator.fhir_server import FhirServer
from tests.support import (
    NODE_TEST_HUVUDMAN,
    FakeDevice,
    Keys,
    NodeEndpoint,
    RunningGateway,
    register_device,
    wait_until,
)

pytestmark = pytest.mark.integration
CODE = NODE_TEST_HUVUDMAN
PNR = "19121212-1212"  # the test personnummer; sent as 191212121212
PATIENT = f"{fhir_bundle.PERSONNUMMER_SYSTEM}|191212121212"


@pytest.fixture(scope="module")
async def fhir() -> AsyncIterator[FhirServer]:
    server = FhirServer(known_patients={PATIENT})
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def fresh(fhir: FhirServer) -> FhirServer:
    """The server as it should be at the start of a test: healthy, lenient, no refusals."""
    fhir.fail_always, fhir.fail_next, fhir.lose_answer_next = False, 0, 0
    fhir.fail_status, fhir.fail_headers = 503, {}
    fhir.atomic, fhir.reject = False, set()
    return fhir


@pytest.fixture
def node_config(keys: Keys, node_endpoint: NodeEndpoint, owner_database_url: str,
                fhir: FhirServer) -> NodeConfig:
    forwarding = dataclasses.replace(load_fhir_config(url=fhir.url, timeout_s=0.5),
                                     poll_s=0.05, backoff_base_s=0.05, backoff_cap_s=0.3,
                                     metrics_every_s=0.0)
    return load_config(huvudman=CODE, private_keys=[keys.node / f"{CODE}.private.pem"],
                       secret_file=node_endpoint.secret_file, database_url=owner_database_url,
                       listen=f"127.0.0.1:{node_endpoint.port}", fhir=forwarding)


@contextlib.asynccontextmanager
async def _running(config: NodeConfig) -> AsyncIterator[RunningNode]:
    node = await start_node(config)
    try:
        yield node
    finally:
        await node.stop()


async def _device(store: Store, gateway: RunningGateway, subject: str = PNR) -> FakeDevice:
    device = await register_device(store, assignments=[
        {"huvudman": CODE, "subject_ref": subject, "legal_basis": "HSL",
         "kinds": ["weight", "blood_pressure", "spo2", "status"],
         "valid_from": "2026-01-01T00:00:00+00:00"}])
    await gateway.knows(device)
    return device


async def _send(gateway: RunningGateway, device: FakeDevice, readings: list[dict[str, object]],
                status: dict[str, object] | None = None) -> list[uuid.UUID]:
    body = native.encode_message(readings, status=status)
    async with httpx.AsyncClient(base_url=gateway.http) as client:
        answer = await client.post(f"/v1/devices/{device.id}/readings", content=body,
                                   headers={"Authorization": f"Bearer {device.token}"})
    assert answer.status_code == 200, answer.text
    return [uuid.UUID(i) for i in answer.json()["accepted"]]


def _weights(n: int, start: datetime, value: float = 70.0) -> list[dict[str, object]]:
    return [native.encode_reading("weight", start + timedelta(minutes=i), value=value + i,
                                  unit="kg") for i in range(n)]


def _key(event: uuid.UUID) -> str:
    return f"urn:ietf:rfc:3986|urn:uuid:{event}"


async def _rows(node: RunningNode, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    rows = await node.store.pool.fetch(
        "SELECT event_id, event_type, fhir_state, fhir_attempts, fhir_status, fhir_reason"
        " FROM huvudman_node.copy WHERE event_id = ANY($1)", ids)
    return {r["event_id"]: dict(r) for r in rows}


async def _settled(node: RunningNode, ids: Sequence[uuid.UUID],
                   timeout: float = 15) -> dict[uuid.UUID, dict[str, Any]]:
    """Every id stored on the node and no longer pending for the FHIR server."""
    async def check() -> dict[uuid.UUID, dict[str, Any]]:
        rows = await _rows(node, ids)
        done = len(rows) == len(ids) and all(r["fhir_state"] != "pending" for r in rows.values())
        return rows if done else {}

    rows: dict[uuid.UUID, dict[str, Any]] = await wait_until(check, timeout)
    assert rows, "not every reading was stored and forwarded"
    return rows


async def _delivered(store: Store, ids: Sequence[uuid.UUID]) -> bool:
    rows = await store.pool.fetch("SELECT state FROM delivery WHERE event_id = ANY($1)", ids)
    return len(rows) == len(ids) and all(r["state"] == "done" for r in rows)


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_readings_arrive_as_phd_observations_exactly_once_and_nothing_else_is_sent(
        node_config: NodeConfig, fresh: FhirServer, gateway: RunningGateway,
        store: Store) -> None:
    fhir = fresh
    created_before = _sample("gateway_node_fhir_forwarded_total", {"result": "created"})
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    future = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)  # clock_implausible
    async with _running(node_config) as node:
        device = await _device(store, gateway)
        ids = await _send(gateway, device, [
            native.encode_reading("weight", start, value=81.5, unit="kg"),
            native.encode_reading("blood_pressure", start, systolic=131, diastolic=82),
            native.encode_reading("spo2", start, value=96),
            native.encode_reading("weight", future, value=81.0, unit="kg")],
            status={"battery": 77, "time": start.isoformat()})
        rows = await _settled(node, ids)
        readings = [i for i in ids if rows[i]["event_type"] == "reading"]
        [status] = [i for i in ids if rows[i]["event_type"] == "status"]
        assert len(readings) == 4
        assert all(rows[i]["fhir_state"] == "done" and rows[i]["fhir_status"] == 201
                   for i in readings)
        assert rows[status]["fhir_state"] is None  # device status is not an Observation
        assert all(fhir.created[_key(i)] == 1 for i in readings)
        assert _key(status) not in fhir.stored

        weight = fhir.stored[_key(event_id(device.id, str(codes.WEIGHT.code), start))]
        assert weight["valueQuantity"] == {"value": 81.5, "unit": "kg",
                                           "system": "http://unitsofmeasure.org", "code": "kg"}
        assert weight["subject"]["identifier"] == {
            "system": fhir_bundle.PERSONNUMMER_SYSTEM, "value": "191212121212"}
        assert weight["device"]["identifier"]["value"] == device.id
        assert datetime.fromisoformat(weight["effectiveDateTime"]) == start
        bp = fhir.stored[_key(event_id(device.id, str(codes.BP_COMPOUND.code), start))]
        assert [(c["code"]["coding"][0]["code"], c["valueQuantity"]["value"])
                for c in bp["component"]] == [("150021", 131.0), ("150022", 82.0)]
        spo2 = fhir.stored[_key(event_id(device.id, str(codes.SPO2.code), start))]
        assert spo2["valueQuantity"]["value"] == 96.0 and spo2["valueQuantity"]["code"] == "%"
        flagged = fhir.stored[_key(event_id(device.id, str(codes.WEIGHT.code), future))]
        assert {"system": fhir_bundle.FLAG_SYSTEM, "code": "clock_implausible"} in \
            flagged["meta"]["tag"]
        assert "tag" not in weight["meta"]

        # Forwarded again (as after a crash before the answer was settled): the server's
        # conditional create finds it, and still holds one Observation.
        spo2_id = event_id(device.id, str(codes.SPO2.code), start)
        await node.store.pool.execute(
            "UPDATE huvudman_node.copy SET fhir_state = 'pending', fhir_next_at = now()"
            " WHERE event_id = $1", spo2_id)
        assert node.forwarder is not None
        node.forwarder.wake()
        again = await _settled(node, [spo2_id])
        assert again[spo2_id]["fhir_status"] == 200
        assert fhir.created[_key(spo2_id)] == 1 and fhir.answered[_key(spo2_id)] == 2
    assert _sample("gateway_node_fhir_forwarded_total",
                   {"result": "created"}) >= created_before + 4


async def test_fhir_outage_and_node_restart_still_give_each_reading_exactly_once(
        node_config: NodeConfig, fresh: FhirServer, gateway: RunningGateway,
        store: Store) -> None:
    fhir = fresh
    fhir.fail_always = True
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    async with _running(node_config) as node:
        device = await _device(store, gateway)
        ids = await _send(gateway, device, _weights(4, start))
        # The node answers the gateway while its FHIR server is down: the webhook never waits.
        assert await wait_until(lambda: _delivered(store, ids))

        async def retried() -> bool:
            rows = await _rows(node, ids)
            return len(rows) == 4 and all(r["fhir_state"] == "pending" and r["fhir_status"] == 503
                                          and r["fhir_attempts"] >= 1 for r in rows.values())

        assert await wait_until(retried)
        assert fhir.answered_status(503) >= 1
        assert not any(_key(i) in fhir.stored for i in ids)
    # The node is stopped; the server recovers, but the first Bundle's answer is lost (stored,
    # then too slow for the node's timeout).
    fhir.fail_always = False
    fhir.lose_answer_next = 1
    async with _running(node_config) as node:
        rows = await _settled(node, ids)
    assert all(r["fhir_state"] == "done" for r in rows.values())
    assert [fhir.created[_key(i)] for i in ids] == [1, 1, 1, 1]
    # The entries of the Bundle whose answer was lost were sent again, and the conditional
    # create found them (200). Which entries that Bundle held depends on which rows had come
    # due after the outage's backoff; any not in it were created on their one sending (201).
    answered = [fhir.answered[_key(i)] for i in ids]
    assert 2 in answered and all(n in (1, 2) for n in answered), answered
    for i in ids:
        assert rows[i]["fhir_status"] == (200 if fhir.answered[_key(i)] == 2 else 201)


async def test_a_server_asking_to_retry_after_two_seconds_is_left_alone_that_long(
        node_config: NodeConfig, fresh: FhirServer, gateway: RunningGateway,
        store: Store) -> None:
    fhir = fresh
    fhir.fail_next, fhir.fail_status, fhir.fail_headers = 1, 429, {"Retry-After": "2"}
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    async with _running(node_config) as node:
        device = await _device(store, gateway)
        ids = await _send(gateway, device, _weights(2, start))
        rows = await _settled(node, ids)
    assert all(r["fhir_state"] == "done" for r in rows.values())
    assert [fhir.created[_key(i)] for i in ids] == [1, 1]
    # The test node backs off 50-300 ms; the server asked for 2 s and got them.
    requests = sorted(fhir.requests)  # by arrival
    statuses = [status for _, status in requests]
    at = statuses.index(429)
    assert statuses.count(429) == 1 and at + 1 < len(statuses)
    gap = requests[at + 1][0] - requests[at][0]
    assert gap >= 1.9, gap


@pytest.mark.parametrize("atomic", [False, True], ids=["per-entry", "atomic-transaction"])
async def test_a_refused_reading_is_dead_with_a_reason_and_does_not_block_the_others(
        atomic: bool, node_config: NodeConfig, fresh: FhirServer, gateway: RunningGateway,
        store: Store, capfd: pytest.CaptureFixture[str]) -> None:
    fhir = fresh
    fhir.atomic = atomic  # a conforming server refuses the whole transaction for one bad entry
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4 + atomic)
    refusals = fhir.answered_status(400)
    async with _running(node_config) as node:
        device = await _device(store, gateway)
        bad = event_id(device.id, str(codes.WEIGHT.code), start + timedelta(minutes=1))
        fhir.reject = {_key(bad)}
        ids = await _send(gateway, device, _weights(5, start))
        assert bad in ids
        rows = await _settled(node, ids)
    dead = rows[bad]
    assert (dead["fhir_state"], dead["fhir_status"]) == ("dead", 400)
    assert dead["fhir_reason"] == "rejected bad request business-rule"
    assert re.fullmatch(r"[a-z _-]+", dead["fhir_reason"])
    others = [i for i in ids if i != bad]
    assert all(rows[i]["fhir_state"] == "done" for i in others)
    assert [fhir.created[_key(i)] for i in others] == [1, 1, 1, 1]
    assert _key(bad) not in fhir.stored
    if atomic:
        assert fhir.answered_status(400) > refusals  # refused whole, then split
    # Logs: ids, counts and fixed reasons; never the person.
    out, err = capfd.readouterr()
    logged = out + err
    assert str(bad) in logged and "fhir_entry_dead" in logged
    assert PNR not in logged and "191212121212" not in logged


async def test_an_unknown_patient_is_dead_until_registered_and_replayed(
        node_config: NodeConfig, fresh: FhirServer, gateway: RunningGateway,
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    fhir = fresh
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
    async with _running(node_config) as node:
        known = await _device(store, gateway)
        stranger = await _device(store, gateway, subject="test-subject-not-at-this-ehr")
        ok = await _send(gateway, known, _weights(1, start))
        refused = await _send(gateway, stranger, _weights(1, start))
        rows = await _settled(node, [*ok, *refused])
    assert rows[ok[0]]["fhir_state"] == "done" and fhir.created[_key(ok[0])] == 1
    assert rows[refused[0]]["fhir_state"] == "dead"
    assert rows[refused[0]]["fhir_reason"] == "rejected bad request not-found"

    # The region registers the person; the integrator lists the dead readings and replays.
    from rich.console import Console
    from typer.testing import CliRunner, Result

    from gateway.cli import common
    from gateway.cli.main import app

    monkeypatch.setattr(common, "console", Console(width=250, force_terminal=False))
    runner, env = CliRunner(), {"NODE_DATABASE_URL": node_config.database_url}

    async def cli(*args: str) -> Result:  # the commands run their own event loop
        return await asyncio.to_thread(runner.invoke, app, list(args), env=env,
                                       terminal_width=250)

    listed = await cli("node-fhir", "dead", "--huvudman", CODE)
    assert listed.exit_code == 0, listed.output
    assert str(refused[0]) in listed.output and "not-found" in listed.output
    assert str(ok[0]) not in listed.output and "test-subject" not in listed.output
    assert fhir.known_patients is not None
    fhir.known_patients.add(f"{fhir_bundle.PERSONNUMMER_SYSTEM}|test-subject-not-at-this-ehr")
    try:
        replayed = await cli("node-fhir", "replay", "--huvudman", CODE, str(refused[0]))
        assert replayed.exit_code == 0 and "1 dead readings back to pending" in replayed.output
        again = await cli("node-fhir", "replay", "--huvudman", CODE, str(refused[0]))
        assert again.exit_code == 1  # no longer dead
        async with _running(node_config) as node:
            rows = await _settled(node, refused)
    finally:
        fhir.known_patients.discard(
            f"{fhir_bundle.PERSONNUMMER_SYSTEM}|test-subject-not-at-this-ehr")
    assert rows[refused[0]]["fhir_state"] == "done" and fhir.created[_key(refused[0])] == 1


async def test_metrics_show_pending_and_dead(node_config: NodeConfig, fresh: FhirServer,
                                             gateway: RunningGateway, store: Store) -> None:
    fhir = fresh
    fhir.fail_always = True
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=7)
    async with _running(node_config) as node:
        device = await _device(store, gateway)
        ids = await _send(gateway, device, _weights(2, start))
        assert await wait_until(lambda: _delivered(store, ids))

        async def counted() -> bool:
            return _sample("gateway_node_fhir_pending", {}) >= 2

        assert await wait_until(counted)
        assert _sample("gateway_node_fhir_failed_total",
                       {"outcome": "retry", "kind": "server_error"}) >= 1
        async with httpx.AsyncClient(base_url=node.url) as client:
            exposed = (await client.get("/metrics")).text
        assert "gateway_node_fhir_pending" in exposed
        assert "gateway_node_fhir_dead" in exposed
        fhir.fail_always = False
        await _settled(node, ids)


def test_cli_has_the_fhir_options_and_refuses_a_bad_url(keys: Keys,
                                                       node_endpoint: NodeEndpoint) -> None:
    from typer.testing import CliRunner

    from gateway.cli.main import app

    runner = CliRunner()
    help_text = runner.invoke(app, ["node", "--help"], terminal_width=200).output
    assert "--fhir-url" in help_text and "--fhir-patient-system" in help_text
    refused = runner.invoke(app, [
        "node", "--huvudman", CODE, "--private-key", str(keys.node / f"{CODE}.private.pem"),
        "--secret-file", str(node_endpoint.secret_file), "--fhir-url", "fhir.example/fhir"],
        env={"NODE_DATABASE_URL": "x"})
    assert refused.exit_code == 2
    assert "--fhir-url" in refused.output
