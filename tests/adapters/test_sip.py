"""The minimal SIP codec: framing, parsing, responses and new MESSAGE requests."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import sip
from adapters.errors import AdapterError

BODY = b"<mrq><ref>A7F3K2</ref><cid>4711</cid><dty>2</dty></mrq>"


def message(body: bytes = BODY, *, compact: bool = False, extra: str = "",
            length: int | None = None) -> bytes:
    names = ({"Via": "v", "From": "f", "To": "t", "Call-ID": "i", "Content-Type": "c",
              "Content-Length": "l"} if compact else {})

    def h(name: str) -> str:
        return names.get(name, name)

    head = (
        "MESSAGE sip:arc@larm.example.se SIP/2.0\r\n"
        f"{h('Via')}: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKaa1\r\n"
        f"{h('Via')}: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKbb2\r\n"
        "Max-Forwards: 69\r\n"
        f'{h("From")}: "Unit" <sip:luc4711@larm.example.se>;tag=a1\r\n'
        f"{h('To')}: <sip:arc@larm.example.se>\r\n"
        f"{h('Call-ID')}: 8f2e@192.0.2.10\r\n"
        "CSeq: 17 MESSAGE\r\n"
        f"{h('Content-Type')}: application/scaip+xml\r\n"
        f"{extra}"
        f"{h('Content-Length')}: {len(body) if length is None else length}\r\n\r\n"
    )
    return head.encode() + body


@pytest.mark.parametrize("compact", [False, True])
def test_parse_request_with_full_and_compact_headers(compact: bool) -> None:
    msg = sip.parse(message(compact=compact))
    assert msg.is_request and msg.method == "MESSAGE"
    assert msg.uri == "sip:arc@larm.example.se"
    assert msg.call_id == "8f2e@192.0.2.10"
    assert msg.cseq == (17, "MESSAGE")
    assert msg.media_type == "application/scaip+xml"
    assert msg.header("f") == msg.header("From") == msg.header("FROM")
    assert len(msg.header_values("Via")) == 2
    assert msg.body == BODY


def test_parse_response() -> None:
    raw = sip.build_response(sip.parse(message()), 200)
    resp = sip.parse(raw)
    assert not resp.is_request
    assert resp.status == 200 and resp.reason == "OK"
    assert resp.body == b""


def test_header_folding_and_lf_only_line_endings() -> None:
    raw = message().replace(b"Max-Forwards: 69\r\n", b"Subject: a\r\n  b\r\n")
    assert sip.parse(raw).header("Subject") == "a b"
    lf = message().replace(b"\r\n", b"\n")
    assert sip.parse(lf).body == BODY


def test_frame_splits_a_stream() -> None:
    one, two = message(), message(b"<mrq><ref>B</ref></mrq>")
    stream = b"\r\n\r\n" + one + two + two[:10]
    frame = sip.frame(stream)
    assert frame == sip.Frame(4, "ping")
    stream = stream[frame.size:]
    frame = sip.frame(stream)
    assert frame is not None and frame.kind == "message" and frame.size == len(one)
    assert sip.parse(stream[:frame.size]).body == BODY
    stream = stream[frame.size:]
    frame = sip.frame(stream)
    assert frame is not None and frame.size == len(two)
    assert sip.frame(stream[frame.size:]) is None


@pytest.mark.parametrize("cut", [0, 1, 30, 200])
def test_frame_waits_for_more_bytes(cut: int) -> None:
    raw = message()
    assert sip.frame(raw[:cut] if cut < len(raw) - len(BODY) else raw[:-1]) is None
    assert sip.frame(raw[:-1]) is None


def test_frame_keepalives() -> None:
    assert sip.frame(b"\r\n") is None
    assert sip.frame(b"\r\n\r") is None
    assert sip.frame(b"\r\nMESSAGE") == sip.Frame(2, "pong")


def test_frame_requires_content_length_on_streams() -> None:
    raw = message().replace(b"Content-Length: %d\r\n" % len(BODY), b"")
    with pytest.raises(sip.SipError) as err:
        sip.frame(raw)
    assert err.value.field == "Content-Length" and err.value.status == 400
    # A datagram may omit it: the body is the rest of the datagram.
    assert sip.parse(raw).body == BODY


def test_limits() -> None:
    with pytest.raises(sip.SipError) as err:
        sip.frame(message(length=sip.MAX_MESSAGE_BYTES))
    assert err.value.status == 413
    with pytest.raises(sip.SipError) as err:
        sip.frame(b"MESSAGE sip:a@b SIP/2.0\r\nX: " + b"a" * sip.MAX_MESSAGE_BYTES)
    assert err.value.status == 413
    with pytest.raises(sip.SipError) as err:
        sip.parse(message(b"x" * sip.MAX_MESSAGE_BYTES))
    assert err.value.status == 413
    many = "".join(f"X-{i}: y\r\n" for i in range(sip.MAX_HEADERS + 1))
    with pytest.raises(sip.SipError, match="header lines"):
        sip.parse(message(extra=many))


@pytest.mark.parametrize(("raw", "field"), [
    (b"garbage\r\n\r\n", "start-line"),
    (b"MESSAGE sip:a@b SIP/2.0\r\nVia: x\r\n", "headers"),
    (message(length=999), "Content-Length"),
    (message(extra="Content-Length: 3\r\n"), "Content-Length"),
    (message().replace(b"CSeq: 17 MESSAGE", b"CSeq: 17 INVITE"), "CSeq"),
    (message().replace(b"CSeq: 17 MESSAGE", b"CSeq: x"), "CSeq"),
    (message().replace(b"Call-ID", b"X-Call"), "Call-ID"),
    (message(extra="no colon here\r\n"), "headers"),
    (message().replace(b"Max-Forwards: 69", b"Max-Forwards: \xe9"), "headers"),
    (message().replace(b"Max-Forwards: 69", b"Max-Forwards: 6\x009"), "headers"),
])
def test_malformed(raw: bytes, field: str) -> None:
    with pytest.raises(sip.SipError) as err:
        sip.parse(raw)
    assert err.value.field == field
    assert err.value.status == 400


def test_response_copies_dialog_headers_and_adds_to_tag() -> None:
    req = sip.parse(message())
    raw = sip.build_response(req, 200)
    resp = sip.parse(raw)
    assert resp.header_values("Via") == req.header_values("Via")
    assert resp.header("From") == req.header("From")
    assert resp.call_id == req.call_id
    assert resp.header("CSeq") == "17 MESSAGE"
    to_tag = sip.tag_of(resp.header("To") or "")
    assert to_tag
    # A retransmitted request gets the same response, tag included.
    assert sip.build_response(req, 200) == raw
    assert raw.endswith(b"Content-Length: 0\r\n\r\n")


def test_response_keeps_existing_to_tag() -> None:
    req = sip.parse(message().replace(b"To: <sip:arc@larm.example.se>",
                                      b"To: <sip:arc@larm.example.se>;tag=zz"))
    assert sip.parse(sip.build_response(req, 200)).header("To") == \
        "<sip:arc@larm.example.se>;tag=zz"


@pytest.mark.parametrize("status", [400, 413, 415])
def test_error_responses(status: int) -> None:
    req = sip.parse(message())
    resp = sip.parse(sip.reject(req, sip.SipError("body", "x", status)))
    assert resp.status == status
    assert resp.reason == sip.REASONS[status]
    if status == 415:
        assert resp.header("Accept") == "application/scaip+xml"


def test_cannot_answer_a_response() -> None:
    resp = sip.parse(sip.build_response(sip.parse(message()), 200))
    with pytest.raises(sip.SipError):
        sip.build_response(resp, 200)


def test_reply_message_goes_to_the_sender_with_new_ids() -> None:
    req = sip.parse(message())
    ids = sip.NewIds(call_id="c1@gw", from_tag="t1", branch="b1")
    raw = sip.build_reply_message(req, b"<mrs><ref>A7F3K2</ref><snu>0</snu></mrs>", ids=ids,
                                  cseq=1, via_sent_by="gw.example.se:5061", transport="tls")
    out = sip.parse(raw)
    assert out.method == "MESSAGE"
    assert out.uri == "sip:luc4711@larm.example.se"
    assert sip.uri_of(out.header("To") or "") == "sip:luc4711@larm.example.se"
    assert sip.uri_of(out.header("From") or "") == "sip:arc@larm.example.se"
    assert sip.tag_of(out.header("From") or "") == "t1"
    assert out.call_id == "c1@gw" != req.call_id
    assert out.cseq == (1, "MESSAGE")
    assert out.header("Via") == "SIP/2.0/TLS gw.example.se:5061;branch=z9hG4bKb1"
    assert out.media_type == "application/scaip+xml"
    assert out.body == b"<mrs><ref>A7F3K2</ref><snu>0</snu></mrs>"
    assert sip.frame(raw) == sip.Frame(len(raw), "message")


def test_reply_to_a_registered_contact() -> None:
    req = sip.parse(message())
    raw = sip.build_reply_message(req, b"x", ids=sip.new_ids("gw"), cseq=2,
                                  via_sent_by="gw:5060", request_uri="sip:luc@192.0.2.10:5070")
    assert sip.parse(raw).uri == "sip:luc@192.0.2.10:5070"


def test_new_ids_are_fresh() -> None:
    a, b = sip.new_ids(), sip.new_ids()
    assert a != b and a.branch.startswith("z9hG4bK")


def test_build_message_refuses_header_injection() -> None:
    ids = sip.new_ids()
    with pytest.raises(sip.SipError):
        sip.build_message(request_uri="sip:a@b\r\nX: y", from_uri="sip:c@d", to_uri="sip:a@b",
                          ids=ids, cseq=1, via_sent_by="h", body=b"")
    with pytest.raises(sip.SipError):
        sip.build_message(request_uri="sip:a@b", from_uri="sip:c@d", to_uri="sip:a@b",
                          ids=sip.NewIds("c d", "t", "b"), cseq=1, via_sent_by="h", body=b"")


@pytest.mark.parametrize(("value", "uri", "tag"), [
    ('"Unit" <sip:luc@x.se>;tag=a1', "sip:luc@x.se", "a1"),
    ("<sip:luc@x.se;transport=tcp>", "sip:luc@x.se;transport=tcp", None),
    ("sip:luc@x.se;tag=9", "sip:luc@x.se", "9"),
])
def test_addresses(value: str, uri: str, tag: str | None) -> None:
    assert sip.uri_of(value) == uri
    assert sip.tag_of(value) == tag


@pytest.mark.parametrize("value", ["", "<sip:x", "no uri", "<>"])
def test_bad_addresses(value: str) -> None:
    with pytest.raises(sip.SipError):
        sip.uri_of(value)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_body(encoding: str) -> None:
    packed = gzip.compress(BODY) if encoding == "gzip" else zlib.compress(BODY)
    msg = sip.parse(message(packed, extra=f"Content-Encoding: {encoding}\r\n"))
    assert sip.decoded_body(msg) == BODY
    raw_deflate = zlib.compressobj(wbits=-15)
    packed = raw_deflate.compress(BODY) + raw_deflate.flush()
    msg = sip.parse(message(packed, extra="e: deflate\r\n"))
    assert sip.decoded_body(msg) == BODY


def test_compressed_body_limits() -> None:
    bomb = zlib.compress(b"a" * 1_000_000)
    msg = sip.parse(message(bomb, extra="Content-Encoding: deflate\r\n"))
    with pytest.raises(sip.SipError) as err:
        sip.decoded_body(msg)
    assert err.value.status == 413
    msg = sip.parse(message(b"not compressed", extra="Content-Encoding: gzip\r\n"))
    with pytest.raises(sip.SipError):
        sip.decoded_body(msg)
    msg = sip.parse(message(zlib.compress(BODY)[:-4], extra="Content-Encoding: gzip\r\n"))
    with pytest.raises(sip.SipError):
        sip.decoded_body(msg)
    msg = sip.parse(message(BODY, extra="Content-Encoding: br\r\n"))
    with pytest.raises(sip.SipError) as err:
        sip.decoded_body(msg)
    assert err.value.status == 415


_tokens = st.sampled_from([b"MESSAGE", b" ", b"SIP/2.0", b"\r\n", b"\n", b":", b";", b"<", b">",
                           b"Via", b"v", b"l", b"Content-Length", b"CSeq", b"1", b"\x00", b"\xff",
                           b"tag=", b"i", b"f", b"t", b"99999999", b"-1", b"\t"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=400),
                 st.lists(_tokens, max_size=60).map(b"".join),
                 st.tuples(st.integers(0, 400), st.binary(max_size=20)).map(
                     lambda t: message()[:t[0]] + t[1] + message()[t[0]:])))
def test_no_input_raises_anything_but_adapter_error(data: bytes) -> None:
    for call in (sip.parse, sip.frame):
        try:
            result = call(data)
        except AdapterError:
            continue
        if isinstance(result, sip.SipMessage):
            if result.is_request:
                sip.build_response(result, 200)
            try:
                sip.decoded_body(result)
            except AdapterError:
                pass


def test_retransmit_waits_follow_rfc3261_timers() -> None:
    waits = list(sip.retransmit_waits())
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 0.5] and sum(waits) == 32
    assert list(sip.retransmit_waits(0.1, 0.5)) == pytest.approx([0.1, 0.2, 0.2])


def test_take_frames_leaves_the_incomplete_tail_and_stops_at_garbage() -> None:
    head = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 2\r\n\r\n"
    buffer = bytearray(b"\r\n\r\n" + head + b"ok" + head + b"o")
    assert [kind for kind, _ in sip.take_frames(buffer)] == ["ping", "message"]
    assert bytes(buffer) == head + b"o"
    broken = bytearray(head + b"ok" + b"MESSAGE sip:a@b SIP/2.0\r\n\r\n")
    frames = sip.take_frames(broken)
    assert next(frames)[0] == "message"
    with pytest.raises(sip.SipError):
        next(frames)
