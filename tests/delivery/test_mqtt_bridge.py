"""The MQTT bridge sink end to end: readings a device sends to the running test gateway are
published, QoS 1, signed, to a second real Mosquitto playing a huvudman's broker, where a
consumer with a persistent session gets each event id once; through the broker being away,
no subscriber yet, credentials and TLS; bad `[[mqtt]]` entries refuse start-up.

The session gateway's own dispatcher has no sink for the huvudmän used here (BRIDGE_TEST_*),
so it never claims their deliveries: each test runs its own Dispatcher against the same
database, with the test gateway's short backoff and breaker settings."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from adapters import native
from gateway.crypto import KeySuite, Opener, WrappedKey
from gateway.crypto.subject import open_subject, subject_digest
from gateway.delivery import wire
from gateway.delivery.dispatcher import Dispatcher
from gateway.delivery.mqtt_bridge import MqttBridgeSink
from gateway.delivery.sink_config import SinkConfigError, build_sinks, read_sinks
from gateway.demo import embedded
from gateway.ingest.sealing import CopyPlaintext
from gateway.store.connector import Store
from tests.support import (
    FakeDevice,
    Keys,
    RunningGateway,
    native_weights,
    register_device,
    send_native,
    tls_files,
    wait_until,
)

pytestmark = pytest.mark.integration
BASE = datetime(2026, 11, 12, 6, tzinfo=UTC)
PREFIX = "test-hmc"
# Huvudmän no other test delivers to: only the dispatchers started here claim them.
BRIDGE_TEST_SIGNED, BRIDGE_TEST_OUTAGE, BRIDGE_TEST_NO_SUB, BRIDGE_TEST_AUTH, \
    BRIDGE_TEST_TLS = "1470", "1471", "1472", "1473", "1465"

needs_mosquitto = pytest.mark.skipif(embedded.mosquitto_binary() is None,
                                     reason="mosquitto is not installed")


# --- the huvudman's side: a broker and a consumer ---------------------------------------------

@dataclass
class Broker:
    """A Mosquitto of the huvudman's, stoppable and restartable on the same port and store."""

    folder: Path
    port: int
    extra: str = ""
    _stop: embedded.Stop | None = None

    def start(self) -> None:
        if not self.extra:
            self._stop = embedded.start_mosquitto(self.folder, self.port).stop
            return
        # start_mosquitto has no way in for auth or TLS settings: same binary, own config.
        binary = embedded.mosquitto_binary()
        assert binary is not None
        user = "user root\n" if os.geteuid() == 0 else ""
        conf = self.folder / "mosquitto.conf"
        conf.write_text(f"persistence false\n{user}log_dest file {self.folder}/mosquitto.log\n"
                        f"{self.extra}")
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        embedded.wait_for_port(self.port)

        def stop() -> None:
            proc.terminate()
            proc.wait(5)

        self._stop = stop

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None


@pytest.fixture
def huvudman_broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path / "huvudman-broker", embedded.free_port())
    broker.folder.mkdir()
    broker.start()
    yield broker
    broker.stop()


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    properties: dict[str, str]
    retained: bool = False  # sent from the broker's retained store on subscribing


