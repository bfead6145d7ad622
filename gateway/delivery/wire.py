"""The webhook wire format between the gateway and a huvudman's node (docs/delivery.md).

One item per NDJSON line; the batch is signed with HMAC-SHA256 over `timestamp "." body` with
the secret shared with that huvudman. Both sides use this module, so they cannot drift apart.

Format 2 (`"v": 2`): a copy no longer carries its subject reference; a `subject` line carries
an assignment's sealed reference, once per sink (and again whenever the receiver asks for it by
answering `retry` for an item it cannot place), before the items that need it. Format 1 items
(the sealed reference inside the envelope) are still read, for copies sealed before.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

import msgspec

from gateway.crypto import KeySuite, WrappedKey

VERSION = 2
CONTENT_TYPE = "application/x-ndjson"
SIGNATURE_HEADER = "X-Gateway-Signature"
TIMESTAMP_HEADER = "X-Gateway-Timestamp"
MAX_CLOCK_SKEW_S = 300


class WireKey(msgspec.Struct, frozen=True):
    owner: str  # whose key wraps it: the huvudman, or hmc-quarantine for a fallback alarm
    key_id: str
    subject_pseudonym: str
    epoch: int
    recipient_key_id: str
    suite: str
    wrapped: str


class Item(msgspec.Struct, frozen=True):
    """One sealed copy on its way to its owner. Nothing in clear but ids, kind and times."""

    event_id: uuid.UUID
    huvudman: str | None
    kind: str
    event_type: str
    measured_at: datetime
    lane: str
    envelope: str  # base64
    data_key: WireKey
    receiver: str | None = None
    v: int = VERSION
    type: str = "item"

    @property
    def envelope_bytes(self) -> bytes:
        return base64.b64decode(self.envelope)

    @property
    def wrapped_key(self) -> WrappedKey:
        k = self.data_key
        return WrappedKey(key_id=bytes.fromhex(k.key_id), huvudman=k.owner,
                          subject_pseudonym=bytes.fromhex(k.subject_pseudonym), epoch=k.epoch,
                          recipient_key_id=bytes.fromhex(k.recipient_key_id),
                          suite=KeySuite(k.suite), wrapped=base64.b64decode(k.wrapped))


class SubjectLine(msgspec.Struct, frozen=True):
    """An assignment's subject reference, sealed to its huvudman (gateway.crypto.subject),
    which the copies of format 2 name by `assignment_id` and digest."""

    huvudman: str
    assignment_id: uuid.UUID
    sealed: str  # base64
    type: str = "subject"
    v: int = VERSION

    @property
    def sealed_bytes(self) -> bytes:
        return base64.b64decode(self.sealed)


def subject_line(huvudman: str, assignment_id: uuid.UUID, sealed: bytes) -> SubjectLine:
    return SubjectLine(huvudman, assignment_id, base64.b64encode(sealed).decode())


def item(*, event_id: uuid.UUID, huvudman: str | None, kind: str, event_type: str,
         measured_at: datetime, lane: str, envelope: bytes, data_key: WrappedKey,
         receiver: str | None = None) -> Item:
    return Item(
        event_id=event_id, huvudman=huvudman, kind=kind, event_type=event_type,
        measured_at=measured_at, lane=lane, envelope=base64.b64encode(envelope).decode(),
        receiver=receiver,
        data_key=WireKey(owner=data_key.huvudman, key_id=data_key.key_id.hex(),
                         subject_pseudonym=data_key.subject_pseudonym.hex(),
                         epoch=data_key.epoch, recipient_key_id=data_key.recipient_key_id.hex(),
                         suite=data_key.suite.value,
                         wrapped=base64.b64encode(data_key.wrapped).decode()))


class _Kind(msgspec.Struct):
    type: str = "item"  # format 1 lines are all items and do not say so


_encoder = msgspec.json.Encoder()
_kind_decoder = msgspec.json.Decoder(_Kind)
_item_decoder = msgspec.json.Decoder(Item)
_subject_decoder = msgspec.json.Decoder(SubjectLine)


def encode_batch(items: Iterable[Item], subjects: Iterable[SubjectLine] = ()) -> bytes:
    """The subject lines first: a receiver reading line by line knows them by the items."""
    return b"".join(_encoder.encode(line) + b"\n" for line in (*subjects, *items))


def decode_batch(body: bytes) -> list[Item | SubjectLine | msgspec.DecodeError]:
    """Each line decoded on its own: a bad line is reported, the others still count."""
    out: list[Item | SubjectLine | msgspec.DecodeError] = []
    for line in body.splitlines():
        if not line.strip():
            continue
        try:
            kind = _kind_decoder.decode(line).type
            if kind == "subject":
                out.append(_subject_decoder.decode(line))
            elif kind == "item":
                out.append(_item_decoder.decode(line))
            else:
                out.append(msgspec.DecodeError(f"unknown line type {kind[:20]!r}"))
        except (msgspec.DecodeError, UnicodeDecodeError) as err:
            out.append(err if isinstance(err, msgspec.DecodeError)
                       else msgspec.DecodeError("invalid UTF-8"))
    return out


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def verify(secret: bytes, timestamp: str | None, signature: str | None, body: bytes,
           now: float) -> str | None:
    """None if the batch is authentic and fresh, else the reason it is not."""
    if not timestamp or not signature:
        return "missing signature or timestamp"
    if not timestamp.isascii() or not timestamp.isdigit():
        return "malformed timestamp"
    if abs(now - int(timestamp)) > MAX_CLOCK_SKEW_S:
        return "timestamp too far from now"
    if not hmac.compare_digest(sign(secret, int(timestamp), body), signature):
        return "signature does not match"
    return None


class ItemStatus(msgspec.Struct, frozen=True, omit_defaults=True):
    event_id: str
    # stored | duplicate | rejected | retry (format 2: e.g. "subject unknown": the gateway sends
    # the item again soon, with the subject lines it needs)
    status: str
    reason: str | None = None


class Answer(msgspec.Struct, frozen=True):
    results: list[ItemStatus]


def encode_answer(results: Sequence[ItemStatus]) -> bytes:
    return _encoder.encode(Answer(list(results)))


def decode_answer(body: bytes) -> Answer:
    return msgspec.json.decode(body, type=Answer)
