"""The gateway's side of SCAIP towards alarm centres: one UDP socket, requests out, `<mrs>` in.

An ARC answers our MESSAGE twice (SIS-TR 91102 §7.5): `200 OK` for the SIP hop, then its
`<mrs>` as a *separate* MESSAGE to the address the request came from, which we answer with
`200 OK`. `request()` sends one `<mrq>` (retransmitted with RFC 3261 timer E until the hop is
answered) and waits for the `<mrs>` carrying its ref from the address the request went to (an
ARC answers from its SIP socket). What the ARC answers is returned as it is; what to do about it
(hold, busy, silence) is gateway.delivery.arc's business.

Nothing of a message's content is logged: refs, addresses and status codes only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from adapters import scaip, sip
from adapters.errors import AdapterError
from adapters.scaip import ScaipResponse
from adapters.sip import SipMessage
from gateway.logs import get as get_logger

log = get_logger("scaip_client")
SCAIP_MEDIA_TYPE = "application/scaip+xml"


@dataclass(frozen=True, slots=True)
class Answer:
    """How one request went: the ARC's `<mrs>`, or why there is none."""

    mrs: ScaipResponse | None
    sip_status: int | None  # the hop's final status; None when the hop was never answered
    elapsed_s: float

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


class ScaipClient:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, t1_s: float = sip.T1_S) -> None:
        self.host = host
        self.port = port
        self.t1_s = t1_s
        self._transport: asyncio.DatagramTransport | None = None
        self._hops: dict[str, asyncio.Future[int]] = {}  # Call-ID -> final status
        # (ref, the ARC's address) -> its <mrs>. The address matters: after moving on from an
        # ARC the gateway sends it `mty=RE` with the same ref, and its answer to that must not
        # be taken for the next ARC's answer.
        self._answers: dict[tuple[str, tuple[str, int]], asyncio.Future[ScaipResponse]] = {}
        self._cseq = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.host, self.port))
        self._transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for hop in self._hops.values():
            hop.cancel()
        for answer in self._answers.values():
            answer.cancel()

    @property
    def uri(self) -> str:
        return f"sip:gateway@{self.host}:{self.port}"

    async def request(self, target: tuple[str, int], mrq: bytes, ref: str, *,
                      timeout_s: float) -> Answer:
        """Send `mrq` to `target` and wait up to `timeout_s` for its `<mrs>`."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        ids, request = self._message(target, mrq)
        hop: asyncio.Future[int] = loop.create_future()
        key = (ref, target)
        answer = self._answers.get(key)
        if answer is None or answer.done():
            answer = loop.create_future()
            self._answers[key] = answer
        self._hops[ids.call_id] = hop
        try:
            status = await self._transact(request, target, hop, timeout_s)
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

    def send_only(self, target: tuple[str, int], mrq: bytes) -> None:
        """Fire and forget (a reset to an ARC we stopped waiting for): one datagram."""
        self._send(self._message(target, mrq)[1], target)

    def _message(self, target: tuple[str, int], body: bytes) -> tuple[sip.NewIds, bytes]:
        self._cseq += 1
        ids = sip.new_ids(self.host)
        arc = f"sip:arc@{target[0]}:{target[1]}"
        return ids, sip.build_message(
            request_uri=arc, from_uri=self.uri, to_uri=arc, ids=ids, cseq=self._cseq,
            via_sent_by=f"{self.host}:{self.port};rport", body=body, transport="UDP",
            contact=self.uri)

    async def _transact(self, request: bytes, target: tuple[str, int], hop: asyncio.Future[int],
                        timeout_s: float) -> int | None:
        """Send and retransmit (timer E) until the hop's final answer or `timeout_s`."""
        self._send(request, target)
        for wait in sip.retransmit_waits(self.t1_s, timeout_s):
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(hop), wait)
            self._send(request, target)
        return None

    def _send(self, data: bytes, target: tuple[str, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(data, target)

    # --- incoming -----------------------------------------------------------------------------

    def on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            msg = sip.parse(data)
        except AdapterError:
            return  # not SIP: nothing can be answered
        try:
            if msg.is_request:
                self._on_request(msg, addr)
            else:
                self._on_response(msg)
        except Exception:  # one odd datagram must not stop the socket
            log.exception("scaip_client_datagram_failed")

    def _on_response(self, msg: SipMessage) -> None:
        call_id = msg.call_id
        hop = self._hops.get(call_id) if call_id is not None else None
        if hop is not None and not hop.done() and msg.status is not None and msg.status >= 200:
            hop.set_result(msg.status)

    def _on_request(self, msg: SipMessage, addr: tuple[str, int]) -> None:
        if msg.method == "OPTIONS":
            self._send(sip.build_response(msg, 200), addr)
            return
        if msg.method != "MESSAGE":
            self._send(sip.build_response(msg, 405, extra_headers=(("Allow", "MESSAGE, OPTIONS"),)),
                       addr)
            return
        if msg.media_type not in (SCAIP_MEDIA_TYPE, None):
            self._send(sip.build_response(msg, 415), addr)
            return
        # The hop is answered whatever the body says: a retransmitted <mrs> gets 200 again.
        self._send(sip.build_response(msg, 200), addr)
        try:
            mrs = scaip.parse_mrs(sip.decoded_body(msg))
        except AdapterError as err:
            log.warning("arc_mrs_unreadable", field=err.field)
            return
        if mrs.ref is None:
            return
        waiter = self._answers.get((mrs.ref, addr))
        if waiter is not None and not waiter.done():
            waiter.set_result(mrs)
