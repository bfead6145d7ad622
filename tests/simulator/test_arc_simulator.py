"""The simulated alarm receiving centre (simulator/arc.py), driven by the simulated unit.

Real UDP on loopback; the unit (simulator/scaip_device.py, blocking) runs in a thread with
short resend intervals and timeouts so the whole file takes a few seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from adapters import scaip, sip
from adapters.scaip import Mty, Snu
from simulator.arc import Mode, Received, ScaipArc
from simulator.scaip_device import GPS_ALARM, Outcome, ScaipUnit, UnitSpec, new_ref

SPEC = UnitSpec(GPS_ALARM, "4711001", "TRK-1")


@pytest.fixture
async def arc() -> AsyncIterator[ScaipArc]:
    async with ScaipArc(hbi=7, t1_s=0.1, mrs_retransmit_s=2.0) as running:
        yield running
    assert running.faults == 0


@pytest.fixture
def unit(arc: ScaipArc) -> Iterator[ScaipUnit]:
    sim = ScaipUnit(SPEC, arc.address, resend_s=(0.05, 0.1), answer_timeout_s=1.0,
                    hold_max_s=5.0)
    yield sim
    sim.close()


async def send(unit: ScaipUnit, body: bytes, ref: str, mty: str = Mty.MESSAGE) -> Outcome:
    return await asyncio.to_thread(unit.send, body, ref=ref, mty=mty)


async def test_ok_mode_answers_snu_0_and_records_the_request(arc: ScaipArc,
                                                              unit: ScaipUnit) -> None:
    ref = new_ref()
    outcome = await send(unit, unit.mrq(ref, stc=scaip.STC_MANUAL, pri=9,
                                        geo=(57.7, 11.97)), ref)
    assert (outcome.sip_status, outcome.snu, outcome.attempts) == (200, Snu.OK, 1)
    [seen] = arc.received
    assert (seen.ref, seen.mty, seen.device_id, seen.snu) == (ref, Mty.MESSAGE,
                                                              SPEC.device_id, 0)
    assert arc.sends[ref] == 1
    # Nothing of the content (position, status code, device texts) is kept but the room a
    # fixed sensor names, which the tests check is relayed (issue 16).
    assert set(Received.__dataclass_fields__) == {"ref", "mty", "device_id", "at", "transport",
                                                  "snu", "hbo", "location"}


async def test_hold_then_ok_makes_the_unit_resend_the_same_ref(arc: ScaipArc,
                                                                unit: ScaipUnit) -> None:
    arc.mode, arc.holds = "hold_then_ok", 2
    ref = new_ref()
    outcome = await send(unit, unit.mrq(ref, stc=scaip.STC_MANUAL), ref)
    assert (outcome.snu, outcome.attempts, outcome.holds) == (Snu.OK, 3, 2)
    assert arc.sends[ref] == 3
    seen = arc.requests(ref)
    assert [r.snu for r in seen] == [4, 4, 0]
    gaps = [b.at - a.at for a, b in itertools.pairwise(seen)]
    assert all(gap >= 0.05 for gap in gaps)  # resent after the unit's resend interval


@pytest.mark.parametrize(("mode", "snu"), [("busy", Snu.BUSY), ("not_treated", Snu.NOT_TREATED)])
async def test_busy_and_not_treated_make_the_unit_drop_the_ref(
        arc: ScaipArc, unit: ScaipUnit, mode: Mode, snu: Snu) -> None:
    arc.mode = mode
    ref = new_ref()
    outcome = await send(unit, unit.mrq(ref, stc=scaip.STC_MANUAL), ref)
    assert (outcome.snu, outcome.attempts, outcome.gave_up) == (snu, 1, False)
    await asyncio.sleep(0.15)  # longer than the unit's resend interval: nothing more comes
    assert arc.sends[ref] == 1


async def test_silent_mode_makes_the_unit_give_up_and_reset(arc: ScaipArc) -> None:
    arc.mode = "silent"
    unit = ScaipUnit(SPEC, arc.address, resend_s=(0.05, 0.1), answer_timeout_s=0.3,
                     hold_max_s=0.7)
    try:
        ref = new_ref()
        outcome = await send(unit, unit.mrq(ref, stc=scaip.STC_MANUAL), ref)
    finally:
        unit.close()
    assert outcome.gave_up and outcome.snu is None and outcome.sip_status == 200
    assert outcome.attempts >= 2
    seen = arc.requests(ref)
    assert arc.sends[ref] == outcome.attempts + 1
    assert [r.mty for r in seen] == [Mty.MESSAGE] * outcome.attempts + [Mty.RESET]
    assert all(r.snu is None for r in seen)


async def test_drop_mode_answers_nothing_and_counts_sip_retransmissions_once(
        arc: ScaipArc) -> None:
    arc.mode = "drop"
    # 0.7 s per exchange: the unit repeats its SIP transaction at 0 and 0.5 s.
    unit = ScaipUnit(SPEC, arc.address, resend_s=(0.05, 0.1), answer_timeout_s=0.7,
                     hold_max_s=0.5)
    try:
        ref = new_ref()
        outcome = await send(unit, unit.mrq(ref, stc=scaip.STC_MANUAL), ref)
    finally:
        unit.close()
    assert outcome.gave_up and outcome.sip_status is None and outcome.attempts == 1
    assert arc.sends[ref] == 2  # the alarm and the reset, each once
    assert [r.mty for r in arc.requests(ref)] == [Mty.MESSAGE, Mty.RESET]
    assert arc.retransmissions >= 2


async def test_heartbeat_gets_snu_0_with_hbi_only_when_asked(arc: ScaipArc,
                                                              unit: ScaipUnit) -> None:
    arc.mode = "busy"  # heartbeats are acknowledged whatever the alarm handling mode
    ref = new_ref()
    asked = await send(unit, unit.mrq(ref, mty=Mty.PING, hbo=True), ref, Mty.PING)
    assert (asked.snu, asked.hbi) == (Snu.OK, 7)
    ref2 = new_ref()
    fixed = await send(unit, unit.mrq(ref2, mty=Mty.PING), ref2, Mty.PING)
    assert (fixed.snu, fixed.hbi) == (Snu.OK, None)
    assert [(r.mty, r.hbo) for r in arc.received] == [(Mty.PING, True), (Mty.PING, False)]


@pytest.mark.parametrize(("body", "ref", "snu"), [
    (b"<mrq><ref>BAD1</ref><cid>1", "BAD1", Snu.BAD_FORMAT),  # not well-formed: ref from bytes
    (b"<mrq><ref>BAD2</ref><dty>2</dty></mrq>", "BAD2", Snu.MANDATORY_MISSING),
    (b"<mrq><cid>1</cid><dty>2</dty></mrq>", "BAD3", Snu.REF_MISSING),
])
async def test_malformed_request_gets_its_error_snu(arc: ScaipArc, unit: ScaipUnit,
                                                     body: bytes, ref: str, snu: Snu) -> None:
    outcome = await send(unit, body, ref)
    assert outcome.snu == snu
    [seen] = arc.received
    assert (seen.mty, seen.device_id, seen.snu) == (None, None, int(snu))
    assert seen.ref == (None if snu == Snu.REF_MISSING else ref)


async def test_garbage_and_other_sip_requests_do_not_break_it(arc: ScaipArc,
                                                              unit: ScaipUnit) -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    probe.settimeout(2.0)
    try:
        probe.sendto(b"\x00\xffnot sip at all", arc.address)
        ids = sip.new_ids("127.0.0.1")
        port = probe.getsockname()[1]
        text = sip.build_message(
            request_uri="sip:arc@127.0.0.1", from_uri=f"sip:x@127.0.0.1:{port}",
            to_uri="sip:arc@127.0.0.1", ids=ids, cseq=1, via_sent_by=f"127.0.0.1:{port}",
            body=b"hello", transport="UDP", content_type="text/plain")
        probe.sendto(text, arc.address)
        data, _ = await asyncio.to_thread(probe.recvfrom, 65536)
        assert sip.parse(data).status == 415
    finally:
        probe.close()
    ref = new_ref()
    outcome = await send(unit, unit.mrq(ref, stc=scaip.STC_MANUAL), ref)
    assert outcome.snu == Snu.OK
    assert arc.garbage == 1 and [r.ref for r in arc.received] == [ref]


async def test_tcp_request_is_answered_on_its_connection(arc: ScaipArc) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", arc.tcp_port)
    try:
        local_port = writer.get_extra_info("sockname")[1]
        ref = new_ref()
        body = scaip.build_mrq(ref=ref, cid="4711", dty=2, mty=Mty.PING, hbo=True)
        writer.write(sip.build_message(
            request_uri="sip:arc@127.0.0.1", from_uri=f"sip:luc@127.0.0.1:{local_port}",
            to_uri="sip:arc@127.0.0.1", ids=sip.new_ids("127.0.0.1"), cseq=1,
            via_sent_by=f"127.0.0.1:{local_port}", body=body, transport="TCP"))
        buffer = bytearray()
        messages: list[sip.SipMessage] = []
        async with asyncio.timeout(3):
            while len(messages) < 2:
                buffer += await reader.read(4096)
                while (item := sip.frame(buffer)) is not None:
                    messages.append(sip.parse(bytes(buffer[:item.size])))
                    del buffer[:item.size]
        ok, mrs = messages
        assert ok.status == 200 and mrs.method == "MESSAGE"
        answer = scaip.parse_mrs(mrs.body)
        assert (answer.ref, answer.snu, answer.hbi) == (ref, 0, 7)
        writer.write(sip.build_response(mrs, 200))
        await writer.drain()
    finally:
        writer.close()
    assert [(r.ref, r.transport) for r in arc.received] == [(ref, "TCP")]

