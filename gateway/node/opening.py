"""One delivered item to the huvudman's opened copy, or the reason it is refused.

A node opens only its own huvudman's items: the data key is unwrapped with the node's private
key(s) (several during a rotation), the envelope opened (`crypto.Opener`: bound to the event id,
the huvudman and the kind), and each sealed subject reference opened (`crypto.subject`). Reasons
are fixed phrases: never a value, a subject reference or key material.
"""

from __future__ import annotations

import binascii
import uuid
from collections.abc import Iterable

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
from gateway.crypto.subject import open_subject
from gateway.delivery import wire
from gateway.ingest.sealing import CopyPlaintext
from gateway.store.node import OpenedCopy

NOT_THIS_HUVUDMAN = "not this huvudman"
_KEY_ID_LEN = 16  # a sealed subject reference starts with its public key's id


class Refused(Exception):
    """An item the node will not store; `reason` is safe to log and to answer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_encoder = msgspec.json.Encoder()
_copy_decoder = msgspec.json.Decoder(CopyPlaintext)


class ItemOpener:
    """Not thread-safe (the Opener caches unwrapped data keys): one batch at a time."""

    def __init__(self, huvudman: str, private_keys: Iterable[HuvudmanPrivateKey]) -> None:
        keys = list(private_keys)
        self.huvudman = huvudman
        self._opener = Opener(huvudman, keys)
        self._by_key_id = {k.key_id: k for k in keys}

    def open(self, item: wire.Item) -> OpenedCopy:
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
        subjects = [{"assignment_id": str(s.assignment_id),
                     "subject_ref": self._subject(s.assignment_id, s.sealed_ref)}
                    for s in copy.subjects]
        return OpenedCopy(event_id=item.event_id, measured_at=item.measured_at, kind=item.kind,
                      event_type=item.event_type, lane=item.lane,
                      content=_encoder.encode(copy.event).decode(),
                      subjects=_encoder.encode(subjects).decode(), routed_at=copy.routed_at)

    def _subject(self, assignment_id: uuid.UUID, sealed: bytes | None) -> str | None:
        if sealed is None:
            return None
        key = self._by_key_id.get(sealed[:_KEY_ID_LEN])
        if key is None:
            raise Refused("subject reference sealed to a key this node does not hold")
        try:
            return open_subject(key, assignment_id, sealed)
        except (CryptoError, UnicodeDecodeError):
            raise Refused("subject reference does not open") from None