@dataclass
class Consumer:
    """The huvudman's consumer as docs/delivery.md asks for one: persistent session, QoS 1."""

    port: int
    code: str
    username: str | None = None
    password: str | None = None
    received: list[Received] = field(default_factory=list)
    client: mqtt.Client | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                  client_id=f"consumer-{self.code}-{uuid.uuid4().hex[:6]}")
        if self.username:
            self.client.username_pw_set(self.username, self.password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", self.port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe(f"{PREFIX}/{self.code}/#", qos=1)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        props = dict(getattr(msg.properties, "UserProperty", []))
        with self._lock:
            self.received.append(Received(msg.topic, bytes(msg.payload), props,
                                          bool(msg.retain)))

    def by_event(self) -> dict[uuid.UUID, list[Received]]:
        with self._lock:
            got = [r for r in self.received if "/subject/" not in r.topic]
        out: dict[uuid.UUID, list[Received]] = {}
        for r in got:
            out.setdefault(msgspec.json.decode(r.payload, type=wire.Item).event_id, []).append(r)
        return out

    def subjects(self) -> list[Received]:
        """The `subject` messages (format 2), in the order they came."""
        with self._lock:
            return [r for r in self.received if "/subject/" in r.topic]

    async def has(self, ids: Sequence[uuid.UUID], timeout: float = 15.0) -> None:
        async def arrived() -> bool:
            return set(ids) <= self.by_event().keys()

        assert await wait_until(arrived, timeout), \
            f"{len(set(ids) - self.by_event().keys())} of {len(ids)} never arrived"

    async def acked(self) -> None:
        """Until the broker has our PUBACKs for everything received so far: a QoS 1 publish
        of our own, answered on the same connection after them (the broker reads a
        connection's packets in order). Without it a broker stopped right after the last
        message redelivers it after the restart, as QoS 1 may."""
        assert self.client is not None
        sent = self.client.publish(f"{PREFIX}-acked/{self.code}", b"", qos=1)
        await asyncio.to_thread(sent.wait_for_publish, 5.0)
        assert sent.is_published()

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()


@pytest.fixture
def consumers() -> Iterator[list[Consumer]]:
    started: list[Consumer] = []
    yield started
    for c in started:
        c.stop()


def _consumer(consumers: list[Consumer], port: int, code: str, **auth: str) -> Consumer:
    consumer = Consumer(port, code, **auth)
    consumer.start()
    consumers.append(consumer)
    time.sleep(0.3)  # subscribed before anything is published
    return consumer


# --- the gateway's side -----------------------------------------------------------------------

def _sinks_toml(folder: Path, code: str, port: int, **fields: str | bool | int) -> Path:
    secret = folder / f"{code}.secret"
    secret.write_text(f"test-mqtt-secret-{uuid.uuid4().hex}")
    entry = {"huvudman": code, "url": f"mqtt://127.0.0.1:{port}", "topic_prefix": PREFIX,
             "secret_file": secret.name, "batch_max": 50, "timeout_s": 2.0, **fields}
    lines = ["[[mqtt]]"] + [f"{k} = {_toml(v)}" for k, v in entry.items()]
    path = folder / "sinks.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: str | bool | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int | float) else f'"{value}"'


def _secret(sinks_toml: Path, code: str) -> bytes:
    return (sinks_toml.parent / f"{code}.secret").read_text().strip().encode()


@asynccontextmanager
async def _dispatching(database_url: str, sinks: dict[str, MqttBridgeSink]) -> \
        AsyncIterator[Dispatcher]:
    own = await Store.connect(database_url, max_size=3)
    dispatcher = Dispatcher(own, sinks, backoff_base_s=0.05, breaker_open_s=1.0, poll_s=0.05,
                            listen=False)
    dispatcher.start()
    try:
        yield dispatcher
    finally:
        await dispatcher.stop()
        await own.close()


def _bridge(sinks_toml: Path, code: str) -> MqttBridgeSink:
    sink = build_sinks(sinks_toml)[code]
    assert isinstance(sink, MqttBridgeSink)
    return sink


async def _device(store: Store, gateway: RunningGateway, code: str) -> FakeDevice:
    device = await register_device(store, assignments=[
        {"huvudman": code, "subject_ref": f"test-mqtt-bridge-{code}", "legal_basis": "SoL",
         "kinds": ["weight", "alarm"], "valid_from": "2026-01-01T00:00:00+00:00"}])
    await gateway.knows(device)
    return device


async def _send(gateway: RunningGateway, device: FakeDevice, body: bytes) -> list[uuid.UUID]:
    return await send_native(gateway, device, body)


def _weights(n: int, start: datetime = BASE, value: float = 60.0) -> bytes:
    return native_weights(n, start, value)


async def _rows(store: Store, ids: Sequence[uuid.UUID]) -> list[tuple[str, str | None]]:
    """The huvudman's deliveries of these events (an unrouted alarm has one more, HMC's)."""
    rows = await store.pool.fetch(
        "SELECT state, last_error FROM delivery WHERE event_id = ANY($1)"
        " AND huvudman IS NOT NULL", ids)
    # Rows not yet tried have no last_error: sort them with "" (None and str do not compare).
    return sorted(((r["state"], r["last_error"]) for r in rows),
                  key=lambda row: (row[0], row[1] or ""))


async def _all_done(store: Store, ids: Sequence[uuid.UUID]) -> bool:
    return [s for s, _ in await _rows(store, ids)] == ["done"] * len(ids)


def _paho_threads(sink: MqttBridgeSink) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("paho-mqtt-client-")
            and sink._client_id in t.name]


