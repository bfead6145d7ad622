"""MQTT ingest: QoS 1, persistent session, PUBACK only after the message's batch is committed.

Topic scheme (docs/mqtt.md): a device publishes under its own id only, which broker ACLs can
enforce with a `%u`/`%c` pattern:

    devices/{device_id}/up/{format}     device → gateway (format: native, omh, ...)
    devices/{device_id}/alarm/{format}  device → gateway: the same formats, for alarms
    devices/{device_id}/down/error      gateway → device: why a message was rejected

Each channel (`up`, `alarm`) has its own client, connection, persistent session and paho
thread. A broker delivers a connection's messages in order, so on one connection an alarm would
queue behind every reading the gateway has not yet read; on its own it never does.

paho-mqtt runs its network loop in its own thread and parses there; the asyncio loop owns the
pipeline and sends the acks. A message that is invalid is answered on the device's error topic
and still acknowledged (after the batch it joined commits, to keep acks in order), so the broker
does not redeliver it forever.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from adapters.errors import Rejection
from adapters.events import Alarm
from adapters.native import rejection_document
from gateway.ingest import decoding
from gateway.ingest.pipeline import Pipeline, SubmissionResult
from gateway.observability import metrics
from gateway.observability.logs import get as get_logger
from gateway.ownership.registry import Registry
from gateway.settings import Settings
from gateway.tls import client_context

log = get_logger("mqtt")
TRANSPORT = "mqtt"
DRAIN_INTERVAL_S = 0.001


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool


def parse_url(url: str, setting: str = "MQTT_URL") -> BrokerUrl:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp", "mqtts"):
        raise ValueError(f"{setting} must look like mqtt://[user:password@]host:port, or "
                         "mqtts://… for TLS")
    tls = parts.scheme == "mqtts"
    return BrokerUrl(parts.hostname or "127.0.0.1", parts.port or (8883 if tls else 1883),
                     parts.username, parts.password, tls)


CHANNELS = ("up", "alarm")


def channel_url(settings: Settings, channel: str) -> str:
    """The broker URL a channel connects with: the alarm channel may have a user of its own."""
    assert settings.mqtt_url is not None
    return (settings.mqtt_alarm_url or settings.mqtt_url) if channel == "alarm" \
        else settings.mqtt_url


class MqttConfigError(ValueError):
    """The MQTT settings cannot work; the message names the setting."""


def check_settings(settings: Settings) -> None:
    """Refuse to start on MQTT settings that cannot work: an unknown channel, a URL that is
    not one, or both channels as one broker user (where the broker ties client ids to users,
    as the shipped configuration does, they would take each other's session)."""
    if settings.mqtt_url is None:
        return
    unknown = set(settings.mqtt_channels) - set(CHANNELS)
    if unknown:
        raise MqttConfigError(f"MQTT_CHANNELS: give one or both of {', '.join(CHANNELS)}, "
                              "or none")
    try:
        up = parse_url(settings.mqtt_url).username
        alarm = parse_url(channel_url(settings, "alarm"), "MQTT_ALARM_URL").username
    except ValueError as err:
        raise MqttConfigError(str(err)) from None
    if set(CHANNELS) <= set(settings.mqtt_channels) and up is not None and up == alarm:
        raise MqttConfigError(f"MQTT_ALARM_URL: the alarm channel needs a broker user of its own "
                         f"(both channels are {up}); the broker ties each client id to its user "
                         "(docs/mqtt.md, Broker users)")


class MqttIngest:
    def __init__(self, settings: Settings, registry: Registry, pipeline: Pipeline,
                 loop: asyncio.AbstractEventLoop, channel: str = "up") -> None:
        if channel not in CHANNELS:
            raise ValueError(f"channel must be one of {', '.join(CHANNELS)}")
        self.channel = channel
        self._settings = settings
        self._registry = registry
        self._pipeline = pipeline
        self._loop = loop
        self._prefix = settings.mqtt_topic_prefix
        url = parse_url(channel_url(settings, channel),
                        "MQTT_ALARM_URL" if channel == "alarm" and settings.mqtt_alarm_url
                        else "MQTT_URL")
        self._host, self._port = url.host, url.port
        # Brokers that tie client ids to users (the shipped Mosquitto) ignore this id; others
        # key the persistent session by it.
        client_id = settings.mqtt_client_id if channel == "up" \
            else f"{settings.mqtt_client_id}-{channel}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=False, manual_ack=True,
                                  protocol=mqtt.MQTTv311)
        if url.username:
            self.client.username_pw_set(url.username, url.password)
        if url.tls:
            self.client.tls_set_context(client_context(
                settings.mqtt_ca_file, settings.mqtt_cert_file, settings.mqtt_key_file))
        self.client.max_inflight_messages_set(settings.mqtt_max_inflight)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.connected = asyncio.Event()
        # Messages parsed on paho's thread wait here for the event loop. Waking the loop from
        # another thread costs a syscall (10-13 % of CPU when done per message), so under load
        # the loop polls the mailbox every DRAIN_INTERVAL_S instead, and paho's thread wakes it
        # only when the poller has stopped (idle) or a message carries an alarm.
        self._mailbox: list[tuple[int, int, decoding.Decoded, float]] = []
        self._mailbox_lock = threading.Lock()
        self._polling = False
        self._connected_gauge = metrics.MQTT_CONNECTED if channel == "up" \
            else metrics.MQTT_ALARM_CONNECTED
        self._received = metrics.RECEIVED.labels(TRANSPORT)
        self._acked = metrics.ACKED.labels(TRANSPORT)
        self._accepted = metrics.ACCEPTED.labels(TRANSPORT)
        self._duplicates = metrics.DUPLICATES.labels(TRANSPORT)
        self._ack_seconds = metrics.ACK_SECONDS.labels(TRANSPORT)

    @property
    def subscription(self) -> str:
        topic = f"{self._prefix}/+/{self.channel}/+"
        group = self._settings.mqtt_shared_group
        return f"$share/{group}/{topic}" if group else topic

    def start(self) -> None:
        self.client.connect_async(self._host, self._port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # --- paho thread --------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: object, flags: mqtt.ConnectFlags,
                    reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            log.error("mqtt_connect_refused", reason=str(reason))
            return
        client.subscribe(self.subscription, qos=1)
        self._connected_gauge.set(1)
        log.info("mqtt_connected", session_present=flags.session_present,
                 subscription=self.subscription)
        self._loop.call_soon_threadsafe(self.connected.set)

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: object,
                       _p: object) -> None:
        self._connected_gauge.set(0)
        log.warning("mqtt_disconnected", reason=str(reason))
        self._loop.call_soon_threadsafe(self.connected.clear)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        started = time.monotonic()
        received_at = datetime.now(UTC)
        parts = msg.topic.split("/")
        if len(parts) != 4 or parts[0] != self._prefix or parts[2] != self.channel:
            decoded = decoding.Decoded([], [Rejection(
                "topic", f"expected devices/{{id}}/{self.channel}/{{format}}")])
            device_id = None
        elif len(msg.payload) > self._settings.mqtt_max_payload_bytes:
            device_id = parts[1]
            decoded = decoding.Decoded([], [Rejection(
                "$", f"payload larger than {self._settings.mqtt_max_payload_bytes} bytes")])
            self._received.inc()
            metrics.REJECTED.labels(TRANSPORT, "size").inc()
        else:
            device_id = parts[1]
            decoded = decoding.decode(self._registry, TRANSPORT, device_id, parts[3],
                                    bytes(msg.payload), received_at)
        if decoded.rejections and device_id is not None:
            # publish() is thread-safe in paho; QoS 1 so a connected device does get it.
            self.client.publish(f"{self._prefix}/{device_id}/down/error",
                                rejection_document(decoded.rejections), qos=1)
        urgent = self.channel == "alarm" or any(isinstance(e, Alarm) for e in decoded.events)
        with self._mailbox_lock:
            self._mailbox.append((msg.mid, msg.qos, decoded, started))
            if self._polling and not urgent:
                return
            start_polling = not self._polling
            self._polling = True
        self._loop.call_soon_threadsafe(self._poll if start_polling else self._drain)

    # --- event loop thread --------------------------------------------------------------

    def _drain(self) -> None:
        with self._mailbox_lock:
            batch, self._mailbox = self._mailbox, []
        self._submit(batch)

    def _poll(self) -> None:
        """Drain, and poll again shortly unless the mailbox was empty (then stop polling)."""
        with self._mailbox_lock:
            batch, self._mailbox = self._mailbox, []
            if not batch:
                self._polling = False
                return
        self._submit(batch)
        self._loop.call_later(DRAIN_INTERVAL_S, self._poll)

    def _submit(self, batch: list[tuple[int, int, decoding.Decoded, float]]) -> None:
        for mid, qos, decoded, started in batch:
            self._pipeline.submit(decoded.events, self._acknowledger(mid, qos, started))

    def _acknowledger(self, mid: int, qos: int,
                      started: float) -> Callable[[SubmissionResult], None]:
        def acknowledge(outcome: SubmissionResult) -> None:
            if qos > 0:
                self.client.ack(mid, qos)
            self._acked.inc()
            if outcome.new:
                self._accepted.inc(len(outcome.new))
            if outcome.duplicates:
                self._duplicates.inc(len(outcome.duplicates))
            self._ack_seconds.observe(time.monotonic() - started)

        return acknowledge
