"""SCAIP over SIP against the running gateway and the real database, on loopback sockets.

The unit side is written here with the same sans-IO codec (adapters/sip.py, adapters/scaip.py)
the gateway uses; the simulator (simulator/scaip_device.py) is exercised at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters import scaip, sip, sip_digest
from adapters.errors import AdapterError
from adapters.scaip import Mty, Snu
from adapters.sip import SipMessage
from gateway.delivery.arc_config import ArcAddress
from gateway.delivery.scaip_client import ScaipClient
from gateway.demo import embedded
from gateway.ingest.pipeline import SubmissionResult
from gateway.observability import metrics
from gateway.settings import Settings
from gateway.store.connector import Store
from gateway.tls import client_context
from gateway.transports.sip_listener import SipListener, TtlCache, server_tls
from simulator import scaip_device
from tests.support import (
    SCAIP_CREDENTIALS,
    FakeDevice,
    RunningGateway,
    register_scaip_unit,
    tls_files,
)

pytestmark = pytest.mark.integration

ASSIGNMENT = {"huvudman": "1480", "subject_ref": "test-subject-sip", "legal_basis": "SoL",
              "kinds": ["alarm", "position", "status", "activity", "medication"],
              "valid_from": "2026-01-01T00:00:00+00:00"}
XXE = (b'<?xml version="1.0"?><!DOCTYPE mrq [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
       b"<mrq><ref>XXE1</ref><cid>1</cid><dty>2</dty><ste>&x;</ste></mrq>")


def cid_of(unit: FakeDevice) -> str:
    return unit.id.split(":")[1]


def did_of(unit: FakeDevice) -> str | None:
    parts = unit.id.split(":")
    return parts[2] if len(parts) > 2 else None


class Unit:
    """A SCAIP unit's SIP side: sends MESSAGEs, answers the gateway's MESSAGEs with 200 and
    queues what arrives (responses and `<mrs>` requests).

    It authenticates as the gateway asks (SIP Digest): as the unit its `<mrq>` names, with the
    credential the tests registered it with (SCAIP_CREDENTIALS), else as `identity`."""

    def __init__(self, transport: str, gateway_port: int,
                 identity: FakeDevice | None = None) -> None:
        self.transport = transport
        self.gateway = ("127.0.0.1", gateway_port)
        self.identity = identity
        self.inbox: asyncio.Queue[SipMessage] = asyncio.Queue()
        self.cseq = 0
        self.local = ("127.0.0.1", 0)
        self.challenge: sip_digest.Challenge | None = None
        self._nc = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    async def open(self) -> Unit:
        loop = asyncio.get_running_loop()
        if self.transport == "UDP":
            unit = self

            class Protocol(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: tuple[Any, int]) -> None:
                    unit._received(data, addr)

            self._udp, _ = await loop.create_datagram_endpoint(
                Protocol, local_addr=("127.0.0.1", 0))
            self.local = self._udp.get_extra_info("sockname")[:2]
        else:
            reader, self._writer = await asyncio.open_connection(*self.gateway)
            self.local = self._writer.get_extra_info("sockname")[:2]
            self._reader_task = asyncio.create_task(self._read(reader))
        return self

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        buffer = bytearray()
        while chunk := await reader.read(65536):
            buffer += chunk
            while (item := sip.frame(buffer)) is not None:
                data = bytes(buffer[:item.size])
                del buffer[:item.size]
                if item.kind == "message":
                    self._received(data, None)

    def _received(self, data: bytes, addr: tuple[Any, int] | None) -> None:
        msg = sip.parse(data)
        if msg.is_request:
            self._send(sip.build_response(msg, 200))
        self.inbox.put_nowait(msg)

    def _send(self, data: bytes) -> None:
        if self._udp is not None:
            self._udp.sendto(data, self.gateway)
        else:
            assert self._writer is not None
            self._writer.write(data)

    def authorization(self, body: bytes, uri: str) -> tuple[tuple[str, str], ...]:
        """The `Authorization` header answering the gateway's last challenge for the unit
        `body` names (or `identity`); none before a challenge or without a credential."""
        if self.challenge is None:
            return ()
        try:
            named = scaip.parse_mrq(body, received_at=datetime.now(UTC)).device_id
        except AdapterError:
            named = ""
        user = named if named in SCAIP_CREDENTIALS else \
            self.identity.id if self.identity is not None else None
        if user is None:
            return ()
        self._nc += 1
        return (("Authorization", sip_digest.authorization(
            self.challenge, method="MESSAGE", uri=uri, username=user,
            password=SCAIP_CREDENTIALS[user], nc=self._nc, cnonce=uuid.uuid4().hex[:12])),)

    def message(self, body: bytes, *, content_type: str = "application/scaip+xml",
                method: str = "MESSAGE", cid: str = "4711") -> tuple[bytes, str]:
        self.cseq += 1
        ids = sip.new_ids("127.0.0.1")
        uri = f"sip:luc{cid}@{self.local[0]}:{self.local[1]}"
        gateway = f"sip:arc@127.0.0.1:{self.gateway[1]}"
        raw = sip.build_message(
            request_uri=gateway, from_uri=uri, to_uri=gateway, ids=ids, cseq=self.cseq,
            via_sent_by=f"{self.local[0]}:{self.local[1]}", body=body,
            transport=self.transport, content_type=content_type, contact=uri,
            extra_headers=self.authorization(body, gateway))
        if method != "MESSAGE":
            raw = raw.replace(b"MESSAGE sip:", f"{method} sip:".encode(), 1).replace(
                b" MESSAGE\r\n", f" {method}\r\n".encode(), 1)
        return raw, ids.call_id

    def send(self, body: bytes, **kw: Any) -> str:
        raw, call_id = self.message(body, **kw)
        self._send(raw)
        return call_id

    async def next(self, *, request: bool, timeout: float = 5.0) -> SipMessage:
        while True:
            msg = await asyncio.wait_for(self.inbox.get(), timeout)
            if msg.is_request == request:
                return msg

    def take_challenge(self, answer: SipMessage) -> None:
        self.challenge = sip_digest.parse_challenge(answer.header("WWW-Authenticate") or "")
        self._nc = 0

    async def prime(self) -> Unit:
        """Learn the gateway's challenge first (for tests that build requests themselves)."""
        self.send(scaip.build_mrq(ref="PRIME", cid="0", dty=2, mty=Mty.PING))
        answer = await self.next(request=False)
        assert answer.status == 401, answer.status
        self.take_challenge(answer)
        return self

    async def exchange(self, body: bytes, **kw: Any) -> tuple[SipMessage, SipMessage]:
        """Send one request (answering a challenge, as a unit does); return the SIP answer and
        the `<mrs>` MESSAGE that follows."""
        call_id = self.send(body, **kw)
        answer = await self.next(request=False)
        assert answer.call_id == call_id
        if answer.status == 401:
            self.take_challenge(answer)
            call_id = self.send(body, **kw)
            answer = await self.next(request=False)
            assert answer.call_id == call_id
        return answer, await self.next(request=True)


