"""Slow, idle and flooding clients cannot hold the listeners (HTTP and SIP over TCP): a request
must arrive whole in time, connections are capped per listener, and requests are limited per
device and per source address, refused with the protocol's own "try later" (HTTP 429 and SIP
503, each with Retry-After)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from adapters import native, scaip, sip
from gateway.demo import embedded
from gateway.settings import Settings
from gateway.store.connector import Store
from tests.support import RunningGateway, register_device, running_gateway

pytestmark = pytest.mark.integration


@pytest.fixture
async def limited(gateway: RunningGateway) -> AsyncIterator[RunningGateway]:
    settings = dataclasses.replace(
        gateway.settings, http_port=embedded.free_port(), sip_port=embedded.free_port(),
        mqtt_url=None, delivery_enabled=False, supervision_enabled=False,
        http_request_timeout_s=1.0, http_max_connections=8, http_rate_per_device=1.0,
        http_burst_per_device=3.0, sip_request_timeout_s=1.0, sip_max_connections=3,
        sip_rate_per_address=1.0, sip_burst_per_address=2.0)
    async with running_gateway(settings) as running:
        yield running


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` within `seconds` (what it sent before is ignored)."""
    sock.settimeout(0.05)
    deadline = time.monotonic() + seconds
    while True:
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            pass
        except ConnectionError:
            return True
        if time.monotonic() >= deadline:
            return False


def _connect(port: int, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    if first:
        sock.sendall(first)
    return sock


@pytest.mark.parametrize("sent", [
    b"",  # connects and says nothing
    b"POST /v1/devices/x/readings HTTP/1.1\r\nHost: gateway\r\n",  # headers never end
    b"POST /v1/devices/x/readings HTTP/1.1\r\nHost: gateway\r\nContent-Length: 100\r\n\r\n{",
])
async def test_a_request_that_does_not_arrive_in_time_is_cut_off(
        limited: RunningGateway, sent: bytes) -> None:
    sock = await asyncio.to_thread(_connect, limited.settings.http_port, sent)
    try:
        assert not await asyncio.to_thread(_closed_within, sock, 0.5)  # not at once
        assert await asyncio.to_thread(_closed_within, sock, 1.5)  # but after the timeout
    finally:
        sock.close()


async def test_connections_over_the_cap_are_closed_and_the_listener_still_answers(
        limited: RunningGateway) -> None:
    socks = [await asyncio.to_thread(_connect, limited.settings.http_port) for _ in range(10)]
    try:
        await asyncio.sleep(0.3)  # well inside the request timeout
        closed = [await asyncio.to_thread(_closed_within, s, 0.0) for s in socks]
        assert closed.count(True) == 2 and not any(closed[:8])
    finally:
        for s in socks:
            s.close()
    async with httpx.AsyncClient(base_url=limited.http) as client:
        assert (await client.get("/healthz")).status_code == 200


async def test_a_device_sending_too_fast_is_told_to_wait(
        limited: RunningGateway, store: Store) -> None:
    device = await register_device(store)
    await limited.knows(device)
    start = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    answers = []
    async with httpx.AsyncClient(base_url=limited.http) as client:
        for i in range(5):
            body = native.encode_message([native.encode_reading(
                "weight", start + timedelta(minutes=i), value=80.0, unit="kg")])
            answers.append(await client.post(
                f"/v1/devices/{device.id}/readings", content=body,
                headers={"Authorization": f"Bearer {device.token}"}))
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]  # the burst
    assert 429 in [a.status_code for a in answers[3:]]
    refused = next(a for a in answers if a.status_code == 429)
    assert int(refused.headers["Retry-After"]) >= 1


async def test_a_flood_from_one_address_is_refused_before_anything_is_read(
        gateway: RunningGateway) -> None:
    settings = dataclasses.replace(
        gateway.settings, http_port=embedded.free_port(), sip_port=0, mqtt_url=None,
        delivery_enabled=False, supervision_enabled=False, http_rate_per_address=1.0,
        http_burst_per_address=2.0)
    async with running_gateway(settings) as running, \
            httpx.AsyncClient(base_url=running.http) as client:
        statuses = [(await client.post("/v1/devices/nobody/readings", content=b"{}")).status_code
                    for _ in range(4)]
        assert statuses[:2] == [401, 401] and statuses[2:] == [429, 429]
        assert (await client.get("/healthz")).status_code == 200  # operations always answered


async def test_sip_tcp_cap_slow_message_and_flood(limited: RunningGateway) -> None:
    port = limited.settings.sip_port
    held = [await asyncio.to_thread(_connect, port) for _ in range(3)]
    extra = await asyncio.to_thread(_connect, port)
    try:
        assert await asyncio.to_thread(_closed_within, extra, 0.5)  # a fourth: closed at once
    finally:
        extra.close()
        for s in held:
            s.close()
    await asyncio.sleep(0.2)
    slow = await asyncio.to_thread(_connect, port, b"MESSAGE sip:arc@gateway SIP/2.0\r\nVia:")
    try:
        assert not await asyncio.to_thread(_closed_within, slow, 0.5)
        assert await asyncio.to_thread(_closed_within, slow, 1.5)  # the message never ended
    finally:
        slow.close()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.settimeout(2)
    try:
        statuses = []
        for n in range(4):
            raw = sip.build_message(
                request_uri="sip:arc@127.0.0.1", from_uri="sip:luc1@127.0.0.1:9",
                to_uri="sip:arc@127.0.0.1", ids=sip.new_ids(), cseq=n + 1,
                via_sent_by="127.0.0.1:9", transport="UDP",
                body=scaip.build_mrq(ref=f"F{n}", cid="1", dty=2))
            udp.sendto(raw, ("127.0.0.1", port))
            answer = sip.parse((await asyncio.to_thread(udp.recvfrom, 65536))[0])
            statuses.append((answer.status, answer.header("Retry-After")))
    finally:
        udp.close()
    assert [s for s, _ in statuses[:2]] == [401, 401]  # the burst: challenged as usual
    assert statuses[2][0] == 503 and statuses[2][1] is not None


def test_the_limits_are_on_by_default() -> None:
    defaults = Settings()
    assert (defaults.http_request_timeout_s, defaults.http_max_connections) == (10.0, 1000)
    assert (defaults.sip_request_timeout_s, defaults.sip_max_connections) == (10.0, 1000)
    assert min(defaults.http_rate_per_device, defaults.http_rate_per_address,
               defaults.sip_rate_per_address) > 0
