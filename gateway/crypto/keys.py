"""Huvudman HPKE key pairs (RFC 9180): generate, serialise, load.

Each huvudman has one key pair per suite in use. The **public** key is given to ingest, which
wraps data keys with it; the **private** key stays on the huvudman's node.

Suites
------
- `KeySuite.MLKEM768_X25519` (default): the hybrid post-quantum KEM ML-KEM-768 + X25519,
  HKDF-SHA256, AES-256-GCM. Health data stays sensitive for decades, so a ciphertext recorded
  today must survive a future quantum computer; the X25519 half keeps classical security if
  ML-KEM is ever broken.
- `KeySuite.X25519`: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, for a huvudman whose
  systems cannot take the hybrid keys yet.

File format
-----------
`cryptography`'s hybrid key objects have no serialisation of their own (only their ML-KEM and
X25519 halves do), and a PKCS#8 file would not say which HPKE suite or huvudman it is for. So for
both suites a key file is a PEM-style armour of the raw key with RFC 1421-style headers::

    -----BEGIN VGR HPKE PUBLIC KEY-----
    Suite: MLKEM768-X25519/HKDF-SHA256/AES-256-GCM
    Huvudman: 1480
    Key-Id: 0f1e...

    <base64 of the raw key>
    -----END VGR HPKE PUBLIC KEY-----

Raw layouts: X25519 public 32 bytes, private 32 bytes; hybrid public = ML-KEM-768 encapsulation
key (1184 bytes) || X25519 public (32), private = ML-KEM-768 seed (64) || X25519 private (32).

The **huvudman code is part of the key**: it is in the file, in the key id, and ingest refuses a
public key configured under another huvudman's code. A mix-up of two key files would otherwise
silently encrypt one huvudman's data for another.

The **key id** is the first 16 bytes of SHA-256 over suite, huvudman and raw public key. It is
recorded with every wrapped data key so the node picks the right private key after a rotation,
and a key file whose stated id does not match its contents is refused.

Private key files are written unencrypted; protect them with file permissions or keep them in the
node's secret store. `repr()` of a private key shows no key material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from enum import StrEnum
from typing import TypeAlias

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from gateway.crypto.errors import KeyFormatError

__all__ = [
    "DEFAULT_SUITE",
    "HpkePrivateKey",
    "HpkePublicKey",
    "HuvudmanPrivateKey",
    "HuvudmanPublicKey",
    "KeySuite",
    "generate_keypair",
    "hpke_suite",
    "load_private_key",
    "load_public_key",
]


class KeySuite(StrEnum):
    MLKEM768_X25519 = "MLKEM768-X25519/HKDF-SHA256/AES-256-GCM"
    X25519 = "X25519/HKDF-SHA256/AES-256-GCM"


DEFAULT_SUITE = KeySuite.MLKEM768_X25519

HpkePublicKey: TypeAlias = x25519.X25519PublicKey | hpke.MLKEM768X25519PublicKey
HpkePrivateKey: TypeAlias = x25519.X25519PrivateKey | hpke.MLKEM768X25519PrivateKey

_MLKEM768_PUBLIC = 1184
_MLKEM768_SEED = 64
_X25519 = 32
_PUBLIC_LEN = {KeySuite.MLKEM768_X25519: _MLKEM768_PUBLIC + _X25519, KeySuite.X25519: _X25519}
_PRIVATE_LEN = {KeySuite.MLKEM768_X25519: _MLKEM768_SEED + _X25519, KeySuite.X25519: _X25519}

_HPKE_SUITES: dict[KeySuite, hpke.Suite] = {
    KeySuite.MLKEM768_X25519: hpke.Suite(
        hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM
    ),
    KeySuite.X25519: hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM),
}

_HUVUDMAN = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PUBLIC_LABEL = "VGR HPKE PUBLIC KEY"
_PRIVATE_LABEL = "VGR HPKE PRIVATE KEY"
_KEY_ID_LEN = 16


def hpke_suite(suite: KeySuite) -> hpke.Suite:
    return _HPKE_SUITES[suite]


def check_huvudman(code: str) -> str:
    """A huvudman code (SCB code, or an operator key owner such as `hmc-quarantine`)."""
    if not isinstance(code, str) or not _HUVUDMAN.fullmatch(code):
        raise KeyFormatError("huvudman code must be 1-64 characters of [A-Za-z0-9._-]")
    return code


def _key_id(suite: KeySuite, huvudman: str, public_raw: bytes) -> bytes:
    h = hashlib.sha256(b"vgr-gateway/hpke-key-id/v1\x00")
    h.update(suite.value.encode() + b"\x00" + huvudman.encode() + b"\x00" + public_raw)
    return h.digest()[:_KEY_ID_LEN]


class HuvudmanPublicKey:
    """A huvudman's public key: all that ingest holds."""

    __slots__ = ("_hpke", "huvudman", "key_id", "raw", "suite")

    def __init__(self, suite: KeySuite, huvudman: str, raw: bytes) -> None:
        suite = KeySuite(suite)
        check_huvudman(huvudman)
        raw = bytes(raw)
        if len(raw) != _PUBLIC_LEN[suite]:
            raise KeyFormatError(f"public key for suite {suite.value} has the wrong length")
        try:
            key: HpkePublicKey
            if suite is KeySuite.X25519:
                key = x25519.X25519PublicKey.from_public_bytes(raw)
            else:
                key = hpke.MLKEM768X25519PublicKey(
                    mlkem.MLKEM768PublicKey.from_public_bytes(raw[:_MLKEM768_PUBLIC]),
                    x25519.X25519PublicKey.from_public_bytes(raw[_MLKEM768_PUBLIC:]),
                )
        except ValueError as exc:
            raise KeyFormatError(f"invalid public key for suite {suite.value}") from exc
        self.suite = suite
        self.huvudman = huvudman
        self.raw = raw
        self.key_id = _key_id(suite, huvudman, raw)
        self._hpke = key

    @property
    def hpke_key(self) -> HpkePublicKey:
        return self._hpke

    def to_pem(self) -> bytes:
        return _armour(_PUBLIC_LABEL, self.suite, self.huvudman, self.key_id, self.raw)

    @classmethod
    def from_pem(cls, data: bytes | str) -> HuvudmanPublicKey:
        suite, huvudman, key_id, raw = _unarmour(_PUBLIC_LABEL, data)
        key = cls(suite, huvudman, raw)
        if key.key_id != key_id:
            raise KeyFormatError("public key file: Key-Id does not match the key")
        return key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HuvudmanPublicKey):
            return NotImplemented
        return (self.suite, self.huvudman, self.raw) == (other.suite, other.huvudman, other.raw)

    def __hash__(self) -> int:
        return hash(self.key_id)

    def __repr__(self) -> str:
        return (
            f"HuvudmanPublicKey(huvudman={self.huvudman!r}, suite={self.suite.value!r}, "
            f"key_id={self.key_id.hex()!r})"
        )