@pytest.fixture
async def gps(store: Store, gateway: RunningGateway) -> FakeDevice:
    device = await register_scaip_unit(store, "gps_alarm", assignments=[ASSIGNMENT])
    await gateway.knows(device)
    return device


@pytest.fixture
async def unit_udp(gateway: RunningGateway, gps: FakeDevice) -> AsyncIterator[Unit]:
    unit = await (await Unit("UDP", gateway.settings.sip_port, gps).open()).prime()
    yield unit
    unit.close()


@pytest.fixture
async def unit_tcp(gateway: RunningGateway, gps: FakeDevice) -> AsyncIterator[Unit]:
    unit = await (await Unit("TCP", gateway.settings.sip_port, gps).open()).prime()
    yield unit
    unit.close()


async def rows(store: Store, device_id: str) -> list[tuple[str, str]]:
    found = await store.pool.fetch(
        "SELECT event_type, kind FROM event WHERE device_id = $1 ORDER BY event_type", device_id)
    return [(r["event_type"], r["kind"]) for r in found]


def mrs_of(msg: SipMessage) -> scaip.ScaipResponse:
    assert msg.method == "MESSAGE" and msg.media_type == "application/scaip+xml"
    return scaip.parse_mrs(msg.body)


def metric(counter: Any, *labels: str) -> float:
    return float(counter.labels(*labels)._value.get())


@pytest.mark.parametrize(("transport", "namespace"),
                         [("UDP", False), ("UDP", True), ("TCP", False), ("TCP", True)])
