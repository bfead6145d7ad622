"""Alarm latency under load: device publish to receipt at the alarm centre (SCAIP over SIP).

One run, on this machine, with broker, database, gateway, receiver and publishers sharing its
cores:
1. a fresh database and a Mosquitto started from the project's own configuration (the helpers
   of bench/ingest_drain.py); N devices assigned to one huvudman (14) for weight and alarm,
   with an alarm route;
2. a simulated alarm centre (simulator/arc.py, answering snu=0) in a process of its own
   (bench/arc_process.py), and a RecordingReceiver (simulator/receivers.py) as the huvudman's
   signed webhook on a thread of this process; a sinks.toml naming them; `gateway serve` as a
   subprocess (two with --alarm-process);
3. background load: a windowed QoS 1 publisher paced at --rate weight readings/s;
4. alarm probes: a client in a process of its own (bench/probe_process.py) publishes native
   alarms at --alarms-per-s, each with its own time and so its own event id; the publish time
   is taken there and the receipt time where the ARC (bench/arc_process.py) reads the `<mrq>`
   (matched by its ref, derived from the event id), and also where the webhook receives the
   huvudman's copy;
5. every second the outbox is sampled (pending deliveries), to see whether bulk delivery keeps
   up with ingest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import paho.mqtt.client as mqtt

from adapters import native, scaip
from bench.ingest_drain import (
    RESULTS,
    ROOT,
    _client,
    _count_and_drop,
    _create_session,
    _prepare_database,
)
from gateway.delivery import wire
from gateway.delivery.scaip_alarm import ref_for
from gateway.demo import embedded
from gateway.ownership import registration
from gateway.store.connector import Store
from simulator.receivers import RecordingReceiver

HUVUDMAN = "14"
ARC_RECEIVER = "bench-arc"
CLIENT_ID = "bench-alarm-gateway"
TARGETS_MS = {"p50": 5.0, "p99": 25.0, "max": 250.0}


# --- the receiver, on its own event loop in a thread of this process ---------------------------

class ArcProcess:
    """The simulated alarm centre (bench/arc_process.py) in a process of its own."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.arc_process"], cwd=ROOT,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.udp_port = int(self.proc.stdout.readline().split()[1])

    def stop(self) -> dict[str, float]:
        """Ends it; when each alarm (`mty=ME`) arrived, by ref (time.monotonic)."""
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=30)
        rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        return {r["ref"]: r["at"] for r in rows if r["mty"] == "ME" and r["ref"]}


class ReceiverThread:
    """The huvudman's webhook, on its own event loop in a thread."""

    def __init__(self) -> None:
        self.receiver = RecordingReceiver()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="receiver",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.receiver.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def write_sinks(receiver: RecordingReceiver, arc: ArcProcess, folder: Path) -> tuple[Path, Path]:
    """Two sinks files: the huvudman's webhook at the receiver (with its own secret file) and
    the alarm centre the devices' alarm route names; and the alarm centre alone (for a gateway
    process that only reads the alarm channel and so need not deliver bulk)."""
    secret = f"bench-secret-{uuid.uuid4().hex}"
    (folder / f"{HUVUDMAN}.secret").write_text(secret)
    receiver.endpoint(HUVUDMAN, secret.encode())
    arc_entry = (f'[[arc]]\nreceiver = "{ARC_RECEIVER}"\ncid = "4600000014"\n'
                 f'primary = "udp://{arc.host}:{arc.udp_port}"\n')
    path, arc_only = folder / "sinks.toml", folder / "arc-only.toml"
    path.write_text(f'[[webhook]]\nhuvudman = "{HUVUDMAN}"\nurl = "{receiver.url(HUVUDMAN)}"\n'
                    f'secret_file = "{HUVUDMAN}.secret"\nbatch_max = 500\ntimeout_s = 10.0\n\n'
                    + arc_entry)
    arc_only.write_text(arc_entry)
    return path, arc_only


