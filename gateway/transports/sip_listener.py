"""SCAIP (SS 91100) over SIP: UDP, TCP and (given a certificate) TLS listeners that answer
`<mrq>` after commit.

Flow for one SIP MESSAGE carrying `application/scaip+xml` (docs/sip.md):

1. The SIP hop is answered at once: `200 OK`, or the codec's 4xx (405 for another method,
   415 for another content type or encoding, 413 too large, 400 malformed), or `401` with a
   Digest challenge when the unit has not authenticated (gateway/transports/sip_auth.py).
   `200 OK` says only that the message arrived (SIS-TR 91102 §7.3).
2. One task per request parses the `<mrq>` (adapters/scaip.py), checks that the unit's device id
   (`scaip:<cid>` or `scaip:<cid>:<did>`) is registered, and waits for
   `pipeline.commit(events)`. A slow commit holds only its own task.
3. Only then is the SCAIP answer sent: an `<mrs>` with `snu=0` (and `hbi` when the unit sent
   `hbo=001`), as a *new* SIP MESSAGE request to the sender (TR §7.5). On UDP it goes to the
   address and port the request came from (symmetric response routing, RFC 3581, which is what
   crosses the NAT of a mobile alarm) and is retransmitted with RFC 3261 timer E until the unit
   answers or 32 s pass. On TCP it goes over the same connection when it is still open, else over
   a new connection to the peer's address at the port its Contact (or From) URI names.

Answers other than `snu=0`:
- A malformed `<mrq>` gets the `snu` the adapter names (1, 2, 3, 7, 10, 99); nothing is stored.
- A message naming a unit other than the one that authenticated (or a device paired with it)
  gets `snu=5` and is not stored.
- A unit whose device id is not registered (or is retired) gets `snu=5` "not treated": the
  request is well formed, so a message-error code (3 wrong content) would be untrue, and the
  units' documented reaction to 5 is to drop the ref and take their alternative action at once
  (next receiver, GSM voice call) - for an alarm that is what must happen when this receiver
  will not handle it (ARCHITECTURE: alarms are never dropped silently). Counted as
  `rejected{reason="device"}` and logged with the device id.
- A commit that takes longer than `commit_hold_s` gets `snu=4` "hold": the unit resends the
  same request every 5-20 s; the events stay queued and are committed, and the resend is
  answered `snu=0` once they are.

Resends. Most units omit `lge/tim`, so the adapter takes the receive time as measurement time,
and a resend (after `snu=4`, or after a lost `<mrs>`) would get new event ids. A TTL cache keeps,
for 30 min (the longest SCAIP hold polling), the first receive time of each
(device id, ref, mty, content fingerprint), and a repeat is re-parsed with that time, so its
events get the same ids and the database stores them once. The fingerprint (a hash of the
events with ids and times left out) keeps a genuinely new `mty=IN` update that reuses the ref
of its open alarm (with a new position, say) from being taken for a resend and deduplicated
away. The cache is per process: with several gateway instances behind one address, a resend
that lands on another instance within the 30 min is stored a second time (a duplicate, never a
loss). SIP-level retransmissions of one UDP transaction (same Call-ID, CSeq and branch) are
answered with the same `200 OK` and not processed again.

Nothing here logs, counts or answers with a position or a value: logs carry device ids, refs,
`snu` codes and rule names; metric labels are `transport="sip"` and a bounded reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import ipaddress
import itertools
import re
import ssl
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import msgspec

from adapters import scaip, sip
from adapters.events import Alarm, encode
from adapters.scaip import ScaipError, ScaipParsed, Snu
from adapters.sip import SipError, SipMessage
from gateway.ingest import dose_alarms
from gateway.ingest.pipeline import Pipeline
from gateway.observability import metrics
from gateway.observability.logs import get as get_logger
from gateway.ownership.registry import Registry
from gateway.settings import Settings
from gateway.transports.rate import RateLimit, retry_after
from gateway.transports.sip_auth import UnitAuth

log = get_logger("sip")
TRANSPORT = "sip"
SCAIP_MEDIA_TYPE = "application/scaip+xml"

RESEND_TTL_S = 30 * 60  # SS 91100 §5: hold polling lasts at most 30 min
RESEND_CACHE_MAX = 200_000
TRANSACTION_TTL_S = 32.0  # RFC 3261 timer F/J: 64 * T1
TRANSACTION_CACHE_MAX = 50_000
COMMIT_HOLD_S = 10.0  # longer than this and the unit is told snu=4 (resend later)
MAX_IN_FLIGHT = 10_000  # requests being committed or answered; beyond this, 503
STOP_GRACE_S = 15.0
SEND_TIMEOUT_S = 5.0
READ_SIZE = 16_384

# Bounded metric labels for SCAIP errors (the error's field may name an element of the input).
_SNU_REASON: dict[int, str] = {
    Snu.TOO_LONG: "too_long", Snu.BAD_FORMAT: "bad_format", Snu.WRONG_CONTENT: "wrong_content",
    Snu.MANDATORY_MISSING: "mandatory_missing", Snu.REF_MISSING: "ref_missing",
    Snu.UNDEFINED: "undefined",
}
_URI_HOSTPORT = re.compile(
    r"^sips?:(?:[^@;?]*@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::([0-9]{1,5}))?(?:[;?].*)?$",
    re.IGNORECASE)
_NIL = uuid.UUID(int=0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A bounded map whose entries expire `ttl_s` after they were first stored.

    Entries are kept in insertion order, which is also expiry order (one TTL for all), so
    expired entries are dropped from the front; past `max_entries` the oldest go first.
    """

    def __init__(self, ttl_s: float, max_entries: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        now = self._clock()
        self._purge(now)
        item = self._items.get(key)
        return item[1] if item is not None else None

    def setdefault(self, key: K, value: V) -> V:
        """The unexpired value stored under `key`, or `value` after storing it."""
        now = self._clock()
        self._purge(now)
        item = self._items.get(key)
        if item is not None:
            return item[1]
        self._items[key] = (now + self._ttl, value)
        while len(self._items) > self._max:
            self._items.popitem(last=False)
        return value

    def _purge(self, now: float) -> None:
        while self._items:
            expires, _ = next(iter(self._items.values()))
            if expires > now:
                return
            self._items.popitem(last=False)


def fingerprint(parsed: ScaipParsed, received_at: datetime) -> str:
    """What a request says, without the times and ids that depend on when it arrived."""
    digest = hashlib.sha256()
    for event in parsed.events:
        measured = _EPOCH if event.measured_at == received_at else event.measured_at
        neutral = msgspec.structs.replace(event, event_id=_NIL, received_at=_EPOCH,
                                          measured_at=measured)
        digest.update(encode(neutral))
    return digest.hexdigest()[:32]


def uri_hostport(uri: str) -> tuple[str, int | None] | None:
    """Host (brackets removed) and port of a `sip:` URI; None for anything else."""
    match = _URI_HOSTPORT.match(uri)
    if match is None or uri[:4].lower() == "sips":
        return None
    port = int(match.group(2)) if match.group(2) else None
    if port is not None and not 0 < port < 65536:
        return None
    return match.group(1).strip("[]"), port


@dataclass(slots=True)
class _Peer:
    """Where a request came from and how its answers go back."""

    transport: str  # "UDP", "TCP" or "TLS", as written in a Via header
    addr: tuple[str, int]
    writer: asyncio.StreamWriter | None = None
    # The device id a verified TLS client certificate names (its common name), if any.
    certified: str | None = None

    @property
    def open(self) -> bool:
        return self.writer is not None and not self.writer.is_closing()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, listener: SipListener) -> None:
        self._listener = listener

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._listener.on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable for an answer to a unit that went away; nothing to do.
        log.info("sip_udp_error", error=type(exc).__name__)