async def test_alarm_is_answered_snu_0_only_after_it_is_stored(
        transport: str, namespace: bool, store: Store, gps: FakeDevice, gateway: RunningGateway,
        unit_udp: Unit, unit_tcp: Unit, monkeypatch: pytest.MonkeyPatch) -> None:
    unit = unit_udp if transport == "UDP" else unit_tcp
    # Slow the commit down, so an answer sent before it would arrive before the row exists.
    write_batch = gateway.runtime.store.events.write_batch

    async def slow_write(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.2)
        return await write_batch(*args, **kwargs)

    monkeypatch.setattr(gateway.runtime.store.events, "write_batch", slow_write)
    acked = metric(metrics.ACKED, "sip")
    body = scaip.build_mrq(ref="A7F3K2", cid=cid_of(gps), dty=51, stc=10, pri=9, lco=34,
                           geo=(57.70887, 11.97456), namespace=namespace)
    answer, mrs_msg = await unit.exchange(body, cid=cid_of(gps))
    stored = await rows(store, gps.id)  # checked the moment the <mrs> arrives
    assert answer.status == 200
    mrs = mrs_of(mrs_msg)
    assert (mrs.ref, mrs.snu, mrs.hbi) == ("A7F3K2", 0, None)
    assert stored == [("alarm", "alarm")]
    # A new request to the unit (TR §7.5), not a response, with its own Call-ID.
    assert mrs_msg.call_id != answer.call_id
    assert sip.uri_of(mrs_msg.header("To") or "").startswith(f"sip:luc{cid_of(gps)}@")
    assert (mrs_msg.header("Via") or "").startswith(f"SIP/2.0/{transport} ")
    assert metric(metrics.ACKED, "sip") == acked + 1


async def test_heartbeat_gets_hbi_only_when_the_unit_lets_the_receiver_set_it(
        store: Store, gps: FakeDevice, gateway: RunningGateway, unit_udp: Unit) -> None:
    cid = cid_of(gps)
    _, with_hbo = await unit_udp.exchange(
        scaip.build_mrq(ref="HB1", cid=cid, dty=2, mty=Mty.PING, hbo=True), cid=cid)
    _, without = await unit_udp.exchange(
        scaip.build_mrq(ref="HB2", cid=cid, dty=2, mty=Mty.PING), cid=cid)
    assert mrs_of(with_hbo).hbi == gateway.settings.scaip_heartbeat_interval_min == 10
    assert (mrs_of(with_hbo).snu, mrs_of(without).snu, mrs_of(without).hbi) == (0, 0, None)
    assert await rows(store, gps.id) == [("status", "status"), ("status", "status")]


@pytest.mark.parametrize(("body", "snu", "ref"), [
    (b"<mrq><ref>BAD1</ref><cid>{cid}</cid><dty>51", Snu.BAD_FORMAT, "BAD1"),  # not well formed
    (b"<mrq><ref>BAD2</ref><cid>{cid}</cid></mrq>", Snu.MANDATORY_MISSING, "BAD2"),  # no dty
    (b"<mrq><cid>{cid}</cid><dty>51</dty></mrq>", Snu.REF_MISSING, None),
    (b"<mrq><ref>BAD4</ref><cid>{cid}</cid><dty>51</dty><mty>XX</mty></mrq>",
     Snu.WRONG_CONTENT, "BAD4"),
    (XXE, Snu.BAD_FORMAT, "XXE1"),  # its ref read from the bytes; the entity never expanded
])
async def test_malformed_request_gets_its_snu_and_nothing_is_stored(
        body: bytes, snu: Snu, ref: str | None, store: Store, gps: FakeDevice,
        unit_udp: Unit) -> None:
    answer, mrs_msg = await unit_udp.exchange(body.replace(b"{cid}", cid_of(gps).encode()))
    mrs = mrs_of(mrs_msg)
    assert answer.status == 200  # the SIP hop is fine; the SCAIP content is not
    assert (mrs.snu, mrs.ref) == (snu, ref)
    assert b"passwd" not in mrs_msg.body and b"root" not in mrs_msg.body
    await asyncio.sleep(0.05)
    assert await rows(store, gps.id) == []


async def test_unregistered_controller_is_refused_with_snu_5(store: Store, unit_tcp: Unit) -> None:
    refused = metric(metrics.REJECTED, "sip", "device")
    cid = str(uuid.uuid4().int)[:12]
    _, mrs_msg = await unit_tcp.exchange(scaip.build_mrq(ref="U1", cid=cid, dty=51), cid=cid)
    mrs = mrs_of(mrs_msg)
    assert (mrs.ref, mrs.snu) == ("U1", Snu.NOT_TREATED)
    assert metric(metrics.REJECTED, "sip", "device") == refused + 1
    assert await rows(store, f"scaip:{cid}") == []


