"""A simulated SCAIP alarm receiving centre (ARC, SS 91100), for tests and the demo.

It is the receiving side of simulator/scaip_device.py: a unit sends its `<mrq>` in a SIP
MESSAGE; the ARC answers the SIP hop with `200 OK` at once, parses the `<mrq>`
(adapters/scaip.py) and sends its `<mrs>` as a *separate* SIP MESSAGE back to the sender
(SIS-TR 91102 §7.5): over UDP to the address and port the request came from, retransmitted
after T1, 2T1, ... (at most 4 s apart) until the unit answers it or `mrs_retransmit_s` pass; over
TCP on the connection the request came on (not retransmitted; if the connection has closed,
the answer is lost, as the unit's own resend logic then covers).

How it answers is set per test with `mode` (and may be changed while it runs):

| mode | SIP hop | `<mrs>` to an alarm (`ME`, `IN`, `RE`) |
|---|---|---|
| `ok` | 200 | `snu=0` |
| `hold_then_ok` | 200 | `snu=4` to the first `holds` requests of each ref, then `snu=0` |
| `busy` | 200 | `snu=6` |
| `not_treated` | 200 | `snu=5` |
| `silent` | 200 | none |
| `drop` | none | none (nothing at all is sent, not even for OPTIONS) |

Heartbeats (`mty=PI`) get `snu=0` in every mode that answers (the modes describe alarm
handling; a keep-alive is always acknowledged). Every `snu=0` answer to a request with
`hbo=001` carries `<hbi>` (as the gateway's own listener does). A malformed `<mrq>` gets the
message-error `snu` adapters/scaip.py names (1, 2, 3, 7, 10, 99) in every mode that answers.

What it records, for assertions (`received`, `sends`): per SCAIP-level request the ref, `mty`,
device id, arrival time (`time.monotonic()`), transport and the `snu` it answered; and how many
times each ref was sent. SIP retransmissions of one transaction (same Call-ID, CSeq and branch)
get the same SIP answer again and are counted in `retransmissions`, not as new requests.
Nothing of the message's content (positions, status codes, texts) is kept.

Bad input never raises: non-SIP datagrams are ignored (counted in `garbage`), a stream that
cannot be framed is closed, a non-MESSAGE method gets 405 (OPTIONS 200), another content type
415. A fault of the simulator itself on one message is counted in `faults` and that message is
dropped; tests can assert it stays 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import ssl
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, get_args

from adapters import scaip, sip, sip_digest
from adapters.errors import AdapterError
from adapters.events import Alarm, Location
from adapters.scaip import Mty, ScaipError, Snu
from adapters.sip import SipError, SipMessage

Mode = Literal["ok", "hold_then_ok", "busy", "not_treated", "silent", "drop"]
MODES: tuple[str, ...] = get_args(Mode)
SCAIP_MEDIA_TYPE = "application/scaip+xml"
DIGEST_REALM = "simulated-arc"
READ_SIZE = 16_384
_TRANSACTIONS_MAX = 10_000
_ALLOW = (("Allow", "MESSAGE, OPTIONS"),)
_MODE_SNU: dict[str, Snu] = {"ok": Snu.OK, "busy": Snu.BUSY, "not_treated": Snu.NOT_TREATED}


@dataclass(frozen=True, slots=True)
class Received:
    """One SCAIP-level request as the ARC saw it (SIP retransmissions not repeated)."""

    ref: str | None  # None when the request had no readable ref
    mty: str | None  # None when the `<mrq>` could not be parsed
    device_id: str | None  # `scaip:<cid>[:<did>]`; None when not parsed
    at: float  # time.monotonic() on arrival
    transport: str  # "UDP", "TCP" or "TLS"
    snu: int | None  # what the ARC answered; None when it sent no `<mrs>`
    hbo: bool = False
    location: Location | None = None  # where in the home, when the alarm said (lco, lva, lte)


@dataclass(slots=True)
class _Peer:
    transport: str
    addr: tuple[str, int]
    writer: asyncio.StreamWriter | None = None


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, arc: ScaipArc) -> None:
        self._arc = arc

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._arc.on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable: a unit that went away; its retransmission task ends


class ScaipArc:
    """An asyncio SCAIP ARC on UDP (and TCP) at `host`:`port` (0 = any free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, mode: Mode = "ok",
                 holds: int = 2, hbi: int = 10, mre: int | None = None, tcp: bool = True,
                 t1_s: float = 0.5, mrs_retransmit_s: float = 32.0,
                 tls: ssl.SSLContext | None = None,
                 digest: tuple[str, str] | None = None) -> None:
        if not 1 <= hbi <= 1440:
            raise ValueError("hbi must be 1-1440 minutes")
        if mre is not None and not 0 <= mre <= 3:
            raise ValueError("mre must be 0-3")
        if holds < 0:
            raise ValueError("holds must be >= 0")
        self.host = host
        self.port = port
        self.mode = mode
        self.holds = holds
        self.hbi = hbi
        self.mre = mre
        self.tcp = tcp
        self.tls = tls  # a server context: the stream port speaks TLS (SIP over TLS)
        # (user, password): every MESSAGE must carry Digest credentials (SS 91100 §8)
        self.digest = digest
        self.challenges = 0  # 401s sent
        self._nonces: set[str] = set()
        self.t1_s = t1_s
        self.mrs_retransmit_s = mrs_retransmit_s
        self.udp_port = 0
        self.tcp_port = 0
        self.received: list[Received] = []
        self.sends: Counter[str] = Counter()  # SCAIP-level requests per ref
        self.retransmissions = 0  # SIP retransmissions of a transaction already seen
        self.garbage = 0  # datagrams or streams that were not SIP
        self.connections = 0  # TCP or TLS connections accepted
        self.faults = 0  # faults of the simulator itself; should stay 0
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._answered: dict[str, asyncio.Event] = {}  # Call-ID of an `<mrs>` sent over UDP
        self._transactions: OrderedDict[tuple[str, str, str], bytes | None] = OrderedDict()
        self._cseq = itertools.count(1)

    # --- configuration and recordings ------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, value: Mode) -> None:
        if value not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        self._mode = value

    @property
    def address(self) -> tuple[str, int]:
        """Where units send over UDP (the host and the bound port)."""
        return (self.host, self.udp_port)

    def requests(self, ref: str) -> list[Received]:
        return [r for r in self.received if r.ref == ref]

    def clear(self) -> None:
        """Forget what was recorded (between phases of one test)."""
        self.received.clear()
        self.sends.clear()
        self.retransmissions = self.garbage = self.faults = 0

    # --- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(self.host, self.port))
        self._udp = transport
        self.udp_port = int(transport.get_extra_info("sockname")[1])
        if self.tcp:
            # Same port number as UDP when free (as a SIP receiver listens); else any port.
            try:
                self._server = await asyncio.start_server(self._on_connection, self.host,
                                                          self.udp_port, ssl=self.tls)
            except OSError:
                if self.port:
                    raise
                self._server = await asyncio.start_server(self._on_connection, self.host, 0,
                                                          ssl=self.tls)
            self.tcp_port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    async def __aenter__(self) -> ScaipArc:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # --- intake ----------------------------------------------------------------------------

    def on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if data.strip(b"\r\n") == b"":
            return  # a keep-alive
        try:
            msg = sip.parse(data)
        except AdapterError:
            self.garbage += 1
            return
        self._guarded(msg, _Peer("UDP", addr))

    async def _on_connection(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        self.connections += 1
        peer = _Peer("TLS" if self.tls is not None else "TCP",
                     (str(peername[0]), int(peername[1])), writer)
        self._writers.add(writer)
        buffer = bytearray()
        try:
            while True:
                try:
                    chunk = await reader.read(READ_SIZE)
                except ConnectionError:
                    return
                if not chunk:
                    return
                buffer += chunk
                if not self._drain_stream(buffer, peer):
                    return
        finally:
            self._writers.discard(writer)
            writer.close()

    def _drain_stream(self, buffer: bytearray, peer: _Peer) -> bool:
        """Handle every complete item in `buffer`; False when the stream must be closed."""
        try:
            for kind, data in sip.take_frames(buffer):
                if kind == "ping":
                    self._send(peer, b"\r\n")
                elif kind == "message":
                    self._guarded(sip.parse(data), peer)
        except AdapterError:
            self.garbage += 1
            return False  # a stream that cannot be framed cannot be resynchronised
        return True

    def _guarded(self, msg: SipMessage, peer: _Peer) -> None:
        try:
            self._on_message(msg, peer)
        except Exception:  # a fault of ours must not take the listener down
            self.faults += 1

    def _on_message(self, msg: SipMessage, peer: _Peer) -> None:
        if self._mode == "drop":
            if msg.is_request and msg.method == "MESSAGE":
                if self._is_retransmission(msg) is None:
                    self._record_dropped(msg, peer)
            return
        if not msg.is_request:
            self._on_response(msg)
            return
        if msg.method == "ACK":
            return
        if msg.method == "OPTIONS":
            self._send(peer, sip.build_response(msg, 200, extra_headers=_ALLOW))
            return
        previous = self._is_retransmission(msg)
        if previous is not None:
            self._send(peer, previous)
            return
        if msg.method != "MESSAGE":
            answer = sip.build_response(msg, 405, extra_headers=_ALLOW)
        elif self.digest is not None and not self._authorized(msg):
            self.challenges += 1
            nonce = secrets.token_hex(16)
            self._nonces.add(nonce)
            answer = sip.build_response(msg, 401, extra_headers=((
                "WWW-Authenticate",
                f'Digest realm="{DIGEST_REALM}", nonce="{nonce}", qop="auth", algorithm=MD5'),))
        elif msg.media_type != SCAIP_MEDIA_TYPE:
            answer = sip.reject(msg, SipError("Content-Type", "expected " + SCAIP_MEDIA_TYPE,
                                              415))
        else:
            try:
                body = sip.decoded_body(msg)
            except SipError as err:
                answer = sip.reject(msg, err)
            else:
                answer = sip.build_response(msg, 200)
                self._remember(msg, answer)
                self._send(peer, answer)
                self._answer_scaip(msg, body, peer)
                return
        self._remember(msg, answer)
        self._send(peer, answer)

    def _authorized(self, msg: SipMessage) -> bool:
        assert self.digest is not None
        value = msg.header("Authorization")
        if value is None:
            return False
        with contextlib.suppress(SipError):
            return sip_digest.verify(value, method="MESSAGE", realm=DIGEST_REALM,
                                     nonces=self._nonces, username=self.digest[0],
                                     password=self.digest[1])
        return False

    def _on_response(self, msg: SipMessage) -> None:
        """The unit's answer to one of our `<mrs>` MESSAGEs: stop retransmitting it."""
        if msg.status is not None and msg.status >= 200:
            event = self._answered.get(msg.call_id or "")
            if event is not None:
                event.set()

    # --- the SCAIP level -------------------------------------------------------------------

    def _answer_scaip(self, msg: SipMessage, body: bytes, peer: _Peer) -> None:
        now = time.monotonic()
        try:
            parsed = scaip.parse_mrq(body, received_at=datetime.now(UTC))
        except ScaipError as err:
            if err.ref is not None:
                self.sends[err.ref] += 1
            mrs = None if self._mode == "silent" else scaip.error_mrs(err)
            self.received.append(Received(err.ref, None, None, now, peer.transport,
                                          int(err.snu) if mrs is not None else None))
            if mrs is not None:
                self._reply(msg, peer, mrs)
            return
        self.sends[parsed.ref] += 1
        snu = self._snu_for(parsed.ref, parsed.mty)
        where = next((e.location for e in parsed.events if isinstance(e, Alarm)), None)
        self.received.append(Received(parsed.ref, parsed.mty, parsed.device_id, now,
                                      peer.transport, int(snu) if snu is not None else None,
                                      parsed.hbo, where))
        if snu is None:
            return
        ok = snu == Snu.OK
        self._reply(msg, peer, scaip.build_mrs(
            parsed.ref, snu, hbi=self.hbi if ok and parsed.hbo else None,
            mre=self.mre if ok and parsed.mty != Mty.PING else None))

    def _snu_for(self, ref: str, mty: str) -> Snu | None:
        if self._mode == "silent":
            return None
        if mty == Mty.PING:
            return Snu.OK
        if self._mode == "hold_then_ok":
            return Snu.HOLD if self.sends[ref] <= self.holds else Snu.OK
        return _MODE_SNU[self._mode]

    def _record_dropped(self, msg: SipMessage, peer: _Peer) -> None:
        """In `drop` mode: note the request (ref and mty only) without answering anything."""
        ref: str | None = None
        mty: str | None = None
        device: str | None = None
        with contextlib.suppress(AdapterError):
            parsed = scaip.parse_mrq(sip.decoded_body(msg), received_at=datetime.now(UTC))
            ref, mty, device = parsed.ref, parsed.mty, parsed.device_id
        if ref is not None:
            self.sends[ref] += 1
        self.received.append(Received(ref, mty, device, time.monotonic(), peer.transport,
                                      None))

    def _reply(self, request: SipMessage, peer: _Peer, mrs: bytes) -> None:
        """Send `mrs` as a new MESSAGE to the request's sender (TR §7.5)."""
        contact_uri: str | None = None
        with contextlib.suppress(SipError):
            contact_uri = sip.uri_of(request.header("Contact") or "")
        ids = sip.new_ids(self._via_host())
        port = self.udp_port if peer.transport == "UDP" else self.tcp_port
        try:
            data = sip.build_reply_message(request, mrs, ids=ids, cseq=next(self._cseq) % 2**31,
                                           via_sent_by=f"{self._via_host()}:{port}",
                                           transport=peer.transport, request_uri=contact_uri)
        except SipError:
            return  # no usable From URI: nowhere to address the answer
        self._send(peer, data)
        if peer.transport == "UDP":
            self._answered[ids.call_id] = asyncio.Event()
            task = asyncio.get_running_loop().create_task(
                self._retransmit(data, peer, ids.call_id), name="arc-mrs-retransmit")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _retransmit(self, data: bytes, peer: _Peer, call_id: str) -> None:
        """RFC 3261 §17.1.2: resend after T1, 2T1, ... (at most T2 apart) until answered."""
        answered = self._answered[call_id]
        try:
            for attempt, wait in enumerate(sip.retransmit_waits(self.t1_s,
                                                                self.mrs_retransmit_s)):
                if attempt:
                    self._send(peer, data)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(answered.wait(), wait)
                if answered.is_set() or self._mode == "drop":
                    return
        finally:
            self._answered.pop(call_id, None)

    # --- helpers ---------------------------------------------------------------------------

    def _is_retransmission(self, msg: SipMessage) -> bytes | None:
        """The answer already sent for this transaction, or None when it is new.

        In `drop` mode nothing was sent; an empty answer then marks the transaction as seen.
        """
        key = _transaction_key(msg)
        if key in self._transactions:
            self.retransmissions += 1
            return self._transactions[key] or b""
        if self._mode == "drop":
            self._transactions[key] = None
            self._trim()
        return None

    def _remember(self, msg: SipMessage, answer: bytes) -> None:
        self._transactions[_transaction_key(msg)] = answer
        self._trim()

    def _trim(self) -> None:
        while len(self._transactions) > _TRANSACTIONS_MAX:
            self._transactions.popitem(last=False)

    def _send(self, peer: _Peer, data: bytes) -> None:
        if not data or self._mode == "drop":
            return
        if peer.transport == "UDP":
            if self._udp is not None and not self._udp.is_closing():
                self._udp.sendto(data, peer.addr)
        elif peer.writer is not None and not peer.writer.is_closing():
            peer.writer.write(data)

    def _via_host(self) -> str:
        if self.host in ("", "0.0.0.0"):  # noqa: S104 - comparing, not binding
            return "127.0.0.1"
        if self.host == "::":
            return "[::1]"
        return f"[{self.host}]" if ":" in self.host else self.host


def _transaction_key(msg: SipMessage) -> tuple[str, str, str]:
    top = (msg.header("Via") or "").split(",", 1)[0]
    branch = ""
    for param in top.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "branch":
            branch = value.strip()
    return (msg.call_id or "", msg.header("CSeq") or "", branch)
