"""Backlog drain: how many readings per second the gateway makes durable, against the floor.

One run, on this machine, with broker, database and gateway sharing its cores:
1. a fresh database and a Mosquitto started from the project's own configuration;
2. persistent sessions for the gateway and for a counting subscriber, so the broker queues the
   backlog for both;
3. a windowed QoS 1 publisher sends N readings (one per message, native JSON) from many devices;
4. the raw floor: a paho subscriber that only counts (and acks) drains its copy;
5. `gateway serve` starts and drains its copy: each reading routed to its owner (the region),
   sealed to the region's public key (HPKE-wrapped AES-256-GCM data key, ML-KEM-768 + X25519),
   committed to PostgreSQL, then acked.
Durable readings/s = N / (time from the gateway's first to last ack), confirmed by counting the
rows in the database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from adapters import native
from gateway.demo import embedded
from gateway.ownership import key_management, registration
from gateway.ownership.credentials import token_hash
from gateway.store.connector import Store
from gateway.store.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LOCAL_PG = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _client(client_id: str, *, clean: bool, manual_ack: bool = False) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                       manual_ack=manual_ack, protocol=mqtt.MQTTv311)


def _create_session(host: str, port: int, client_id: str, topic: str) -> None:
    """Connect once with a persistent session and subscribe, so the broker queues for it."""
    c = _client(client_id, clean=False)
    subscribed = threading.Event()
    c.on_subscribe = lambda *_: subscribed.set()
    c.connect(host, port)
    c.loop_start()
    c.subscribe(topic, qos=1)
    assert subscribed.wait(10)
    c.disconnect()
    c.loop_stop()


def publish_backlog(host: str, port: int, devices: list[str], count: int,
                    window: int) -> float:
    """QoS 1 with up to `window` messages in flight; returns messages/s confirmed by PUBACK."""
    c = _client(f"bench-pub-{uuid.uuid4().hex[:6]}", clean=True)
    c.max_inflight_messages_set(window)
    c.max_queued_messages_set(window)  # publish() blocks the producer instead of queueing all
    acked = 0
    done = threading.Event()
    lock = threading.Lock()

    def on_publish(*_: Any) -> None:
        nonlocal acked
        with lock:
            acked += 1
            if acked == count:
                done.set()

    c.on_publish = on_publish
    c.connect(host, port)
    c.loop_start()
    base = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
    started = time.perf_counter()
    for i in range(count):
        device = devices[i % len(devices)]
        at = base + timedelta(seconds=i // len(devices))
        payload = native.encode_message(
            [native.encode_reading("weight", at, value=60 + (i % 400) / 10, unit="kg")])
        while True:
            info = c.publish(f"devices/{device}/up/native", payload, qos=1)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                break
            time.sleep(0.0005)  # the window is full: wait for acks
    assert done.wait(300), f"only {acked} of {count} published"
    elapsed = time.perf_counter() - started
    c.disconnect()
    c.loop_stop()
    return count / elapsed


def drain_floor(host: str, port: int, client_id: str, count: int) -> float:
    """A paho subscriber that only counts: the most any paho-based consumer could do here."""
    c = _client(client_id, clean=False)
    c.max_inflight_messages_set(1000)
    seen = 0
    first = last = 0.0
    done = threading.Event()

    def on_message(*_: Any) -> None:
        nonlocal seen, first, last
        seen += 1
        if seen == 1:
            first = time.perf_counter()
        if seen == count:
            last = time.perf_counter()
            done.set()

    c.on_message = on_message
    c.connect(host, port)
    c.loop_start()
    assert done.wait(300), f"floor saw only {seen} of {count}"
    c.disconnect()
    c.loop_stop()
    return (count - 1) / (last - first)


def _metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(f'{name}{{transport="mqtt"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _histogram_mean(url: str, name: str) -> float:
    total = count = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(f"{name}_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_count"):
            count = float(line.rsplit(" ", 1)[1])
    return total / count if count else 0.0


def drain_gateway(database_url: str, mqtt_url: str, client_id: str, count: int,
                  env: dict[str, str]) -> dict[str, float]:
    port = embedded.free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"], cwd=ROOT,
        env=os.environ | env | {"DATABASE_URL": database_url, "MQTT_URL": mqtt_url,
                                "MQTT_CLIENT_ID": client_id, "HTTP_PORT": str(port)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        samples: list[tuple[float, float]] = []
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                acked = _metric(url, "gateway_ingest_messages_acked_total")
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            samples.append((time.perf_counter(), acked))
            if acked >= count:
                break
            time.sleep(0.1)
        batch_mean = _histogram_mean(url, "gateway_batch_events")
        commit_mean = _histogram_mean(url, "gateway_batch_commit_seconds")
    finally:
        proc.terminate()
        proc.wait(30)
    started = next(t for t, a in samples if a > 0)
    # Interpolate the start back to the sample before the first ack, for a fair window.
    before = max((t for t, a in samples if a == 0), default=started)
    finished, total = samples[-1]
    assert total >= count, f"gateway acked only {total} of {count}"
    return {"durable_per_s": count / (finished - (before + started) / 2),
            "mean_batch_events": batch_mean, "mean_commit_ms": commit_mean * 1000}


async def _prepare_database(devices: list[str], keys: Path, *,
                            kinds: tuple[str, ...] = ("weight",), alarm_route: str | None = None,
                            ) -> tuple[str, str | None, dict[str, str]]:
    name = f"gw_bench_{uuid.uuid4().hex[:8]}"
    try:
        conn = await asyncpg.connect(LOCAL_PG, timeout=3)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        dsn = LOCAL_PG.rsplit("/", 1)[0] + f"/{name}"
    except (OSError, asyncpg.PostgresError):
        dsn = embedded.start_postgres(Path(tempfile.mkdtemp()) / "pg").url
        name = None  # type: ignore[assignment]
    await migrate(dsn)
    store = await Store.connect(dsn)
    config = registration.read_config(ROOT / "config" / "huvudman.toml")
    fleet = registration.ConfigFile(
        device=[registration.DeviceSpec(id=d, type="scale", token_sha256=token_hash(d).hex())
                for d in devices],
        assignment=[registration.AssignmentSpec(device=d, huvudman="14", subject_ref=f"bench-{d}",
                                         legal_basis="HSL", kinds=list(kinds),
                                         valid_from=datetime(2026, 1, 1, tzinfo=UTC),
                                         alarm_route=alarm_route)
                    for d in devices])
    await registration.apply_config(store, config)
    secret, quarantine = await key_management.provision(store, keys, ["14"])
    os.environ["PSEUDONYM_SECRET_FILE"] = str(secret)  # assignments seal their subjects
    await registration.apply_config(store, fleet)
    await store.close()
    relay_public, relay_private = key_management.relay_paths(keys)
    return dsn, name, {"PSEUDONYM_SECRET_FILE": str(secret),
                       "QUARANTINE_PUBLIC_KEY_FILE": str(quarantine),
                       "ALARM_RELAY_PUBLIC_KEY_FILE": str(relay_public),
                       "ALARM_RELAY_PRIVATE_KEY_FILE": str(relay_private)}


async def _wal_lsn(dsn: str) -> int:
    """Where the cluster's WAL is now, in bytes (the whole cluster: run nothing beside)."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))
    finally:
        await conn.close()


