"""Helpers the tests share: fake devices, a device-side MQTT client, polling."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import ipaddress
import threading
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion

from adapters import native
from gateway.crypto import HuvudmanPrivateKey, load_private_key
from gateway.ownership import registration
from gateway.ownership.credentials import token_hash
from gateway.settings import Settings
from gateway.store.connector import Store


@dataclasses.dataclass(frozen=True)
class Keys:
    """Key material of a test run: the nodes' private keys, and ingest's own files."""

    node: Path
    pseudonym_secret: Path
    quarantine_public: Path
    relay_public: Path | None = None
    relay_private: Path | None = None

    def private(self, owner: str) -> HuvudmanPrivateKey:
        return load_private_key((self.node / f"{owner}.private.pem").read_bytes())

    def env(self) -> dict[str, str]:
        return {"PSEUDONYM_SECRET_FILE": str(self.pseudonym_secret),
                "QUARANTINE_PUBLIC_KEY_FILE": str(self.quarantine_public)}


@dataclasses.dataclass
class FakeDevice:
    id: str
    token: str


async def register_device(store: Store, device_type: str = "scale",
                          assignments: list[dict[str, Any]] | None = None) -> FakeDevice:
    """A fresh device (unique id per test, so tests never see each other's data)."""
    device = FakeDevice(f"T-{device_type[:5].upper()}-{uuid.uuid4().hex[:10]}",
                        f"test-token-{uuid.uuid4().hex}")
    config = registration.ConfigFile(
        device=[registration.DeviceSpec(id=device.id, type=device_type,
                                 token_sha256=token_hash(device.token).hex())],
        assignment=[registration.AssignmentSpec.model_validate({"device": device.id, **a})
                    for a in assignments or []])
    await registration.apply_config(store, config)
    return device


# What each SCAIP unit the tests registered knows of itself: its credential, by device id.
SCAIP_CREDENTIALS: dict[str, str] = {}


async def register_scaip_unit(store: Store, device_type: str = "gps_alarm",
                              did: str | None = None,
                              assignments: list[dict[str, Any]] | None = None) -> FakeDevice:
    """A fresh SCAIP unit: a random controller id (digits), registered under the device id the
    adapter derives (`scaip:<cid>` or `scaip:<cid>:<did>`), with a credential it answers the
    gateway's SIP Digest challenge with (kept in SCAIP_CREDENTIALS for the test units)."""
    from adapters import scaip

    cid = str(uuid.uuid4().int)[:12]
    device = FakeDevice(scaip.device_id(cid, did), f"test-scaip-token-{uuid.uuid4().hex}")
    SCAIP_CREDENTIALS[device.id] = device.token
    config = registration.ConfigFile(
        device=[registration.DeviceSpec(id=device.id, type=device_type, token=device.token)],
        assignment=[registration.AssignmentSpec.model_validate({"device": device.id, **a})
                    for a in assignments or []])
    await registration.apply_config(store, config)
    return device


@dataclasses.dataclass
class RunningGateway:
    settings: Settings
    http: str
    stop: asyncio.Event
    task: asyncio.Task[None]
    runtime: Any

    async def knows(self, device: FakeDevice, timeout: float = 5.0) -> None:
        """Wait until the running gateway's registry has reloaded and holds `device`."""
        deadline = time.monotonic() + timeout
        while self.runtime.registry.device(device.id) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"registry never picked up {device.id}")
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[RunningGateway]:
    """`gateway serve` in the test's event loop with `settings`, stopped at the end."""
    from gateway.roles.ingest import Runtime, serve

    started: asyncio.Future[Runtime] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, install_signals=False, started=started,
                                     stop_event=stop))
    await asyncio.wait({started, task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what stopped it
    running = RunningGateway(settings, f"http://127.0.0.1:{settings.http_port}", stop, task,
                             await asyncio.wait_for(started, 1))
    try:
        yield running
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


class MqttProbe:
    """A device-side MQTT client for tests: publish QoS 1 and collect what comes back."""

    def __init__(self, url: str, client_id: str | None = None) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.received: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"probe-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.connect(host, int(port))
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append((msg.topic, bytes(msg.payload)))

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, 1)[1]
        time.sleep(0.2)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        with self._lock:
            return list(self.received)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
            self.client.loop_stop()



async def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll a predicate (async or not) until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)


async def open_copies(store: Store, keys: Keys, event_id: uuid.UUID) -> dict[str, Any]:
    """Every sealed copy of an event, opened as its recipient's node would, with the recipient's
    private key and the stored wrapped data key. {recipient: CopyPlaintext}."""
    from gateway.crypto import KeySuite, Opener, WrappedKey
    from gateway.ingest.sealing import CopyPlaintext

    rows = await store.pool.fetch(
        "SELECT c.recipient, c.envelope, e.kind, k.huvudman, k.subject_pseudonym, k.epoch,"
        "       k.recipient_key_id, k.suite, k.wrapped, k.key_id"
        " FROM event_copy c JOIN event e USING (event_id, measured_at)"
        " JOIN data_key k ON k.key_id = c.key_id WHERE c.event_id = $1", event_id)
    opened: dict[str, Any] = {}
    for r in rows:
        wrapped = WrappedKey(key_id=bytes(r["key_id"]), huvudman=r["huvudman"],
                             subject_pseudonym=bytes(r["subject_pseudonym"]), epoch=r["epoch"],
                             recipient_key_id=bytes(r["recipient_key_id"]),
                             suite=KeySuite(r["suite"]), wrapped=bytes(r["wrapped"]))
        opener = Opener(r["recipient"], [keys.private(r["recipient"])])
        plain = opener.open(bytes(r["envelope"]), event_id=event_id, kind=r["kind"],
                            wrapped_key=wrapped)
        opened[r["recipient"]] = msgspec.json.decode(plain, type=CopyPlaintext)
    return opened