class HuvudmanPrivateKey:
    """A huvudman's private key: lives on the huvudman node only."""

    __slots__ = ("_hpke", "_public", "_raw", "huvudman", "suite")

    def __init__(self, suite: KeySuite, huvudman: str, raw: bytes) -> None:
        suite = KeySuite(suite)
        check_huvudman(huvudman)
        raw = bytes(raw)
        if len(raw) != _PRIVATE_LEN[suite]:
            raise KeyFormatError(f"private key for suite {suite.value} has the wrong length")
        try:
            key: HpkePrivateKey
            public_raw: bytes
            if suite is KeySuite.X25519:
                x = x25519.X25519PrivateKey.from_private_bytes(raw)
                key = x
                public_raw = x.public_key().public_bytes_raw()
            else:
                m = mlkem.MLKEM768PrivateKey.from_seed_bytes(raw[:_MLKEM768_SEED])
                x = x25519.X25519PrivateKey.from_private_bytes(raw[_MLKEM768_SEED:])
                key = hpke.MLKEM768X25519PrivateKey(m, x)
                public_raw = (
                    m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()
                )
        except ValueError as exc:
            raise KeyFormatError(f"invalid private key for suite {suite.value}") from exc
        self.suite = suite
        self.huvudman = huvudman
        self._raw = raw
        self._hpke = key
        self._public = HuvudmanPublicKey(suite, huvudman, public_raw)

    @classmethod
    def generate(cls, huvudman: str, suite: KeySuite = DEFAULT_SUITE) -> HuvudmanPrivateKey:
        suite = KeySuite(suite)
        if suite is KeySuite.X25519:
            raw = x25519.X25519PrivateKey.generate().private_bytes_raw()
        else:
            raw = (
                mlkem.MLKEM768PrivateKey.generate().private_bytes_raw()
                + x25519.X25519PrivateKey.generate().private_bytes_raw()
            )
        return cls(suite, huvudman, raw)

    @property
    def hpke_key(self) -> HpkePrivateKey:
        return self._hpke

    @property
    def key_id(self) -> bytes:
        return self._public.key_id

    def public_key(self) -> HuvudmanPublicKey:
        return self._public

    def private_bytes_raw(self) -> bytes:
        return self._raw

    def to_pem(self) -> bytes:
        return _armour(_PRIVATE_LABEL, self.suite, self.huvudman, self.key_id, self._raw)

    @classmethod
    def from_pem(cls, data: bytes | str) -> HuvudmanPrivateKey:
        suite, huvudman, key_id, raw = _unarmour(_PRIVATE_LABEL, data)
        key = cls(suite, huvudman, raw)
        if key.key_id != key_id:
            raise KeyFormatError("private key file: Key-Id does not match the key")
        return key

    def __repr__(self) -> str:
        return (
            f"HuvudmanPrivateKey(huvudman={self.huvudman!r}, suite={self.suite.value!r}, "
            f"key_id={self.key_id.hex()!r})"
        )