class SipListener:
    def __init__(self, settings: Settings, registry: Registry, pipeline: Pipeline, *,
                 commit_hold_s: float = COMMIT_HOLD_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 1 <= settings.scaip_heartbeat_interval_min <= 1440:
            raise ValueError("SCAIP_HEARTBEAT_INTERVAL_MIN must be 1-1440 (SS 91100 hbi)")
        self._settings = settings
        self._registry = registry
        self._pipeline = pipeline
        self._commit_hold_s = commit_hold_s
        # None: units are not authenticated (SIP_UNIT_AUTH=off; docs/sip.md says the risk).
        self._auth = UnitAuth(registry, settings.sip_realm, clock=clock) \
            if settings.sip_unit_auth else None
        self._by_address = RateLimit(settings.sip_rate_per_address,
                                     settings.sip_burst_per_address, clock=clock)
        self._hbi = settings.scaip_heartbeat_interval_min
        # A unit that follows our hbi talks at least this often; an idle TCP connection that
        # outlives it is closed (the unit reconnects).
        self._tcp_idle_s = 2 * 60 * self._hbi + 60
        self._resends: TtlCache[tuple[str, str, str, str], datetime] = TtlCache(
            RESEND_TTL_S, RESEND_CACHE_MAX, clock)
        self._transactions: TtlCache[tuple[str, str, str], bytes] = TtlCache(
            TRANSACTION_TTL_S, TRANSACTION_CACHE_MAX, clock)
        self._cseq = itertools.count(1)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tls_server: asyncio.Server | None = None
        self._requests: set[asyncio.Task[None]] = set()  # one per request being answered
        self._resending: set[asyncio.Task[None]] = set()  # UDP retransmissions of an mrs
        self._answered: dict[str, asyncio.Event] = {}  # Call-ID of an mrs sent over UDP
        self._connections: set[asyncio.StreamWriter] = set()
        self._stopping = False
        # Told (device id, hbi minutes) when a unit that asked (hbo=001) is given our hbi.
        self.on_hbi_granted: Callable[[str, int], None] | None = None
        self.udp_port = 0
        self.tcp_port = 0
        self.tls_port = 0
        self._received = metrics.RECEIVED.labels(TRANSPORT)
        self._acked = metrics.ACKED.labels(TRANSPORT)
        self._accepted = metrics.ACCEPTED.labels(TRANSPORT)
        self._duplicates = metrics.DUPLICATES.labels(TRANSPORT)
        self._ack_seconds = metrics.ACK_SECONDS.labels(TRANSPORT)

    # --- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self._settings.sip_host, self._settings.sip_port
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(host, port))
        self._udp = transport
        self.udp_port = int(transport.get_extra_info("sockname")[1])
        self._tcp = await asyncio.start_server(self._on_connection, host, port,
                                               reuse_address=True)
        self.tcp_port = int(self._tcp.sockets[0].getsockname()[1])
        if self._settings.sip_tls_port:
            self._tls_server = await asyncio.start_server(
                functools.partial(self._on_connection, transport="TLS"), host,
                self._settings.sip_tls_port, ssl=server_tls(self._settings),
                reuse_address=True)
            self.tls_port = int(self._tls_server.sockets[0].getsockname()[1])
        log.info("sip_listening", host=host, udp=self.udp_port, tcp=self.tcp_port,
                 tls=self.tls_port or None)

    async def stop(self) -> None:
        """Stop taking requests; answer those being committed; close the sockets.

        Called while the pipeline still runs, so what was received is committed and answered.
        New requests meanwhile get `503` (the unit retries or takes its alternative action).
        """
        self._stopping = True
        servers = [srv for srv in (self._tcp, self._tls_server) if srv is not None]
        for server in servers:
            server.close()
        if self._requests:
            log.info("sip_stopping", in_flight=len(self._requests))
            await asyncio.wait(list(self._requests), timeout=STOP_GRACE_S)
        # Every mrs has been sent once by now; its UDP retransmissions end with the process.
        tasks = self._requests | self._resending
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in list(self._connections):
            writer.close()
        for server in servers:
            await server.wait_closed()
        if self._udp is not None:
            self._udp.close()
        log.info("sip_stopped")

    @staticmethod
    def _spawn(tasks: set[asyncio.Task[None]], coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    # --- intake ----------------------------------------------------------------------------

    def on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if data.strip(b"\r\n") == b"":
            return  # a keep-alive datagram
        try:
            msg = sip.parse(data)
        except SipError:
            # Without parseable headers no response can be addressed; the unit retransmits.
            metrics.REJECTED.labels(TRANSPORT, "sip").inc()
            return
        self._on_message(msg, _Peer("UDP", addr))

    async def _on_connection(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter, transport: str = "TCP") -> None:
        peername = writer.get_extra_info("peername")
        peer = _Peer(transport, (str(peername[0]), int(peername[1])), writer,
                     _certified_device(writer.get_extra_info("peercert")))
        if len(self._connections) >= self._settings.sip_max_connections:
            metrics.CONNECTIONS_REFUSED.labels("sip", "too_many").inc()
            writer.transport.abort()
            return
        self._connections.add(writer)
        buffer = bytearray()
        partial_since: float | None = None  # when the message now arriving began
        try:
            while not self._stopping:
                # Idle between messages for as long as a unit's heartbeat allows; a message
                # that has begun must arrive whole in sip_request_timeout_s.
                wait = self._tcp_idle_s if partial_since is None else \
                    partial_since + self._settings.sip_request_timeout_s - time.monotonic()
                try:
                    chunk = await asyncio.wait_for(reader.read(READ_SIZE), max(wait, 0.0))
                except TimeoutError:
                    if partial_since is not None:
                        metrics.CONNECTIONS_REFUSED.labels("sip", "too_slow").inc()
                    return
                except ConnectionError:
                    return
                if not chunk:
                    return
                buffer += chunk
                if not self._drain_stream(buffer, peer):
                    return
                partial_since = None if not buffer.strip(b"\r\n") else \
                    partial_since or time.monotonic()
        finally:
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _drain_stream(self, buffer: bytearray, peer: _Peer) -> bool:
        """Handle every complete item at the start of `buffer`; False to close the stream."""
        assert peer.writer is not None
        try:
            for kind, data in sip.take_frames(buffer):
                if kind == "ping":
                    peer.writer.write(b"\r\n")  # RFC 5626 §4.4.1 pong
                elif kind == "message":
                    try:
                        msg = sip.parse(data)
                    except SipError:
                        metrics.REJECTED.labels(TRANSPORT, "sip").inc()
                        return False
                    self._on_message(msg, peer)
        except SipError as err:
            # The stream cannot be resynchronised: answer if the head parses, then close.
            metrics.REJECTED.labels(TRANSPORT, "size" if err.status == 413 else "sip").inc()
            with contextlib.suppress(SipError):
                request = sip.parse(bytes(buffer[:sip.MAX_MESSAGE_BYTES]) + b"\r\n\r\n")
                if request.is_request:
                    peer.writer.write(sip.reject(request, err))
            return False
        return True

    def _on_message(self, msg: SipMessage, peer: _Peer) -> None:
        """Answer the SIP hop at once and, for a SCAIP MESSAGE, start its task."""
        started = time.monotonic()
        received_at = datetime.now(UTC)
        if not msg.is_request:
            self._on_response(msg)
            return
        if msg.method == "ACK":
            return  # never answered (RFC 3261 §17.2.1)
        if msg.method == "OPTIONS":
            # Units and proxies probe with OPTIONS; answering keeps their NAT binding alive.
            self._send(peer, sip.build_response(msg, 200, extra_headers=_ALLOW))
            return
        key = (msg.call_id or "", msg.header("CSeq") or "", _branch(msg))
        previous = self._transactions.get(key)
        if previous is not None:
            self._send(peer, previous)  # a SIP retransmission: same answer, not processed again
            return
        self._received.inc()
        if msg.method != "MESSAGE":
            self._refuse(msg, peer, SipError("method", "only MESSAGE is accepted", 405),
                         "method", extra_headers=_ALLOW)
            return
        if self._stopping or len(self._requests) >= MAX_IN_FLIGHT:
            self._refuse(msg, peer, SipError("gateway", "not taking requests now", 503),
                         "unavailable", extra_headers=(("Retry-After", "5"),))
            return
        wait = self._by_address.take(peer.addr[0])
        if wait:
            # A flood from one address (RFC 3261 §21.5.4: 503 with Retry-After); a unit takes
            # its alternative action, as for any receiver that cannot answer.
            metrics.RATE_LIMITED.labels(TRANSPORT, "address").inc()
            self._refuse(msg, peer, SipError("gateway", "too many requests", 503),
                         "rate", extra_headers=(("Retry-After", retry_after(wait)),))
            return
        if msg.media_type != SCAIP_MEDIA_TYPE:
            self._refuse(msg, peer, SipError("Content-Type", "expected " + SCAIP_MEDIA_TYPE,
                                             415), "content_type")
            return
        try:
            body = sip.decoded_body(msg)
            sip.uri_of(msg.header("From") or "")
            sip.uri_of(msg.header("To") or "")
        except SipError as err:
            reason = {413: "size", 415: "content_type"}.get(err.status, "sip")
            self._refuse(msg, peer, err, reason)
            return
        unit = None
        if self._auth is not None:
            verdict = self._auth.check(msg, peer.certified)
            if verdict.device_id is None:
                # Challenged (again): stored nowhere, and the same answer for a unit that is
                # not registered, so the port tells nobody which ones are.
                metrics.REJECTED.labels(TRANSPORT, "auth").inc()
                if verdict.failed:
                    log.info("scaip_unit_auth_failed", transport=peer.transport)
                challenge = sip.build_response(msg, 401, extra_headers=self._auth.challenge(
                    stale=verdict.stale))
                self._transactions.setdefault(key, challenge)
                self._send(peer, challenge)
                return
            unit = verdict.device_id
        response = sip.build_response(_with_received(msg, peer), 200)
        self._transactions.setdefault(key, response)
        self._send(peer, response)
        self._spawn(self._requests, self._process(msg, body, peer, started, received_at, unit),
                    name="sip-request")

    def _refuse(self, msg: SipMessage, peer: _Peer, error: SipError, reason: str, *,
                extra_headers: tuple[tuple[str, str], ...] = ()) -> None:
        metrics.REJECTED.labels(TRANSPORT, reason).inc()
        if extra_headers:
            answer = sip.build_response(msg, error.status, extra_headers=extra_headers)
        else:
            answer = sip.reject(msg, error)
        self._send(peer, answer)

    def _on_response(self, msg: SipMessage) -> None:
        """A unit's answer to one of our `<mrs>` MESSAGEs: stop retransmitting it."""
        cseq = msg.cseq
        if msg.status is not None and msg.status >= 200 and cseq and cseq[1] == "MESSAGE":
            answered = self._answered.get(msg.call_id or "")
            if answered is not None:
                answered.set()
            if msg.status >= 300:
                log.info("sip_mrs_refused_by_unit", status=msg.status)

    def _send(self, peer: _Peer, data: bytes) -> None:
        if peer.transport == "UDP":
            if self._udp is not None and not self._udp.is_closing():
                self._udp.sendto(data, peer.addr)
        elif peer.open:
            assert peer.writer is not None
            peer.writer.write(data)

    # --- one request -----------------------------------------------------------------------

    async def _process(self, msg: SipMessage, body: bytes, peer: _Peer, started: float,
                       received_at: datetime, unit: str | None) -> None:
        try:
            await self._answer(msg, body, peer, started, received_at, unit)
        except Exception:
            log.exception("sip_request_failed", transport=peer.transport)

    async def _answer(self, msg: SipMessage, body: bytes, peer: _Peer, started: float,
                      received_at: datetime, unit: str | None) -> None:
        """`unit`: who authenticated (None when units are not authenticated)."""
        try:
            parsed = scaip.parse_mrq(body, received_at=received_at)
        except ScaipError as err:
            metrics.REJECTED.labels(TRANSPORT, _SNU_REASON.get(err.snu, "undefined")).inc()
            # The element is named only when it is one of the standard's: an unknown one is the
            # sender's text, and nothing of the message's own is written to the log.
            log.info("scaip_refused", snu=int(err.snu), rule=err.reason,
                     element=err.field if err.field in _ELEMENTS else "other",
                     transport=peer.transport)
            await self._reply(msg, peer, scaip.error_mrs(err))
            return
        device = self._registry.device(parsed.device_id)
        if device is None or device.state == "retired":
            metrics.REJECTED.labels(TRANSPORT, "device").inc()
            log.warning("scaip_unit_not_registered", device_id=parsed.device_id,
                        ref=parsed.ref, mty=parsed.mty, alarm=_has_alarm(parsed))
            await self._reply(msg, peer, scaip.build_mrs(
                parsed.ref, Snu.NOT_TREATED, ste="unit not registered at this receiver"))
            return
        if unit is not None and not self._registry.may_speak_for(unit, parsed.device_id):
            # Authenticated, but as another unit: not its alarm to raise or cancel.
            metrics.REJECTED.labels(TRANSPORT, "auth").inc()
            log.warning("scaip_unit_not_permitted", device_id=parsed.device_id,
                        authenticated=unit, ref=parsed.ref)
            await self._reply(msg, peer, scaip.build_mrs(
                parsed.ref, Snu.NOT_TREATED, ste="not this unit's messages"))
            return
        first = self._resends.setdefault(
            (parsed.device_id, parsed.ref, parsed.mty, fingerprint(parsed, received_at)),
            received_at)
        if first != received_at:
            # A resend: parse again as if it arrived when the first copy did, so the event ids
            # are those of the first copy and the database keeps one.
            parsed = scaip.parse_mrq(body, received_at=first)
        for rejection in parsed.rejections:
            label = rejection.field.split("[", 1)[0].split(".", 1)[0] or "$"
            metrics.REJECTED.labels(TRANSPORT, label).inc()
        if parsed.more_fragments:
            log.info("scaip_fragment_not_reassembled", device_id=parsed.device_id,
                     ref=parsed.ref)
        # After the resend check: its fingerprint is of what the unit said, not of what the
        # assignment made of it. `first` is the receive time the event ids are derived from.
        events = dose_alarms.apply(
            parsed.events, self._registry.assignment_index(),
            lambda: scaip.parse_mrq(body, received_at=first, medication_alarms=True).events)
        try:
            outcome = await asyncio.wait_for(self._pipeline.commit(events),
                                             self._commit_hold_s)
        except TimeoutError:
            # The events stay queued and will be committed; the unit resends, the resend gets
            # the same ids and is answered snu=0 once they are stored.
            metrics.REJECTED.labels(TRANSPORT, "hold").inc()
            log.warning("scaip_commit_slow_hold", device_id=parsed.device_id, ref=parsed.ref)
            await self._reply(msg, peer, scaip.build_mrs(parsed.ref, Snu.HOLD))
            return
        if outcome.new:
            self._accepted.inc(len(outcome.new))
        if outcome.duplicates:
            self._duplicates.inc(len(outcome.duplicates))
        mrs = scaip.build_mrs(parsed.ref, Snu.OK, hbi=self._hbi if parsed.hbo else None)
        if parsed.hbo and self.on_hbi_granted is not None:
            self.on_hbi_granted(parsed.device_id, self._hbi)
        if await self._reply(msg, peer, mrs):
            self._acked.inc()
            self._ack_seconds.observe(time.monotonic() - started)

    async def _reply(self, request: SipMessage, peer: _Peer, mrs: bytes) -> bool:
        """Send `mrs` as a new MESSAGE to the sender of `request` (TR §7.5); False if it
        could not be sent at all (the unit will resend its request)."""
        contact = request.header("Contact")
        contact_uri: str | None = None
        if contact:
            with contextlib.suppress(SipError):
                contact_uri = sip.uri_of(contact)
        ids = sip.new_ids(self._via_host(request))
        port = {"UDP": self.udp_port, "TLS": self.tls_port}.get(peer.transport, self.tcp_port)
        try:
            data = sip.build_reply_message(
                request, mrs, ids=ids, cseq=next(self._cseq) % 2**31,
                via_sent_by=f"{_bracket(self._via_host(request))}:{port}",
                transport=peer.transport, request_uri=contact_uri)
        except SipError as err:
            log.warning("sip_mrs_not_built", field=err.field, reason=err.reason)
            return False
        if peer.transport == "UDP":
            self._send(peer, data)
            self._answered[ids.call_id] = asyncio.Event()
            self._spawn(self._resending, self._resend_until_answered(data, peer, ids.call_id),
                        name="sip-mrs-resend")
            return True
        if peer.open:
            assert peer.writer is not None
            try:
                peer.writer.write(data)
                await asyncio.wait_for(peer.writer.drain(), SEND_TIMEOUT_S)
                return True
            except (ConnectionError, TimeoutError):
                pass
        if peer.transport == "TLS":
            # Units hold no certificate the gateway could check: it does not dial them. The
            # unit resends its request on a new connection and is answered there.
            log.info("sip_mrs_unreachable", transport="TLS")
            return False
        return await self._send_tcp_new(request, peer, data, contact_uri)

    async def _resend_until_answered(self, data: bytes, peer: _Peer, call_id: str) -> None:
        """RFC 3261 §17.1.2: the MESSAGE was sent once; resend it after T1, 2T1, ... (at most T2
        apart) until the unit answers or 64*T1 have passed."""
        answered = self._answered[call_id]
        try:
            for attempt, wait in enumerate(sip.retransmit_waits()):
                if attempt:
                    self._send(peer, data)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(answered.wait(), wait)
                if answered.is_set():
                    return
            log.info("sip_mrs_unanswered", transport="UDP")
        finally:
            self._answered.pop(call_id, None)

    async def _send_tcp_new(self, request: SipMessage, peer: _Peer, data: bytes,
                            contact_uri: str | None) -> bool:
        """The request's connection has closed: connect to the unit again.

        The address is the peer's own (the request came from there); only the port is taken from
        the Contact or From URI. An unauthenticated request must not be able to make the gateway
        connect to a host of its choosing.
        """
        target = uri_hostport(contact_uri) if contact_uri else None
        if target is None:
            target = uri_hostport(sip.uri_of(request.header("From") or ""))
        port = (target[1] if target is not None else None) or 5060
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(peer.addr[0], port), SEND_TIMEOUT_S)
        except (OSError, TimeoutError):
            log.info("sip_mrs_unreachable", transport="TCP")
            return False
        try:
            writer.write(data)
            await asyncio.wait_for(writer.drain(), SEND_TIMEOUT_S)
            # Wait briefly for the unit's 200 so it is not cut off mid-answer.
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(reader.read(READ_SIZE), SEND_TIMEOUT_S)
            return True
        except (OSError, TimeoutError):
            log.info("sip_mrs_unreachable", transport="TCP")
            return False
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _via_host(self, request: SipMessage) -> str:
        """Our address for the Via of an outgoing MESSAGE: the configured host, or when that is
        a wildcard, the host the unit addressed its request to."""
        host = self._settings.sip_host
        if host not in ("", "0.0.0.0", "::"):  # noqa: S104 - comparing, not binding
            return host
        target = uri_hostport(request.uri or "")
        return target[0] if target is not None else "gateway"


