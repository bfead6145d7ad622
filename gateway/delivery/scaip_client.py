"""The gateway's side of SCAIP towards alarm centres: requests out, `<mrs>` in, over UDP (one
socket), TCP or TLS (one connection per ARC address, opened when first needed and again after
it drops).

An ARC answers our MESSAGE twice (SIS-TR 91102 §7.5): `200 OK` for the SIP hop, then its
`<mrs>` as a *separate* MESSAGE to the address the request came from (over a stream: on the same
connection), which we answer with `200 OK`. `request()` sends one `<mrq>` (over UDP
retransmitted with RFC 3261 timer E until the hop is answered; a stream is reliable, so never)
and waits for the `<mrs>` carrying its ref from the ARC the request went to. What the ARC
answers is returned as it is; what to do about it (hold, busy, silence, a connection that
cannot be made) is gateway.delivery.arc's business.

Nothing of a message's content is logged: refs, addresses and status codes only.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from adapters import scaip, sip, sip_digest
from adapters.errors import AdapterError
from adapters.scaip import ScaipResponse
from adapters.sip import SipMessage
from gateway.delivery.arc_config import ArcAddress
from gateway.observability.logs import get as get_logger

log = get_logger("scaip_client")
SCAIP_MEDIA_TYPE = "application/scaip+xml"
READ_SIZE = 65536
RESOLVE_TTL_S = 60.0
Reply = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class Answer:
    """How one request went: the ARC's `<mrs>`, or why there is none."""

    mrs: ScaipResponse | None
    sip_status: int | None  # the hop's final status; None when the hop was never answered
    elapsed_s: float
    # Why nothing could be sent: the error's class (a name that could not be resolved, a
    # connection refused, a certificate not trusted), never its text.
    failure: str | None = None

    @property
    def outcome(self) -> str:
        if self.mrs is not None:
            return "answered"
        if self.sip_status is not None and self.sip_status >= 300:
            return f"sip {self.sip_status}"
        return "no answer"


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, client: ScaipClient) -> None:
        self._client = client

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._client.on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable: the request times out and the ARC is escalated from


@dataclass(slots=True)
class _Challenge:
    """An ARC's last Digest challenge, answered again with a rising nonce count."""

    challenge: sip_digest.Challenge
    header: str  # Authorization or Proxy-Authorization
    count: int = 0


def _keep_alive(sock: socket.socket | None) -> None:
    """TCP keep-alive after 30 s idle, so a connection that died silently (a NAT or firewall
    that dropped it between alarms) is found within about a minute, not at the next alarm."""
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


