"""Device credentials: 256 random bits, shown once, stored only as what checking them needs:
their SHA-256 (HTTP bearer tokens, MQTT passwords) and, for SCAIP units over SIP, the Digest
H(A1) of (device id, realm, credential) for MD5 and SHA-256 (RFC 7616; SS 91100 §8). The realm
is SIP_REALM: a credential is bound to the realm it was issued under."""

from __future__ import annotations

import hashlib
import secrets

from adapters.sip_digest import ha1
from gateway.settings import Settings
from gateway.store.credentials import StoredCredential

TOKEN_BYTES = 32


def new_token() -> str:
    """A device credential: 256 random bits, URL-safe. Shown once, stored only as a hash."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def stored(device_id: str, token: str, realm: str | None = None) -> StoredCredential:
    """What is kept of `token`, the credential of `device_id`."""
    realm = realm if realm is not None else Settings().sip_realm
    return StoredCredential(token_hash(token), ha1("MD5", device_id, realm, token),
                            ha1("SHA-256", device_id, realm, token))


def stored_hash_only(sha256: bytes) -> StoredCredential:
    """A credential known only by its SHA-256 (a config file's `token_sha256`): it serves HTTP
    and MQTT; a SCAIP unit needs one issued by the gateway (`device register`)."""
    return StoredCredential(sha256)
