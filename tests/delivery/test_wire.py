"""The webhook wire format: what the dispatcher sends is what a node reads back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec

from gateway.crypto import KeySuite, WrappedKey
from gateway.delivery import wire

KEY = WrappedKey(key_id=b"k" * 16, huvudman="hmc-quarantine", subject_pseudonym=b"p" * 16,
                 epoch=202611, recipient_key_id=b"r" * 16, suite=KeySuite.X25519,
                 wrapped=b"\x00\x01wrapped")


def _item(huvudman: str | None) -> wire.Item:
    return wire.item(event_id=uuid.uuid4(), huvudman=huvudman, kind="alarm",
                     event_type="alarm", measured_at=datetime(2026, 11, 22, tzinfo=UTC),
                     lane="alarm", envelope=b"\x01sealed", data_key=KEY,
                     receiver="hmc-fallback-arc" if huvudman is None else None)


def test_batch_round_trips_including_a_fallback_alarms_key_owner() -> None:
    items = [_item(None), _item("1480")]
    decoded = wire.decode_batch(wire.encode_batch(items) + b"\n{not json}\n")
    assert decoded[:2] == items
    assert isinstance(decoded[2], msgspec.DecodeError)
    assert decoded[0].wrapped_key == KEY  # type: ignore[union-attr]
    assert decoded[0].envelope_bytes == b"\x01sealed"  # type: ignore[union-attr]


def test_signature_binds_body_and_time() -> None:
    body = wire.encode_batch([_item("1480")])
    secret = b"s" * 32
    signature = wire.sign(secret, 1_700_000_000, body)
    assert wire.verify(secret, "1700000000", signature, body, now=1_700_000_100) is None
    assert wire.verify(secret, "1700000000", signature, body + b" ", now=1_700_000_100) == (
        "signature does not match")
    assert wire.verify(b"x" * 32, "1700000000", signature, body, now=1_700_000_100) == (
        "signature does not match")
    assert wire.verify(secret, "1700000000", signature, body, now=1_700_001_000) == (
        "timestamp too far from now")
    assert wire.verify(secret, "¹", signature, body, now=0) == "malformed timestamp"
    assert wire.verify(secret, None, signature, body, now=0) == (
        "missing signature or timestamp")
