"""The MQTT bridge sink: each item published, QoS 1, to a huvudman's own broker
(`[[mqtt]]` in config/sinks.toml; docs/delivery.md, "MQTT bridge").

One message per item on `{topic_prefix}/{huvudman}/{lane}/{kind}`; the payload is the item's
webhook NDJSON line (gateway.delivery.wire), so a receiver parses one format whichever way it
gets the data, and the user properties carry the webhook's timestamp and HMAC signature of
that payload. An item is DONE only when the broker's PUBACK says it took it; anything else
(no connection, no PUBACK within `timeout_s`, a refusing reason code) is RETRY, so the outbox
sends it again: at least once, the event id being the idempotency key.

MQTT 5, not 3.1.1: a 3.1.1 broker acknowledges a publish its ACL refuses exactly like one it
delivered, and one that nobody subscribes to as well, so DONE would lose data silently; v5's
PUBACK reason codes (not authorized, quota exceeded, no matching subscribers) tell them apart.
v5 also carries the signature as user properties without changing the payload.

paho-mqtt runs the network in its own thread (connecting, reconnecting by itself, resending
what was in flight); the event loop publishes and waits on futures, which PUBACKs resolve via
`call_soon_threadsafe`, batched so that a burst of acks wakes the loop once. Every sink state
(`_waiting`, connection flags) is touched on the event loop only, so a PUBACK can never be
matched before its future exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.delivery import wire
from gateway.delivery.sink import DONE, RETRY, ItemResult, safe_reason
from gateway.observability.logs import get as get_logger

log = get_logger("delivery")

KEEPALIVE_S = 30
# paho ignores the Receive Maximum a v5 broker announces; 20 is Mosquitto's default, and a
# client sending more than the broker's maximum is disconnected.
MAX_INFLIGHT = 20
# Outgoing messages paho may hold (in flight, or waiting to be resent after a reconnect): the
# bound on memory through an outage, whatever the outbox keeps asking.
MAX_QUEUED_MIN = 1000
# The topic, the properties and the fixed header, generously: for the broker's packet limit.
PACKET_OVERHEAD = 512

NO_MATCHING_SUBSCRIBERS = 0x10
NOT_AUTHORIZED = 0x87
# CONNACK refusals that are configuration (credentials, client id), as a webhook's 401/403:
# they open the breaker at once.
CONFIG_REFUSALS = frozenset({0x85, 0x86, 0x87, 0x8C})
_LOST = -1  # not a reason code: the connection went down before the PUBACK came
_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def topic(prefix: str, huvudman: str, item: wire.Item) -> str:
    # Lane and kind come from our own adapters; kept to one safe level each all the same, so
    # nothing can ever turn into a wildcard or an extra level.
    lane, kind = (_TOPIC_UNSAFE.sub("_", v) or "_" for v in (item.lane, item.kind))
    return f"{prefix}/{huvudman}/{lane}/{kind}"


class MqttBridgeSink:
    """Publishes each item, QoS 1, to one huvudman's broker; DONE only on a successful PUBACK."""

    def __init__(self, name: str, url: str, *, huvudman: str, secret: bytes,
                 topic_prefix: str = "hmc-gateway", username: str | None = None,
                 password: str | None = None, tls: ssl.SSLContext | None = None,
                 client_id: str | None = None, require_subscriber: bool = True,
                 batch_max: int = 500, timeout_s: float = 10.0,
                 reconnect_max_s: int = 10) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("the url must look like mqtt[s]://host[:port]")
        if (parts.scheme == "mqtts") != (tls is not None):
            raise ValueError("mqtts:// needs a TLS context, mqtt:// must not have one")
        self.name = name
        self.batch_max = batch_max
        self.timeout_s = timeout_s
        self.huvudman = huvudman
        self.topic_prefix = topic_prefix
        self._host = parts.hostname
        self._port = parts.port or (8883 if tls is not None else 1883)
        self._secret = secret
        self._username, self._password, self._tls = username, password, tls
        # Unique per process unless configured: two gateway instances sharing a client id
        # would take the connection from each other, over and over.
        self._client_id = client_id or f"gateway-{huvudman}-{uuid.uuid4().hex[:12]}"
        self._require_subscriber = require_subscriber
        self._reconnect_max_s = reconnect_max_s
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        # Event loop only:
        self._connected = asyncio.Event()
        self._attempted = asyncio.Event()  # a connection attempt has ended (up or not)
        self._refused: int | None = None  # the last CONNACK's refusal, until one succeeds
        self._max_packet: int | None = None
        self._waiting: dict[int, asyncio.Future[int]] = {}
        # Shared with paho's thread, under _lock:
        self._lock = threading.Lock()
        self._acks: list[tuple[int, int]] = []
        self._drain_scheduled = False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # --- lifecycle ----------------------------------------------------------------------

    def connect_soon(self) -> None:
        """Start connecting now if an event loop runs (it does in `gateway serve`), so the
        first alarm does not wait for the handshake; otherwise the first send() does."""
        if self._client is not None or self._closed:
            return
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self._client_id,
                             protocol=mqtt.MQTTv5, reconnect_on_failure=True)
        if self._tls is not None:
            client.tls_set_context(self._tls)
        if self._username is not None:
            client.username_pw_set(self._username, self._password)
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.max_queued_messages_set(max(MAX_QUEUED_MIN, 2 * self.batch_max))
        client.reconnect_delay_set(1, self._reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        # A clean session: the outbox, not the broker, is what remembers undelivered items.
        client.connect_async(self._host, self._port, keepalive=KEEPALIVE_S, clean_start=True)
        client.loop_start()
        self._client = client

    async def aclose(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        self._fail_waiting()
        if client is None:
            return
        client.disconnect()
        # loop_stop joins paho's thread (up to a second of its select): not on the event loop.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.to_thread(client.loop_stop), 10.0)
        self._connected.clear()

    # --- sending ------------------------------------------------------------------------

    async def send(self, items: Sequence[wire.Item],
                   subjects: Sequence[wire.SubjectLine] = ()) -> Sequence[ItemResult]:
        if not items:
            return []
        self.connect_soon()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        if not self._attempted.is_set() and not self._closed:
            # Only the first connection attempt is worth waiting for: later, while the broker
            # is away, every request would hold the whole dispatcher cycle for timeout_s.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._attempted.wait(), self.timeout_s)
        if not self._connected.is_set() or self._client is None:
            return [self._unreachable()] * len(items)
        if subjects:
            refused = await self._send_subjects(loop, subjects, deadline)
            if refused is not None:
                return [refused] * len(items)
        results: list[ItemResult | None] = [None] * len(items)
        waits: dict[int, tuple[int, asyncio.Future[int]]] = {}
        for i, item in enumerate(items):
            if i and i % 100 == 0:
                await asyncio.sleep(0)  # a batch of 500 must not hold the loop in one go
            published = self._publish_item(loop, item)
            if isinstance(published, ItemResult):
                results[i] = published
            else:
                waits[i] = published
        if waits:
            await asyncio.wait([f for _, f in waits.values()],
                               timeout=max(deadline - loop.time(), 0.0))
        for i, (mid, future) in waits.items():
            if future.done():
                results[i] = self._answer(future.result())
            else:
                # paho may still get it through; the outbox's retry is then an exact repeat.
                results[i] = RETRY("timeout")
                if self._waiting.get(mid) is future:
                    del self._waiting[mid]
                future.cancel()
        return [r if r is not None else RETRY("sink error") for r in results]

    async def _send_subjects(self, loop: asyncio.AbstractEventLoop,
                             subjects: Sequence[wire.SubjectLine],
                             deadline: float) -> ItemResult | None:
        """Each subject line retained on `{prefix}/{huvudman}/subject/{assignment id}`, so a
        consumer subscribing later still finds it; None when the broker took them all."""
        waits = []
        for line in subjects:
            published = self._publish(
                loop, wire.encode_batch((), [line]),
                f"{self.topic_prefix}/{line.huvudman}/subject/{line.assignment_id}", retain=True)
            if isinstance(published, ItemResult):
                return published
            waits.append(published)
        await asyncio.wait([f for _, f in waits], timeout=max(deadline - loop.time(), 0.0))
        late = [(mid, future) for mid, future in waits if not future.done()]
        for mid, future in late:  # none is left waiting for a PUBACK nobody reads
            if self._waiting.get(mid) is future:
                del self._waiting[mid]
            future.cancel()
        if late:
            return RETRY("timeout")
        for _, future in waits:
            code = future.result()
            # Retained, a subject is kept by the broker whether anyone subscribes yet or not.
            if code == _LOST or code >= 0x80:
                return self._answer(code)
        return None

    def _publish_item(self, loop: asyncio.AbstractEventLoop,
                      item: wire.Item) -> ItemResult | tuple[int, asyncio.Future[int]]:
        return self._publish(loop, wire.encode_batch([item]),
                             topic(self.topic_prefix, item.huvudman or self.huvudman, item))

    def _publish(self, loop: asyncio.AbstractEventLoop, payload: bytes, to: str, *,
                 retain: bool = False) -> ItemResult | tuple[int, asyncio.Future[int]]:
        assert self._client is not None
        if self._max_packet is not None and \
                len(payload) + len(to) + PACKET_OVERHEAD > self._max_packet:
            # Sent anyway, the broker would drop the connection, and paho resend it after
            # every reconnect: one item would block all the others.
            return RETRY("larger than the broker accepts")
        timestamp = int(time.time())
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.PayloadFormatIndicator = 1
        properties.ContentType = wire.CONTENT_TYPE
        properties.UserProperty = [
            (wire.TIMESTAMP_HEADER, str(timestamp)),
            (wire.SIGNATURE_HEADER, wire.sign(self._secret, timestamp, payload))]
        info = self._client.publish(to, payload, qos=1, retain=retain, properties=properties)
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            return RETRY("connection failed")
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return RETRY("publish queue full")
        future: asyncio.Future[int] = loop.create_future()
        self._waiting[info.mid] = future
        return info.mid, future

    def _answer(self, code: int) -> ItemResult:
        if code == _LOST:
            return RETRY("connection failed")
        if code == 0:
            return DONE
        if code == NO_MATCHING_SUBSCRIBERS:
            # The broker took it and dropped it: nobody (no persistent session either) would
            # ever get it. Kept in the outbox until the huvudman's consumer subscribes.
            return RETRY("no matching subscribers") if self._require_subscriber else DONE
        if code < 0x80:
            return DONE
        return RETRY("puback " + _reason_name(PacketTypes.PUBACK, code),
                     open_breaker=code == NOT_AUTHORIZED)

    def _unreachable(self) -> ItemResult:
        if self._closed:
            return RETRY("sink closed")
        if self._refused is not None:
            return RETRY("connection refused", open_breaker=self._refused in CONFIG_REFUSALS)
        return RETRY("connection failed")

    # --- paho's thread: hand everything to the event loop ---------------------------------

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            loop.call_soon_threadsafe(callback, *args)

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: Properties | None) -> None:
        max_packet = getattr(properties, "MaximumPacketSize", None)
        self._post(self._connection_changed, not reason.is_failure, reason.value, max_packet)

    def _on_connect_fail(self, _c: mqtt.Client, _u: object) -> None:
        self._post(self._connection_changed, False, None, None)

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: mqtt.DisconnectFlags,
                       _reason: ReasonCode, _p: Properties | None) -> None:
        self._post(self._connection_changed, False, None, None)

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, reason: ReasonCode,
                    _p: Properties) -> None:
        with self._lock:
            self._acks.append((mid, reason.value))
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        self._post(self._drain)

    # --- event loop: state changes and PUBACKs --------------------------------------------

    def _drain(self) -> None:
        with self._lock:
            acks, self._acks = self._acks, []
            self._drain_scheduled = False
        for mid, code in acks:
            future = self._waiting.pop(mid, None)  # none: its send timed out or gave up
            if future is not None and not future.done():
                future.set_result(code)

    def _connection_changed(self, up: bool, code: int | None, max_packet: int | None) -> None:
        was_up = self._connected.is_set()
        self._attempted.set()
        if up:
            self._refused, self._max_packet = None, max_packet
            self._connected.set()
            if not self._closed:
                log.info("mqtt_sink_connected", sink=self.name)
            return
        self._connected.clear()
        self._drain()  # PUBACKs that came before the connection went
        self._fail_waiting()
        if self._closed:
            return
        if code is not None:
            if code != self._refused:
                log.error("mqtt_sink_connect_refused", sink=self.name,
                          reason=_reason_name(PacketTypes.CONNACK, code))
            self._refused = code
        elif was_up:
            log.warning("mqtt_sink_disconnected", sink=self.name)

    def _fail_waiting(self) -> None:
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_result(_LOST)


def _reason_name(packet_type: int, code: int) -> str:
    """The specification's name of a reason code (fixed text), reduced like any reason."""
    try:
        return safe_reason(ReasonCode(packet_type, identifier=code).getName())
    except (KeyError, ValueError):
        return "unknown reason"