async def test_resend_without_tim_is_stored_once(store: Store, gps: FakeDevice,
                                                 unit_udp: Unit) -> None:
    cid = cid_of(gps)
    body = scaip.build_mrq(ref="RES1", cid=cid, dty=51)  # no lge/tim: receive time is used
    _, first = await unit_udp.exchange(body, cid=cid)
    await asyncio.sleep(0.02)  # a later receive time, as a real resend has
    _, second = await unit_udp.exchange(body, cid=cid)  # a new SIP transaction, same <mrq>
    assert mrs_of(first).snu == mrs_of(second).snu == 0
    found = await store.pool.fetch("SELECT event_id FROM event WHERE device_id = $1", gps.id)
    assert len(found) == 1
    # A different update under the same ref (new position) is not a resend.
    update = scaip.build_mrq(ref="RES1", cid=cid, dty=51, mty=Mty.INFO, lco=34, geo=(57.7, 11.9))
    update2 = scaip.build_mrq(ref="RES1", cid=cid, dty=51, mty=Mty.INFO, lco=34, geo=(57.8, 11.9))
    await unit_udp.exchange(update, cid=cid)
    await unit_udp.exchange(update2, cid=cid)
    assert sorted(await rows(store, gps.id)) == [
        ("alarm", "alarm"), ("event", "alarm"), ("event", "alarm"),
        ("position", "position"), ("position", "position")]


async def test_sip_retransmission_is_answered_again_but_processed_once(
        store: Store, gps: FakeDevice, unit_udp: Unit) -> None:
    cid = cid_of(gps)
    raw, call_id = unit_udp.message(scaip.build_mrq(ref="RTX1", cid=cid, dty=12), cid=cid)
    unit_udp._send(raw)
    unit_udp._send(raw)  # timer E fired: the very same datagram again
    first, second = await unit_udp.next(request=False), await unit_udp.next(request=False)
    assert first.status == second.status == 200 and first.call_id == second.call_id == call_id
    assert first.header("To") == second.header("To")
    assert mrs_of(await unit_udp.next(request=True)).snu == 0
    with pytest.raises(TimeoutError):
        await unit_udp.next(request=True, timeout=0.3)
    assert await rows(store, gps.id) == [("alarm", "alarm")]


async def test_sip_hop_errors(unit_udp: Unit) -> None:
    body = scaip.build_mrq(ref="S1", cid="1", dty=2)
    unit_udp.send(body, content_type="application/json")
    answer = await unit_udp.next(request=False)
    assert answer.status == 415 and answer.header("Accept") == "application/scaip+xml"
    unit_udp.send(body, method="INFO")
    answer = await unit_udp.next(request=False)
    assert answer.status == 405 and "MESSAGE" in (answer.header("Allow") or "")
    unit_udp.send(body, method="OPTIONS")
    assert (await unit_udp.next(request=False)).status == 200
    with pytest.raises(TimeoutError):  # none of these gets an <mrs>
        await unit_udp.next(request=True, timeout=0.3)


async def test_tcp_answer_after_the_connection_closed_uses_a_new_connection(
        store: Store, gps: FakeDevice, gateway: RunningGateway, unit_tcp: Unit) -> None:
    """The unit hangs up right after sending: the <mrs> comes over a new connection to the
    port in its Contact, at the address the request came from."""
    inbox: asyncio.Queue[bytes] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(65536)
        writer.write(sip.build_response(sip.parse(data), 200))
        await writer.drain()
        writer.close()
        inbox.put_nowait(data)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    listen_port = server.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", gateway.settings.sip_port)
        contact = f"sip:luc{cid_of(gps)}@127.0.0.1:{listen_port}"
        body = scaip.build_mrq(ref="NC1", cid=cid_of(gps), dty=51)
        raw = sip.build_message(
            request_uri="sip:arc@127.0.0.1", from_uri=contact, to_uri="sip:arc@127.0.0.1",
            ids=sip.new_ids(), cseq=1, via_sent_by="127.0.0.1:9", transport="TCP",
            body=body, contact=contact,
            extra_headers=unit_tcp.authorization(body, "sip:arc@127.0.0.1"))
        writer.write(raw)
        writer.close()  # gone before the gateway has committed and could answer
        mrs = scaip.parse_mrs(sip.parse(await asyncio.wait_for(inbox.get(), 10)).body)
        assert (mrs.ref, mrs.snu) == ("NC1", 0)
        assert await rows(store, gps.id) == [("alarm", "alarm")]
    finally:
        server.close()


class _SlowOnce:
    """A pipeline stand-in whose first commit takes longer than the hold limit."""

    def __init__(self) -> None:
        self.calls = 0

    async def commit(self, events: Any) -> SubmissionResult:
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(0.6)
        return SubmissionResult(tuple(e.event_id for e in events), ())


