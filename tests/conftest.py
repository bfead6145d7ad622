"""Real services for the integration tests.

PostgreSQL: the one on 127.0.0.1:5432 when it answers (a fresh database per run, dropped at the
end), otherwise an embedded pgserver. MQTT: Mosquitto started from the project's own broker
configuration on a free port when the binary exists, otherwise the embedded amqtt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from gateway.demo import embedded
from gateway.ingest.sealing import Sealing, build_sealing
from gateway.ownership import key_management, registration
from gateway.ownership.registry import Registry
from gateway.settings import Settings
from gateway.store import privileges
from gateway.store.connector import Store
from gateway.store.migrate import migrate
from simulator.arc import ScaipArc
from simulator.receivers import RecordingReceiver
from tests.paths import ROOT
from tests.support import (
    ARC_TEST_RECEIVERS,
    NODE_TEST_HUVUDMAN,
    FakeDevice,
    Keys,
    MqttProbe,
    NodeEndpoint,
    RunningGateway,
    register_device,
    running_gateway,
    write_sinks,
)

LOCAL_PG = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

# Set to 1 to run everything on pgserver and amqtt, as on a machine with only Python.
FORCE_EMBEDDED = os.environ.get("TEST_FORCE_EMBEDDED") == "1"


def _local_pg_answers() -> bool:
    if FORCE_EMBEDDED:
        return False
    try:
        with socket.create_connection(("127.0.0.1", 5432), 0.5):
            pass
    except OSError:
        return False

    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(LOCAL_PG, timeout=3)
        except (OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


@pytest.fixture(scope="session")
def owner_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The schema's owner: migrations, the huvudman node's own schema, and tests that play
    someone with more power than the gateway has."""
    name = f"gw_test_{uuid.uuid4().hex[:12]}"
    if _local_pg_answers():
        asyncio.run(_admin(LOCAL_PG, f'CREATE DATABASE "{name}"'))
        dsn = LOCAL_PG.rsplit("/", 1)[0] + f"/{name}"
        asyncio.run(migrate(dsn))
        yield dsn
        asyncio.run(_admin(LOCAL_PG, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    else:
        service = embedded.start_postgres(tmp_path_factory.mktemp("pg"))
        asyncio.run(migrate(service.url))
        yield service.url
        service.stop()


@pytest.fixture(scope="session")
def database_url(owner_database_url: str) -> str:
    """What the gateway, its commands and the tests' store connect as: a member of
    gateway_runtime, as in production (docs/operations.md), so a missing grant fails here."""
    return asyncio.run(privileges.runtime_login(owner_database_url, "gateway_test_runtime"))


async def _admin(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[embedded.Service]:
    if embedded.mosquitto_binary() and not FORCE_EMBEDDED:
        service = embedded.start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    else:
        service = embedded.start_amqtt()
    yield service
    service.stop()


@pytest.fixture
def needs_redelivering_broker(broker: embedded.Service) -> None:
    if broker.kind != "mosquitto":
        pytest.skip("amqtt 0.12 does not redeliver unacknowledged QoS 1 messages to a "
                    "persistent session; install mosquitto to run this test")


@pytest.fixture(scope="session")
async def _prepared(database_url: str,
                    tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Store, Keys]]:
    """The 50 huvudmän, a key pair each (public halves registered), HMC's quarantine key and
    the pseudonym secret, which every path that creates an assignment needs."""
    s = await Store.connect(database_url)
    config = registration.read_config(ROOT / "config" / "huvudman.toml")
    await registration.apply_config(s, config)
    folder = tmp_path_factory.mktemp("keys")
    secret, quarantine = await key_management.provision(
        s, folder, [h.code for h in config.huvudman])
    os.environ["PSEUDONYM_SECRET_FILE"] = str(secret)
    relay_public, relay_private = key_management.relay_paths(folder)
    yield s, Keys(folder / "node", secret, quarantine, relay_public, relay_private)
    await s.close()


@pytest.fixture(scope="session")
def store(_prepared: tuple[Store, Keys]) -> Store:
    return _prepared[0]


@pytest.fixture(scope="session")
def keys(_prepared: tuple[Store, Keys]) -> Keys:
    return _prepared[1]


@pytest.fixture
async def device(store: Store, gateway: RunningGateway) -> FakeDevice:
    """A registered scale, assigned to the region, that the running gateway already knows."""
    fake = await register_device(store, assignments=[
        {"huvudman": "14", "subject_ref": "test-subject-191212121212",
         "legal_basis": "HSL", "kinds": ["weight", "bmi", "status"],
         "valid_from": "2026-01-01T00:00:00+00:00"}])
    await gateway.knows(fake)
    return fake


@pytest.fixture
def sealing(keys: Keys) -> Sealing:
    """Routing and encryption as ingest does it, for a device with no assignments."""
    settings = dataclasses.replace(Settings(), pseudonym_secret_file=keys.pseudonym_secret,
                                   quarantine_public_key_file=keys.quarantine_public)
    return build_sealing(settings, Registry())


@pytest.fixture(scope="session")
async def receiver() -> AsyncIterator[RecordingReceiver]:
    """The recording webhook receiver the test gateway delivers to
    (tests/delivery/test_delivery.py)."""
    recording = RecordingReceiver()
    await recording.start()
    yield recording
    await recording.stop()


@pytest.fixture(scope="session")
def node_endpoint(tmp_path_factory: pytest.TempPathFactory) -> NodeEndpoint:
    """The sink of NODE_TEST_HUVUDMAN: a huvudman node tests/node/test_node.py starts on this
    port."""
    secret = tmp_path_factory.mktemp("node") / "webhook.secret"
    secret.write_text(f"test-node-secret-{uuid.uuid4().hex}")
    return NodeEndpoint(NODE_TEST_HUVUDMAN, embedded.free_port(), secret)


@pytest.fixture(scope="session")
async def arcs() -> AsyncIterator[dict[str, tuple[ScaipArc, ScaipArc]]]:
    """Simulated alarm centres, a primary and a secondary per test receiver (ARC_TEST_RECEIVERS),
    answering OK until a test says otherwise."""
    pairs = {name: (ScaipArc(hbi=1, tcp=False), ScaipArc(hbi=1, tcp=False))
             for name in ARC_TEST_RECEIVERS}
    for primary, secondary in pairs.values():
        await primary.start()
        await secondary.start()
    yield pairs
    for primary, secondary in pairs.values():
        await primary.stop()
        await secondary.stop()


@pytest.fixture(scope="session")
async def gateway(database_url: str, broker: embedded.Service, store: Store, keys: Keys,
                  receiver: RecordingReceiver, node_endpoint: NodeEndpoint,
                  arcs: dict[str, tuple[ScaipArc, ScaipArc]],
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningGateway]:
    """Ingest running in the test's event loop, against the real database and broker."""
    port = embedded.free_port()
    settings = dataclasses.replace(
        Settings(), database_url=database_url, mqtt_url=broker.url, http_port=port,
        mqtt_client_id=f"gw-test-{uuid.uuid4().hex[:8]}", http_max_body_bytes=65536,
        pseudonym_secret_file=keys.pseudonym_secret,
        quarantine_public_key_file=keys.quarantine_public, sip_port=embedded.free_port(),
        sinks_file=write_sinks(receiver, tmp_path_factory.mktemp("sinks"), node_endpoint,
                               arcs),
        alarm_relay_public_key_file=keys.relay_public,
        alarm_relay_private_key_file=keys.relay_private, arc_lease_s=2.0,
        delivery_backoff_base_s=0.05, delivery_breaker_open_s=1.0,
        # Tests call the supervisor's check() themselves; a background check at a random
        # moment would race them.
        supervision_check_s=3600.0)
    async with running_gateway(settings) as running:
        yield running


@pytest.fixture
def mqtt_probe(broker: embedded.Service) -> Iterator[MqttProbe]:
    probe = MqttProbe(broker.url)
    yield probe
    probe.close()