def server_tls(settings: Settings) -> ssl.SSLContext:
    """The TLS listener's context: the gateway's certificate chain, TLS 1.2 at least. A missing
    or unusable file refuses start-up, naming the setting."""
    cert, key = settings.sip_tls_cert_file, settings.sip_tls_key_file
    if cert is None or key is None:
        raise ValueError("SIP_TLS_PORT needs SIP_TLS_CERT_FILE and SIP_TLS_KEY_FILE")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as err:
        raise ValueError(f"SIP_TLS_CERT_FILE/SIP_TLS_KEY_FILE: cannot use {cert} with {key} "
                         f"({type(err).__name__})") from None
    ca = settings.sip_tls_client_ca_file
    if ca is not None:  # units with a certificate of HMC's device CA need no Digest
        context.verify_mode = ssl.CERT_OPTIONAL
        try:
            context.load_verify_locations(cafile=str(ca))
        except (OSError, ssl.SSLError) as err:
            raise ValueError(f"SIP_TLS_CLIENT_CA_FILE: cannot use {ca} "
                             f"({type(err).__name__})") from None
    return context


def _certified_device(peercert: Any) -> str | None:
    """The common name of a client certificate the TLS handshake verified (only then does
    Python report it), which HMC's device CA sets to the unit's device id."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None


_ALLOW = (("Allow", "MESSAGE, OPTIONS"),)
_ELEMENTS = frozenset({"mrq", "ref", "ver", "sco", "cha", "mty", "hbo", "cid", "dty", "did", "dco",
                       "stc", "pri", "lco", "lva", "lge", "ico", "ite", "ame", "dte", "stt",
                       "lte", "crd"})


def _has_alarm(parsed: ScaipParsed) -> bool:
    return any(isinstance(e, Alarm) for e in parsed.events)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _branch(msg: SipMessage) -> str:
    top = (msg.header("Via") or "").split(",", 1)[0]
    match = re.search(r";\s*branch\s*=\s*([^;\s,]+)", top, re.IGNORECASE)
    return match.group(1) if match else ""


def _with_received(msg: SipMessage, peer: _Peer) -> SipMessage:
    """The request with `received` and `rport` filled into its top Via (RFC 3261 §18.2.1,
    RFC 3581), so the answer shows the unit the address its NAT gave it."""
    if peer.transport != "UDP":
        return msg
    headers = list(msg.headers)
    for index, (name, value) in enumerate(headers):
        if name != "Via":
            continue
        top, comma, rest = value.partition(",")
        params = top.split(";")
        sent_by = params[0].split()[-1] if params[0].split() else ""
        host = sent_by.rsplit("]", 1)[0].lstrip("[") if sent_by.startswith("[") \
            else sent_by.split(":", 1)[0]
        kept = [p for p in params[1:] if p.strip().split("=", 1)[0].lower() != "received"]
        has_rport = any(p.strip().split("=", 1)[0].lower() == "rport" for p in kept)
        kept = [f"rport={peer.addr[1]}" if p.strip().lower() == "rport" else p for p in kept]
        if has_rport or not _same_host(host, peer.addr[0]):
            kept.append(f"received={peer.addr[0]}")
        headers[index] = (name, ";".join([params[0], *kept]) + comma + rest)
        break
    return replace(msg, headers=tuple(headers))


def _same_host(host: str, ip: str) -> bool:
    try:
        return ipaddress.ip_address(host) == ipaddress.ip_address(ip)
    except ValueError:
        return False
