"""PCD-01 adapter: ER7 and SOAP, devices, times, ACKs, privacy, XML attacks, fuzzing."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import continua
from adapters.errors import AdapterError
from adapters.events import Flag, Reading, event_id

RECEIVED = datetime(2026, 1, 10, 8, 0, tzinfo=UTC)
PNR = "191212121212"  # Skatteverket's test personnummer, never a real person
SCALE = "0011223344556677"
CUFF = "8899AABBCCDDEEFF"
HUB = "ACDE48234567ABCD"
CET = timezone(timedelta(hours=1))

MSH = ("MSH|^~\\&|AcmeInc^ACDE48234567ABCD^EUI-64||VGR||20140510094931-0400||ORU^R01^ORU_R01|"
       "MSGID1234|P|2.6|||NE|AL|||UNICODE UTF-8")
PID = f"PID|||{PNR}^^^&1.2.752.129.2.1.3.1&ISO^PI||Tolvansson^Tolvan||19121212|M"
OBR = "OBR|1|||182777000^monitoring of patient^SNOMED-CT|||20140510094900-0400"
# The two real rows quoted from the Inera TKB (docs/protocols.md §2.4).
TKB_ROWS = [
    "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.0.0.15|87.5|262688^MDC_DIM_PERCENT^MDC|||||R|||"
    "20140510094931.835-0400",
    "OBX|2|NM|188736^MDC_MASS_BODY_ACTUAL^MDC|1.0.0.16|153.6|263875^MDC_DIM_KILO_G^MDC|||||R|||"
    "20140510094931.835-0400",
]
DEVICE_ROW = "OBX|1||528399^MDC_DEV_SPEC_PROFILE_SCALE^MDC|1|||||||X|||||||0011223344556677^EUI-64"


def _message(*segments: str) -> bytes:
    return "\r".join(segments).encode()


def _parse(payload: bytes | str, device_id: str | None = None) -> continua.Pcd01Message:
    data = payload.encode() if isinstance(payload, str) else payload
    return continua.parse_message(data, device_id=device_id, received_at=RECEIVED)


def _sample(patient: bool = True) -> str:
    at = datetime(2026, 1, 10, 8, 58, tzinfo=CET)
    return continua.encode_oru(
        control_id="MSG0001", sent_at=at, sender_eui64=HUB,
        patient_id=PNR if patient else None, devices=[
            continua.DeviceGroup(SCALE, 528399, at, [continua.Measurement(188736, 72.4)]),
            continua.DeviceGroup(CUFF, 528391, at, [
                continua.Measurement(150021, 128, measured_at=at - timedelta(minutes=1)),
                continua.Measurement(150022, 82, measured_at=at - timedelta(minutes=1)),
                continua.Measurement(150023, 97, measured_at=at - timedelta(minutes=1)),
                continua.Measurement(149546, 66)]),
        ])


def test_tkb_rows_device_from_msh3_and_obx14_time() -> None:
    message = _parse(_message(MSH, PID, OBR, *TKB_ROWS))
    spo2, weight = message.parsed.events
    assert isinstance(spo2, Reading) and isinstance(weight, Reading)
    assert (spo2.code, spo2.values[0].value, spo2.values[0].unit) == (150456, 87.5, "%")
    assert (weight.code, weight.values[0].value, weight.values[0].unit) == (188736, 153.6, "kg")
    expected = datetime(2014, 5, 10, 13, 49, 31, 835000, tzinfo=UTC)
    assert spo2.measured_at == weight.measured_at == expected
    assert spo2.device_id == HUB  # no OBX-18 and no device row: MSH-3's EUI-64
    assert spo2.event_id == event_id(HUB, "150456", expected)
    assert spo2.flags == (Flag.CLOCK_IMPLAUSIBLE,)  # 2014 predates the fleet
    assert message.control_id == "MSGID1234"
    assert message.sender_eui64 == HUB


def test_obr7_applies_when_obx14_empty() -> None:
    row = "OBX|2|NM|188736^MDC_MASS_BODY_ACTUAL^MDC|1.0.0.16|70|263875^MDC_DIM_KILO_G^MDC|||||R"
    [event] = _parse(_message(MSH, OBR, DEVICE_ROW, row)).parsed.events
    assert event.measured_at == datetime(2014, 5, 10, 13, 49, tzinfo=UTC)
    assert event.device_id == SCALE  # from the device row of MDS 1


def test_round_trip_of_encoder() -> None:
    message = _parse(_sample())
    assert message.parsed.rejections == []
    by_code = {e.code: e for e in message.parsed.events if isinstance(e, Reading)}
    assert set(by_code) == {188736, 149546, 150020}
    assert by_code[188736].device_id == SCALE
    assert by_code[188736].values[0].value == 72.4
    assert by_code[188736].measured_at == datetime(2026, 1, 10, 7, 58, tzinfo=UTC)
    bp = by_code[150020]
    assert bp.device_id == CUFF
    assert [(q.code, q.value, q.unit) for q in bp.values] == [
        (150021, 128, "mm[Hg]"), (150022, 82, "mm[Hg]"), (150023, 97, "mm[Hg]")]
    assert bp.measured_at == datetime(2026, 1, 10, 7, 57, tzinfo=UTC)  # OBX-14 wins
    assert by_code[149546].measured_at == datetime(2026, 1, 10, 7, 58, tzinfo=UTC)  # OBR-7
    assert message.device_ids == [HUB, SCALE, CUFF]
    assert all(e.flags == () for e in message.parsed.events)


def test_round_trip_of_readings() -> None:
    first = _parse(_sample()).parsed.events
    groups = [continua.DeviceGroup(e.device_id, 528391, e.measured_at,
                                   continua.measurements_from(e))
              for e in first if isinstance(e, Reading)]
    again = _parse(continua.encode_oru(control_id="X", sent_at=RECEIVED, devices=groups))
    assert sorted(e.event_id for e in again.parsed.events) == sorted(e.event_id for e in first)


def test_soap_round_trip_and_response() -> None:
    soap = continua.encode_soap(_sample(), message_id="urn:uuid:6b1e")
    message = _parse(soap, HUB)
    assert len(message.parsed.events) == 3
    assert message.soap_message_id == "urn:uuid:6b1e"
    ack = continua.ack_for(message, at=RECEIVED)
    assert ack.split("\r")[1] == "MSA|AA|MSG0001"
    response = continua.soap_response(ack, relates_to=message.soap_message_id)
    assert b"CommunicatePCDDataResponse" in response
    assert b"urn:ihe:pcd:dec:2010" in response
    assert b"<wsa:RelatesTo>urn:uuid:6b1e</wsa:RelatesTo>" in response
    assert b"MSA|AA|MSG0001" in response


def test_personnummer_never_leaves_the_adapter() -> None:
    bad_row = "OBX|3|NM|188736^MDC_MASS_BODY_ACTUAL^MDC|1.0.0.3|999|263875^^MDC|||||R"
    message = _parse(_message(MSH, PID, OBR, DEVICE_ROW, bad_row))
    assert PNR not in repr(message) + repr(message.parsed)
    assert "Tolvan" not in repr(message)
    with pytest.raises(AdapterError) as caught:
        _parse(_message(MSH.replace("ORU^R01", "ADT^A01"), PID, OBR))
    assert PNR not in str(caught.value) + repr(caught.value.__dict__)


def test_device_mismatch_is_refused_per_row() -> None:
    message = _parse(_sample(patient=False), "FFFFFFFFFFFFFFFF")
    assert message.parsed.events == []
    assert {r.field for r in message.parsed.rejections} == {"OBX-18"}
    assert message.device_ids == [HUB, SCALE, CUFF]
    # The measuring device itself, or the hub in MSH-3, may authenticate.
    assert len(_parse(_sample(), SCALE).parsed.events) == 1
    assert len(_parse(_sample(), "ac-de-48-23-45-67-ab-cd").parsed.events) == 3


@pytest.mark.parametrize(("row", "field", "reason_part"), [
    ("OBX|2|NM|188740^MDC_LEN_BODY_ACTUAL^MDC|1.0.0.2|170|263441^^MDC|||||R", "OBX-3",
     "not supported"),
    ("OBX|2|NM|188736^MDC_MASS_BODY_ACTUAL^MDC|1.0.0.2|abc|263875^^MDC|||||R", "OBX-5", "NM"),
    ("OBX|2|NM|188736^MDC_MASS_BODY_ACTUAL^MDC|1.0.0.2|70|999999^^MDC|||||R", "OBX-6",
     "unit"),
    ("OBX|2|NM|188736^MDC_MASS_BODY_ACTUAL^MDC|1.0.0.2|900|263875^^MDC|||||R", "OBX-5",
     "physiologically impossible"),
    ("OBX|2|NM|188736^MDC_MASS_BODY_ACTUAL^MDC|1.0.0.2|70|263875^^MDC|||||R|||2014051",
     "OBX-14", "DTM"),
    ("OBX|2|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.0.0.2|97|266016^^MDC|||||R", "OBX-6",
     "cannot be converted"),
    ("OBX|2|NM|188736^MDC_MASS_BODY_ACTUAL^MDC|1.0.0.2|70|263875^^MDC|||||D", "OBX-11",
     "final"),
])
def test_bad_row_is_rejected_and_good_rows_kept(row: str, field: str, reason_part: str) -> None:
    good = "OBX|3|NM|188736^MDC_MASS_BODY_ACTUAL^MDC|1.0.0.3|71|263875^^MDC|||||R"
    message = _parse(_message(MSH, OBR, DEVICE_ROW, row, good))
    assert len(message.parsed.events) == 1
    [rejection] = message.parsed.rejections
    assert (rejection.field, rejection.position) == (field, "OBX[2]")
    assert reason_part in rejection.reason
    assert "900" not in rejection.reason


def test_blood_pressure_without_diastolic_is_rejected() -> None:
    row = "OBX|2|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.0.0.1|120|266016^^MDC|||||R"
    message = _parse(_message(MSH, OBR, DEVICE_ROW, row))
    [rejection] = message.parsed.rejections
    assert rejection.position == "OBX[2]"
    assert "MDC_PRESS_BLD_NONINV_DIA" in rejection.reason


def test_time_without_offset_takes_msh7_offset() -> None:
    row = ("OBX|2|NM|188736^MDC_MASS_BODY_ACTUAL^MDC|1.0.0.2|70|263875^^MDC|||||R|||"
           "20240510094931")
    [event] = _parse(_message(MSH, OBR, DEVICE_ROW, row)).parsed.events
    assert event.measured_at == datetime(2024, 5, 10, 13, 49, 31, tzinfo=UTC)
    assert event.flags == ()
    no_offset = MSH.replace("20140510094931-0400", "20140510094931")
    [event] = _parse(_message(no_offset, OBR.replace("-0400", ""), DEVICE_ROW, row)).parsed.events
    assert event.flags == (Flag.CLOCK_IMPLAUSIBLE,)


def test_lf_line_ends_and_mllp_framing_are_accepted() -> None:
    text = "\n".join([MSH, OBR, *TKB_ROWS])
    assert len(_parse(b"\x0b" + text.encode() + b"\x1c\r").parsed.events) == 2


@pytest.mark.parametrize(("payload", "field"), [
    (b"", "MSH"), (b"hello", "MSH"), (b"\xff\xfe", "MSH-18"),
    (_message(MSH.replace("ORU^R01^ORU_R01", "ADT^A01"), OBR), "MSH-9"),
    (_message(MSH.replace("|2.6|", "|2.9|"), OBR), "MSH-12"),
    (_message(MSH.replace("MSGID1234", ""), OBR, *TKB_ROWS), "MSH-10"),
    (_message(MSH, PID, OBR), "OBX"),
    (_message(MSH, "OBX|1|NM|1|" + "^" * 40_000), "MSH"),
])
def test_whole_message_failures(payload: bytes, field: str) -> None:
    with pytest.raises(AdapterError) as caught:
        _parse(payload)
    assert caught.value.field == field


def test_ack_codes_and_errors() -> None:
    assert continua.build_ack("MSGID1234", "AA").split("\r")[1] == "MSA|AA|MSGID1234"
    ack = continua.build_ack("MSG|1", "AR", "unsupported HL7 version; PCD-01 uses 2.6")
    msa = ack.split("\r")[1]
    assert msa == "MSA|AR|MSG\\F\\1|unsupported HL7 version; PCD-01 uses 2.6"
    assert ack.split("\r")[2].startswith("ERR|||207^")
    bad = "OBX|2|NM|188740^MDC_LEN_BODY_ACTUAL^MDC|1.0.0.2|170|263441^^MDC|||||R"
    message = _parse(_message(MSH, OBR, DEVICE_ROW, bad, TKB_ROWS[1]))
    ack = continua.ack_for(message, at=RECEIVED)
    segments = ack.rstrip("\r").split("\r")
    assert segments[1].startswith("MSA|AE|MSGID1234|")
    assert segments[2] == ("ERR||OBX^2^3|103^Table value not found^HL70357|E||||"
                           "observation code not supported by this gateway")
    assert segments[0].split("|")[6] == "20260110080000+0000"
    with pytest.raises(ValueError, match="AA, AE or AR"):
        continua.build_ack("x", "CA")


def test_ack_for_refused_message_keeps_control_id() -> None:
    payload = _message(MSH.replace("|2.6|", "|9.9|"), OBR)
    with pytest.raises(AdapterError) as caught:
        _parse(payload)
    ack = continua.ack_for_error(payload, caught.value, at=RECEIVED)
    assert ack.split("\r")[1].startswith("MSA|AR|MSGID1234|")
    assert "ERR||MSH^1^12|203^" in ack


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>
<CommunicatePCDData xmlns="urn:ihe:pcd:dec:2010">&xxe;</CommunicatePCDData>
</soap:Body></soap:Envelope>"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>
<CommunicatePCDData xmlns="urn:ihe:pcd:dec:2010">&lol9;</CommunicatePCDData>
</soap:Body></soap:Envelope>"""


