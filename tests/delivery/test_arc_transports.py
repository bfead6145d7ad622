"""Alarms to alarm centres over TCP and TLS as well as UDP (gateway/delivery/scaip_client.py):
the same SCAIP exchange on a connection the gateway opens and keeps; a centre whose certificate
cannot be trusted, or that cannot be reached, is escalated from like a silent one.

The forwarder runs on its own here (real database for its history, simulated centres from
simulator/arc.py); tests/delivery/test_arc_forwarding.py covers the path from the device."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.events import Alarm, AlarmType
from adapters.scaip import Mty, Snu
from gateway.delivery.arc import ArcForwarder, ArcJob
from gateway.delivery.arc_config import ArcSpec
from gateway.delivery.scaip_alarm import ref_for
from gateway.demo.embedded import free_port
from gateway.store.connector import Store
from simulator.arc import Mode, ScaipArc
from tests.support import pem, self_signed_ca, tls_files, wait_until

pytestmark = pytest.mark.integration
AT = datetime(2026, 11, 22, 5, tzinfo=UTC)


@dataclass(frozen=True)
class Pki:
    """A test CA and a server certificate it signed for localhost and 127.0.0.1."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    other_ca_file: Path  # a CA that signed nothing here

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("arc-pki")
    ca, cert, key = tls_files(folder, "test alarm centre CA")
    other = folder / "other.pem"
    other.write_bytes(pem(self_signed_ca("some other CA")[1]))
    return Pki(ca, cert, key, other)


@pytest.fixture
async def centres() -> AsyncIterator[list[ScaipArc]]:
    """Started simulated centres, stopped after the test."""
    started: list[ScaipArc] = []
    yield started
    for arc in started:
        await arc.stop()


async def _centre(centres: list[ScaipArc], mode: Mode = "ok", *,
                  tls: ssl.SSLContext | None = None, port: int = 0,
                  digest: tuple[str, str] | None = None) -> ScaipArc:
    arc = ScaipArc(mode=mode, holds=1, tls=tls, port=port, digest=digest)
    await arc.start()
    centres.append(arc)
    return arc


@pytest.fixture
def forwarders() -> Iterator[list[ArcForwarder]]:
    made: list[ArcForwarder] = []
    yield made


async def _forwarder(store: Store, spec: ArcSpec, made: list[ArcForwarder],
                     password: str | None = None) -> ArcForwarder:
    forwarder = ArcForwarder(store, {spec.receiver: spec}, heartbeats=False, lease_s=30.0,
                             passwords={spec.receiver: password} if password else None)
    await forwarder.start()
    made.append(forwarder)
    return forwarder


@pytest.fixture(autouse=True)
async def _stop_forwarders(forwarders: list[ArcForwarder]) -> AsyncIterator[None]:
    yield
    for forwarder in forwarders:
        await forwarder.stop()


def _alarm(device: str) -> Alarm:
    return Alarm(event_id=uuid.uuid4(), device_id=device, alarm_type=AlarmType.BUTTON,
                 measured_at=AT, received_at=AT, source="native")


def _send(forwarder: ArcForwarder, spec: ArcSpec, alarm: Alarm) -> str:
    forwarder.forward(ArcJob(alarm.event_id, spec.receiver, alarm, False))
    return ref_for(alarm.event_id, spec.receiver)


def _answers(arc: ScaipArc, ref: str) -> list[tuple[str, int | None]]:
    return [(r.transport, r.snu) for r in arc.requests(ref) if r.mty == Mty.MESSAGE]


def _spec(name: str, primary: str, secondary: str | None = None,
          **extra: Path | str) -> ArcSpec:
    return ArcSpec.model_validate(dict(
        receiver=name, cid="4600000001", primary=primary, secondary=secondary,
        answer_timeout_s=1.0, hold_resend_s=(0.1, 0.2), **extra))


async def test_over_tcp_hold_then_ok_on_one_kept_connection(
        store: Store, centres: list[ScaipArc], forwarders: list[ArcForwarder]) -> None:
    arc = await _centre(centres, "hold_then_ok")
    spec = _spec("test-arc-tcp", f"tcp://127.0.0.1:{arc.tcp_port}")
    forwarder = await _forwarder(store, spec, forwarders)
    first = _send(forwarder, spec, _alarm("T-TCP-1"))
    assert await wait_until(lambda: (Snu.OK in [s for _, s in _answers(arc, first)]), 5)
    assert _answers(arc, first) == [("TCP", Snu.HOLD), ("TCP", Snu.OK)]
    second = _send(forwarder, spec, _alarm("T-TCP-2"))
    assert await wait_until(lambda: _answers(arc, second) == [("TCP", Snu.HOLD),
                                                              ("TCP", Snu.OK)], 5)
    assert arc.connections == 1  # kept for the next alarm
    assert arc.retransmissions == 0  # a stream is reliable: nothing is sent twice by SIP