async def test_slow_commit_is_answered_hold_and_the_simulated_unit_resends(
        gateway: RunningGateway, gps: FakeDevice) -> None:
    settings = dataclasses.replace(gateway.settings, sip_port=embedded.free_port())
    pipeline = _SlowOnce()
    listener = SipListener(settings, gateway.runtime.registry, pipeline,  # type: ignore[arg-type]
                           commit_hold_s=0.2)
    await listener.start()
    spec = scaip_device.UnitSpec(scaip_device.GPS_ALARM, cid_of(gps), did_of(gps), gps.token)
    unit = scaip_device.ScaipUnit(spec, ("127.0.0.1", listener.udp_port), resend_s=(0.1, 0.2),
                                  answer_timeout_s=3)
    try:
        ref = scaip_device.new_ref()
        outcome = await asyncio.to_thread(unit.send, unit.mrq(ref, stc=10), ref=ref)
    finally:
        unit.close()
        await listener.stop()
    assert (outcome.snu, outcome.holds, outcome.attempts, outcome.sip_status) == (0, 1, 2, 200)
    assert pipeline.calls == 2


async def test_simulated_fleet_is_answered(store: Store, gateway: RunningGateway) -> None:
    specs = []
    for kind in (scaip_device.GPS_ALARM, scaip_device.NIGHT_SENSOR, scaip_device.PILL_DISPENSER):
        device = await register_scaip_unit(store, kind, did="D1", assignments=[ASSIGNMENT])
        await gateway.knows(device)
        specs.append(scaip_device.UnitSpec(kind, cid_of(device), "D1", device.token))
    report = await asyncio.to_thread(
        scaip_device.run, ("127.0.0.1", gateway.settings.sip_port), specs, rounds=2,
        interval_s=0.0, stop=threading.Event(), answer_timeout_s=5, seed=7)
    assert sum(report.sent.values()) == 6 and report.gave_up == 0
    assert all(o.snu == 0 and o.sip_status == 200 for o in report.outcomes), report.summary()
    assert all(o.hbi == 10 for o in report.outcomes if o.mty == Mty.PING)
    for spec in specs:
        assert len(await rows(store, spec.device_id)) >= 2


def test_ttl_cache_expires_and_stays_bounded() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(10.0, 3, clock=lambda: now[0])
    assert cache.setdefault("a", 1) == 1 and cache.setdefault("a", 2) == 1
    now[0] = 10.5
    assert cache.get("a") is None and cache.setdefault("a", 3) == 3
    for key in "bcd":
        cache.setdefault(key, 0)
    assert len(cache) == 3 and cache.get("a") is None


async def test_a_unit_over_tls_is_answered_and_stored(
        store: Store, gateway: RunningGateway, gps: FakeDevice, tmp_path: Path) -> None:
    """SIP over TLS (`SIP_TLS_PORT`): the unit checks the gateway's certificate; hop and `<mrs>`
    come back on the same connection. The unit side is the gateway's own SCAIP client."""
    ca, cert, key = tls_files(tmp_path, "test gateway CA")
    settings = dataclasses.replace(gateway.settings, sip_port=embedded.free_port(),
                                   sip_tls_port=embedded.free_port(),
                                   sip_tls_cert_file=cert, sip_tls_key_file=key)
    listener = SipListener(settings, gateway.runtime.registry, gateway.runtime.pipeline)
    await listener.start()
    unit = ScaipClient("127.0.0.1", 0)
    await unit.start()
    target = ArcAddress("tls", "localhost", listener.tls_port)
    unit.use_tls(client_context(ca), target)
    unit.use_digest(gps.id, gps.token, target)
    try:
        body = scaip.build_mrq(ref="TLS1", cid=cid_of(gps), dty=scaip.DTY_TRACKER,
                               stc=scaip.STC_MANUAL, did=did_of(gps))
        answer = await unit.request(target, body, "TLS1", timeout_s=5)
    finally:
        await unit.stop()
        await listener.stop()
    assert answer.sip_status == 200 and answer.mrs is not None and answer.mrs.snu == Snu.OK
    assert ("alarm", "alarm") in await rows(store, gps.id)


def test_a_tls_port_without_a_usable_certificate_refuses_to_start(tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings(), sip_tls_port=5061)
    with pytest.raises(ValueError, match="SIP_TLS_PORT needs SIP_TLS_CERT_FILE"):
        server_tls(settings)
    missing = dataclasses.replace(settings, sip_tls_cert_file=tmp_path / "none.pem",
                                  sip_tls_key_file=tmp_path / "none.key")
    with pytest.raises(ValueError, match="SIP_TLS_CERT_FILE/SIP_TLS_KEY_FILE: cannot use"):
        server_tls(missing)
