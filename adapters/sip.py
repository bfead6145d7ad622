"""A minimal sans-IO SIP (RFC 3261) message codec: just what SCAIP needs.

SCAIP (SS 91100) carries its XML in SIP MESSAGE requests; the alarm receiver answers each with a
`200 OK` and sends its `<mrs>` back as a *separate* MESSAGE to the sender (SIS-TR 91102 §7.5).
So the gateway needs to: split a TCP stream into messages, parse one message, answer a received
request, and build one new MESSAGE. Nothing here opens a socket, reads a clock or draws random
numbers: ids (tags, Call-ID, branch) are passed in, and `new_ids()` is the one helper that draws
them, for the transport to call.

Why not a library. PyPI was checked (2026-11): full stacks (`sippy`, `pysipio`, `opensip`,
baresip and PJSUA bindings) own their sockets and event loop, which the sans-IO adapter layer
forbids. `sipmessage` (Spacinov, BSD-2, typed, maintained) is a pure parser and the closest fit,
but it parses one complete datagram only (no stream framing, no size or header-count limits, so
the gateway would still need its own framing and bounds checks in front of it), raises assorted
exception types we would have to wrap, and adding it needs a pyproject change that is not this
module's to make. The subset SCAIP uses is small (start line, headers incl. compact forms,
Content-Length framing, copying five headers into a response), so ~300 lines of our own code with
hard limits is the smaller risk. Revisit if the gateway ever needs dialogs, auth or proxying.

Limits: a message is at most `MAX_MESSAGE_BYTES` (64 KiB) and `MAX_HEADERS` header lines. Every
malformed input raises `SipError`, an `AdapterError` carrying the SIP status to answer with (400,
413, 415); nothing else escapes. On a stream, a framing error means the stream cannot be resynced:
answer if possible, then close the connection.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from adapters.errors import AdapterError

MAX_MESSAGE_BYTES = 64 * 1024
MAX_HEADERS = 64
SIP_VERSION = "SIP/2.0"
# RFC 3261 §8.1.1.7: a branch starting with this cookie marks an RFC 3261 transaction id.
BRANCH_COOKIE = "z9hG4bK"

# RFC 3261 §7.3.3 and the IANA registry: compact forms a sender may use instead of full names.
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "d": "Request-Disposition",
    "e": "Content-Encoding", "f": "From", "i": "Call-ID", "j": "Reject-Contact",
    "k": "Supported", "l": "Content-Length", "m": "Contact", "n": "Identity-Info",
    "o": "Event", "r": "Refer-To", "s": "Subject", "t": "To", "u": "Allow-Events",
    "v": "Via", "x": "Session-Expires", "y": "Identity",
}
# Canonical spelling for the headers this codec writes or looks up, keyed by lower case.
_CANONICAL: dict[str, str] = {
    name.lower(): name for name in (
        *COMPACT_FORMS.values(), "CSeq", "Max-Forwards", "Accept", "Accept-Encoding",
        "User-Agent", "Server", "Authorization", "WWW-Authenticate", "Route", "Record-Route",
        "Expires", "Date", "Allow",
    )
}

REASONS: dict[int, str] = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    500: "Server Internal Error",
    503: "Service Unavailable",
}

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_REQUEST_LINE = re.compile(r"^([A-Za-z0-9.!%*_+`'~-]+) (\S+) SIP/2\.0$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6][0-9]{2}) ?(.*)$")
_CSEQ = re.compile(r"^\s*([0-9]{1,10})\s+([A-Za-z0-9.!%*_+`'~-]+)\s*$")
_TAG = re.compile(r";\s*tag\s*=\s*([^;\s,>]+)", re.IGNORECASE)
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class SipError(AdapterError):
    """Malformed or unacceptable SIP; `status` is the response the sender should get."""

    def __init__(self, field: str, reason: str, status: int = 400) -> None:
        super().__init__(field, reason, position="sip")
        self.status = status


def canonical_name(name: str) -> str:
    """Full, conventionally spelled header name; compact forms expanded."""
    lower = name.lower()
    full = COMPACT_FORMS.get(lower)
    if full is not None:
        return full
    return _CANONICAL.get(lower, name)


@dataclass(frozen=True, slots=True)
class SipMessage:
    """One parsed SIP request (`method` set) or response (`status` set)."""

    method: str | None
    uri: str | None
    status: int | None
    reason: str | None
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def header(self, name: str) -> str | None:
        """The first value of a header (any spelling, compact or full), or None."""
        wanted = canonical_name(name).lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        wanted = canonical_name(name).lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    @property
    def call_id(self) -> str | None:
        return self.header("Call-ID")

    @property
    def cseq(self) -> tuple[int, str] | None:
        value = self.header("CSeq")
        match = _CSEQ.match(value) if value is not None else None
        return (int(match.group(1)), match.group(2).upper()) if match else None

    @property
    def media_type(self) -> str | None:
        """Content-Type without parameters, lower-cased (`application/scaip+xml`)."""
        value = self.header("Content-Type")
        return value.split(";", 1)[0].strip().lower() if value else None


@dataclass(frozen=True, slots=True)
class Frame:
    """What the start of a stream buffer holds: `size` bytes of one message or keep-alive.

    `kind` is "message" (hand `buffer[:size]` to `parse`), "ping" (RFC 5626 §4.4.1 double
    CRLF; answer with a single CRLF) or "pong" (a single CRLF; nothing to do).
    """

    size: int
    kind: Literal["message", "ping", "pong"]


def frame(buffer: bytes | bytearray | memoryview) -> Frame | None:
    """Find the first complete item in a stream buffer, or None if more bytes are needed.

    A message on a stream must carry Content-Length (RFC 3261 §18.3); its absence, an invalid
    value, or a message over MAX_MESSAGE_BYTES raises SipError, after which the stream cannot be
    resynchronised and must be closed.
    """
    data = bytes(buffer[:MAX_MESSAGE_BYTES + 4])
    if data.startswith(b"\r\n\r\n"):
        return Frame(4, "ping")
    if data.startswith(b"\r\n"):
        return None if len(data) < 4 and b"\r\n\r\n".startswith(data) else Frame(2, "pong")
    if data in (b"\r", b"\n"):
        return None
    if data.startswith(b"\n"):
        return Frame(1, "pong")
    end = _HEADER_END.search(data)
    if end is None:
        if len(data) >= MAX_MESSAGE_BYTES:
            raise SipError("headers", f"header section longer than {MAX_MESSAGE_BYTES} bytes", 413)
        return None
    head_size = end.end()
    length = _content_length(_header_lines(data[:end.start()]))
    if length is None:
        raise SipError("Content-Length", "required on a stream transport")
    if head_size + length > MAX_MESSAGE_BYTES:
        raise SipError("Content-Length", f"message longer than {MAX_MESSAGE_BYTES} bytes", 413)
    if len(buffer) < head_size + length:
        return None
    return Frame(head_size + length, "message")


def take_frames(buffer: bytearray) -> Iterator[tuple[Literal["message", "ping", "pong"], bytes]]:
    """Remove and yield every complete item at the start of `buffer`, as (kind, bytes).

    What is incomplete stays in `buffer` for the next read. Raises SipError (after yielding what
    came before) when the stream cannot be framed; the caller must then close it.
    """
    while buffer:
        item = frame(buffer)
        if item is None:
            return
        data = bytes(buffer[:item.size])
        del buffer[:item.size]
        yield item.kind, data


def parse(data: bytes) -> SipMessage:
    """Parse one whole message (a datagram, or `buffer[:frame.size]` from a stream).

    Without Content-Length the body is the rest of the data (datagram rule, RFC 3261 §18.3);
    bytes past Content-Length are ignored for the same reason.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipError("message", f"longer than {MAX_MESSAGE_BYTES} bytes", 413)
    data = data.lstrip(b"\r\n")
    end = _HEADER_END.search(data)
    if end is None:
        raise SipError("headers", "no blank line ends the header section")
    lines = _header_lines(data[:end.start()])
    if not lines:
        raise SipError("start-line", "missing")
    start, header_lines = lines[0], lines[1:]
    headers = _parse_headers(header_lines)
    body = data[end.end():]
    length = _content_length(lines)
    if length is not None:
        if len(body) < length:
            raise SipError("Content-Length", "larger than the body received")
        body = body[:length]

    request = _REQUEST_LINE.match(start)
    if request is not None:
        method, uri = request.group(1).upper(), request.group(2)
        msg = SipMessage(method, uri, None, None, headers, body)
    else:
        status = _STATUS_LINE.match(start)
        if status is None:
            raise SipError("start-line", "neither a SIP/2.0 request line nor a status line")
        msg = SipMessage(None, None, int(status.group(1)), status.group(2), headers, body)
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        # RFC 3261 §8.1.1: without these no response can be matched to its request.
        if msg.header(name) is None:
            raise SipError(name, "mandatory header missing")
    if msg.cseq is None:
        raise SipError("CSeq", "not a sequence number followed by a method")
    if msg.is_request and msg.cseq[1] != msg.method:
        raise SipError("CSeq", "method does not match the request line")
    return msg


