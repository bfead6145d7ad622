"""Alarm probes in a process of their own, for the alarm latency benchmark.

A device that raises an alarm does not share an interpreter with 3,000 other devices. In the
benchmark's own process the probe would wait for the GIL behind the load publisher, and that
wait would be counted against the gateway. Here it has an interpreter to itself; its times come
from `time.monotonic()` (CLOCK_MONOTONIC, the same clock in every process of the machine) and
`time.time()`.

Usage: python -m bench.probe_process HOST PORT CHANNEL PER_S SECONDS DEVICE [DEVICE ...]
Prints `ready` once connected, starts on a line `go` on stdin, and prints one JSON line per
alarm published (`event_id`, `mono`, `wall`) when done.

CHANNEL `sip`: HOST PORT are the gateway's SIP listener and each DEVICE is `CID:PASSWORD`, a
SCAIP unit (simulator/scaip_device.py) that sends its alarms as SIP MESSAGEs over UDP, each
answered once committed; every unit has exchanged one heartbeat (and so its Digest
credentials) before `ready`, as a unit in service has. The event id is what the gateway's own
adapter derives from the `<mrq>` (adapters/scaip.py), so the benchmark can find the alarm at
the centre by its ref.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from adapters import native, scaip
from adapters.events import event_id
from bench.ingest_drain import _client
from simulator.scaip_device import GPS_ALARM, ScaipUnit, UnitSpec

ALARM_TYPE = "fall"


def main(argv: list[str]) -> None:
    host, port, channel = argv[0], int(argv[1]), argv[2]
    per_s, seconds, devices = float(argv[3]), float(argv[4]), argv[5:]
    if channel == "sip":
        _report(_over_sip(host, port, per_s, seconds, devices))
        return
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
    last = datetime.now(UTC)
    for k in _paced(per_s, seconds):
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
    _report(sent)


def _over_sip(host: str, port: int, per_s: float, seconds: float,
              devices: list[str]) -> list[tuple[uuid.UUID, float, float]]:
    units = [ScaipUnit(UnitSpec(GPS_ALARM, cid, None, password), (host, port))
             for cid, password in (d.split(":", 1) for d in devices)]
    for n, unit in enumerate(units):  # in service: registered, credentials exchanged
        ref = f"W{n:07d}"
        if unit.send(unit.mrq(ref, mty=scaip.Mty.PING, hbo=True), ref=ref,
                     mty=scaip.Mty.PING).snu != scaip.Snu.OK:
            raise SystemExit("probe: a unit's heartbeat was not accepted")
    print("ready", flush=True)
    sys.stdin.readline()
    sent: list[tuple[uuid.UUID, float, float]] = []
    # Each alarm is answered only once committed: sends overlap, as separate units' would.
    with ThreadPoolExecutor(max_workers=8) as pool:
        for k in _paced(per_s, seconds):
            unit = units[k % len(units)]
            ref = f"A{k:07d}"
            body = unit.mrq(ref, stc=scaip.STC_MANUAL, pri=1, tim=datetime.now(UTC))
            [alarm] = scaip.parse_mrq(body, received_at=datetime.now(UTC)).events
            sent.append((alarm.event_id, time.monotonic(), time.time()))
            pool.submit(unit.send, body, ref=ref)
    for unit in units:
        unit.close()
    return sent


def _paced(per_s: float, seconds: float) -> Iterator[int]:
    """0, 1, 2, ... each at its time: `per_s` a second for `seconds`."""
    started = time.perf_counter()
    for k in range(int(per_s * seconds)):
        wait = started + k / per_s - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        yield k


def _report(sent: list[tuple[uuid.UUID, float, float]]) -> None:
    for eid, mono, wall in sent:
        sys.stdout.write(json.dumps({"event_id": str(eid), "mono": mono, "wall": wall}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
