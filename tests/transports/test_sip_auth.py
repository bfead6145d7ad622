"""SCAIP units authenticate (SS 91100 §8): SIP Digest against the credential HMC issued, or a
certificate of HMC's device CA on the TLS listener. Whoever cannot is challenged, the same way
whether or not the unit exists, and nothing of a refused request is stored. `SIP_UNIT_AUTH=off`
is the switch for units that cannot authenticate."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapters import scaip, sip, sip_digest
from adapters.scaip import Snu
from gateway.demo import embedded
from gateway.observability import metrics
from gateway.ownership import lifecycle
from gateway.store.connector import Store
from gateway.transports.sip_listener import SipListener
from tests.support import (
    SCAIP_CREDENTIALS,
    FakeDevice,
    RunningGateway,
    pem,
    register_scaip_unit,
    self_signed_ca,
    tls_files,
)
from tests.transports.test_sip_ingest import ASSIGNMENT, Unit, cid_of, metric, mrs_of, rows

pytestmark = pytest.mark.integration


@pytest.fixture
async def gps(store: Store, gateway: RunningGateway) -> FakeDevice:
    device = await register_scaip_unit(store, "gps_alarm", assignments=[ASSIGNMENT])
    await gateway.knows(device)
    return device


@pytest.fixture
async def stranger(gateway: RunningGateway) -> AsyncIterator[Unit]:
    """A unit that knows no credential at all."""
    unit = await Unit("UDP", gateway.settings.sip_port).open()
    yield unit
    unit.close()


def _alarm(device: FakeDevice, ref: str) -> bytes:
    return scaip.build_mrq(ref=ref, cid=cid_of(device), dty=scaip.DTY_TRACKER,
                           stc=scaip.STC_MANUAL, pri=9)


async def _hop(unit: Unit, body: bytes, **headers: str) -> sip.SipMessage:
    raw, call_id = unit.message(body)
    if headers:
        raw = raw.replace(b"\r\nContent-Type:", "".join(
            f"\r\n{k}: {v}" for k, v in headers.items()).encode() + b"\r\nContent-Type:", 1)
    unit._send(raw)
    answer = await unit.next(request=False)
    assert answer.call_id == call_id
    return answer


async def _nothing_more(unit: Unit) -> None:
    with pytest.raises(TimeoutError):
        await unit.next(request=True, timeout=0.3)


def _challenges(answer: sip.SipMessage) -> list[sip_digest.Challenge]:
    return [sip_digest.parse_challenge(v) for v in answer.header_values("WWW-Authenticate")]


async def test_a_unit_without_credentials_is_challenged_and_nothing_is_stored(
        store: Store, gps: FakeDevice, stranger: Unit) -> None:
    refused = metric(metrics.REJECTED, "sip", "auth")
    registered = await _hop(stranger, _alarm(gps, "NOAUTH1"))
    unknown = FakeDevice(f"scaip:{uuid.uuid4().int % 10**12}", "")
    not_registered = await _hop(stranger, _alarm(unknown, "NOAUTH2"))
    # The same answer whether or not the unit exists: the port tells nobody which ones do.
    for answer in (registered, not_registered):
        assert answer.status == 401
        assert [(c.algorithm, c.qop, c.realm) for c in _challenges(answer)] == [
            ("SHA-256", ("auth",), "vgr-telemetry-gateway"), ("MD5", ("auth",),
                                                            "vgr-telemetry-gateway")]
    await _nothing_more(stranger)
    assert await rows(store, gps.id) == []
    assert metric(metrics.REJECTED, "sip", "auth") == refused + 2


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
async def test_digest_with_the_units_credential_is_accepted(
        algorithm: str, store: Store, gps: FakeDevice, stranger: Unit) -> None:
    challenge = next(c for c in _challenges(await _hop(stranger, _alarm(gps, "A0")))
                     if c.algorithm == algorithm)
    uri = f"sip:arc@127.0.0.1:{stranger.gateway[1]}"
    authorization = sip_digest.authorization(challenge, method="MESSAGE", uri=uri,
                                             username=gps.id, password=gps.token, nc=1,
                                             cnonce="c0ffee")
    answer = await _hop(stranger, _alarm(gps, "OK1"), Authorization=authorization)
    assert answer.status == 200
    assert mrs_of(await stranger.next(request=True)).snu == Snu.OK
    assert await rows(store, gps.id) == [("alarm", "alarm")]
    # The same MESSAGE played again (a new transaction, the same nonce and count) is refused.
    again = await _hop(stranger, _alarm(gps, "OK1"), Authorization=authorization)
    assert again.status == 401
    await _nothing_more(stranger)
    assert await rows(store, gps.id) == [("alarm", "alarm")]


async def test_a_wrong_credential_is_challenged_again_and_nothing_is_stored(
        store: Store, gps: FakeDevice, stranger: Unit) -> None:
    challenge = _challenges(await _hop(stranger, _alarm(gps, "W0")))[1]
    uri = f"sip:arc@127.0.0.1:{stranger.gateway[1]}"
    wrong = sip_digest.authorization(challenge, method="MESSAGE", uri=uri, username=gps.id,
                                     password="not-the-credential", nc=1, cnonce="x")
    assert (await _hop(stranger, _alarm(gps, "W1"), Authorization=wrong)).status == 401
    await _nothing_more(stranger)
    assert await rows(store, gps.id) == []


async def test_a_unit_cannot_raise_another_units_alarm(
        store: Store, gateway: RunningGateway, gps: FakeDevice) -> None:
    other = await register_scaip_unit(store, "gps_alarm", assignments=[ASSIGNMENT])
    await gateway.knows(other)
    unit = await (await Unit("UDP", gateway.settings.sip_port, gps).open()).prime()
    try:
        SCAIP_CREDENTIALS.pop(other.id)  # this unit knows only its own credential
        answer, mrs = await unit.exchange(_alarm(other, "OTHER1"), cid=cid_of(other))
    finally:
        unit.close()
    assert answer.status == 200  # authenticated: as gps
    assert (mrs_of(mrs).snu, mrs_of(mrs).ref) == (Snu.NOT_TREATED, "OTHER1")
    assert await rows(store, other.id) == []


async def test_reconditioning_rotates_the_sip_credential(
        store: Store, gateway: RunningGateway) -> None:
    device_id = f"scaip:{uuid.uuid4().int % 10**12}"
    first = (await lifecycle.register(store, device_id, "gps_alarm")).token
    assert first is not None
    await gateway.knows(FakeDevice(device_id, first))
    unit = await Unit("UDP", gateway.settings.sip_port, FakeDevice(device_id, first)).open()
    try:
        SCAIP_CREDENTIALS[device_id] = first
        answer, mrs = await unit.exchange(scaip.build_mrq(ref="R1", cid=device_id[6:], dty=2,
                                                          mty=scaip.Mty.PING))
        assert answer.status == 200 and mrs_of(mrs).snu == Snu.OK
        await lifecycle.assign(store, device_id, [lifecycle.NewAssignment(
            huvudman="1480", subject_ref="test-subject-sip-rotation", legal_basis="SoL",
            kinds=["alarm"])])
        await lifecycle.return_device(store, device_id)
        second = (await lifecycle.recondition(store, device_id)).token
        assert second is not None and second != first
        await asyncio.sleep(0.3)  # the registry reloads on the change notification
        unit.send(scaip.build_mrq(ref="R2", cid=device_id[6:], dty=2, mty=scaip.Mty.PING))
        assert (await unit.next(request=False)).status == 401  # the old credential: refused
        SCAIP_CREDENTIALS[device_id] = second
        answer, mrs = await unit.exchange(scaip.build_mrq(ref="R3", cid=device_id[6:], dty=2,
                                                          mty=scaip.Mty.PING))
        assert answer.status == 200 and mrs_of(mrs).snu == Snu.OK
    finally:
        unit.close()


def _client_cert(folder: Path, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate,
                 common_name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = folder / "unit.pem", folder / "unit.key"
    cert_path.write_bytes(pem(cert))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def _tls_exchange(port: int, context: ssl.SSLContext, body: bytes) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                   server_hostname="localhost")
    try:
        local = writer.get_extra_info("sockname")
        uri = f"sip:luc1@127.0.0.1:{local[1]}"
        writer.write(sip.build_message(
            request_uri="sip:arc@localhost", from_uri=uri, to_uri="sip:arc@localhost",
            ids=sip.new_ids(), cseq=1, via_sent_by=f"127.0.0.1:{local[1]}", transport="TLS",
            body=body, contact=uri))
        buffer, got = bytearray(), []
        while len(got) < 2:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                break
            buffer += chunk
            while (item := sip.frame(buffer)) is not None:
                got.append(bytes(buffer[:item.size]))
                del buffer[:item.size]
                if item.kind == "message" and sip.parse(got[-1]).status == 401:
                    return got
        return got
    finally:
        writer.close()


async def test_a_certificate_of_hmcs_device_ca_is_enough_over_tls(
        store: Store, gateway: RunningGateway, gps: FakeDevice, tmp_path: Path) -> None:
    server_ca, cert, key = tls_files(tmp_path, "test gateway CA")
    device_ca_key, device_ca = self_signed_ca("test HMC device CA")
    device_ca_file = tmp_path / "device-ca.pem"
    device_ca_file.write_bytes(pem(device_ca))
    unit_cert, unit_key = _client_cert(tmp_path, device_ca_key, device_ca, gps.id)
    settings = dataclasses.replace(gateway.settings, sip_port=embedded.free_port(),
                                   sip_tls_port=embedded.free_port(), sip_tls_cert_file=cert,
                                   sip_tls_key_file=key, sip_tls_client_ca_file=device_ca_file)
    listener = SipListener(settings, gateway.runtime.registry, gateway.runtime.pipeline)
    await listener.start()
    try:
        with_cert = ssl.create_default_context(cafile=str(server_ca))
        with_cert.load_cert_chain(str(unit_cert), str(unit_key))
        answered = await _tls_exchange(listener.tls_port, with_cert, _alarm(gps, "CERT1"))
        without = await _tls_exchange(listener.tls_port,
                                      ssl.create_default_context(cafile=str(server_ca)),
                                      _alarm(gps, "CERT2"))
    finally:
        await listener.stop()
    assert sip.parse(answered[0]).status == 200
    assert scaip.parse_mrs(sip.parse(answered[1]).body).snu == Snu.OK
    assert sip.parse(without[0]).status == 401  # no certificate: Digest, as over UDP
    assert await rows(store, gps.id) == [("alarm", "alarm")]


async def test_the_switch_for_units_that_cannot_authenticate(
        store: Store, gateway: RunningGateway, gps: FakeDevice) -> None:
    """SIP_UNIT_AUTH=off (docs/sip.md: anyone who reaches the port can then raise or cancel a
    registered unit's alarms, and learn which units are registered)."""
    settings = dataclasses.replace(gateway.settings, sip_port=embedded.free_port(),
                                   sip_unit_auth=False)
    listener = SipListener(settings, gateway.runtime.registry, gateway.runtime.pipeline)
    await listener.start()
    unit = await Unit("UDP", listener.udp_port).open()
    try:
        answer, mrs = await unit.exchange(_alarm(gps, "OFF1"))
        unknown = FakeDevice(f"scaip:{uuid.uuid4().int % 10**12}", "")
        _, refused = await unit.exchange(_alarm(unknown, "OFF2"))
    finally:
        unit.close()
        await listener.stop()
    assert answer.status == 200 and answer.header("Authorization") is None
    assert mrs_of(mrs).snu == Snu.OK and mrs_of(refused).snu == Snu.NOT_TREATED
    assert await rows(store, gps.id) == [("alarm", "alarm")]