# --- tests ------------------------------------------------------------------------------------

@needs_mosquitto
async def test_readings_and_alarms_arrive_once_each_signed_sealed_and_on_their_topics(
        gateway: RunningGateway, store: Store, keys: Keys, database_url: str,
        huvudman_broker: Broker, consumers: list[Consumer], tmp_path: Path) -> None:
    code = BRIDGE_TEST_SIGNED
    consumer = _consumer(consumers, huvudman_broker.port, code)
    sinks_toml = _sinks_toml(tmp_path, code, huvudman_broker.port)
    sink = _bridge(sinks_toml, code)
    device = await _device(store, gateway, code)
    async with _dispatching(database_url, {code: sink}):
        ids = await _send(gateway, device, _weights(60, value=91.0))  # two requests of 50
        (alarm,) = await _send(gateway, device, native.encode_message([], alarms=[
            {"type": "fall", "priority": 9, "time": "2026-11-12T03:12:00+00:00"}]))
        await consumer.has([*ids, alarm])
        assert await wait_until(lambda: _all_done(store, [*ids, alarm]))
        await asyncio.sleep(0.3)  # anything sent twice would be here by now
        assert sink.connected
    assert not _paho_threads(sink)  # the dispatcher's stop closed the sink, thread and all

    got = consumer.by_event()
    assert sorted(got) == sorted([*ids, alarm])
    assert all(len(copies) == 1 for copies in got.values())
    assert {got[i][0].topic for i in ids} == {f"{PREFIX}/{code}/bulk/weight"}
    assert got[alarm][0].topic == f"{PREFIX}/{code}/alarm/alarm"
    secret, now = _secret(sinks_toml, code), time.time()
    for (message,) in got.values():
        assert message.payload.count(b"\n") == 1  # one webhook NDJSON line, as is
        assert wire.verify(secret, message.properties.get(wire.TIMESTAMP_HEADER),
                           message.properties.get(wire.SIGNATURE_HEADER), message.payload,
                           now) is None
        assert wire.verify(b"another huvudman's secret",
                           message.properties[wire.TIMESTAMP_HEADER],
                           message.properties[wire.SIGNATURE_HEADER], message.payload,
                           now) is not None
    # What travels is the sealed copy: the huvudman opens it with its private key alone.
    item = msgspec.json.decode(got[ids[0]][0].payload, type=wire.Item)
    assert (item.huvudman, item.kind, item.lane) == (code, "weight", "bulk")
    plain = Opener(code, [keys.private(code)]).open(
        item.envelope_bytes, event_id=item.event_id, kind=item.kind,
        wrapped_key=item.wrapped_key)
    copy = msgspec.json.decode(plain, type=CopyPlaintext)
    assert copy.event.values[0].value == 91.0
    assert b"91.0" not in got[ids[0]][0].payload

    # Format 2: the subject reference came once per delivery cycle that was sending before any
    # had its answer (two bulk cycles and the alarm lane's run side by side), before the first
    # item, retained on its own topic, and is the one the copies name.
    [subject] = copy.subjects
    first = consumer.subjects()
    assert 1 <= len(first) <= 3
    assert first[0].topic == f"{PREFIX}/{code}/subject/{subject.assignment_id}"
    assert consumer.received.index(first[0]) < min(
        consumer.received.index(got[i][0]) for i in ids)
    [line] = [x for x in wire.decode_batch(first[0].payload)
              if isinstance(x, wire.SubjectLine)]
    assert subject_digest(line.sealed_bytes) == subject.digest
    assert open_subject(keys.private(code), subject.assignment_id, line.sealed_bytes) == \
        f"test-mqtt-bridge-{code}"
    later = _consumer(consumers, huvudman_broker.port, code)  # subscribes after the fact
    assert await wait_until(lambda: later.subjects(), timeout=5)
    assert [(r.topic, r.retained) for r in later.subjects()] == [(first[0].topic, True)]