async def _copy_sizes(dsn: str) -> dict[str, float]:
    """Mean bytes of a huvudman's stored weight copy: the envelope, and the whole row."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT avg(octet_length(envelope)) AS envelope, avg(pg_column_size(c.*)) AS row "
            "FROM event_copy c WHERE recipient = '14'")
        return {"envelope": float(row["envelope"]), "row": float(row["row"])}
    finally:
        await conn.close()


async def _count_and_drop(dsn: str, name: str | None) -> int:
    conn = await asyncpg.connect(dsn)
    stored = int(await conn.fetchval("SELECT count(*) FROM event"))
    await conn.close()
    if name:
        admin_conn = await asyncpg.connect(LOCAL_PG)
        await admin_conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin_conn.close()
    return stored


def run(count: int, devices: int, window: int) -> dict[str, Any]:
    device_ids = [f"BENCH-{i:05d}" for i in range(devices)]
    dsn, dbname, key_env = asyncio.run(
        _prepare_database(device_ids, Path(tempfile.mkdtemp(prefix="bench-keys-"))))
    broker_dir = Path(tempfile.mkdtemp(prefix="bench-mosquitto-"))
    broker = (embedded.start_mosquitto(broker_dir) if embedded.mosquitto_binary()
              else embedded.start_amqtt())
    host, port = broker.url.removeprefix("mqtt://").split(":")
    topic = "devices/+/up/+"
    try:
        _create_session(host, int(port), "bench-ingest", topic)
        _create_session(host, int(port), "bench-floor", topic)
        publish_rate = publish_backlog(host, int(port), device_ids, count, window)
        floor = drain_floor(host, int(port), "bench-floor", count)
        wal_before = asyncio.run(_wal_lsn(dsn))
        gateway = drain_gateway(dsn, broker.url, "bench-ingest", count, key_env)
        wal_bytes = asyncio.run(_wal_lsn(dsn)) - wal_before
    finally:
        broker.stop()
    sizes = asyncio.run(_copy_sizes(dsn))
    stored = asyncio.run(_count_and_drop(dsn, dbname))
    assert stored == count, f"{stored} rows stored for {count} readings"
    return {
        "benchmark": "ingest_backlog_drain",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "broker": broker.kind},
        "readings": count, "devices": devices, "publisher_window": window,
        "publisher_qos1_per_s": round(publish_rate),
        "raw_floor_per_s": round(floor),
        "durable_per_s": round(gateway["durable_per_s"]),
        "durable_share_of_floor": round(gateway["durable_per_s"] / floor, 2),
        "mean_batch_events": round(gateway["mean_batch_events"], 1),
        "mean_commit_ms": round(gateway["mean_commit_ms"], 2),
        "rows_stored": stored,
        # WAL of the whole drain (start-up included) per reading, and a weight copy's size.
        "wal_bytes_per_reading": round(wal_bytes / count),
        "copy_envelope_bytes": round(sizes["envelope"]),
        "copy_row_bytes": round(sizes["row"]),
        "target_durable_per_s": 5000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--window", type=int, default=500)
    args = parser.parse_args()
    result = run(args.readings, args.devices, args.window)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "ingest_drain.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
