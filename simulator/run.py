"""The demo fleet in motion: every device of the fleet file speaks its own protocol.

Native JSON devices alternate between MQTT and HTTP; hubs upload PCD-01 (SOAP) and PHD FHIR;
an Open mHealth scale and vendor GPS, night-sensor and medicine-robot devices send their JSON;
SCAIP alarm units talk SIP, in a thread of their own (they wait for the alarm centre's answer).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from simulator import scaip_device, standards_devices
from simulator.fleet import SimDevice, load
from simulator.senders import HttpDevice, MqttDevice, Tally


def run(fleet_path: Path, *, mqtt_url: str, http_url: str, interval_s: float = 2.0,
        rounds: int | None = None, stop: threading.Event | None = None,
        sip: tuple[str, int] | None = None) -> Tally:
    stop = stop or threading.Event()
    tally = Tally()
    devices = load(fleet_path)
    senders: list[tuple[SimDevice, MqttDevice | HttpDevice]] = []
    for i, dev in enumerate(devices):
        sender: MqttDevice | HttpDevice = (MqttDevice(mqtt_url, dev.id, dev.token, tally)
                                           if i % 2 == 0
                                           else HttpDevice(http_url, dev.id, dev.token, tally))
        senders.append((dev, sender))
    standards = standards_devices.load(fleet_path, http_url=http_url, mqtt_url=mqtt_url,
                                       tally=tally)
    scaip_thread: threading.Thread | None = None
    if sip is not None:
        def scaip_units() -> None:
            report = scaip_device.run(sip, scaip_device.load_units(fleet_path), rounds=rounds,
                                      interval_s=max(interval_s, 5.0), stop=stop,
                                      resend_s=(1.0, 2.0), answer_timeout_s=5.0)
            tally.add(tally.sent, "sip", sum(report.sent.values()))
            tally.add(tally.confirmed, "sip",
                      sum(n for key, n in report.snu.items() if key.endswith(":0")))

        scaip_thread = threading.Thread(target=scaip_units, name="scaip-units", daemon=True)
        scaip_thread.start()
    done = 0
    try:
        while not stop.is_set() and (rounds is None or done < rounds):
            now = datetime.now(UTC)
            for dev, sender in senders:
                dev.person.advance(1.0)
                sender.send(dev.message(now))
            standards_devices.send_round(standards, now)
            done += 1
            stop.wait(interval_s)
    finally:
        time.sleep(0.5)  # let the last MQTT acknowledgements arrive
        for _, sender in senders:
            sender.close()
        standards_devices.close(standards)
        if scaip_thread is not None:
            stop.set()
            scaip_thread.join(15)
    return tally