@needs_mosquitto
async def test_broker_away_for_a_while_then_back_gets_everything_repeats_only_exact(
        gateway: RunningGateway, store: Store, database_url: str, huvudman_broker: Broker,
        consumers: list[Consumer], tmp_path: Path) -> None:
    code = BRIDGE_TEST_OUTAGE
    consumer = _consumer(consumers, huvudman_broker.port, code)
    sink = _bridge(_sinks_toml(tmp_path, code, huvudman_broker.port), code)
    device = await _device(store, gateway, code)
    async with _dispatching(database_url, {code: sink}) as dispatcher:
        before = await _send(gateway, device, _weights(10))
        await consumer.has(before)
        # `before` is done at both ends of the broker (the bridge has its PUBACKs: the outbox
        # says done; the broker has the consumer's): only what is in flight at the stop may
        # come again, as QoS 1 allows.
        assert await wait_until(lambda: _all_done(store, before), 10)
        await consumer.acked()
        # Stopped while the next readings are on their way: some may be in flight.
        during = await _send(gateway, device, _weights(30, BASE + timedelta(hours=1)))
        huvudman_broker.stop()
        during += await _send(gateway, device, _weights(30, BASE + timedelta(hours=2)))
        await asyncio.sleep(2.0)
        assert not sink.connected
        assert dispatcher.breaker(sink.name).is_open
        waiting = await _rows(store, during)
        assert {s for s, _ in waiting} <= {"pending", "done"}
        assert "pending" in {s for s, _ in waiting}
        assert {e for s, e in waiting if s == "pending"} <= {
            "connection failed", "circuit open", "timeout"}
        huvudman_broker.start()  # same port and store: the consumer's session is still there
        await consumer.has([*before, *during], timeout=20)
        assert await wait_until(lambda: _all_done(store, [*before, *during]), 10)
        assert sink.connected
    got = consumer.by_event()
    assert set(got) == {*before, *during}
    assert all(len({r.payload for r in copies}) == 1 for copies in got.values())
    assert all(len(got[i]) == 1 for i in before)


@needs_mosquitto
async def test_items_wait_until_the_huvudman_subscribes(
        gateway: RunningGateway, store: Store, database_url: str, huvudman_broker: Broker,
        consumers: list[Consumer], tmp_path: Path) -> None:
    """A broker with nobody subscribed drops what it acknowledges (0x10 in v5): with
    require_subscriber (the default) the items stay in the outbox until someone subscribes."""
    code = BRIDGE_TEST_NO_SUB
    sink = _bridge(_sinks_toml(tmp_path, code, huvudman_broker.port), code)
    device = await _device(store, gateway, code)
    async with _dispatching(database_url, {code: sink}):
        ids = await _send(gateway, device, _weights(3))

        async def refused() -> bool:
            return await _rows(store, ids) == [("pending", "no matching subscribers")] * 3

        assert await wait_until(refused)
        consumer = _consumer(consumers, huvudman_broker.port, code)
        await consumer.has(ids, timeout=20)
        assert await wait_until(lambda: _all_done(store, ids))


def _password_broker(folder: Path, users: dict[str, str]) -> Broker:
    passwd = folder / "passwd"
    for n, (user, password) in enumerate(users.items()):
        subprocess.run(["/usr/bin/mosquitto_passwd", "-b", *(["-c"] if n == 0 else []),
                        str(passwd), user, password], check=True, capture_output=True)
    passwd.chmod(0o600)
    port = embedded.free_port()
    return Broker(folder, port, f"listener {port} 127.0.0.1\nallow_anonymous false\n"
                                f"password_file {passwd}\n")


