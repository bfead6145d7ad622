"""The huvudman node (gateway/node/) end to end with the real gateway: readings sent to the
running gateway for a device of tests.support.NODE_TEST_HUVUDMAN are delivered over real HTTP to
a node running in this process, which opens them with that huvudman's private key alone and
keeps one copy each, in its own schema. Hand-made batches show what it refuses."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest
from prometheus_client import REGISTRY

from adapters import native
from gateway.crypto import KeySuite, WrappedKey
from gateway.crypto.subject import seal_subject
from gateway.delivery import dead_letters, wire
from gateway.demo import embedded
from gateway.node.server import RunningNode, load_config, start_node
from gateway.store.connector import Store
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
OTHER = "1447"  # no sink, no node: its copies stay in the gateway
BASE = datetime(2026, 11, 12, 7, tzinfo=UTC)


@pytest.fixture(scope="module")
async def node(owner_database_url: str, keys: Keys, node_endpoint: NodeEndpoint,
               gateway: RunningGateway) -> AsyncIterator[RunningNode]:
    config = load_config(huvudman=CODE, private_keys=[keys.node / f"{CODE}.private.pem"],
                         secret_file=node_endpoint.secret_file, database_url=owner_database_url,
                         listen=f"127.0.0.1:{node_endpoint.port}")
    running = await start_node(config)
    yield running
    await running.stop()


async def _device(store: Store, gateway: RunningGateway, code: str) -> FakeDevice:
    device = await register_device(store, assignments=[
        {"huvudman": code, "subject_ref": f"test-node-subject-{code}", "legal_basis": "SoL",
         "kinds": ["weight"], "valid_from": "2026-01-01T00:00:00+00:00"}])
    await gateway.knows(device)
    return device


async def _send(gateway: RunningGateway, device: FakeDevice, n: int, value: float,
                start: datetime = BASE) -> list[uuid.UUID]:
    body = native.encode_message([
        native.encode_reading("weight", start + timedelta(minutes=i), value=value + i,
                              unit="kg") for i in range(n)])
    async with httpx.AsyncClient(base_url=gateway.http) as client:
        answer = await client.post(f"/v1/devices/{device.id}/readings", content=body,
                                   headers={"Authorization": f"Bearer {device.token}"})
    assert answer.status_code == 200, answer.text
    return [uuid.UUID(i) for i in answer.json()["accepted"]]


async def _node_rows(node: RunningNode, ids: Sequence[uuid.UUID]) -> list[dict[str, object]]:
    rows = await node.store.pool.fetch(
        "SELECT event_id, huvudman, kind, event_type, content, assignment_ids, subjects"
        " FROM huvudman_node.copy WHERE event_id = ANY($1) ORDER BY measured_at", ids)
    return [dict(r) for r in rows]


async def _stored(node: RunningNode, ids: Sequence[uuid.UUID]) -> list[dict[str, object]]:
    async def all_there() -> list[dict[str, object]]:
        rows = await _node_rows(node, ids)
        return rows if len(rows) == len(ids) else []

    rows: list[dict[str, object]] = await wait_until(all_there, 10)
    assert len(rows) == len(ids), "not every reading reached the node"
    return rows


async def _states(store: Store, ids: Sequence[uuid.UUID]) -> list[str]:
    rows = await store.pool.fetch("SELECT state FROM delivery WHERE event_id = ANY($1)", ids)
    return sorted(r["state"] for r in rows)


def _count(status: str) -> float:
    return REGISTRY.get_sample_value("gateway_node_items_total", {"status": status}) or 0.0


async def _item(store: Store, event_id: uuid.UUID, recipient: str,
                huvudman: str | None = None) -> wire.Item:
    """The item the dispatcher would send for `recipient`'s copy, built from the gateway's
    rows (`huvudman` may label it otherwise)."""
    r = await store.pool.fetchrow(
        "SELECT c.envelope, e.kind, e.event_type, e.measured_at, k.key_id, k.huvudman,"
        "       k.subject_pseudonym, k.epoch, k.recipient_key_id, k.suite, k.wrapped"
        " FROM event_copy c JOIN event e USING (event_id, measured_at)"
        " JOIN data_key k ON k.key_id = c.key_id WHERE c.event_id = $1 AND c.recipient = $2",
        event_id, recipient)
    key = WrappedKey(key_id=bytes(r["key_id"]), huvudman=r["huvudman"],
                     subject_pseudonym=bytes(r["subject_pseudonym"]), epoch=r["epoch"],
                     recipient_key_id=bytes(r["recipient_key_id"]),
                     suite=KeySuite(r["suite"]), wrapped=bytes(r["wrapped"]))
    return wire.item(event_id=event_id, huvudman=huvudman or recipient, kind=r["kind"],
                     event_type=r["event_type"], measured_at=r["measured_at"], lane="bulk",
                     envelope=bytes(r["envelope"]), data_key=key)


async def _post(node: RunningNode, items: Sequence[wire.Item], secret: bytes,
                subjects: Sequence[wire.SubjectLine] = ()) -> httpx.Response:
    body = wire.encode_batch(items, subjects)
    now = int(time.time())
    async with httpx.AsyncClient(base_url=node.url) as client:
        return await client.post("/v1/deliveries", content=body, headers={
            "Content-Type": wire.CONTENT_TYPE, wire.TIMESTAMP_HEADER: str(now),
            wire.SIGNATURE_HEADER: wire.sign(secret, now, body)})


def _answer(response: httpx.Response) -> list[tuple[str, str, str | None]]:
    assert response.status_code == 200, response.text
    return [(r.event_id, r.status, r.reason)
            for r in wire.decode_answer(response.content).results]


async def test_node_stores_each_reading_once_opened_with_its_subject(
        node: RunningNode, gateway: RunningGateway, store: Store) -> None:
    device = await _device(store, gateway, CODE)
    ids = await _send(gateway, device, 3, value=61.0)
    rows = await _stored(node, ids)
    assert await wait_until(lambda: _done(store, ids))
    assignment = await store.pool.fetchval(
        "SELECT id FROM assignment WHERE device_id = $1", device.id)
    for i, row in enumerate(rows):
        content = msgspec.json.decode(str(row["content"]))
        assert (row["huvudman"], row["kind"], row["event_type"]) == (CODE, "weight", "reading")
        assert content["event_id"] == str(ids[i]) and content["values"][0]["value"] == 61.0 + i
        assert row["assignment_ids"] == [assignment]
        assert msgspec.json.decode(str(row["subjects"])) == [
            {"assignment_id": str(assignment), "subject_ref": f"test-node-subject-{CODE}"}]
    count = await node.store.pool.fetchval(
        "SELECT count(*) FROM huvudman_node.copy WHERE event_id = ANY($1)", ids)
    assert count == 3


async def test_a_node_without_the_subject_asks_for_it_and_checks_what_it_is_sent(
        node: RunningNode, gateway: RunningGateway, store: Store, keys: Keys,
        node_endpoint: NodeEndpoint, owner_database_url: str) -> None:
    """Format 2: a copy names its assignment and the digest of the sealed subject reference.
    A node that does not hold the reference answers `retry` (the gateway then sends the
    `subject` line); a line that does not open for that assignment, or that opens to another
    reference than the copy was sealed with, is not taken."""
    secret = node_endpoint.secret_file.read_text().strip().encode()
    device = await _device(store, gateway, CODE)
    ids = await _send(gateway, device, 2, value=76.0, start=BASE + timedelta(hours=4))
    await _stored(node, ids)
    assignment = await store.pool.fetchval("SELECT id FROM assignment WHERE device_id = $1",
                                           device.id)
    sealed = bytes(await store.pool.fetchval(
        "SELECT subject_sealed FROM assignment WHERE id = $1", assignment))
    other = await store.pool.fetchval(
        "SELECT subject_sealed FROM assignment WHERE huvudman = $1 AND id <> $2 "
        "AND subject_sealed IS NOT NULL LIMIT 1", CODE, assignment)
    # As a node that lost its storage: another node process, the rows gone.
    await node.store.pool.execute("DELETE FROM huvudman_node.subject WHERE assignment_id = $1",
                                  assignment)
    await node.store.pool.execute("DELETE FROM huvudman_node.copy WHERE event_id = ANY($1)",
                                  ids)
    fresh = await start_node(load_config(
        huvudman=CODE, private_keys=[keys.node / f"{CODE}.private.pem"],
        secret_file=node_endpoint.secret_file, database_url=owner_database_url,
        listen=f"127.0.0.1:{embedded.free_port()}"))
    try:
        item = await _item(store, ids[0], CODE)
        key = str(ids[0])
        assert _answer(await _post(fresh, [item], secret)) == [(key, "retry", "subject unknown")]
        # Another assignment's sealed reference under this id does not open (HPKE binds it):
        # refused, since sending it again would not help.
        moved = wire.subject_line(CODE, assignment, bytes(other))
        assert _answer(await _post(fresh, [item], secret, [moved])) == [
            (key, "rejected", "subject reference does not open")]
        # One that opens but is not the reference the copy was sealed with: refused.
        swapped = wire.subject_line(CODE, assignment, seal_subject(
            keys.private(CODE).public_key(), assignment, "test-swapped"))
        assert _answer(await _post(fresh, [item], secret, [swapped])) == [
            (key, "rejected", "subject reference does not match the copy")]
        assert await _node_rows(fresh, ids) == []
        # The right one: stored, and kept, so the next copy needs no line.
        line = wire.subject_line(CODE, assignment, sealed)
        assert _answer(await _post(fresh, [item], secret, [line])) == [(key, "stored", None)]
        second = await _item(store, ids[1], CODE)
        assert _answer(await _post(fresh, [second], secret)) == [(str(ids[1]), "stored", None)]
        for row in await _node_rows(fresh, ids):
            assert msgspec.json.decode(str(row["subjects"])) == [
                {"assignment_id": str(assignment), "subject_ref": f"test-node-subject-{CODE}"}]
    finally:
        await fresh.stop()


async def _done(store: Store, ids: Sequence[uuid.UUID]) -> bool:
    return await _states(store, ids) == ["done"] * len(ids)


async def test_a_replayed_delivery_is_answered_duplicate_and_kept_once(
        node: RunningNode, gateway: RunningGateway, store: Store) -> None:
    device = await _device(store, gateway, CODE)
    ids = await _send(gateway, device, 1, value=72.0, start=BASE + timedelta(hours=1))
    await _stored(node, ids)
    assert await wait_until(lambda: _done(store, ids))
    # As if the node's answer had been lost and the item dead-lettered: an operator replays it.
    delivery_id = await store.pool.fetchval(
        "UPDATE delivery SET state = 'dead', finished_at = now() WHERE event_id = $1"
        " RETURNING id", ids[0])
    duplicates = _count("duplicate")
    assert await dead_letters.replay(store, delivery_id) == [delivery_id]
    assert await wait_until(lambda: _done(store, ids))
    assert _count("duplicate") == duplicates + 1
    assert len(await _node_rows(node, ids)) == 1


async def test_bad_signature_is_401_and_stores_nothing(
        node: RunningNode, gateway: RunningGateway, store: Store,
        node_endpoint: NodeEndpoint) -> None:
    device = await _device(store, gateway, CODE)
    ids = await _send(gateway, device, 1, value=73.0, start=BASE + timedelta(hours=2))
    await _stored(node, ids)
    await node.store.pool.execute("DELETE FROM huvudman_node.copy WHERE event_id = $1", ids[0])
    item = await _item(store, ids[0], CODE)
    answer = await _post(node, [item], b"not-the-shared-secret")
    assert answer.status_code == 401 and answer.json() == {"error": "signature does not match"}
    async with httpx.AsyncClient(base_url=node.url) as client:
        unsigned = await client.post("/v1/deliveries", content=wire.encode_batch([item]),
                                     headers={"Content-Type": wire.CONTENT_TYPE})
    assert unsigned.status_code == 401
    assert await _node_rows(node, ids) == []
    # The same item, signed with the shared secret, is stored: only the signature was wrong.
    secret = node_endpoint.secret_file.read_text().strip().encode()
    assert _answer(await _post(node, [item], secret)) == [(str(ids[0]), "stored", None)]


async def test_foreign_and_tampered_items_are_rejected_and_not_stored(
        node: RunningNode, gateway: RunningGateway, store: Store,
        node_endpoint: NodeEndpoint) -> None:
    secret = node_endpoint.secret_file.read_text().strip().encode()
    other = await _device(store, gateway, OTHER)
    foreign_ids = await _send(gateway, other, 1, value=74.0, start=BASE + timedelta(hours=3))
    mine = await _device(store, gateway, CODE)
    my_ids = await _send(gateway, mine, 1, value=75.0, start=BASE + timedelta(hours=3))
    await _stored(node, my_ids)
    await node.store.pool.execute("DELETE FROM huvudman_node.copy WHERE event_id = $1",
                                  my_ids[0])
    foreign = await _item(store, foreign_ids[0], OTHER)
    relabelled = await _item(store, foreign_ids[0], OTHER, huvudman=CODE)
    good = await _item(store, my_ids[0], CODE)
    sealed = bytearray(good.envelope_bytes)
    sealed[-1] ^= 0x01
    tampered = msgspec.structs.replace(good, envelope=base64.b64encode(sealed).decode())
    answer = _answer(await _post(node, [foreign, relabelled, tampered], secret))
    assert answer == [
        (str(foreign_ids[0]), "rejected", "not this huvudman"),
        (str(foreign_ids[0]), "rejected", "data key not wrapped to this node's keys"),
        (str(my_ids[0]), "rejected", "envelope does not open")]
    assert await _node_rows(node, [*foreign_ids, *my_ids]) == []
    # The node's database holds this huvudman's copies and nothing else.
    owners = await node.store.pool.fetch("SELECT DISTINCT huvudman FROM huvudman_node.copy")
    assert [r["huvudman"] for r in owners] == [CODE]
    assert await _states(store, foreign_ids) == ["pending"]


async def test_health_readiness_and_metrics(node: RunningNode) -> None:
    async with httpx.AsyncClient(base_url=node.url) as client:
        assert (await client.get("/healthz")).json() == {"status": "alive"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {"database": True}
        metrics = (await client.get("/metrics")).text
        assert 'gateway_node_items_total{status="stored"}' in metrics
        wrong_type = await client.post("/v1/deliveries", content=b"{}",
                                       headers={"Content-Type": "application/json"})
        assert wrong_type.status_code == 415


def test_cli_has_the_node_command_and_refuses_a_foreign_key(keys: Keys,
                                                             node_endpoint: NodeEndpoint) -> None:
    from typer.testing import CliRunner

    from gateway.cli.main import app

    runner = CliRunner()
    assert "--private-key" in runner.invoke(app, ["node", "--help"]).output
    refused = runner.invoke(app, [
        "node", "--huvudman", CODE, "--private-key", str(keys.node / f"{OTHER}.private.pem"),
        "--secret-file", str(node_endpoint.secret_file)], env={"NODE_DATABASE_URL": "x"})
    assert refused.exit_code == 2
    assert f"belongs to huvudman {OTHER}, not {CODE}" in refused.output