@pytest.mark.parametrize("payload", [XXE, LAUGHS], ids=["xxe", "billion-laughs"])
def test_xml_attacks_are_refused_quickly(payload: bytes) -> None:
    started = time.perf_counter()
    with pytest.raises(AdapterError) as caught:
        _parse(payload)
    assert time.perf_counter() - started < 0.5
    assert caught.value.field == "Envelope"
    assert "DTD" in caught.value.reason
    assert b"passwd" not in str(caught.value).encode()


@pytest.mark.parametrize(("payload", "field"), [
    (b"<a>", "Envelope"), (b"<notsoap/>", "Envelope"),
    (b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>'
     b'<CommunicatePCDData xmlns="urn:other">x</CommunicatePCDData></s:Body></s:Envelope>',
     "Body"),
])
def test_bad_soap_is_refused(payload: bytes, field: str) -> None:
    with pytest.raises(AdapterError) as caught:
        _parse(payload)
    assert caught.value.field == field


def test_soap11_envelope_is_accepted() -> None:
    soap = continua.encode_soap(_sample()).replace(
        b"http://www.w3.org/2003/05/soap-envelope", b"http://schemas.xmlsoap.org/soap/envelope/")
    assert len(_parse(soap).parsed.events) == 3


_field_values = st.sampled_from([
    "", "NM", "X", "R", "D", "150456^MDC_PULS_OXIM_SAT_O2^MDC", "150021^^MDC", "150022^^MDC",
    "528399^^MDC", "188736", "1.0.0.1", "1", "97.5", "-3", "abc", "262688^^MDC", "266016^^MDC",
    "263875", "20260110085800+0100", "2026011008", "99999999999999", "ACDE48234567ABCD^EUI-64",
    "^^^", "~", "\\E\\", "&",
]) | st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n|"), max_size=8)
_segment = st.tuples(st.sampled_from(["OBX", "OBR", "PID", "NTE", "ZXX", "OBX", "OBX"]),
                     st.lists(_field_values, max_size=20)).map(lambda t: "|".join([t[0], *t[1]]))