# --- publishers ---------------------------------------------------------------------------------

class LoadPublisher(threading.Thread):
    """QoS 1 weight readings paced at `rate`/s with up to `window` in flight."""

    def __init__(self, host: str, port: int, devices: list[str], rate: int, seconds: float,
                 window: int) -> None:
        super().__init__(name="load-publisher", daemon=True)
        self.host, self.port, self.devices = host, port, devices
        self.rate, self.count, self.window = rate, int(rate * seconds), window
        self.published = 0  # handed to paho
        self.acked = 0  # PUBACK from the broker
        self.late_s = 0.0  # how far the publisher fell behind its schedule at worst
        self.elapsed = 0.0
        self._lock = threading.Lock()

    def run(self) -> None:
        c = _client(f"bench-load-{uuid.uuid4().hex[:6]}", clean=True)
        c.max_inflight_messages_set(self.window)
        c.max_queued_messages_set(self.window)

        def on_publish(*_: Any) -> None:
            with self._lock:
                self.acked += 1

        c.on_publish = on_publish
        c.connect(self.host, self.port)
        c.loop_start()
        base = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
        n = len(self.devices)
        started = time.perf_counter()
        for i in range(self.count):
            due = started + i / self.rate
            now = time.perf_counter()
            if due > now + 0.001:
                time.sleep(due - now)
            else:
                self.late_s = max(self.late_s, now - due)
            at = base + timedelta(seconds=i // n)
            payload = native.encode_message(
                [native.encode_reading("weight", at, value=60 + (i % 400) / 10, unit="kg")])
            while c.publish(f"devices/{self.devices[i % n]}/up/native", payload,
                            qos=1).rc != mqtt.MQTT_ERR_SUCCESS:
                time.sleep(0.0005)  # the window is full: wait for acks
            self.published += 1
        self.elapsed = time.perf_counter() - started
        deadline = time.monotonic() + 30
        while self.acked < self.published and time.monotonic() < deadline:
            time.sleep(0.01)
        c.disconnect()
        c.loop_stop()


class ProbeProcess:
    """The alarm probes (bench/probe_process.py) in a process of their own, at normal priority:
    native alarms at `per_s`, each with its own time and so its own event id."""

    def __init__(self, host: str, port: int, devices: list[str], per_s: float,
                 seconds: float, channel: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.probe_process", host, str(port), channel, str(per_s),
             str(seconds), *devices], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True)
        assert self.proc.stdout is not None and self.proc.stdin is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the alarm probes did not connect")
        # id -> (time.monotonic, time.time) at publish
        self.sent: dict[uuid.UUID, tuple[float, float]] = {}

    def start(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def join(self) -> None:
        out, _ = self.proc.communicate(timeout=600)
        for line in out.splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                self.sent[uuid.UUID(row["event_id"])] = (row["mono"], row["wall"])


async def _register_units(dsn: str, count: int) -> list[str]:
    """SCAIP units assigned for alarms to the bench huvudman, routed to the bench centre;
    returns `CID:PASSWORD` for each, as bench/probe_process.py takes them."""
    cids = [f"4690{n:06d}" for n in range(count)]
    passwords = {cid: f"bench-unit-{uuid.uuid4().hex}" for cid in cids}
    store = await Store.connect(dsn)
    try:
        await registration.apply_config(store, registration.ConfigFile(
            device=[registration.DeviceSpec(id=scaip.device_id(cid, None), type="gps_alarm",
                                            token=passwords[cid]) for cid in cids],
            assignment=[registration.AssignmentSpec(
                device=scaip.device_id(cid, None), huvudman=HUVUDMAN,
                subject_ref=f"bench-unit-{cid}", legal_basis="HSL", kinds=["alarm"],
                valid_from=datetime(2026, 1, 1, tzinfo=UTC), alarm_route=ARC_RECEIVER)
                for cid in cids]))
    finally:
        await store.close()
    return [f"{cid}:{passwords[cid]}" for cid in cids]


# --- the outbox, sampled every second ------------------------------------------------------------

class OutboxSampler(threading.Thread):
    def __init__(self, dsn: str) -> None:
        super().__init__(name="outbox-sampler", daemon=True)
        self.dsn = dsn
        self.samples: list[tuple[float, int]] = []  # (seconds since start, pending)
        self.stop_event = threading.Event()

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        started = time.perf_counter()
        try:
            while not self.stop_event.is_set():
                pending = await conn.fetchval(
                    "SELECT count(*) FROM delivery WHERE state = 'pending'")
                self.samples.append((round(time.perf_counter() - started, 2), int(pending)))
                await asyncio.sleep(1.0)
        finally:
            await conn.close()


def trend(samples: Sequence[tuple[float, int]]) -> dict[str, Any]:
    """Least-squares slope of pending over time, and whether the outbox grew."""
    if len(samples) < 3:
        return {"slope_per_s": None, "grew": None}
    xs = [t for t, _ in samples]
    ys = [p for _, p in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    # Grew: pending rises by more than one second of load over the run, or ends far above start.
    half = len(ys) // 2
    first, second = sum(ys[:half]) / half, sum(ys[half:]) / (len(ys) - half)
    return {"slope_per_s": round(slope, 1), "mean_first_half": round(first),
            "mean_second_half": round(second), "max": max(ys),
            "grew": bool(slope * (xs[-1] - xs[0]) > max(100.0, 0.25 * max(ys)))}


# --- gateway metrics ---------------------------------------------------------------------------

def scrape(url: str) -> str:
    return httpx.get(f"{url}/metrics", timeout=5).text


def _value(text: str, name: str, labels: str = "") -> float:
    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def histogram(text: str, name: str, labels: str = "", *, seconds: bool = True) -> dict[str, Any]:
    """Count, mean and bucket-interpolated p50/p99 of a Prometheus histogram (ms if `seconds`)."""
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if not line.startswith(f"{name}_bucket{{"):
            continue
        head, count = line.rsplit(" ", 1)
        if labels and labels not in head:
            continue
        le = head.split('le="', 1)[1].split('"', 1)[0]
        buckets.append((math.inf if le == "+Inf" else float(le), float(count)))
    total = _value(text, f"{name}_count", labels)
    if not total:
        return {"count": 0}

    def quantile(q: float) -> float:
        rank, lower, below = q * total, 0.0, 0.0
        for upper, cum in buckets:
            if cum >= rank:
                if math.isinf(upper):
                    return lower
                inside = cum - below
                return lower + (upper - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = upper, cum
        return lower

    scale, unit = (1000, "_ms") if seconds else (1, "")
    return {"count": int(total),
            f"mean{unit}": round(_value(text, f"{name}_sum", labels) / total * scale, 2),
            f"p50{unit}_approx": round(quantile(0.5) * scale, 1),
            f"p99{unit}_approx": round(quantile(0.99) * scale, 1)}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _summary(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    return {"p50": round(percentile(values, 0.5), 2), "p90": round(percentile(values, 0.9), 2),
            "p99": round(percentile(values, 0.99), 2), "max": round(max(values), 2)}


# --- the run -----------------------------------------------------------------------------------

async def _db_figures(dsn: str, alarm_ids: list[uuid.UUID]) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn)
    try:
        events = await conn.fetch("SELECT event_type, count(*) AS n FROM event GROUP BY 1")
        deliveries = await conn.fetch(
            "SELECT lane, state, count(*) AS n FROM delivery GROUP BY 1, 2")
        stamps = await conn.fetch(
            "SELECT e.event_id, extract(epoch FROM e.received_at)::float8 AS received,"
            " extract(epoch FROM e.stored_at)::float8 AS stored"
            " FROM event e WHERE e.event_id = ANY($1)", alarm_ids)
    finally:
        await conn.close()
    return {"events": {r["event_type"]: r["n"] for r in events},
            "deliveries": {f'{r["lane"]}.{r["state"]}': r["n"] for r in deliveries},
            "alarm_stamps": {r["event_id"]: (r["received"], r["stored"]) for r in stamps}}


def run(seconds: float, rate: int, alarms_per_s: float, devices: int,
        window: int, channel: str = "alarm", alarm_process: bool = False,
        delivery_process: bool = False, nice_bulk: int = 0) -> dict[str, Any]:
    device_ids = [f"BENCH-{i:05d}" for i in range(devices)]
    dsn, dbname, key_env = asyncio.run(_prepare_database(
        device_ids, Path(tempfile.mkdtemp(prefix="bench-keys-")),
        kinds=("weight", "alarm"), alarm_route=ARC_RECEIVER))
    sip_port = embedded.free_port()
    units = asyncio.run(_register_units(dsn, 50)) if channel == "sip" else []
    sip = {"SIP_PORT": str(sip_port), "SIP_HOST": "127.0.0.1"}
    broker = embedded.start_mosquitto(Path(tempfile.mkdtemp(prefix="bench-mosquitto-")))
    host, port_s = broker.url.removeprefix("mqtt://").split(":")
    port = int(port_s)
    receiver = ReceiverThread()
    receiver.start()
    arc = ArcProcess()
    at_arc: dict[str, float] = {}
    received: dict[uuid.UUID, tuple[float, float]] = {}

    def on_items(items: list[wire.Item]) -> None:
        at = (time.monotonic(), time.time())
        for item in items:
            if item.lane == "alarm" and item.event_id not in received:
                received[item.event_id] = at

    sinks, arc_only = write_sinks(receiver.receiver, arc,
                                  Path(tempfile.mkdtemp(prefix="bench-sinks-")))
    receiver.receiver.endpoints[HUVUDMAN].on_items = on_items
    http_port = embedded.free_port()
    url = f"http://127.0.0.1:{http_port}"
    _create_session(host, port, CLIENT_ID, "devices/+/up/+")
    common = os.environ | key_env | {"DATABASE_URL": dsn, "MQTT_URL": broker.url,
                                     "SIP_PORT": "off"}
    # The bulk instance at a lower scheduling priority than the alarm instance, as an
    # operator would set it (docs/operations.md): on a saturated machine the alarm process then
    # gets a core when an alarm arrives instead of waiting for a time slice.
    bulk_cmd = ["nice", "-n", str(nice_bulk)] if alarm_process and nice_bulk else []
    proc = subprocess.Popen(
        [*bulk_cmd, sys.executable, "-m", "gateway", "serve"], cwd=ROOT,
        env=common | {"MQTT_CLIENT_ID": CLIENT_ID, "HTTP_PORT": str(http_port),
                      "SINKS_FILE": str(sinks),
                      "MQTT_CHANNELS": "up" if alarm_process else "up,alarm",
                      "DELIVERY": "off" if delivery_process else "on"}
        | (sip if units and not alarm_process else {}),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    delivery_proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"], cwd=ROOT,
        env=common | {"MQTT_CHANNELS": "none", "HTTP_PORT": str(embedded.free_port()),
                      "SINKS_FILE": str(sinks), "SUPERVISION": "off"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if delivery_process else None
    alarm_url = f"http://127.0.0.1:{embedded.free_port()}"
    alarm_proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"], cwd=ROOT,
        env=common | {"MQTT_CLIENT_ID": f"{CLIENT_ID}-2",
                      "HTTP_PORT": alarm_url.rsplit(":", 1)[1],
                      "SINKS_FILE": str(arc_only), "MQTT_CHANNELS": "alarm",
                      "SUPERVISION": "off"} | (sip if units else {}),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if alarm_process else None
    sampler = OutboxSampler(dsn)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _value(scrape(url), "gateway_mqtt_connected") == 1:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "gateway did not start"
            time.sleep(0.1)
        time.sleep(2.0)  # let the dispatcher (and the alarm process) settle
        load = LoadPublisher(host, port, device_ids, rate, seconds, window)
        probes = (ProbeProcess("127.0.0.1", sip_port, units, alarms_per_s, seconds, channel)
                  if units else
                  ProbeProcess(host, port, device_ids[:50], alarms_per_s, seconds, channel))
        sampler.start()
        load_started = time.perf_counter()
        load.start()
        probes.start()
        load.join()
        probes.join()
        load_seconds = time.perf_counter() - load_started
        at_end = scrape(url)
        end_db = asyncio.run(_db_figures(dsn, []))
        # Let the last alarms arrive (and see how far the outbox drains in a few seconds).
        settle = time.monotonic() + 10
        while time.monotonic() < settle and len(received) < len(probes.sent):
            time.sleep(0.1)
        time.sleep(max(0.0, min(5.0, settle - time.monotonic())))
        sampler.stop_event.set()
        sampler.join(5)
        final = scrape(url)
        alarm_final = scrape(alarm_url) if alarm_proc is not None else ""
        final_db = asyncio.run(_db_figures(dsn, list(probes.sent)))
    finally:
        for p in (proc, alarm_proc, delivery_proc):
            if p is not None:
                p.terminate()
                p.wait(30)
        at_arc = arc.stop()
        receiver.stop()
        broker.stop()
    asyncio.run(_count_and_drop(dsn, dbname))

    latencies = [(at_arc[ref_for(e, ARC_RECEIVER)] - s[0]) * 1000 for e, s in probes.sent.items()
                 if ref_for(e, ARC_RECEIVER) in at_arc]
    to_webhook = [(received[e][0] - s[0]) * 1000 for e, s in probes.sent.items()
                  if e in received]
    # Where an alarm's time goes, from wall clocks on the one machine (ms, per alarm).
    to_gateway, to_store, to_receipt = [], [], []
    for e, (_, sent_wall) in probes.sent.items():
        stamps = final_db["alarm_stamps"].get(e)
        arrived = at_arc.get(ref_for(e, ARC_RECEIVER))
        if stamps is None or arrived is None:
            continue
        got, stored = stamps
        to_gateway.append((got - sent_wall) * 1000)
        to_store.append((stored - got) * 1000)
        to_receipt.append((sent_wall + (arrived - probes.sent[e][0]) - stored) * 1000)
    summary = _summary(latencies)
    met = {k: summary[k] is not None and summary[k] <= v  # type: ignore[operator]
           for k, v in TARGETS_MS.items()}
    if len(latencies) < len(probes.sent):
        met["all_received"] = False
    outbox = trend([s for s in sampler.samples if s[0] <= load_seconds + 0.5])
    bulk_done_end = end_db["deliveries"].get("bulk.done", 0)
    bulk_pending_end = end_db["deliveries"].get("bulk.pending", 0)
    return {
        "benchmark": "alarm_latency_under_load",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "broker": broker.kind},
        "note": ("Latency is measured from the device's MQTT publish, or a SCAIP unit's SIP "
                 "MESSAGE (channel sip) (bench/probe_process.py) to the moment the simulated "
                 "alarm centre (bench/arc_process.py) reads the <mrq> over SIP/UDP, each in a "
                 "process of its own; the huvudman's webhook receipt is given beside it."),
        "settings": {"seconds": seconds, "rate_per_s": rate, "alarms_per_s": alarms_per_s,
                     "alarm_channel": channel, "alarm_process": alarm_process,
                     "delivery_process": delivery_process, "nice_bulk": nice_bulk,
                     "devices": devices, "publisher_window": window,
                     "gateway": "defaults (BATCH_MAX_EVENTS 2000, BATCH_MAX_WAIT_S 0.005)"},
        "alarm_latency_ms": summary,
        "alarms_sent": len(probes.sent),
        "alarms_received": len(latencies),
        "alarm_to_huvudman_webhook_ms": _summary(to_webhook),
        "alarm_breakdown_ms_wall_clock": {
            "publish_to_gateway_received_at": _summary(to_gateway),
            "received_at_to_stored_at_tx_start": _summary(to_store),
            "stored_at_tx_start_to_arc_receipt": _summary(to_receipt)},
        "background": {
            "readings_published": load.published,
            "readings_acked_by_broker": load.acked,
            "publish_seconds": round(load.elapsed, 2),
            "achieved_rate_per_s": round(load.published / load.elapsed) if load.elapsed else 0,
            "publisher_worst_lag_s": round(load.late_s, 3),
            "readings_committed_at_load_end": end_db["events"].get("reading", 0),
            "readings_committed_final": final_db["events"].get("reading", 0),
            "load_seconds": round(load_seconds, 2),
        },
        "bulk_delivery": {
            "done_at_load_end": bulk_done_end,
            "pending_at_load_end": bulk_pending_end,
            "done_final": final_db["deliveries"].get("bulk.done", 0),
            "pending_final": final_db["deliveries"].get("bulk.pending", 0),
            "dead_final": final_db["deliveries"].get("bulk.dead", 0),
            "final_is_after_s": "up to 15 s after the load stopped",
        },
        "outbox_pending_samples": [p for _, p in sampler.samples],
        "outbox_pending_trend": outbox,
        "gateway_metrics": {
            "batch_commit_seconds": histogram(final, "gateway_batch_commit_seconds"),
            "batch_events": histogram(final, "gateway_batch_events", seconds=False),
            "ingest_ack_latency_mqtt": histogram(final, "gateway_ingest_ack_latency_seconds",
                                                 'transport="mqtt"'),
            "delivery_latency_alarm": histogram(final, "gateway_delivery_latency_seconds",
                                                'lane="alarm"'),
            "delivery_latency_bulk": histogram(final, "gateway_delivery_latency_seconds",
                                               'lane="bulk"'),
            "delivery_latency_bulk_at_load_end": histogram(
                at_end, "gateway_delivery_latency_seconds", 'lane="bulk"'),
            "alarm_process_commit_seconds": histogram(alarm_final,
                                                      "gateway_batch_commit_seconds"),
        },
        "targets": {"alarm_p50_ms": TARGETS_MS["p50"], "alarm_p99_ms": TARGETS_MS["p99"],
                    "alarm_max_ms": TARGETS_MS["max"], "background_rate_per_s": 3000,
                    "outbox_does_not_grow": True},
        "targets_met": met | {"outbox_does_not_grow": outbox["grew"] is False},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=int, default=3000)
    parser.add_argument("--alarms-per-s", type=float, default=5)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--channel", choices=("alarm", "up", "sip"), default="alarm",
                        help="the topic alarms are published on (docs/mqtt.md), or sip: "
                             "SCAIP units sending SIP MESSAGEs to the gateway's SIP listener")
    parser.add_argument("--alarm-process", action="store_true",
                        help="read the alarm channel in a gateway process of its own")
    parser.add_argument("--delivery-process", action="store_true",
                        help="deliver (webhook, alarm lane) from a gateway process of its own")
    parser.add_argument("--out", default="alarm_latency.json",
                        help="file name under bench/results/")
    parser.add_argument("--nice-bulk", type=int, default=0,
                        help="with --alarm-process: run the bulk instance at this niceness")
    args = parser.parse_args(argv)
    result = run(args.seconds, args.rate, args.alarms_per_s, args.devices, args.window,
                 args.channel, args.alarm_process, args.delivery_process, args.nice_bulk)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / args.out if not Path(args.out).is_absolute() else Path(args.out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
