"""Envelope encryption per huvudman: `Sealer` on ingest, `Opener` on the huvudman node.

Scheme (docs/architecture.md, Encryption)
-----------------------------------------
- One random AES-256-GCM **data key** per (huvudman, subject, key epoch). It is stored only
  **wrapped**: HPKE-sealed (RFC 9180, base mode, single shot) to the huvudman's public key, as a
  `WrappedKey` row. The HPKE `info` binds the wrapped key to its suite, huvudman, recipient key id,
  data key id, epoch and subject pseudonym, so a wrapped key copied to another row does not
  unwrap.
- Each payload (values, position, subject reference: whatever the caller puts in the plaintext)
  is sealed with the data key, a random 96-bit nonce and associated data
  `header || event id || huvudman || kind`. A ciphertext moved to another event id, huvudman or
  kind, or with its header edited, fails authentication.
- Only one KEM operation per **new** data key, never per message; `AESGCM` objects are cached per
  data key (construction costs about 1.2 µs, a seal about 1 µs).

Envelope layout, version 1 (49 bytes of overhead)::

    offset  size  field
    0       1     version = 0x01
    1       4     key epoch, unsigned big-endian
    5       16    data key id (names the WrappedKey row the node needs)
    21      12    nonce (random)
    33      n+16  AES-256-GCM ciphertext || tag

The epoch is chosen by the caller (for example the month of measurement, so shredding an old
epoch's keys matches dropping old partitions); within one (huvudman, subject, epoch) several data
keys may exist, because every ingest process makes its own and a restart makes new ones. The data
key id in the envelope says which one.

What ingest can and cannot read
-------------------------------
The `Sealer` holds public keys only and has no method that unwraps or decrypts; wrapped keys
cannot be opened without the huvudman's private key. The one exposure left is inherent in
caching: while a data key is cached, the ingest *process memory* holds it (inside an `AESGCM`
object; raw key bytes are not kept, though Python cannot zero them). `max_key_age_s` and
`max_cached_keys` bound that window: after eviction or a restart, ingest can no longer read what
it stored. An attacker who controls the ingest process could read new traffic as it arrives
anyway, so the cache does not widen what such an attacker gets by more than the cache lifetime.

Storing wrapped keys safely
---------------------------
A data key whose wrapped form never reached the database would make every ciphertext under it
unreadable. So `Sealer.seal()` returns the wrapped key with **every** seal until the caller
calls `confirm()` after the transaction that stored it has committed. The store writes it with
`ON CONFLICT (key_id) DO NOTHING`. A rolled-back batch therefore needs no special handling.
"""

from __future__ import annotations

import os
import struct
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.crypto.errors import (
    CryptoError,
    IntegrityError,
    MalformedEnvelopeError,
    UnknownDataKeyError,
    WrongRecipientError,
)
from gateway.crypto.keys import (
    HuvudmanPrivateKey,
    HuvudmanPublicKey,
    KeySuite,
    check_huvudman,
    hpke_suite,
)
from gateway.crypto.pseudonym import Pseudonymizer

__all__ = [
    "ENVELOPE_OVERHEAD",
    "ENVELOPE_VERSION",
    "EnvelopeHeader",
    "Opener",
    "Sealed",
    "Sealer",
    "WrappedKey",
    "associated_data",
    "parse_header",
]

ENVELOPE_VERSION = 1
_HEADER = struct.Struct(">BI16s")
_NONCE_LEN = 12
_TAG_LEN = 16
_DATA_KEY_LEN = 32
_KEY_ID_LEN = 16
ENVELOPE_OVERHEAD = _HEADER.size + _NONCE_LEN + _TAG_LEN
_MAX_EPOCH = 2**32 - 1
_WRAP_DOMAIN = b"vgr-gateway/data-key/v1\x00"


class WrappedKey(msgspec.Struct, frozen=True):
    """A data key sealed to one huvudman's public key: the only form a data key is stored in."""

    key_id: bytes  # 16 random bytes, named in every envelope under this key
    huvudman: str
    subject_pseudonym: bytes  # Pseudonymizer.of(huvudman, subject_ref); never the reference
    epoch: int
    recipient_key_id: bytes  # HuvudmanPublicKey.key_id the data key is wrapped to
    suite: KeySuite
    wrapped: bytes  # HPKE enc || ciphertext of the 32-byte data key

    def __repr__(self) -> str:
        return (
            f"WrappedKey(key_id={self.key_id.hex()!r}, huvudman={self.huvudman!r}, "
            f"epoch={self.epoch}, recipient_key_id={self.recipient_key_id.hex()!r})"
        )