@needs_mosquitto
@pytest.mark.skipif(not Path("/usr/bin/mosquitto_passwd").exists(),
                    reason="/usr/bin/mosquitto_passwd is missing: cannot write a password file")
async def test_credentials_from_file_work_and_a_wrong_password_is_refused_not_dead_lettered(
        gateway: RunningGateway, store: Store, database_url: str, consumers: list[Consumer],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = BRIDGE_TEST_AUTH
    gateway_password = f"pw-{uuid.uuid4().hex}"
    broker = _password_broker(tmp_path, {"gateway": gateway_password, "consumer": "c-pw"})
    broker.start()
    try:
        (tmp_path / "mqtt.password").write_text(gateway_password + "\n")
        good = _bridge(_sinks_toml(tmp_path, code, broker.port, username="gateway",
                                   password_file="mqtt.password"), code)
        monkeypatch.setenv("TEST_WRONG_MQTT_PASSWORD", "not-the-password")
        wrong = _bridge(_sinks_toml(tmp_path, code, broker.port, username="gateway",
                                    password_env="TEST_WRONG_MQTT_PASSWORD"), code)
        try:
            answers = await wrong.send([_item(code)])
        finally:
            await wrong.aclose()
        assert [(a.verdict.value, a.reason, a.open_breaker) for a in answers] == [
            ("retry", "connection refused", True)]

        consumer = _consumer(consumers, broker.port, code, username="consumer",
                             password="c-pw")
        device = await _device(store, gateway, code)
        async with _dispatching(database_url, {code: good}):
            ids = await _send(gateway, device, _weights(4))
            await consumer.has(ids)
            assert await wait_until(lambda: _all_done(store, ids))
    finally:
        broker.stop()


def _item(code: str) -> wire.Item:
    """A wire item for a request that never reaches a receiver (the connection is refused)."""
    return wire.item(event_id=uuid.uuid4(), huvudman=code, kind="weight", event_type="reading",
                     measured_at=BASE, lane="bulk", envelope=b"sealed",
                     data_key=WrappedKey(key_id=b"k" * 16, huvudman=code,
                                         subject_pseudonym=b"p" * 32, epoch=202611,
                                         recipient_key_id=b"r" * 16,
                                         suite=next(iter(KeySuite)), wrapped=b"w"))


@needs_mosquitto
async def test_mqtts_verifies_the_broker_against_the_configured_ca(
        gateway: RunningGateway, store: Store, database_url: str, consumers: list[Consumer],
        tmp_path: Path) -> None:
    code = BRIDGE_TEST_TLS
    ca, cert, key = tls_files(tmp_path, "test huvudman CA")
    tls_port, plain_port = embedded.free_port(), embedded.free_port()
    broker = Broker(tmp_path, plain_port,
                    f"listener {tls_port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\n"
                    f"listener {plain_port} 127.0.0.1\nallow_anonymous true\n")
    broker.start()
    try:
        embedded.wait_for_port(tls_port)
        url = f"mqtts://localhost:{tls_port}"
        untrusting = _bridge(_sinks_toml(tmp_path, code, tls_port, url=url), code)
        try:  # the system's CAs do not know the test CA: no connection, nothing sent
            answers = await untrusting.send([_item(code)])
        finally:
            await untrusting.aclose()
        assert [(a.verdict.value, a.reason) for a in answers] == [("retry", "connection failed")]

        consumer = _consumer(consumers, plain_port, code)
        sink = _bridge(_sinks_toml(tmp_path, code, tls_port, url=url, ca_file=ca.name), code)
        device = await _device(store, gateway, code)
        async with _dispatching(database_url, {code: sink}):
            ids = await _send(gateway, device, _weights(3))
            await consumer.has(ids)
            assert await wait_until(lambda: _all_done(store, ids))
    finally:
        broker.stop()


@pytest.mark.parametrize(("entry", "refusal"), [
    ('url = "https://broker.example"', r"mqtt\.0\.url: String should match"),
    ('url = "mqtt://broker.example:99999"', r"mqtt\.0\.url: Value error, Port out of range"),
    ('url = "mqtt://gw:pw@broker.example"', r"mqtt\.0\.url: String should match"),
    ('topic_prefix = "hmc/+/x"', r"mqtt\.0\.topic_prefix: String should match"),
    ('topic_prefix = "$SYS"', r"mqtt\.0\.topic_prefix: String should match"),
    ('pasword_file = "x"', r"mqtt\.0\.pasword_file: Extra inputs are not permitted"),
    ('batch_max = 0', r"mqtt\.0\.batch_max: Input should be greater than or equal to 1"),
    ('client_id = "has space"', r"mqtt\.0\.client_id: String should match"),
    ('password_env = "P"', r"mqtt\.0: Value error, password_file or password_env needs a "
                           r"username"),
    ('ca_file = "ca.pem"', r"mqtt\.0: Value error, ca_file needs an mqtts:// url"),
])
def test_a_bad_mqtt_entry_is_refused_naming_file_entry_and_field(
        tmp_path: Path, entry: str, refusal: str) -> None:
    path = tmp_path / "sinks.toml"
    key = entry.split(" = ")[0]
    base = {"huvudman": '"1480"', "url": '"mqtt://broker.example"', "secret_env": '"S"'}
    base[key] = entry.split(" = ", 1)[1]
    path.write_text("[[mqtt]]\n" + "".join(f"{k} = {v}\n" for k, v in base.items()))
    with pytest.raises(SinkConfigError, match=rf"sinks\.toml: {refusal}"):
        read_sinks(path)


def test_one_sink_per_huvudman_across_kinds_and_credentials_checked_at_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sinks.toml"
    path.write_text('[[webhook]]\nhuvudman = "1480"\nurl = "https://n.example"\n'
                    'secret_env = "S"\n\n[[mqtt]]\nhuvudman = "1480"\n'
                    'url = "mqtt://broker.example"\nsecret_env = "S"\n')
    with pytest.raises(SinkConfigError,
                       match=r"sinks\.toml: mqtt\.0: a second sink for 1480 \(the first is "
                             r"webhook\.0\)"):
        read_sinks(path)

    monkeypatch.setenv("TEST_MQTT_SECRET", "s")
    monkeypatch.delenv("TEST_MQTT_PASSWORD", raising=False)
    path.write_text('[[mqtt]]\nhuvudman = "1481"\nurl = "mqtt://broker.example"\n'
                    'secret_env = "TEST_MQTT_SECRET"\nusername = "gw"\n'
                    'password_env = "TEST_MQTT_PASSWORD"\n')
    with pytest.raises(SinkConfigError, match=r"sinks\.toml: mqtt\.0\.password_env: "
                                              r"TEST_MQTT_PASSWORD is not set"):
        build_sinks(path)
    path.write_text('[[mqtt]]\nhuvudman = "1481"\nurl = "mqtts://broker.example"\n'
                    'secret_env = "TEST_MQTT_SECRET"\nca_file = "missing-ca.pem"\n')
    with pytest.raises(SinkConfigError, match=r"sinks\.toml: mqtt\.0\.ca_file: cannot read "):
        build_sinks(path)
    (tmp_path / "not-a-ca.pem").write_text("not a certificate\n")
    path.write_text(path.read_text().replace("missing-ca.pem", "not-a-ca.pem"))
    with pytest.raises(SinkConfigError, match=r"mqtt\.0\.ca_file: .* holds no PEM certificate"):
        build_sinks(path)
    path.write_text('[[mqtt]]\nhuvudman = "1481"\nurl = "mqtt://broker.example"\n'
                    'secret_file = "no-such.secret"\n')
    with pytest.raises(SinkConfigError, match=r"mqtt\.0\.secret_file: cannot read "):
        build_sinks(path)
    # Built outside an event loop nothing connects yet (the first send() would).
    path.write_text('[[mqtt]]\nhuvudman = "1481"\nurl = "mqtt://broker.example"\n'
                    'secret_env = "TEST_MQTT_SECRET"\n')
    sink = build_sinks(path)["1481"]
    assert isinstance(sink, MqttBridgeSink) and sink.name == "mqtt:1481"
    assert not _paho_threads(sink)
