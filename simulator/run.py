"""The first simulator: every measuring device in the fleet sends readings on an interval,
half of them over MQTT and half over HTTP."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from simulator.fleet import SimDevice, load
from simulator.senders import HttpDevice, MqttDevice, Tally


def run(fleet_path: Path, *, mqtt_url: str, http_url: str, interval_s: float = 2.0,
        rounds: int | None = None, stop: threading.Event | None = None) -> Tally:
    stop = stop or threading.Event()
    tally = Tally()
    devices = load(fleet_path)
    senders: list[tuple[SimDevice, MqttDevice | HttpDevice]] = []
    for i, dev in enumerate(devices):
        sender: MqttDevice | HttpDevice = (MqttDevice(mqtt_url, dev.id, dev.token, tally)
                                           if i % 2 == 0
                                           else HttpDevice(http_url, dev.id, dev.token, tally))
        senders.append((dev, sender))
    done = 0
    try:
        while not stop.is_set() and (rounds is None or done < rounds):
            now = datetime.now(UTC)
            for dev, sender in senders:
                dev.person.advance(1.0)
                sender.send(dev.message(now))
            done += 1
            stop.wait(interval_s)
    finally:
        time.sleep(0.5)  # let the last MQTT acknowledgements arrive
        for _, sender in senders:
            sender.close()
    return tally
