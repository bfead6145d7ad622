"""How simulated devices speak to the gateway: MQTT (QoS 1) and HTTP with a bearer token."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.transports.mqtt_ingest import parse_url


@dataclass
class Tally:
    sent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    confirmed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rejected: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, bucket: dict[str, int], key: str, n: int = 1) -> None:
        with self.lock:
            bucket[key] += n


class MqttDevice:
    """One device's own MQTT connection, publishing under its own id, listening for errors."""

    def __init__(self, url: str, device_id: str, token: str, tally: Tally,
                 prefix: str = "devices") -> None:
        broker = parse_url(url)
        host, port = broker.host, broker.port
        self.topic = f"{prefix}/{device_id}/up/native"
        self.tally = tally
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{device_id}",
                                  clean_session=True)
        self.client.username_pw_set(device_id, token)
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_error
        self.client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/{device_id}/down/error", 1)
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()

    def send(self, payload: bytes, topic: str | None = None) -> None:
        self.tally.add(self.tally.sent, "mqtt")
        self.client.publish(topic or self.topic, payload, qos=1)

    def _on_publish(self, *_: Any) -> None:
        self.tally.add(self.tally.confirmed, "mqtt")

    def _on_error(self, *_: Any) -> None:
        self.tally.add(self.tally.rejected, "mqtt")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class HttpDevice:
    def __init__(self, base_url: str, device_id: str, token: str, tally: Tally) -> None:
        self.url = f"{base_url}/v1/devices/{device_id}/readings"
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.tally = tally
        self.http = httpx.Client(timeout=15)

    def send(self, payload: bytes) -> None:
        self.tally.add(self.tally.sent, "http")
        try:
            answer = self.http.post(self.url, content=payload, headers=self.headers)
        except httpx.HTTPError:
            self.tally.add(self.tally.errors, "http")
            return
        if answer.status_code == 200:
            self.tally.add(self.tally.confirmed, "http")
            if answer.json().get("rejected"):
                self.tally.add(self.tally.rejected, "http")
        else:
            self.tally.add(self.tally.errors, "http")

    def close(self) -> None:
        self.http.close()