def decoded_body(msg: SipMessage, limit: int = MAX_MESSAGE_BYTES) -> bytes:
    """The body with any Content-Encoding (gzip, deflate) undone, at most `limit` bytes.

    SIS-TR 91102 §7.6 suggests deflate for SCAIP bodies over 1000 B; the limit keeps a
    compression bomb from growing past what an uncompressed message could be.
    """
    encoding = (msg.header("Content-Encoding") or "identity").strip().lower()
    if encoding in ("", "identity"):
        return msg.body
    if encoding not in ("gzip", "deflate", "x-gzip"):
        raise SipError("Content-Encoding", "unsupported; use identity, gzip or deflate", 415)
    # wbits 47 = auto-detect zlib or gzip header; raw deflate is tried second.
    for wbits in (47, -15):
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(msg.body, limit + 1)
        except zlib.error:
            continue
        if len(out) > limit or inflater.unconsumed_tail:
            raise SipError("body", f"decompresses to more than {limit} bytes", 413)
        if not inflater.eof:
            continue
        return out
    raise SipError("body", "not valid compressed data for its Content-Encoding")


def _header_lines(head: bytes) -> list[str]:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise SipError("headers", "not UTF-8") from None
    raw = text.replace("\r\n", "\n").split("\n")
    lines: list[str] = []
    for line in raw:
        if line[:1] in (" ", "\t") and lines:
            # Header folding (RFC 3261 §7.3.1): continuation lines join with one space.
            lines[-1] = lines[-1] + " " + line.strip()
        else:
            lines.append(line)
        if len(lines) > MAX_HEADERS + 1:
            raise SipError("headers", f"more than {MAX_HEADERS} header lines", 400)
    for line in lines:
        if _CTL.search(line):
            raise SipError("headers", "control character in a header line")
    return lines