class _Stream:
    """One TCP or TLS connection to an ARC address, with its reader."""

    def __init__(self, target: ArcAddress, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.target = target
        self.reader = reader
        self.writer = writer
        self.task: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return not self.writer.is_closing() and self.task is not None and not self.task.done()

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def close(self) -> None:
        self.writer.close()


class ScaipClient:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, t1_s: float = sip.T1_S) -> None:
        self.host = host
        self.port = port
        self.t1_s = t1_s
        self._transport: asyncio.DatagramTransport | None = None
        self._hops: dict[str, asyncio.Future[SipMessage]] = {}  # Call-ID -> final response
        # (ref, the ARC's address) -> its <mrs>. The address matters: after moving on from an
        # ARC the gateway sends it `mty=RE` with the same ref, and its answer to that must not
        # be taken for the next ARC's answer.
        self._answers: dict[tuple[str, ArcAddress], asyncio.Future[ScaipResponse]] = {}
        self._cseq = 0
        self._tls: dict[ArcAddress, ssl.SSLContext] = {}
        self._streams: dict[ArcAddress, _Stream] = {}
        self._connecting: dict[ArcAddress, asyncio.Lock] = {}
        self._resolved: dict[ArcAddress, tuple[ArcAddress, float]] = {}  # -> (IP, until)
        self._credentials: dict[ArcAddress, tuple[str, str]] = {}
        self._failures: dict[ArcAddress, str] = {}  # the last reason nothing could be sent
        self._challenges: dict[ArcAddress, _Challenge] = {}
        self._family = socket.AF_INET

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.host, self.port))
        self._transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])
        self._family = transport.get_extra_info("socket").family

    def use_tls(self, context: ssl.SSLContext, *targets: ArcAddress) -> None:
        """The context to connect to these tls:// addresses with."""
        for target in targets:
            self._tls[target] = context

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        streams = list(self._streams.values())
        self._streams.clear()
        for stream in streams:
            stream.close()
            if stream.task is not None:
                stream.task.cancel()
        await asyncio.gather(*(st.task for st in streams if st.task is not None),
                             return_exceptions=True)
        for hop in self._hops.values():
            hop.cancel()
        for answer in self._answers.values():
            answer.cancel()

    @property
    def uri(self) -> str:
        return f"sip:gateway@{self.host}:{self.port}"

    async def request(self, target: ArcAddress, mrq: bytes, ref: str, *,
                      timeout_s: float) -> Answer:
        """Send `mrq` to `target` and wait up to `timeout_s` for its `<mrs>`."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        configured = target  # what credentials and TLS are registered under
        if target.transport == "udp":
            # The <mrs> comes from the ARC's IP address: a name must be resolved to match it.
            resolved = await self._resolve(target)
            if resolved is None:
                return Answer(None, None, time.monotonic() - started,
                              self._failures.get(target))
            target = resolved
        key = (ref, target)
        answer = self._answers.get(key)
        if answer is None or answer.done():
            answer = loop.create_future()
            self._answers[key] = answer
        ids = sip.new_ids(self.host)
        try:
            status: int | None = None
            for attempt in range(2):  # the second only to answer a Digest challenge
                if attempt:  # the same call, a new transaction (RFC 3261 §22.2)
                    ids = sip.NewIds(ids.call_id, ids.from_tag, sip.new_ids(self.host).branch)
                request = self._message(target, mrq, ids, self._credentials_for(configured,
                                                                                target))
                hop: asyncio.Future[SipMessage] = loop.create_future()
                self._hops[ids.call_id] = hop
                left = timeout_s - (time.monotonic() - started)
                if target.transport == "udp":
                    response = await self._transact(request, (target.host, target.port), hop,
                                                    left)
                else:
                    stream = await self._stream(target, left)
                    if stream is None:  # refused, unreachable or not trusted: known now
                        return Answer(None, None, time.monotonic() - started,
                                      self._failures.get(target))
                    response = await self._transact_stream(
                        request, stream, hop, timeout_s - (time.monotonic() - started))
                status = None if response is None else response.status
                if response is None or status not in (401, 407) or \
                        not self._challenged(configured, response, retried=attempt > 0):
                    break
            if status is not None and status >= 300:
                return Answer(None, status, time.monotonic() - started)
            left = timeout_s - (time.monotonic() - started)
            try:
                mrs = await asyncio.wait_for(asyncio.shield(answer), max(left, 0.0))
            except TimeoutError:
                return Answer(None, status, time.monotonic() - started)
            return Answer(mrs, status, time.monotonic() - started)
        finally:
            self._hops.pop(ids.call_id, None)
            if self._answers.get(key) is answer:
                self._answers.pop(key, None)

    # --- Digest (SS 91100 §8) -----------------------------------------------------------------

    def use_digest(self, username: str, password: str, *targets: ArcAddress) -> None:
        """Answer these ARCs' Digest challenges as `username`."""
        for target in targets:
            self._credentials[target] = (username, password)

    def _challenged(self, configured: ArcAddress, response: SipMessage, *,
                    retried: bool) -> bool:
        """Learn the challenge in a 401/407; True when the request should go again with it."""
        credentials = self._credentials.get(configured)
        if credentials is None:
            log.warning("arc_asks_for_credentials", arc=str(configured))
            return False
        asked = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        try:
            challenge = sip_digest.parse_challenge(response.header(asked) or "", asked)
        except AdapterError as err:
            log.warning("arc_challenge_unreadable", arc=str(configured), field=err.field)
            return False
        if retried and not challenge.stale:  # a fresh answer was refused: the password
            log.error("arc_refused_credentials", arc=str(configured))
            return False
        answer = "Authorization" if response.status == 401 else "Proxy-Authorization"
        self._challenges[configured] = _Challenge(challenge, answer)
        return True

    def _credentials_for(self, configured: ArcAddress,
                         target: ArcAddress) -> tuple[tuple[str, str], ...]:
        """The Authorization header for the last challenge of this ARC (nonce reused, its
        count raised), so an alarm does not pay a second round trip; none before the first."""
        credentials = self._credentials.get(configured)
        known = self._challenges.get(configured)
        if credentials is None or known is None:
            return ()
        known.count += 1
        value = sip_digest.authorization(
            known.challenge, method="MESSAGE", uri=self._request_uri(target),
            username=credentials[0], password=credentials[1], nc=known.count,
            cnonce=secrets.token_hex(8))
        return ((known.header, value),)

    async def _resolve(self, target: ArcAddress) -> ArcAddress | None:
        cached = self._resolved.get(target)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                target.host, target.port, type=socket.SOCK_DGRAM)
        except OSError as err:
            log.warning("arc_address_unresolved", arc=str(target), error=type(err).__name__)
            self._failures[target] = type(err).__name__
            return None
        # The family our socket speaks first; then any.
        family = self._family
        info = next((i for i in infos if i[0] == family), infos[0])
        resolved = ArcAddress("udp", str(info[4][0]), int(info[4][1]))
        self._resolved[target] = (resolved, time.monotonic() + RESOLVE_TTL_S)
        return resolved

    def send_only(self, target: ArcAddress, mrq: bytes) -> None:
        """Fire and forget (a reset to an ARC we stopped waiting for): one datagram, or one
        write on the connection when it is open (a closed one is not reopened for this)."""
        request = self._message(target, mrq, sip.new_ids(self.host),
                                self._credentials_for(target, target))
        if target.transport == "udp":
            cached = self._resolved.get(target)
            address = cached[0] if cached is not None else target
            self._send(request, (address.host, address.port))
        elif (stream := self._streams.get(target)) is not None and stream.open:
            stream.write(request)

    @staticmethod
    def _request_uri(target: ArcAddress) -> str:
        host = f"[{target.host}]" if ":" in target.host else target.host
        return f"{'sips' if target.transport == 'tls' else 'sip'}:arc@{host}:{target.port}"

    def _message(self, target: ArcAddress, body: bytes, ids: sip.NewIds,
                 headers: tuple[tuple[str, str], ...] = ()) -> bytes:
        self._cseq += 1
        arc = self._request_uri(target)
        uri = self.uri if target.transport == "udp" else f"{self.uri};transport={target.transport}"
        return sip.build_message(
            request_uri=arc, from_uri=uri, to_uri=arc, ids=ids, cseq=self._cseq,
            via_sent_by=f"{self.host}:{self.port};rport", body=body,
            transport=target.transport.upper(), contact=uri, extra_headers=headers)

    async def _transact(self, request: bytes, target: tuple[str, int],
                        hop: asyncio.Future[SipMessage], timeout_s: float) -> SipMessage | None:
        """Send and retransmit (timer E) until the hop's final answer or `timeout_s`."""
        self._send(request, target)
        for wait in sip.retransmit_waits(self.t1_s, timeout_s):
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(hop), wait)
            self._send(request, target)
        return None

    @staticmethod
    async def _transact_stream(request: bytes, stream: _Stream,
                               hop: asyncio.Future[SipMessage],
                               timeout_s: float) -> SipMessage | None:
        """On the ARC's connection: send once (it is reliable) and wait for the hop's final
        answer or `timeout_s`. No answer at all on a reliable transport means the connection
        is likely dead without having said so (a NAT that forgot it): it is closed, so the next
        request, to this ARC or after escalating back to it, opens a new one."""
        stream.write(request)
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(hop), max(timeout_s, 0.0))
        log.warning("arc_stream_unanswered_closing", arc=str(stream.target))
        stream.close()
        return None

    async def _stream(self, target: ArcAddress, timeout_s: float) -> _Stream | None:
        stream = self._streams.get(target)
        if stream is not None and stream.open:
            return stream
        lock = self._connecting.setdefault(target, asyncio.Lock())
        async with lock:  # one connection per address, however many alarms wait for it
            stream = self._streams.get(target)
            if stream is not None and stream.open:
                return stream
            context = self._tls.get(target) if target.transport == "tls" else None
            if target.transport == "tls" and context is None:
                log.error("arc_tls_not_configured", arc=str(target))
                self._failures[target] = "no TLS configuration"
                return None
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(
                    target.host, target.port, ssl=context,
                    server_hostname=target.host if context is not None else None), timeout_s)
            except (OSError, ssl.SSLError, TimeoutError) as err:
                # The class only: a certificate error's text is the ARC's, not ours to log.
                log.warning("arc_connect_failed", arc=str(target), error=type(err).__name__)
                self._failures[target] = type(err).__name__
                return None
            _keep_alive(writer.get_extra_info("socket"))
            stream = _Stream(target, reader, writer)
            stream.task = asyncio.create_task(self._read(stream), name=f"arc-stream-{target}")
            self._streams[target] = stream
            log.info("arc_connected", arc=str(target))
            return stream

    async def _read(self, stream: _Stream) -> None:
        buffer = bytearray()
        try:
            while chunk := await stream.reader.read(READ_SIZE):
                buffer += chunk
                for kind, data in sip.take_frames(buffer):
                    if kind == "ping":
                        stream.write(b"\r\n")  # RFC 5626 keep-alive: pong
                    elif kind == "message":
                        self._on_data(data, stream.target, stream.write)
        except (OSError, ssl.SSLError, AdapterError) as err:
            # A stream that cannot be framed cannot be resynchronised: the next request
            # opens a new connection.
            log.warning("arc_stream_closed", arc=str(stream.target), error=type(err).__name__)
        finally:
            stream.close()
            if self._streams.get(stream.target) is stream:
                del self._streams[stream.target]

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(data, addr)

    # --- incoming -----------------------------------------------------------------------------

    def on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        self._on_data(data, ArcAddress("udp", addr[0], addr[1]),
                      lambda answer: self._send(answer, addr))

    def _on_data(self, data: bytes, source: ArcAddress, reply: Reply) -> None:
        try:
            msg = sip.parse(data)
        except AdapterError:
            return  # not SIP: nothing can be answered
        try:
            if msg.is_request:
                self._on_request(msg, source, reply)
            else:
                self._on_response(msg)
        except Exception:  # one odd message must not stop the socket or the stream
            log.exception("scaip_client_message_failed")

    def _on_response(self, msg: SipMessage) -> None:
        call_id = msg.call_id
        hop = self._hops.get(call_id) if call_id is not None else None
        if hop is not None and not hop.done() and msg.status is not None and msg.status >= 200:
            hop.set_result(msg)

    def _on_request(self, msg: SipMessage, source: ArcAddress, reply: Reply) -> None:
        if msg.method == "OPTIONS":
            reply(sip.build_response(msg, 200))
            return
        if msg.method != "MESSAGE":
            reply(sip.build_response(msg, 405, extra_headers=(("Allow", "MESSAGE, OPTIONS"),)))
            return
        if msg.media_type not in (SCAIP_MEDIA_TYPE, None):
            reply(sip.build_response(msg, 415))
            return
        # The hop is answered whatever the body says: a retransmitted <mrs> gets 200 again.
        reply(sip.build_response(msg, 200))
        try:
            mrs = scaip.parse_mrs(sip.decoded_body(msg))
        except AdapterError as err:
            log.warning("arc_mrs_unreadable", field=err.field)
            return
        if mrs.ref is None:
            return
        waiter = self._answers.get((mrs.ref, source))
        if waiter is not None and not waiter.done():
            waiter.set_result(mrs)
