"""One delivered item to the huvudman's opened copy, or the reason it is refused.

A node opens only its own huvudman's items: the data key is unwrapped with the node's private
key(s) (several during a rotation), the envelope opened (`crypto.Opener`: bound to the event id,
the huvudman and the kind), and each subject reference found: in format 2 (docs/delivery.md) a
copy names its assignments and the digest of each one's sealed reference, which arrives once
in a `subject` line (opened here too) and is kept by the node; in format 1 the sealed reference
is inside the copy. Reasons are fixed phrases: never a value, a subject reference or key
material.
"""

from __future__ import annotations

import binascii
import dataclasses
import uuid
from collections.abc import Iterable, Mapping

import msgspec

from gateway.crypto import (
    CryptoError,
    HuvudmanPrivateKey,
    IntegrityError,
    MalformedEnvelopeError,
    Opener,
    UnknownDataKeyError,
    WrongRecipientError,
)
from gateway.crypto.subject import open_subject, subject_digest
from gateway.delivery import wire
from gateway.ingest.sealing import CopyPlaintext, Subject
from gateway.store.node import KnownSubject, OpenedCopy

NOT_THIS_HUVUDMAN = "not this huvudman"
_KEY_ID_LEN = 16  # a sealed subject reference starts with its public key's id


SUBJECT_UNKNOWN = "subject unknown"


class Refused(Exception):
    """An item the node will not store; `reason` is safe to log and to answer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SubjectUnknown(Exception):
    """A copy names an assignment whose subject the node has not been sent (or has lost):
    answered `retry`, and the gateway sends it again with the subject line."""


@dataclasses.dataclass(frozen=True, slots=True)
class OpenedItem:
    """An item opened, its subjects not yet found."""

    item: wire.Item
    copy: CopyPlaintext

    @property
    def wanted(self) -> list[uuid.UUID]:
        """The assignments whose subject the node must already hold (format 2)."""
        return [s.assignment_id for s in self.copy.subjects if s.sealed_ref is None
                and s.digest is not None]


_encoder = msgspec.json.Encoder()
_copy_decoder = msgspec.json.Decoder(CopyPlaintext)


class ItemOpener:
    """Not thread-safe (the Opener caches unwrapped data keys): one batch at a time."""

    def __init__(self, huvudman: str, private_keys: Iterable[HuvudmanPrivateKey]) -> None:
        keys = list(private_keys)
        self.huvudman = huvudman
        self._opener = Opener(huvudman, keys)
        self._by_key_id = {k.key_id: k for k in keys}

    def open(self, item: wire.Item) -> OpenedItem:
        if item.huvudman != self.huvudman:
            raise Refused(NOT_THIS_HUVUDMAN)
        try:
            wrapped = item.wrapped_key
        except (ValueError, binascii.Error):
            raise Refused("malformed data key") from None
        try:
            envelope = item.envelope_bytes
        except (ValueError, binascii.Error):
            raise Refused("malformed envelope") from None
        try:
            plain = self._opener.open(envelope, event_id=item.event_id, kind=item.kind,
                                      wrapped_key=wrapped)
        except WrongRecipientError:
            raise Refused("data key not wrapped to this node's keys") from None
        except UnknownDataKeyError:
            raise Refused("envelope does not name its data key") from None
        except MalformedEnvelopeError:
            raise Refused("malformed envelope") from None
        except (IntegrityError, CryptoError):
            raise Refused("envelope does not open") from None
        try:
            copy = _copy_decoder.decode(plain)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
            raise Refused("content not understood") from None
        if copy.event.event_id != item.event_id:
            raise Refused("content is for another event")
        return OpenedItem(item, copy)

    def finish(self, opened: OpenedItem, known: Mapping[uuid.UUID, KnownSubject]) -> OpenedCopy:
        """The copy as the node stores it, each subject found in `known` (format 2) or in
        the copy itself (format 1). Raises SubjectUnknown or Refused."""
        item, copy = opened.item, opened.copy
        subjects = [{"assignment_id": str(s.assignment_id), "subject_ref": self._ref(s, known)}
                    for s in copy.subjects]
        return OpenedCopy(event_id=item.event_id, measured_at=item.measured_at, kind=item.kind,
                          event_type=item.event_type, lane=item.lane,
                          content=_encoder.encode(copy.event).decode(),
                          subjects=_encoder.encode(subjects).decode(), routed_at=copy.routed_at)

    def open_subject_line(self, line: wire.SubjectLine) -> KnownSubject:
        """A `subject` line opened: only this huvudman's, only sealed to this node's keys."""
        if line.huvudman != self.huvudman:
            raise Refused(NOT_THIS_HUVUDMAN)
        try:
            sealed = line.sealed_bytes
        except (ValueError, binascii.Error):
            raise Refused("malformed subject reference") from None
        ref = self._open_sealed(line.assignment_id, sealed)
        return KnownSubject(line.assignment_id, subject_digest(sealed), ref)

    def _ref(self, subject: Subject, known: Mapping[uuid.UUID, KnownSubject]) -> str | None:
        if subject.sealed_ref is not None:  # format 1
            return self._open_sealed(subject.assignment_id, subject.sealed_ref)
        if subject.digest is None:  # the subject was erased before the copy was sealed
            return None
        found = known.get(subject.assignment_id)
        if found is None:
            raise SubjectUnknown
        if found.digest != subject.digest:
            raise Refused("subject reference does not match the copy")
        return found.subject_ref

    def _open_sealed(self, assignment_id: uuid.UUID, sealed: bytes) -> str:
        key = self._by_key_id.get(sealed[:_KEY_ID_LEN])
        if key is None:
            raise Refused("subject reference sealed to a key this node does not hold")
        try:
            return open_subject(key, assignment_id, sealed)
        except (CryptoError, UnicodeDecodeError):
            raise Refused("subject reference does not open") from None