def _parse_headers(lines: list[str]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for index, line in enumerate(lines, start=1):
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not _TOKEN.match(name):
            raise SipError("headers", f"line {index} is not a header", 400)
        out.append((canonical_name(name), value.strip()))
    return tuple(out)


def _content_length(lines: list[str]) -> int | None:
    found: int | None = None
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or canonical_name(name.strip()) != "Content-Length":
            continue
        value = value.strip()
        if not value.isascii() or not value.isdigit() or len(value) > 7:
            raise SipError("Content-Length", "not a non-negative integer")
        length = int(value)
        if found is not None and found != length:
            raise SipError("Content-Length", "given twice with different values")
        found = length
    return found


def uri_of(address: str) -> str:
    """The URI in a From/To/Contact value: `"Name" <sip:a@b>;tag=x` and `sip:a@b;tag=x` alike."""
    value = address.strip()
    if "<" in value:
        start = value.index("<") + 1
        end = value.find(">", start)
        if end < 0:
            raise SipError("address", "'<' without '>'")
        uri = value[start:end].strip()
    else:
        # RFC 3261 §20.10: without angle brackets, parameters after ';' belong to the header.
        uri = value.split(";", 1)[0].strip()
    if not uri or ":" not in uri or any(c.isspace() for c in uri):
        raise SipError("address", "not a URI")
    return uri


def tag_of(address: str) -> str | None:
    """The `tag` parameter of a From/To value (outside the angle brackets), if any."""
    tail = address[address.rfind(">") + 1:] if ">" in address else address
    match = _TAG.search(tail)
    return match.group(1) if match else None


def response_tag(request: SipMessage) -> str:
    """A To tag derived from the request, so a retransmitted request gets an identical answer."""
    seed = "\x1f".join((request.call_id or "", tag_of(request.header("From") or "") or "",
                        request.header("CSeq") or ""))
    return hashlib.sha256(seed.encode()).hexdigest()[:16]


def build_response(request: SipMessage, status: int, reason: str | None = None, *,
                   to_tag: str | None = None,
                   extra_headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A response to `request` (RFC 3261 §8.2.6): Via (all, in order), From, Call-ID and CSeq
    copied; To copied with a tag added when it has none. No body."""
    if not request.is_request:
        raise SipError("start-line", "cannot answer a response")
    if not 100 <= status <= 699:
        raise SipError("status", "not a SIP status code")
    to = request.header("To") or ""
    if status > 100 and tag_of(to) is None:
        to = f"{to};tag={to_tag or response_tag(request)}"
    lines = [f"{SIP_VERSION} {status} {reason or REASONS.get(status, 'Unknown')}"]
    lines += [f"Via: {via}" for via in request.header_values("Via")]
    lines += [f"From: {request.header('From')}", f"To: {to}",
              f"Call-ID: {request.call_id}", f"CSeq: {request.header('CSeq')}"]
    lines += [f"{canonical_name(k)}: {v}" for k, v in extra_headers]
    lines.append("Content-Length: 0")
    return _serialise(lines, b"")


def reject(request: SipMessage, error: SipError) -> bytes:
    """The response a SipError asks for; 415 lists what is accepted."""
    extra: tuple[tuple[str, str], ...] = ()
    if error.status == 415:
        extra = (("Accept", "application/scaip+xml"), ("Accept-Encoding", "gzip, deflate"))
    return build_response(request, error.status, extra_headers=extra)


@dataclass(frozen=True, slots=True)
class NewIds:
    """Fresh identifiers for a new request: Call-ID, From tag and Via branch."""

    call_id: str
    from_tag: str
    branch: str


def new_ids(host: str = "gateway") -> NewIds:
    """Draw unguessable ids (RFC 3261 §8.1.1.4/§8.1.1.7 want them globally unique)."""
    return NewIds(call_id=f"{secrets.token_hex(16)}@{host}", from_tag=secrets.token_hex(8),
                  branch=BRANCH_COOKIE + secrets.token_hex(12))


def build_message(*, request_uri: str, from_uri: str, to_uri: str, ids: NewIds, cseq: int,
                  via_sent_by: str, body: bytes, transport: str = "TCP",
                  content_type: str = "application/scaip+xml", max_forwards: int = 70,
                  contact: str | None = None,
                  extra_headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """A new out-of-dialog MESSAGE request (RFC 3428); `extra_headers` such as
    `Authorization`."""
    for name, uri in (("request_uri", request_uri), ("from_uri", from_uri), ("to_uri", to_uri)):
        if _CTL.search(uri) or any(c.isspace() for c in uri) or ":" not in uri:
            raise SipError(name, "not a URI")
    for name, value in (("via_sent_by", via_sent_by), ("transport", transport),
                        ("content_type", content_type), ("call_id", ids.call_id),
                        ("from_tag", ids.from_tag), ("branch", ids.branch)):
        if not value or _CTL.search(value) or any(c.isspace() for c in value):
            raise SipError(name, "empty or contains whitespace")
    if not 0 <= cseq < 2**31:
        raise SipError("cseq", "outside 0..2^31-1")
    branch = ids.branch if ids.branch.startswith(BRANCH_COOKIE) else BRANCH_COOKIE + ids.branch
    lines = [
        f"MESSAGE {request_uri} {SIP_VERSION}",
        f"Via: {SIP_VERSION}/{transport.upper()} {via_sent_by};branch={branch}",
        f"Max-Forwards: {max_forwards}",
        f"From: <{from_uri}>;tag={ids.from_tag}",
        f"To: <{to_uri}>",
        f"Call-ID: {ids.call_id}",
        f"CSeq: {cseq} MESSAGE",
    ]
    if contact is not None:
        lines.append(f"Contact: <{contact}>")
    lines += [f"{name}: {value}" for name, value in extra_headers]
    lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    return _serialise(lines, body)


def build_reply_message(request: SipMessage, body: bytes, *, ids: NewIds, cseq: int,
                        via_sent_by: str, transport: str = "TCP",
                        request_uri: str | None = None) -> bytes:
    """The separate MESSAGE that carries an answer (a SCAIP `<mrs>`) back to a request's sender.

    SIS-TR 91102 §7.5: it goes to the sender's URI from the request's From header (or to its
    registered contact, which the transport passes as `request_uri` when it knows one), from the
    URI the request was addressed to, with a new Call-ID, CSeq and branch.
    """
    sender = uri_of(request.header("From") or "")
    local = uri_of(request.header("To") or "")
    return build_message(request_uri=request_uri or sender, from_uri=local, to_uri=sender,
                         ids=ids, cseq=cseq, via_sent_by=via_sent_by, body=body,
                         transport=transport)


def _serialise(lines: list[str], body: bytes) -> bytes:
    head = "\r\n".join(lines) + "\r\n\r\n"
    if _CTL.search(head.replace("\r\n", "")):
        raise SipError("headers", "control character in an outgoing header")
    return head.encode("utf-8") + body


T1_S, T2_S = 0.5, 4.0  # RFC 3261 §17.1.2.2 timers for non-INVITE requests over UDP


def retransmit_waits(t1: float = T1_S, total: float = 64 * T1_S,
                     t2: float = T2_S) -> Iterator[float]:
    """How long to wait before each resend of a request over UDP (RFC 3261 §17.1.2.2): T1, 2T1,
    4T1, ... at most T2 each, until `total` seconds have passed. Send once first; after each
    wait that ends unanswered, send again, except after the last one (then give up)."""
    elapsed, wait = 0.0, t1
    while elapsed < total:
        step = min(wait, total - elapsed)
        yield step
        elapsed += step
        wait = min(wait * 2, t2)