def generate_keypair(
    huvudman: str, suite: KeySuite = DEFAULT_SUITE
) -> tuple[HuvudmanPrivateKey, HuvudmanPublicKey]:
    private = HuvudmanPrivateKey.generate(huvudman, suite)
    return private, private.public_key()


def load_public_key(data: bytes | str) -> HuvudmanPublicKey:
    return HuvudmanPublicKey.from_pem(data)


def load_private_key(data: bytes | str) -> HuvudmanPrivateKey:
    return HuvudmanPrivateKey.from_pem(data)


def _armour(label: str, suite: KeySuite, huvudman: str, key_id: bytes, raw: bytes) -> bytes:
    body = base64.b64encode(raw).decode("ascii")
    lines = [
        f"-----BEGIN {label}-----",
        f"Suite: {suite.value}",
        f"Huvudman: {huvudman}",
        f"Key-Id: {key_id.hex()}",
        "",
        *(body[i : i + 64] for i in range(0, len(body), 64)),
        f"-----END {label}-----",
        "",
    ]
    return "\n".join(lines).encode("ascii")


def _unarmour(label: str, data: bytes | str) -> tuple[KeySuite, str, bytes, bytes]:
    try:
        text = data.decode("ascii") if isinstance(data, bytes | bytearray) else data
    except UnicodeDecodeError as exc:
        raise KeyFormatError("key file is not ASCII") from exc
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 3 or lines[0] != f"-----BEGIN {label}-----":
        raise KeyFormatError(f"not a {label} file")
    if lines[-1] != f"-----END {label}-----":
        raise KeyFormatError(f"{label} file has no END line")
    inner = lines[1:-1]
    try:
        blank = inner.index("")
    except ValueError as exc:
        raise KeyFormatError(f"{label} file has no blank line after its headers") from exc
    headers: dict[str, str] = {}
    for line in inner[:blank]:
        name, sep, value = line.partition(":")
        if not sep:
            raise KeyFormatError(f"{label} file has a malformed header line")
        headers[name.strip().lower()] = value.strip()
    try:
        suite = KeySuite(headers["suite"])
        huvudman = headers["huvudman"]
        key_id = bytes.fromhex(headers["key-id"])
    except KeyError as exc:
        raise KeyFormatError(f"{label} file lacks the {exc.args[0]!r} header") from exc
    except ValueError as exc:
        raise KeyFormatError(f"{label} file has an unknown suite or a bad Key-Id") from exc
    try:
        raw = base64.b64decode("".join(inner[blank + 1 :]), validate=True)
    except binascii.Error as exc:
        raise KeyFormatError(f"{label} file body is not base64") from exc
    return suite, huvudman, key_id, raw