class EnvelopeHeader(NamedTuple):
    version: int
    epoch: int
    key_id: bytes


class Sealed(NamedTuple):
    envelope: bytes
    # Not None until confirm(): store it (idempotently) in the same transaction as the envelope.
    new_wrapped_key: WrappedKey | None


def parse_header(envelope: bytes) -> EnvelopeHeader:
    """Version, epoch and data key id, without decrypting: tells the node which key to fetch."""
    if len(envelope) < ENVELOPE_OVERHEAD:
        raise MalformedEnvelopeError("envelope is shorter than its fixed overhead")
    version, epoch, key_id = _HEADER.unpack_from(envelope)
    if version != ENVELOPE_VERSION:
        raise MalformedEnvelopeError(f"envelope version {version} is not supported")
    return EnvelopeHeader(version, epoch, key_id)


def _len_prefixed(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 255:
        raise CryptoError("associated-data field longer than 255 bytes")
    return bytes((len(raw),)) + raw


_KIND_AAD: dict[str, bytes] = {}


def _kind_aad(kind: str) -> bytes:
    # Kinds are a handful of strings: memoise their length-prefixed form (bounded, just in case).
    cached = _KIND_AAD.get(kind)
    if cached is None:
        cached = _len_prefixed(kind)
        if len(_KIND_AAD) < 1024:
            _KIND_AAD[kind] = cached
    return cached


def associated_data(header: bytes, event_id: uuid.UUID, huvudman: str, kind: str) -> bytes:
    """The AAD of one payload: envelope header, event id, huvudman and kind, unambiguously."""
    return header + event_id.bytes + _len_prefixed(huvudman) + _len_prefixed(kind)


def _wrap_info(
    suite: KeySuite,
    huvudman: str,
    recipient_key_id: bytes,
    key_id: bytes,
    epoch: int,
    pseudonym: bytes,
) -> bytes:
    return b"".join(
        (
            _WRAP_DOMAIN,
            _len_prefixed(suite.value),
            _len_prefixed(huvudman),
            recipient_key_id,
            key_id,
            epoch.to_bytes(4, "big"),
            pseudonym,
        )
    )


def _hpke_wrap(public_key: HuvudmanPublicKey, data_key: bytes, info: bytes) -> bytes:
    """The one KEM operation per new data key (a seam for tests to count them)."""
    return hpke_suite(public_key.suite).encrypt(data_key, public_key.hpke_key, info=info)


def _hpke_unwrap(private_key: HuvudmanPrivateKey, wrapped: bytes, info: bytes) -> bytes:
    return hpke_suite(private_key.suite).decrypt(wrapped, private_key.hpke_key, info=info)


class _CachedKey:
    __slots__ = ("aead", "created", "header", "huvudman_aad", "pending", "recipient_key_id")

    def __init__(
        self,
        aead: AESGCM,
        header: bytes,
        huvudman_aad: bytes,
        pending: WrappedKey | None,
        recipient_key_id: bytes,
        created: float,
    ) -> None:
        self.aead = aead
        self.header = header
        self.huvudman_aad = huvudman_aad
        self.pending = pending
        self.recipient_key_id = recipient_key_id
        self.created = created


_CacheKey = tuple[str, str, int]


class Sealer:
    """Encrypts for huvudmän. Holds their public keys only; has no way back to plaintext."""

    def __init__(
        self,
        public_keys: Mapping[str, HuvudmanPublicKey],
        pseudonymizer: Pseudonymizer,
        *,
        max_cached_keys: int = 100_000,
        max_key_age_s: float | None = 24 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_cached_keys < 1:
            raise ValueError("max_cached_keys must be at least 1")
        self._pseudonymizer = pseudonymizer
        self._max_cached = max_cached_keys
        self._max_age = max_key_age_s
        self._clock = clock
        self._cache: OrderedDict[_CacheKey, _CachedKey] = OrderedDict()
        self._pending: dict[bytes, _CacheKey] = {}
        self._public_keys: dict[str, HuvudmanPublicKey] = {}
        self.kem_operations = 0
        self.replace_public_keys(public_keys)

    def replace_public_keys(self, public_keys: Mapping[str, HuvudmanPublicKey]) -> None:
        """Swap the key set; cached data keys of a removed or re-keyed huvudman are dropped."""
        checked: dict[str, HuvudmanPublicKey] = {}
        for code, key in public_keys.items():
            if not isinstance(key, HuvudmanPublicKey):
                raise TypeError("the Sealer takes HuvudmanPublicKey objects only")
            if key.huvudman != code:
                raise WrongRecipientError(
                    f"public key {key.key_id.hex()} belongs to huvudman {key.huvudman}, "
                    f"not {code}"
                )
            checked[code] = key
        self._public_keys = checked
        for ck, entry in list(self._cache.items()):
            current = checked.get(ck[0])
            if current is None or current.key_id != entry.recipient_key_id:
                self._drop(ck)

    @property
    def cached_data_keys(self) -> int:
        return len(self._cache)

    @property
    def public_keys(self) -> dict[str, HuvudmanPublicKey]:
        return dict(self._public_keys)

    def pending_wrapped_keys(self) -> list[WrappedKey]:
        """Wrapped keys handed out but not yet confirmed as stored."""
        out: list[WrappedKey] = []
        for ck in self._pending.values():
            entry = self._cache.get(ck)
            if entry is not None and entry.pending is not None:
                out.append(entry.pending)
        return out

    def confirm(self, stored: Iterable[WrappedKey | bytes]) -> None:
        """Call after commit: these wrapped keys (or key ids) are durably stored."""
        for item in stored:
            key_id = item.key_id if isinstance(item, WrappedKey) else item
            ck = self._pending.pop(key_id, None)
            if ck is None:
                continue
            entry = self._cache.get(ck)
            if entry is not None and entry.pending is not None and entry.pending.key_id == key_id:
                entry.pending = None

    def seal(
        self,
        plaintext: bytes,
        *,
        event_id: uuid.UUID,
        huvudman: str,
        subject_ref: str,
        epoch: int,
        kind: str,
    ) -> Sealed:
        ck = (huvudman, subject_ref, epoch)
        entry = self._cache.get(ck)
        if entry is None or (
            self._max_age is not None and self._clock() - entry.created > self._max_age
        ):
            entry = self._new_data_key(ck)
        else:
            self._cache.move_to_end(ck)
        nonce = os.urandom(_NONCE_LEN)
        aad = entry.header + event_id.bytes + entry.huvudman_aad + _kind_aad(kind)
        ciphertext = entry.aead.encrypt(nonce, plaintext, aad)
        return Sealed(entry.header + nonce + ciphertext, entry.pending)

    def _new_data_key(self, ck: _CacheKey) -> _CachedKey:
        huvudman, subject_ref, epoch = ck
        public_key = self._public_keys.get(huvudman)
        if public_key is None:
            raise WrongRecipientError(f"no public key configured for huvudman {huvudman}")
        if not isinstance(epoch, int) or not 0 <= epoch <= _MAX_EPOCH:
            raise CryptoError("key epoch must be an integer in 0..2**32-1")
        key_id = os.urandom(_KEY_ID_LEN)
        pseudonym = self._pseudonymizer.of(huvudman, subject_ref)
        data_key = AESGCM.generate_key(bit_length=256)
        info = _wrap_info(
            public_key.suite, huvudman, public_key.key_id, key_id, epoch, pseudonym
        )
        wrapped = _hpke_wrap(public_key, data_key, info)
        self.kem_operations += 1
        entry = _CachedKey(
            aead=AESGCM(data_key),
            header=_HEADER.pack(ENVELOPE_VERSION, epoch, key_id),
            huvudman_aad=_len_prefixed(huvudman),
            pending=WrappedKey(
                key_id=key_id,
                huvudman=huvudman,
                subject_pseudonym=pseudonym,
                epoch=epoch,
                recipient_key_id=public_key.key_id,
                suite=public_key.suite,
                wrapped=wrapped,
            ),
            recipient_key_id=public_key.key_id,
            created=self._clock() if self._max_age is not None else 0.0,
        )
        del data_key
        if ck in self._cache:
            self._drop(ck)
        self._cache[ck] = entry
        self._pending[key_id] = ck
        while len(self._cache) > self._max_cached:
            self._drop(next(iter(self._cache)))
        return entry

    def _drop(self, ck: _CacheKey) -> None:
        entry = self._cache.pop(ck, None)
        if entry is not None and entry.pending is not None:
            # Dropping an unconfirmed key is safe: every envelope under it was returned together
            # with the wrapped key, so whatever stored the envelope stored the key.
            self._pending.pop(entry.pending.key_id, None)

    def __repr__(self) -> str:
        return (
            f"Sealer(huvudmän={len(self._public_keys)}, cached_data_keys={len(self._cache)}, "
            f"kem_operations={self.kem_operations})"
        )


class Opener:
    """Decrypts one huvudman's data on its node, with that huvudman's private key(s)."""

    def __init__(
        self,
        huvudman: str,
        private_keys: Iterable[HuvudmanPrivateKey],
        *,
        max_cached_keys: int = 100_000,
    ) -> None:
        check_huvudman(huvudman)
        if max_cached_keys < 1:
            raise ValueError("max_cached_keys must be at least 1")
        self.huvudman = huvudman
        self._huvudman_aad = _len_prefixed(huvudman)
        self._keys: dict[bytes, HuvudmanPrivateKey] = {}
        for key in private_keys:
            if key.huvudman != huvudman:
                raise WrongRecipientError(
                    f"private key {key.key_id.hex()} belongs to huvudman {key.huvudman}, "
                    f"not {huvudman}"
                )
            self._keys[key.key_id] = key
        if not self._keys:
            raise ValueError("an Opener needs at least one private key")
        self._max_cached = max_cached_keys
        self._cache: OrderedDict[bytes, tuple[int, AESGCM]] = OrderedDict()

    def discard(self, key_ids: Iterable[bytes]) -> None:
        """Forget unwrapped data keys (after crypto-shredding their wrapped rows)."""
        for key_id in key_ids:
            self._cache.pop(key_id, None)

    def add_wrapped_key(self, wrapped: WrappedKey) -> None:
        """Unwrap a stored data key and cache it for `open()`."""
        kid = wrapped.key_id.hex()
        if wrapped.huvudman != self.huvudman:
            raise WrongRecipientError(
                f"data key {kid} is wrapped for huvudman {wrapped.huvudman}, "
                f"not {self.huvudman}"
            )
        private_key = self._keys.get(wrapped.recipient_key_id)
        if private_key is None or private_key.suite != wrapped.suite:
            raise WrongRecipientError(
                f"data key {kid} is wrapped to key {wrapped.recipient_key_id.hex()}, "
                f"which huvudman {self.huvudman} does not hold"
            )
        info = _wrap_info(
            wrapped.suite,
            wrapped.huvudman,
            wrapped.recipient_key_id,
            wrapped.key_id,
            wrapped.epoch,
            wrapped.subject_pseudonym,
        )
        try:
            data_key = _hpke_unwrap(private_key, wrapped.wrapped, info)
        except (InvalidTag, ValueError) as exc:
            raise IntegrityError(
                f"data key {kid} does not unwrap for huvudman {self.huvudman}: "
                "wrong key pair or a tampered key record"
            ) from exc
        if len(data_key) != _DATA_KEY_LEN:
            raise IntegrityError(f"data key {kid} has the wrong length")
        self._cache[wrapped.key_id] = (wrapped.epoch, AESGCM(data_key))
        self._cache.move_to_end(wrapped.key_id)
        while len(self._cache) > self._max_cached:
            self._cache.popitem(last=False)

    def open(
        self,
        envelope: bytes,
        *,
        event_id: uuid.UUID,
        kind: str,
        wrapped_key: WrappedKey | None = None,
    ) -> bytes:
        """The plaintext, if the envelope belongs to this event, this huvudman and this kind."""
        header = parse_header(envelope)
        cached = self._cache.get(header.key_id)
        if cached is None:
            if wrapped_key is None:
                raise UnknownDataKeyError(
                    f"event {event_id}: data key {header.key_id.hex()} has not been loaded"
                )
            if wrapped_key.key_id != header.key_id:
                raise UnknownDataKeyError(
                    f"event {event_id}: envelope names data key {header.key_id.hex()}, "
                    f"the wrapped key given is {wrapped_key.key_id.hex()}"
                )
            self.add_wrapped_key(wrapped_key)
            cached = self._cache[header.key_id]
        epoch, aead = cached
        if epoch != header.epoch:
            raise IntegrityError(f"event {event_id}: envelope epoch does not match its data key")
        split = _HEADER.size + _NONCE_LEN
        aad = (
            envelope[: _HEADER.size]
            + event_id.bytes
            + self._huvudman_aad
            + _kind_aad(kind)
        )
        try:
            return aead.decrypt(envelope[_HEADER.size : split], envelope[split:], aad)
        except InvalidTag as exc:
            raise IntegrityError(
                f"event {event_id}: authentication failed for huvudman {self.huvudman} "
                "(tampered, or moved to another event, huvudman or kind)"
            ) from exc

    def __repr__(self) -> str:
        return (
            f"Opener(huvudman={self.huvudman!r}, private_keys={len(self._keys)}, "
            f"cached_data_keys={len(self._cache)})"
        )