# Huvudmän whose deliveries tests/delivery/test_delivery.py watches: each test has its own, and only
# these have a sink, so other tests' deliveries stay pending as before.
DELIVERY_TEST_HUVUDMAN = ("1440", "1441", "1442", "1443", "1444", "1445", "1452", "1460")


# The huvudman tests/node/test_node.py runs a real node for (gateway/node/): no other test uses it.
NODE_TEST_HUVUDMAN = "1446"


@dataclasses.dataclass(frozen=True)
class NodeEndpoint:
    """Where the test gateway delivers NODE_TEST_HUVUDMAN's items: a port reserved before the
    gateway starts, on which tests/node/test_node.py starts the node, and the shared secret."""

    huvudman: str
    port: int
    secret_file: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/deliveries"


# Alarm centres of the test gateway (tests/delivery/test_arc_forwarding.py): each receiver name
# gets a simulated primary and secondary ARC (simulator/arc.py), with short timings.
ARC_TEST_RECEIVERS = ("test-arc-ok", "test-arc-hold", "test-arc-busy", "test-arc-silent",
                      "test-arc-recover", "test-arc-scaip", "test-arc-cancel", "test-arc-slowdb",
                      "test-arc-dbaway", "test-arc-sipslow")
ARC_TEST_TIMING = {"answer_timeout_s": 1.0, "accept_within_s": 3.0,
                   "hold_resend_s": (0.2, 0.4), "retry_s": 0.5}


def write_sinks(receiver: Any, folder: Path, node: NodeEndpoint | None = None,
                arcs: dict[str, tuple[Any, Any]] | None = None) -> Path:
    """config/sinks.toml for the test gateway: one webhook per test huvudman, pointing at
    `receiver` (simulator.receivers.RecordingReceiver), each with its own secret file; one
    for `node`'s huvudman, pointing at the node; and an `[[arc]]` per entry of `arcs`
    (receiver name -> simulated primary and secondary ARC)."""
    lines = []
    for name, (primary, secondary) in (arcs or {}).items():
        timing = "".join(f"{k} = {list(v) if isinstance(v, tuple) else v}\n"
                         for k, v in ARC_TEST_TIMING.items())
        lines.append(f'[[arc]]\nreceiver = "{name}"\ncid = "4600000001"\n'
                     f'primary = "udp://{primary.host}:{primary.udp_port}"\n'
                     f'secondary = "udp://{secondary.host}:{secondary.udp_port}"\n{timing}')
    if node is not None:
        lines.append(f'[[webhook]]\nhuvudman = "{node.huvudman}"\nurl = "{node.url}"\n'
                     f'secret_file = "{node.secret_file}"\nbatch_max = 50\ntimeout_s = 2.0\n')
    for code in DELIVERY_TEST_HUVUDMAN:
        secret = f"test-secret-{code}-{uuid.uuid4().hex}"
        (folder / f"{code}.secret").write_text(secret)
        receiver.endpoint(code, secret.encode())
        lines.append(f'[[webhook]]\nhuvudman = "{code}"\nurl = "{receiver.url(code)}"\n'
                     f'secret_file = "{code}.secret"\nbatch_max = 50\ntimeout_s = 1.0\n')
    path = folder / "sinks.toml"
    path.write_text("\n".join(lines))
    return path


async def send_native(gateway: RunningGateway, device: FakeDevice, body: bytes) -> list[uuid.UUID]:
    """POST a native message as `device`; the ids the gateway stored as new."""
    async with httpx.AsyncClient(base_url=gateway.http) as client:
        answer = await client.post(f"/v1/devices/{device.id}/readings", content=body,
                                   headers={"Authorization": f"Bearer {device.token}"})
    assert answer.status_code == 200, answer.text
    return [uuid.UUID(i) for i in answer.json()["accepted"]]


def native_weights(n: int, start: datetime, value: float) -> bytes:
    """`n` weight readings a minute apart from `start`, `value` kg rising by 0.1."""
    return native.encode_message([
        native.encode_reading("weight", start + timedelta(minutes=i), value=value + i / 10,
                              unit="kg") for i in range(n)])


def self_signed_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A throwaway CA (a day long) for TLS tests."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def tls_files(folder: Path, ca_name: str = "test CA") -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate it signed for localhost and 127.0.0.1, written
    to `folder`: (ca.pem, server.pem, server.key)."""
    ca_key, ca = self_signed_ca(ca_name)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
              .issuer_name(ca.subject).public_key(key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([
                  x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                  critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(pem(ca))
    paths[1].write_bytes(pem(server))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths
