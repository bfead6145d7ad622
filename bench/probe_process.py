"""Alarm probes in a process of their own, for the alarm latency benchmark.

A device that raises an alarm does not share an interpreter with 3,000 other devices. In the
benchmark's own process the probe would wait for the GIL behind the load publisher, and that
wait would be counted against the gateway. Here it has an interpreter to itself; its times come
from `time.monotonic()` (CLOCK_MONOTONIC, the same clock in every process of the machine) and
`time.time()`.

Usage: python -m bench.probe_process HOST PORT CHANNEL PER_S SECONDS DEVICE [DEVICE ...]
Prints `ready` once connected, starts on a line `go` on stdin, and prints one JSON line per
alarm published (`event_id`, `mono`, `wall`) when done.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

from adapters import native
from adapters.events import event_id
from bench.ingest_drain import _client

ALARM_TYPE = "fall"


def main(argv: list[str]) -> None:
    host, port, channel = argv[0], int(argv[1]), argv[2]
    per_s, seconds, devices = float(argv[3]), float(argv[4]), argv[5:]
    c = _client(f"bench-alarms-{uuid.uuid4().hex[:6]}", clean=True)
    connected = threading.Event()
    c.on_connect = lambda *_: connected.set()
    c.connect(host, port)
    c.loop_start()
    if not connected.wait(30):
        raise SystemExit("probe: the broker did not answer")
    print("ready", flush=True)
    sys.stdin.readline()
    sent: list[tuple[uuid.UUID, float, float]] = []
    started = time.perf_counter()
    last = datetime.now(UTC)
    for k in range(int(per_s * seconds)):
        due = started + k / per_s
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        device = devices[k % len(devices)]
        at = max(datetime.now(UTC), last + timedelta(microseconds=1))  # a time of its own
        last = at
        payload = native.encode_message(
            [], alarms=[{"type": ALARM_TYPE, "time": at.isoformat(), "priority": 1}])
        sent.append((event_id(device, f"alarm:{ALARM_TYPE}", at), time.monotonic(), time.time()))
        c.publish(f"devices/{device}/{channel}/native", payload, qos=1)
    time.sleep(0.5)
    c.disconnect()
    c.loop_stop()
    for eid, mono, wall in sent:
        sys.stdout.write(json.dumps({"event_id": str(eid), "mono": mono, "wall": wall}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