async def test_over_tls_with_the_centres_ca(
        store: Store, centres: list[ScaipArc], forwarders: list[ArcForwarder],
        pki: Pki) -> None:
    arc = await _centre(centres, tls=pki.server_context())
    spec = _spec("test-arc-tls", f"tls://localhost:{arc.tcp_port}", tls_ca_file=pki.ca_file)
    forwarder = await _forwarder(store, spec, forwarders)
    ref = _send(forwarder, spec, _alarm("T-TLS-1"))
    assert await wait_until(lambda: _answers(arc, ref) == [("TLS", Snu.OK)], 5)


async def test_a_centre_whose_certificate_is_not_trusted_is_escalated_from(
        store: Store, centres: list[ScaipArc], forwarders: list[ArcForwarder],
        pki: Pki) -> None:
    untrusted = await _centre(centres, tls=pki.server_context())
    backup = await _centre(centres)
    spec = _spec("test-arc-tls-untrusted", f"tls://localhost:{untrusted.tcp_port}",
                 f"udp://127.0.0.1:{backup.udp_port}", tls_ca_file=pki.other_ca_file)
    forwarder = await _forwarder(store, spec, forwarders)
    ref = _send(forwarder, spec, _alarm("T-TLS-BAD"))
    assert await wait_until(lambda: _answers(backup, ref) == [("UDP", Snu.OK)], 5)
    assert untrusted.requests(ref) == []  # nothing went to a centre we could not verify


async def test_a_centre_that_refuses_connections_is_escalated_from_at_once(
        store: Store, centres: list[ScaipArc], forwarders: list[ArcForwarder]) -> None:
    backup = await _centre(centres)
    closed = free_port()
    spec = _spec("test-arc-tcp-refused", f"tcp://127.0.0.1:{closed}",
                 f"tcp://127.0.0.1:{backup.tcp_port}")
    forwarder = await _forwarder(store, spec, forwarders)
    ref = _send(forwarder, spec, _alarm("T-TCP-REFUSED"))
    # A refused connection is known at once: well within the primary's 1 s answer time.
    assert await wait_until(lambda: _answers(backup, ref) == [("TCP", Snu.OK)], 0.8)


async def test_a_dropped_connection_is_opened_again_for_the_next_alarm(
        store: Store, centres: list[ScaipArc], forwarders: list[ArcForwarder]) -> None:
    arc = await _centre(centres)
    port = arc.tcp_port
    spec = _spec("test-arc-tcp-reopen", f"tcp://127.0.0.1:{port}")
    forwarder = await _forwarder(store, spec, forwarders)
    first = _send(forwarder, spec, _alarm("T-TCP-A"))
    assert await wait_until(lambda: _answers(arc, first) == [("TCP", Snu.OK)], 5)
    await arc.stop()  # the centre restarts: our connection is gone
    await asyncio.sleep(0.1)  # its sockets close on the loop's next turns
    again = await _centre(centres, port=port)
    second = _send(forwarder, spec, _alarm("T-TCP-B"))
    assert await wait_until(lambda: _answers(again, second) == [("TCP", Snu.OK)], 5)


async def test_an_arc_named_by_host_name_over_udp_is_matched_by_its_address(
        store: Store, centres: list[ScaipArc], forwarders: list[ArcForwarder]) -> None:
    """Its answer comes from an IP address, not from the name in the configuration."""
    arc = await _centre(centres)
    spec = _spec("test-arc-udp-name", f"udp://localhost:{arc.udp_port}")
    forwarder = await _forwarder(store, spec, forwarders)
    ref = _send(forwarder, spec, _alarm("T-UDP-NAME"))
    assert await wait_until(lambda: _answers(arc, ref) == [("UDP", Snu.OK)], 3)
    accepted = await wait_until(lambda: store.pool.fetchval(
        "SELECT count(*) FROM arc_attempt WHERE receiver = $1 AND outcome = 'accepted'",
        spec.receiver), 3)
    assert accepted == 1


async def test_an_arc_that_asks_for_digest_gets_it_and_later_alarms_skip_the_challenge(
        store: Store, centres: list[ScaipArc], forwarders: list[ArcForwarder]) -> None:
    arc = await _centre(centres, digest=("gateway-vgr", "test-digest-secret"))
    spec = _spec("test-arc-digest", f"udp://127.0.0.1:{arc.udp_port}",
                 auth_user="gateway-vgr", auth_password_env="TEST_ARC_PASSWORD")
    forwarder = await _forwarder(store, spec, forwarders, "test-digest-secret")
    first = _send(forwarder, spec, _alarm("T-DIGEST-1"))
    assert await wait_until(lambda: _answers(arc, first) == [("UDP", Snu.OK)], 3)
    assert arc.challenges == 1
    # The next alarm answers the known challenge at once: no second round trip.
    second = _send(forwarder, spec, _alarm("T-DIGEST-2"))
    assert await wait_until(lambda: _answers(arc, second) == [("UDP", Snu.OK)], 3)
    assert arc.challenges == 1


