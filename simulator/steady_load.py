"""Devices sending weights at a steady pace while faults happen, each message in a Ledger
(simulator/reconcile.py), behaving as devices that keep what is not acknowledged:

- over MQTT a persistent session and QoS 1; the client keeps an unacknowledged message and sends
  it again after every reconnect, and the broker's PUBACK is the acknowledgement;
- over HTTP the same message is posted again, with a growing pause, until it gets a 200.

Every reading has its own measured time (a second apart per device), so the ledger can find
it in the database whatever event id the gateway gave it. An alarm device sends one button
alarm per message instead, on the alarm topic over MQTT.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from adapters import native
from gateway.tls import client_context
from simulator.reconcile import Ledger, Message, key


@dataclass(frozen=True)
class Device:
    id: str
    token: str
    transport: str  # "mqtt" or "http"
    kind: str = "weight"  # or "alarm": each message one button alarm


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    ca_file: Path | None = None  # mqtts when set


class _Clock:
    """Each device's next measured time: a second after its last."""

    def __init__(self, start: datetime) -> None:
        self._next = start

    def take(self, n: int) -> list[datetime]:
        times = [self._next + timedelta(seconds=i) for i in range(n)]
        self._next += timedelta(seconds=n)
        return times


class SteadyLoad:
    def __init__(self, ledger: Ledger, devices: list[Device], *, broker: Broker | None = None,
                 http_url: str | None = None, per_message: int = 5,
                 interval_s: float = 0.1) -> None:
        self.ledger = ledger
        self.devices = devices
        self.broker = broker
        self.http_url = http_url
        self.per_message = per_message
        self.interval_s = interval_s
        # An hour back: plausible, and inside the month's partitions.
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        self._clocks = {d.id: _Clock(start) for d in devices}
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._threads: list[threading.Thread] = []
        self._clients: dict[str, mqtt.Client] = {}
        self._pending: dict[tuple[str, int], Message] = {}
        self._lock = threading.Lock()

    # --- MQTT ---------------------------------------------------------------------------

    def _connect(self, device: Device) -> mqtt.Client:
        assert self.broker is not None
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device.id,
                             clean_session=False, protocol=mqtt.MQTTv311)
        client.username_pw_set(device.id, device.token)
        if self.broker.ca_file is not None:
            client.tls_set_context(client_context(self.broker.ca_file))
        client.reconnect_delay_set(1, 2)

        def on_publish(_c: Any, _u: Any, mid: int, *_: Any) -> None:
            with self._lock:
                message = self._pending.pop((device.id, mid), None)
            if message is not None:
                self.ledger.acked(message)

        client.on_publish = on_publish
        client.connect_async(self.broker.host, self.broker.port, keepalive=10)
        client.loop_start()
        return client

    def _mqtt_round(self, device: Device) -> None:
        message, body = self._message(device)
        channel = "alarm" if device.kind == "alarm" else "up"
        with self._lock:  # on_publish waits for the mid to be filed
            info = self._clients[device.id].publish(
                f"devices/{device.id}/{channel}/native", body, qos=1)
            self._pending[(device.id, info.mid)] = message

    # --- HTTP ---------------------------------------------------------------------------

    def _http_device(self, device: Device) -> None:
        assert self.http_url is not None
        url = f"{self.http_url}/v1/devices/{device.id}/readings"
        headers = {"Authorization": f"Bearer {device.token}",
                   "Content-Type": "application/json"}
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set():
                if self._paused.is_set():
                    self._stop.wait(self.interval_s)
                    continue
                message, body = self._message(device)
                pause = 0.1
                while True:  # a device keeps a message until it is acknowledged
                    try:
                        if http.post(url, content=body, headers=headers).status_code == 200:
                            self.ledger.acked(message)
                            break
                    except httpx.HTTPError:
                        pass
                    if self._stop.wait(pause) and self._draining_over():
                        return
                    pause = min(pause * 2, 2.0)
                self._stop.wait(self.interval_s)

    # --- both -----------------------------------------------------------------------------

    def _message(self, device: Device) -> tuple[Message, bytes]:
        if device.kind == "alarm":
            (t,) = self._clocks[device.id].take(1)
            body = native.encode_message([], alarms=[
                {"type": "button", "priority": 9, "time": t.isoformat()}])
            return self.ledger.sent(device.id, device.transport,
                                    [key(device.id, "alarm", t)]), body
        times = self._clocks[device.id].take(self.per_message)
        body = native.encode_message([
            native.encode_reading("weight", t, value=60.0 + (t.second % 30) / 10, unit="kg")
            for t in times])
        message = self.ledger.sent(device.id, device.transport,
                                   [key(device.id, "weight", t) for t in times])
        return message, body

    def _mqtt_loop(self, devices: list[Device]) -> None:
        while not self._stop.is_set():
            if not self._paused.is_set():
                for d in devices:
                    self._mqtt_round(d)
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        mqtt_devices = [d for d in self.devices if d.transport == "mqtt"]
        for d in mqtt_devices:
            self._clients[d.id] = self._connect(d)
        if mqtt_devices:
            self._threads.append(threading.Thread(target=self._mqtt_loop, args=(mqtt_devices,),
                                                  name="load-mqtt", daemon=True))
        for d in self.devices:
            if d.transport == "http":
                self._threads.append(threading.Thread(target=self._http_device, args=(d,),
                                                      name=f"load-{d.id}", daemon=True))
        self._drain_deadline = float("inf")
        for t in self._threads:
            t.start()

    def pause(self) -> None:
        """No new messages (those not yet acknowledged are still sent again)."""
        self._paused.set()

    def _draining_over(self) -> bool:
        return time.monotonic() > self._drain_deadline

    def stop(self, drain_s: float = 60.0) -> None:
        """Stop sending new messages and give what is unacknowledged `drain_s` to be."""
        self._paused.set()
        deadline = time.monotonic() + drain_s
        while self.ledger.unacknowledged() and time.monotonic() < deadline:
            time.sleep(0.1)
        self._drain_deadline = deadline
        self._stop.set()
        for t in self._threads:
            t.join(15)
        for c in self._clients.values():
            c.disconnect()
            c.loop_stop()
