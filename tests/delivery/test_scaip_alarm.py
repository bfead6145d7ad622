"""The `<mrq>` the gateway sends to alarm centres, and the `[[arc]]` configuration (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters import scaip
from adapters.events import Alarm, AlarmType, Position
from adapters.scaip import Mty
from gateway.delivery.arc_config import ArcAddress
from gateway.delivery.scaip_alarm import alarm_mrq, caller_ids, did_for, ping_mrq, ref_for
from gateway.delivery.sink_config import SinkConfigError, arc_password, read_arcs
from tests.support import pem, self_signed_ca

AT = datetime(2026, 11, 22, 5, 0, tzinfo=UTC)
CID = "4600000001"
ARC = "larmcentral-1"


def _alarm(alarm_type: AlarmType, device_id: str = "gps-0001", *, priority: int = 9,
           position: Position | None = None) -> Alarm:
    return Alarm(event_id=uuid.uuid4(), device_id=device_id, alarm_type=alarm_type,
                 measured_at=AT, received_at=AT, source="native", priority=priority,
                 position=position)


def _read_back(mrq: bytes) -> scaip.ScaipParsed:
    return scaip.parse_mrq(mrq, received_at=AT, medication_alarms=True)


@pytest.mark.parametrize("alarm_type", list(AlarmType))
def test_every_alarm_type_reads_back_as_itself(alarm_type: AlarmType) -> None:
    """What an ARC (or our own SCAIP adapter) makes of the message is the same alarm."""
    alarm = _alarm(alarm_type)
    parsed = _read_back(alarm_mrq(alarm, receiver=ARC, gateway_cid=CID, with_position=False))
    alarms = [e for e in parsed.events if isinstance(e, Alarm)]
    assert [a.alarm_type for a in alarms] == [alarm_type]
    assert parsed.ref == ref_for(alarm.event_id, ARC)
    assert alarms[0].measured_at == AT and alarms[0].priority == 9


def test_the_ref_is_the_same_for_every_resend_and_a_valid_scaip_ref() -> None:
    event_id = uuid.uuid4()
    assert ref_for(event_id, ARC) == ref_for(uuid.UUID(str(event_id)), ARC)
    assert len(ref_for(event_id, ARC)) == 16 and ref_for(event_id, ARC).isalnum()
    assert ref_for(event_id, ARC) != ref_for(uuid.uuid4(), ARC)
    # The same alarm to two alarm centres: answers are matched by ref, so two refs.
    assert ref_for(event_id, ARC) != ref_for(event_id, "larmcentral-2")


def test_the_position_goes_only_where_the_assignment_allows() -> None:
    alarm = _alarm(AlarmType.BUTTON, position=Position(lat=57.70887, lon=11.97456))
    with_it = _read_back(alarm_mrq(alarm, receiver=ARC, gateway_cid=CID, with_position=True))
    without = _read_back(alarm_mrq(alarm, receiver=ARC, gateway_cid=CID, with_position=False))
    got = next(e for e in with_it.events if isinstance(e, Alarm)).position
    assert got is not None and abs(got.lat - 57.70887) < 1e-6
    assert next(e for e in without.events if isinstance(e, Alarm)).position is None
    assert b"<geo>" not in alarm_mrq(alarm, receiver=ARC, gateway_cid=CID, with_position=False)


def test_a_scaip_unit_keeps_its_own_ids_others_get_the_gateways_caller_id() -> None:
    assert caller_ids("scaip:4711001:TRK-1", CID) == ("4711001", "TRK-1")
    assert caller_ids("scaip:4711001", CID) == ("4711001", None)
    assert caller_ids("gps-0001", CID) == (CID, "gps-0001")
    long_id = "T-GPS_A-0123456789abcdef"
    cid, did = caller_ids(long_id, CID)
    assert cid == CID and did == did_for(long_id) and len(did) == 16
    assert did_for(long_id) == did_for(long_id) != did_for(long_id + "x")
    parsed = _read_back(alarm_mrq(_alarm(AlarmType.FALL, long_id), receiver=ARC, gateway_cid=CID,
                                  with_position=False))
    assert parsed.device_id == scaip.device_id(CID, did)


def test_a_heartbeat_asks_the_arc_for_its_interval() -> None:
    parsed = _read_back(ping_mrq("PING1", gateway_cid=CID))
    assert parsed.mty == Mty.PING and parsed.hbo and parsed.ref == "PING1"


@given(device_id=st.text(min_size=1, max_size=80), priority=st.integers(-5, 20),
       alarm_type=st.sampled_from(list(AlarmType)))
def test_any_alarm_becomes_a_message_an_arc_can_parse(device_id: str, priority: int,
                                                       alarm_type: AlarmType) -> None:
    alarm = _alarm(alarm_type, device_id, priority=priority)
    parsed = _read_back(alarm_mrq(alarm, receiver=ARC, gateway_cid=CID, with_position=False))
    assert [e.alarm_type for e in parsed.events if isinstance(e, Alarm)] == [alarm_type]


def _sinks(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sinks.toml"
    path.write_text(body)
    return path


def test_arc_entries_are_read_and_bad_ones_refused_naming_the_field(tmp_path: Path) -> None:
    good = _sinks(tmp_path, '[[arc]]\nreceiver = "larmcentral-1480"\ncid = "4600001480"\n'
                            'primary = "udp://10.20.0.5:5060"\nsecondary = "udp://[::1]:5061"\n'
                            'hold_resend_s = [5, 20]\n')
    spec = read_arcs(good)["larmcentral-1480"]
    assert spec.targets == [("primary", ArcAddress("udp", "10.20.0.5", 5060)),
                            ("secondary", ArcAddress("udp", "::1", 5061))]
    assert [str(a) for _, a in spec.targets] == ["udp://10.20.0.5:5060", "udp://[::1]:5061"]
    assert spec.answer_timeout_s == 10.0 and spec.accept_within_s == 60.0
    assert spec.tls_context() is None
    for entry, field in (
            ('receiver = "x"\ncid = "1"\nprimary = "sctp://h:1"', "arc.0"),
            ('receiver = "x"\ncid = "1"\nprimary = "udp://h:1"\ntls_ca_file = "ca.pem"',
             "arc.0"),
            ('receiver = "x"\ncid = "1"\nprimary = "tls://h:1"\ntls_cert_file = "c.pem"',
             "arc.0"),
            ('receiver = "x"\ncid = "1"\nprimary = "udp://h:70000"', "arc.0"),
            ('receiver = "x"\ncid = "12a"\nprimary = "udp://h:1"', "arc.0.cid"),
            ('receiver = "x"\ncid = "1"\nprimary = "udp://h:1"\nhold_resend_s = [20, 5]',
             "arc.0"),
            ('receiver = "x"\ncid = "1"\nprimary = "udp://h:1"\ncolour = "red"',
             "arc.0.colour")):
        with pytest.raises(SinkConfigError) as refused:
            read_arcs(_sinks(tmp_path, f"[[arc]]\n{entry}\n"))
        assert f": {field}" in str(refused.value)
    twice = '[[arc]]\nreceiver = "x"\ncid = "1"\nprimary = "udp://h:1"\n'
    with pytest.raises(SinkConfigError, match="a second entry for x"):
        read_arcs(_sinks(tmp_path, twice + twice))


def test_tls_files_are_found_beside_the_sinks_file_and_a_bad_one_refuses_start_up(
        tmp_path: Path) -> None:
    entry = ('[[arc]]\nreceiver = "x"\ncid = "1"\nprimary = "tls://larm.example.se:5061"\n'
             'secondary = "tcp://10.20.9.5:5060"\ntls_ca_file = "ca.pem"\n')
    with pytest.raises(SinkConfigError, match=r"arc\.0\.tls_ca_file: cannot use .*ca\.pem"):
        read_arcs(_sinks(tmp_path, entry))
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(SinkConfigError, match=r"arc\.0\.tls_ca_file"):
        read_arcs(_sinks(tmp_path, entry))
    (tmp_path / "ca.pem").write_bytes(pem(self_signed_ca("a test CA")[1]))
    spec = read_arcs(_sinks(tmp_path, entry))["x"]
    assert spec.tls_ca_file == tmp_path / "ca.pem"
    assert [a.transport for _, a in spec.targets] == ["tls", "tcp"]
    assert spec.tls_context() is not None
    with pytest.raises(SinkConfigError, match=r"arc\.0\.tls_cert_file"):
        read_arcs(_sinks(tmp_path, entry + 'tls_cert_file = "me.pem"\n'
                                           'tls_key_file = "me.key"\n'))


def test_digest_credentials_are_read_at_start_and_their_absence_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = ('[[arc]]\nreceiver = "x"\ncid = "1"\nprimary = "udp://10.0.0.1:5060"\n'
             'auth_user = "gateway-vgr"\n')
    with pytest.raises(SinkConfigError, match=r"arc\.0: .*auth_user needs exactly one"):
        read_arcs(_sinks(tmp_path, entry))
    with pytest.raises(SinkConfigError, match=r"arc\.0\.auth_password_file: cannot read"):
        read_arcs(_sinks(tmp_path, entry + 'auth_password_file = "arc.secret"\n'))
    (tmp_path / "arc.secret").write_text("s3cret\n")
    spec = read_arcs(_sinks(tmp_path, entry + 'auth_password_file = "arc.secret"\n'))["x"]
    assert arc_password(tmp_path / "sinks.toml", "arc.0", spec) == "s3cret"
    with pytest.raises(SinkConfigError, match=r"arc\.0\.auth_password_env: TEST_ARC_PW"):
        read_arcs(_sinks(tmp_path, entry + 'auth_password_env = "TEST_ARC_PW"\n'))
    monkeypatch.setenv("TEST_ARC_PW", "from-env")
    spec = read_arcs(_sinks(tmp_path, entry + 'auth_password_env = "TEST_ARC_PW"\n'))["x"]
    assert arc_password(tmp_path / "sinks.toml", "arc.0", spec) == "from-env"
    assert "from-env" not in repr(spec)
