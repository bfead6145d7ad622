"""`gateway demo`: the whole system on one machine with nothing installed but Python.

Starts embedded PostgreSQL and MQTT unless DATABASE_URL / MQTT_URL point elsewhere, migrates,
loads config/ (the 50 huvudmän and a demo fleet), runs ingest and the simulator, and prints what
is happening and where to look. Ctrl-C stops everything in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rich.console import Console

from gateway.demo import embedded
from gateway.observability import logs
from gateway.ownership import key_management, registration
from gateway.roles.ingest import Runtime, serve
from gateway.settings import Settings
from gateway.store import privileges
from gateway.store.connector import Store
from gateway.store.migrate import migrate

console = Console()
CONFIG = embedded.CONFIG_DIR


def run_demo(*, interval_s: float, http_port: int) -> None:
    base = Settings()
    state = base.state_dir / "demo"
    logs.configure("console", logging.WARNING)
    services: list[embedded.Service] = []
    try:
        dsn, owner = base.database_url, base.migration_database_url
        own_postgres = not dsn
        if not dsn:
            console.print("starting embedded PostgreSQL (pgserver) …")
            pg = embedded.start_postgres(state / "pg")
            services.append(pg)
            dsn = owner = pg.url
        mqtt_url = base.mqtt_url
        if not mqtt_url:
            console.print("starting embedded MQTT broker (amqtt) …")
            broker = embedded.start_amqtt()
            services.append(broker)
            mqtt_url = broker.url
        sip_port = base.sip_port
        if "SIP_PORT" not in os.environ and sip_port and not embedded.port_free(sip_port):
            sip_port = embedded.free_port()  # 5060 is taken: the demo still runs
        settings = dataclasses.replace(base, database_url=dsn, migration_database_url=owner,
                                       mqtt_url=mqtt_url,
                                       http_port=http_port, mqtt_client_id="gateway-demo",
                                       sip_port=sip_port)
        asyncio.run(_main(settings, interval_s, own_postgres=own_postgres))
    finally:
        for service in reversed(services):
            with contextlib.suppress(Exception):
                service.stop()
        console.print("demo stopped")


async def _main(settings: Settings, interval_s: float, *, own_postgres: bool) -> None:
    assert settings.database_url and settings.mqtt_url
    owner = settings.migration_database_url or settings.database_url
    applied = await migrate(owner)
    console.print(f"schema: {', '.join(applied) if applied else 'up to date'}")
    if own_postgres:  # ingest runs as production should: a gateway_runtime member
        settings = dataclasses.replace(
            settings, database_url=await privileges.runtime_login(owner, "gateway_demo"))
    assert settings.database_url
    store = await Store.connect(settings.database_url)
    fleet_file = CONFIG / "demo" / "fleet.toml"
    config = registration.read_config(CONFIG / "huvudman.toml")
    fleet = registration.read_config(fleet_file)
    counts = await registration.apply_config(store, config)
    # Keys before assignments: a subject reference is sealed to its huvudman's key on entry.
    keys = settings.state_dir / "demo" / "keys"
    secret, quarantine = await key_management.provision(
        store, keys, [h.code for h in config.huvudman])
    os.environ["PSEUDONYM_SECRET_FILE"] = str(secret)
    settings = dataclasses.replace(settings, pseudonym_secret_file=secret,
                                   quarantine_public_key_file=quarantine)
    console.print(f"keys: a pair per huvudman in {keys / 'node'} (the nodes' side); ingest holds "
                  f"only the public keys and {keys / 'ingest'}")
    counts |= {k: v for k, v in (await registration.apply_config(store, fleet)).items() if v}
    console.print(f"registry loaded: {counts['huvudman']} huvudmän, {counts['device']} devices, "
                  f"{counts['assignment']} assignments")
    receivers = None
    # The user's own sinks win over the demo's receivers.
    if "SINKS_FILE" not in os.environ and settings.database_url:
        # The nodes are the huvudmän's side: their schema is out of gateway_runtime's reach.
        receivers = await DemoReceivers.start(owner, keys / "node",
                                           settings.state_dir / "demo")
        relay_public, relay_private = key_management.relay_paths(keys)
        settings = dataclasses.replace(settings, sinks_file=receivers.sinks_file,
                                       alarm_relay_public_key_file=relay_public,
                                       alarm_relay_private_key_file=relay_private)
    assert settings.database_url and settings.mqtt_url

    started: asyncio.Future[Runtime] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ingest = asyncio.create_task(serve(settings, install_signals=False, started=started,
                                       stop_event=stop))
    # If ingest cannot start (a bad setting, a port taken), say why rather than wait forever.
    either: list[asyncio.Future[Any]] = [started, ingest]
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    if not started.done():
        if receivers is not None:
            await receivers.stop()
        await store.close()
        ingest.result()  # raises what stopped it
        raise RuntimeError("ingest stopped before it started")
    http = f"http://{settings.http_host}:{settings.http_port}"
    sip = (settings.sip_host, settings.sip_port) if settings.sip_port else None
    console.print(f"[bold green]gateway running[/]\n"
                  f"  HTTP API + OpenAPI: {http}/docs\n"
                  f"  metrics:            {http}/metrics\n"
                  f"  readiness:          {http}/readyz\n"
                  f"  MQTT:               {settings.mqtt_url}  (topics devices/<id>/up/<format>)\n"
                  f"  SCAIP over SIP:     "
                  f"{f'{settings.sip_host}:{settings.sip_port} (UDP and TCP)' if sip else 'off'}\n"
                  f"  database:           {_safe(settings.database_url)}\n"
                  "Simulated devices send every "
                  f"{interval_s:g} s: native JSON over MQTT and HTTP, PCD-01 and PHD FHIR hubs, "
                  "Open mHealth, vendor GPS/night/medicine JSON, SCAIP alarm units over SIP. "
                  "Ctrl-C stops.")
    if receivers is not None:
        primary, secondary = receivers.arcs
        console.print(f"  region node (14):   {receivers.node.url}  → simulated FHIR server "
                      f"{receivers.fhir.url} (readings as PHD Observations)\n"
                      f"  Göteborg (1480):    signed webhook → {receivers.kommun.url(KOMMUN)}\n"
                      f"  alarm centre:       SCAIP/UDP primary {primary.host}:{primary.udp_port}"
                      f", secondary {secondary.host}:{secondary.udp_port} "
                      f"({', '.join(DEMO_ARC_RECEIVERS)})\n"
                      "  what happened to an alarm: gateway alarms list / history EVENT_ID")

    sim_stop = threading.Event()
    from simulator.run import run as run_simulator

    sim = asyncio.create_task(asyncio.to_thread(
        run_simulator, fleet_file, mqtt_url=settings.mqtt_url, http_url=http,
        interval_s=interval_s, stop=sim_stop, sip=sip))
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5)
            stored = await store.events.counts_by_type()
            queued = await store.outbox.pending_by_lane()
            # One line however wide, so that it can be followed with grep.
            console.print(f"stored events {stored or '{}'} · deliveries queued "
                          f"{queued or '{}'}" + (receivers.status() if receivers else ""),
                          soft_wrap=True, highlight=False)
    finally:
        sim_stop.set()
        tally = await sim
        console.print(f"simulator: sent {dict(tally.sent)}, confirmed {dict(tally.confirmed)}")
        stop.set()
        await ingest
        if receivers is not None:
            await receivers.stop()
        await store.close()


# Shown, not used: a huvudman that takes its items on its own broker instead of a webhook
# (docs/delivery.md, "MQTT bridge"); one sink per huvudman, so it would replace the webhook.
MQTT_SINK_EXAMPLE = """
# [[mqtt]]
# huvudman = "14"
# url = "mqtts://mqtt.region.example:8883"
# topic_prefix = "hmc-gateway"
# username = "hmc-gateway"
# password_file = "secrets/14.mqtt-password"
# secret_file = "secrets/14.secret"
# ca_file = "secrets/region-ca.pem"
"""


# The demo fleet's alarm routes that are alarm centres (the others, a night patrol and home
# health care, take alarms through their huvudman's own systems).
DEMO_ARC_RECEIVERS = ("demo-larmcentral-gbg", "demo-larmcentral-molndal",
                      "demo-larmcentral-skovde", "demo-larmcentral-kungalv")
KOMMUN = "1480"  # Göteborg: its webhook goes to a simulated kommun receiver


@dataclasses.dataclass
class DemoReceivers:
    """Where the demo delivers (docs/delivery.md): the region's huvudman node forwarding to a
    simulated FHIR server (docs/fhir-forwarding.md), a simulated kommun webhook receiver for
    Göteborg, and a simulated alarm centre pair (primary, secondary) for the fleet's
    alarm-centre routes; and the sinks file that points at them."""

    node: Any  # gateway.node.server.RunningNode
    fhir: Any  # simulator.fhir_server.FhirServer
    kommun: Any  # simulator.receivers.RecordingReceiver
    arcs: tuple[Any, Any]  # simulator.arc.ScaipArc: primary, secondary
    sinks_file: Path

    @classmethod
    async def start(cls, database_url: str, node_keys: Path, state: Path) -> DemoReceivers:
        from gateway.node.fhir_forward import load_fhir_config
        from gateway.node.server import load_config, start_node
        from simulator.arc import ScaipArc
        from simulator.fhir_server import FhirServer
        from simulator.receivers import RecordingReceiver

        fhir = FhirServer()
        await fhir.start()
        secret = state / "region-node.secret"
        secret.write_text(os.urandom(24).hex())
        port = embedded.free_port()
        # The demo fleet's subject references are not personnummer: a demo system says so.
        forwarding = load_fhir_config(
            url=fhir.url, patient_system="https://hmc.vgregion.se/fhir/sid/demo-subject")
        node = await start_node(load_config(
            huvudman="14", private_keys=[node_keys / "14.private.pem"], secret_file=secret,
            database_url=database_url, listen=f"127.0.0.1:{port}", fhir=forwarding))
        kommun = RecordingReceiver()
        await kommun.start()
        kommun_secret = state / f"{KOMMUN}.secret"
        kommun_secret.write_text(os.urandom(24).hex())
        kommun.endpoint(KOMMUN, kommun_secret.read_text().encode())
        primary, secondary = ScaipArc(hbi=1), ScaipArc(hbi=1)
        await primary.start()
        await secondary.start()
        arcs = "".join(
            f'[[arc]]\nreceiver = "{name}"\ncid = "4600000000"\n'
            f'primary = "udp://{primary.host}:{primary.udp_port}"\n'
            f'secondary = "udp://{secondary.host}:{secondary.udp_port}"\n\n'
            for name in DEMO_ARC_RECEIVERS)
        sinks = state / "sinks.toml"
        sinks.write_text(f'[[webhook]]\nhuvudman = "14"\nurl = "{node.url}/v1/deliveries"\n'
                         f'secret_file = "{secret.resolve()}"\n\n'
                         f'[[webhook]]\nhuvudman = "{KOMMUN}"\nurl = "{kommun.url(KOMMUN)}"\n'
                         f'secret_file = "{kommun_secret.resolve()}"\n\n'
                         + arcs + MQTT_SINK_EXAMPLE)
        return cls(node, fhir, kommun, (primary, secondary), sinks)

    def status(self) -> str:
        accepted = sum(1 for arc in self.arcs for r in arc.received
                       if r.mty == "ME" and r.snu == 0)
        kommun = len(self.kommun.endpoints[KOMMUN].stored)
        return (f" · region FHIR: {len(self.fhir.stored)} Observations · Göteborg webhook: "
                f"{kommun} items · alarm centre: {accepted} alarms accepted")

    async def stop(self) -> None:
        for arc in self.arcs:
            await arc.stop()
        await self.kommun.stop()
        await self.node.stop()
        await self.fhir.stop()


def _safe(url: str) -> str:
    """The URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