async def test_a_refused_password_moves_the_alarm_to_the_secondary(
        store: Store, centres: list[ScaipArc], forwarders: list[ArcForwarder],
        capfd: pytest.CaptureFixture[str]) -> None:
    strict = await _centre(centres, digest=("gateway-vgr", "the-right-secret"))
    backup = await _centre(centres)
    spec = _spec("test-arc-digest-wrong", f"tcp://127.0.0.1:{strict.tcp_port}",
                 f"udp://127.0.0.1:{backup.udp_port}", auth_user="gateway-vgr",
                 auth_password_env="TEST_ARC_PASSWORD")
    forwarder = await _forwarder(store, spec, forwarders, "a-wrong-secret")
    ref = _send(forwarder, spec, _alarm("T-DIGEST-BAD"))
    assert await wait_until(lambda: _answers(backup, ref) == [("UDP", Snu.OK)], 3)
    # Refused twice (without, then with the wrong answer); the reset sent on leaving it, too.
    assert strict.requests(ref) == [] and strict.challenges >= 2
    logged = "".join(capfd.readouterr())
    assert "arc_refused_credentials" in logged and "a-wrong-secret" not in logged


async def test_a_connection_that_answers_nothing_is_replaced_for_the_next_alarm(
        store: Store, centres: list[ScaipArc], forwarders: list[ArcForwarder]) -> None:
    """Silence on a reliable transport means a connection that died without saying so: the
    alarm goes to the secondary, and the next one gets a new connection to the primary."""
    mute = await _centre(centres, "drop")
    backup = await _centre(centres)
    spec = _spec("test-arc-tcp-mute", f"tcp://127.0.0.1:{mute.tcp_port}",
                 f"udp://127.0.0.1:{backup.udp_port}")
    forwarder = await _forwarder(store, spec, forwarders)
    first = _send(forwarder, spec, _alarm("T-TCP-MUTE-1"))
    assert await wait_until(lambda: _answers(backup, first) == [("UDP", Snu.OK)], 3)
    second = _send(forwarder, spec, _alarm("T-TCP-MUTE-2"))
    assert await wait_until(lambda: _answers(backup, second) == [("UDP", Snu.OK)], 3)
    assert mute.connections == 2


async def test_arc_check_shows_each_centres_answer_and_fails_on_a_silent_one(
        centres: list[ScaipArc], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`gateway arc check`: what an operator runs before telling a centre the gateway is ready."""
    from rich.console import Console
    from typer.testing import CliRunner, Result

    from gateway.cli import common
    from gateway.cli.main import app

    strict = await _centre(centres, digest=("gateway-vgr", "check-secret"))
    mute = await _centre(centres, "drop")
    (tmp_path / "arc.secret").write_text("check-secret\n")
    sinks = tmp_path / "sinks.toml"
    sinks.write_text(
        '[[arc]]\nreceiver = "larm-check"\ncid = "4600000001"\nanswer_timeout_s = 1\n'
        f'primary = "tcp://127.0.0.1:{strict.tcp_port}"\n'
        f'secondary = "udp://127.0.0.1:{mute.udp_port}"\n'
        'auth_user = "gateway-vgr"\nauth_password_file = "arc.secret"\n\n'
        '[[arc]]\nreceiver = "larm-closed"\ncid = "4600000001"\nanswer_timeout_s = 1\n'
        f'primary = "tcp://127.0.0.1:{free_port()}"\n')
    monkeypatch.setattr(common, "console", Console(width=250, force_terminal=False))

    async def run(*args: str) -> Result:  # the command runs its own event loop
        return await asyncio.to_thread(CliRunner().invoke, app, list(args),
                                       env={"SINKS_FILE": str(sinks)})

    checked = await run("arc", "check")
    assert checked.exit_code == 1, checked.output  # the secondary said nothing
    lines = checked.output.splitlines()
    assert any("primary" in line and "ok, asks for a heartbeat every 10 min" in line
               for line in lines), checked.output
    assert any("secondary" in line and "no answer" in line for line in lines)
    assert any("larm-closed" in line and "not sent: ConnectionRefusedError" in line
               for line in lines), checked.output
    assert "check-secret" not in checked.output
    assert strict.challenges == 1  # Digest answered
    assert (await run("arc", "check", "no-such-route")).exit_code == 2
    did = await run("arc", "did", "a-device-id-longer-than-sixteen")
    assert did.exit_code == 0 and did.output.strip().startswith("D")
    assert len(did.output.strip()) == 16