@settings(max_examples=300, deadline=None)
@given(segments=st.lists(_segment, max_size=8), device=st.sampled_from([None, HUB, SCALE]))
def test_any_er7_raises_only_adapter_error(segments: list[str], device: str | None) -> None:
    try:
        message = _parse(_message(MSH, *segments), device)
    except AdapterError:
        return
    continua.ack_for(message, at=RECEIVED)


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=300) | st.binary(max_size=200).map(lambda b: b"MSH|^~\\&|" + b))
def test_any_bytes_raise_only_adapter_error(payload: bytes) -> None:
    try:
        _parse(payload)
    except AdapterError as err:
        continua.ack_for_error(payload, err)


@settings(max_examples=300, deadline=None)
@given(body=st.text(max_size=200), wrap=st.booleans())
def test_any_soap_raises_only_adapter_error(body: str, wrap: bool) -> None:
    payload = continua.encode_soap(body) if wrap else f"<{body}".encode()
    try:
        _parse(payload)
    except AdapterError:
        pass


def test_a_glucose_row_in_mg_per_dl_becomes_mmol_per_litre() -> None:
    """A Continua glucose meter (11073-10417): MDC 160184 in mg/dL, stored in mmol/L."""
    glucose = continua.DeviceGroup(SCALE, 528401, datetime(2026, 1, 10, 7, 0, tzinfo=UTC), [
        continua.Measurement(160184, 108.0, unit=264274)])
    message = _parse(continua.encode_oru(control_id="GLU", sent_at=RECEIVED, devices=[glucose]))
    [reading] = [e for e in message.parsed.events if isinstance(e, Reading)]
    assert (reading.code, reading.kind) == (160184, "glucose")
    assert [(q.unit, round(q.value, 2)) for q in reading.values] == [("mmol/L", 5.99)]
    assert "converted_unit" in reading.flags
