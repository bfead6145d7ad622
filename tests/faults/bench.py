"""The stage of every fault run: the shipped broker (TLS, users, ACL, persistence), `gateway
serve` as its own process connected as in production, a recording receiver as the owners'
webhook, and devices under steady load recording what they sent (simulator/steady_load.py). A
run ends with `settle`: the load drains, then the reconciliation (simulator/reconcile.py) is
printed and returned."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console

from gateway.store.connector import Store
from gateway.tls import client_context
from simulator.arc import ScaipArc
from simulator.receivers import RecordingReceiver
from simulator.reconcile import Ledger, Reconciliation, reconcile
from simulator.steady_load import Broker, Device, SteadyLoad
from tests.broker import ShippedBrokerProcess
from tests.processes import IngestProcess
from tests.support import Keys, register_device, write_sinks

OWNER = "1440"  # a delivery test huvudman: its webhook is the bench's receiver
ARC_RECEIVER = "fault-arc"  # the alarm route of the bench's alarm devices
GATEWAY_USERS = {"gateway-ingest": f"fault-up-{uuid.uuid4().hex}",
                 "gateway-ingest-alarm": f"fault-alarm-{uuid.uuid4().hex}"}
console = Console(width=120)


@dataclass
class FaultBench:
    folder: Path
    store: Store
    broker: ShippedBrokerProcess
    receiver: RecordingReceiver
    gateway: IngestProcess
    ledger: Ledger
    load: SteadyLoad
    devices: list[Device]

    async def start_gateway(self, **env: str) -> None:
        await asyncio.to_thread(self.gateway.start, **env)

    async def kill_gateway(self) -> None:
        await asyncio.to_thread(self.gateway.kill)

    def take_over(self) -> None:
        """What an attacker holding a device's credential tries: the gateway's client ids, a
        clean session. The shipped broker ties client ids to users (issue 11, point 1)."""
        device = self.devices[0]
        for client_id in GATEWAY_USERS:
            attacker = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                   clean_session=True, protocol=mqtt.MQTTv311)
            attacker.username_pw_set(device.id, device.token)
            attacker.tls_set_context(client_context(self.broker.broker.ca_file))
            attacker.connect("127.0.0.1", self.broker.broker.port)
            attacker.loop_start()
            time.sleep(0.5)
            attacker.disconnect()
            attacker.loop_stop()

    def delivered(self) -> set[uuid.UUID]:
        return set(self.receiver.endpoints[OWNER].stored)

    async def settle(self, title: str, *, timeout_s: float = 120.0) -> Reconciliation:
        """Stop the load, let what is unacknowledged be sent again, wait until everything
        acknowledged is stored and delivered (or `timeout_s`), and reconcile."""
        await asyncio.to_thread(self.load.stop, timeout_s / 2)
        deadline = time.monotonic() + timeout_s
        result = await reconcile(self.ledger, self.store, self.delivered())
        while not result.ok and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            result = await reconcile(self.ledger, self.store, self.delivered())
        console.print(result.table(title))
        print(f"reconciliation {title}: {result.line()}")
        return result


async def _fleet(store: Store, mqtt_devices: int, http_devices: int,
                 alarm_devices: int) -> list[Device]:
    devices = []
    for n in range(mqtt_devices + http_devices):
        fake = await register_device(store, assignments=[{
            "huvudman": OWNER, "subject_ref": f"test-fault-19121212-{n}", "legal_basis": "SoL",
            "kinds": ["weight"], "valid_from": "2026-01-01T00:00:00+00:00"}])
        devices.append(Device(fake.id, fake.token, "mqtt" if n < mqtt_devices else "http"))
    for n in range(alarm_devices):  # alternately MQTT (the alarm channel) and HTTP
        fake = await register_device(store, device_type="gps_alarm", assignments=[{
            "huvudman": OWNER, "subject_ref": f"test-fault-alarm-19121212-{n}",
            "legal_basis": "SoL", "kinds": ["alarm"], "alarm_route": ARC_RECEIVER,
            "valid_from": "2026-01-01T00:00:00+00:00"}])
        devices.append(Device(fake.id, fake.token, "mqtt" if n % 2 == 0 else "http", "alarm"))
    return devices


@asynccontextmanager
async def fault_bench(folder: Path, store: Store, database_url: str, keys: Keys, *,
                      mqtt_devices: int = 4, http_devices: int = 2, alarm_devices: int = 0,
                      arcs: tuple[ScaipArc, ScaipArc] | None = None, interval_s: float = 0.1,
                      **env: str) -> AsyncIterator[FaultBench]:
    """`alarm_devices` raise alarms routed to `arcs` (primary, secondary)."""
    devices = await _fleet(store, mqtt_devices, http_devices, alarm_devices)
    broker = ShippedBrokerProcess(folder / "broker",
                                  GATEWAY_USERS | {d.id: d.token for d in devices})
    shipped = await asyncio.to_thread(broker.start)
    receiver = RecordingReceiver()
    await receiver.start()
    sinks = write_sinks(receiver, folder, arcs={ARC_RECEIVER: arcs} if arcs else None)
    gateway = IngestProcess({
        "DATABASE_URL": database_url,
        "MQTT_URL": shipped.url("gateway-ingest", GATEWAY_USERS["gateway-ingest"]),
        "MQTT_ALARM_URL": shipped.url("gateway-ingest-alarm",
                                      GATEWAY_USERS["gateway-ingest-alarm"]),
        "MQTT_CA_FILE": str(shipped.ca_file), "SINKS_FILE": str(sinks),
        "DELIVERY_BACKOFF_BASE_S": "0.05", "DELIVERY_BREAKER_OPEN_S": "1.0",
        "ALARM_RELAY_PUBLIC_KEY_FILE": str(keys.relay_public),
        "ALARM_RELAY_PRIVATE_KEY_FILE": str(keys.relay_private),
        **keys.env(), **env}, log=folder / "gateway.log")
    ledger = Ledger()
    load = SteadyLoad(ledger, devices, broker=Broker("127.0.0.1", shipped.port, shipped.ca_file),
                      http_url=gateway.url, interval_s=interval_s)
    bench = FaultBench(folder, store, broker, receiver, gateway, ledger, load, devices)
    try:
        await bench.start_gateway()
        load.start()
        yield bench
    finally:
        await asyncio.to_thread(load.stop, 0)
        if gateway.proc is not None and gateway.proc.poll() is None:
            await asyncio.to_thread(gateway.kill)
        await receiver.stop()
        await asyncio.to_thread(broker.stop)
