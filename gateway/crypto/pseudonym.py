"""Keyed pseudonyms for subject references.

Why it is needed: each wrapped data key is stored with *whose* key it is, so that deleting a
subject's keys (docs/architecture.md, Encryption) is one `DELETE ... WHERE huvudman = $1
AND subject_pseudonym = $2`. Storing the subject reference itself there would put it in clear,
which the architecture forbids; a plain hash would not help either, since references are short
and often guessable (a personnummer-shaped id can be enumerated in minutes). So the row carries
HMAC-SHA256(secret, huvudman, subject_ref) truncated to 128 bits:

- deterministic, so the same subject under the same huvudman always finds its keys;
- separated per huvudman, so one person served by the region and a kommun cannot be linked
  across the two from the stored rows;
- useless without the secret, which is ingest configuration (like the database password), never
  stored with the data.

An erasure request from a huvudman names the subject reference; ingest computes the pseudonym
with the same secret and deletes the rows. Rotating the secret orphans the old pseudonyms, so it
is a planned operation (recompute from the assignment table), not a routine one.

The pseudonym is *not* used to key the in-memory data-key cache: HMAC costs about 3 µs, more than
the AES-GCM seal it would guard, and the subject references are in process memory anyway (the
assignment index holds them). It is computed once per new data key.
"""

from __future__ import annotations

import hmac
import secrets

from gateway.crypto.errors import CryptoError

__all__ = ["PSEUDONYM_LEN", "Pseudonymizer", "generate_secret"]

PSEUDONYM_LEN = 16
_MIN_SECRET = 32
_DOMAIN = b"vgr-gateway/subject-pseudonym/v1\x00"


def generate_secret() -> bytes:
    return secrets.token_bytes(_MIN_SECRET)


class Pseudonymizer:
    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) < _MIN_SECRET:
            raise CryptoError(f"pseudonym secret must be at least {_MIN_SECRET} bytes")
        self._secret = bytes(secret)

    def of(self, huvudman: str, subject_ref: str) -> bytes:
        h = huvudman.encode()
        msg = _DOMAIN + len(h).to_bytes(2, "big") + h + subject_ref.encode()
        return hmac.digest(self._secret, msg, "sha256")[:PSEUDONYM_LEN]

    def __repr__(self) -> str:
        return "Pseudonymizer(<secret>)"
