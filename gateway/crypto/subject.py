"""Subject references sealed to their huvudman: ingest stores them, only the huvudman reads them.

A huvudman hands HMC an opaque reference for the person who uses a device. The gateway needs
it for nothing but two things: to tell the huvudman's node whose reading a copy is, and to find
a person's keys on erasure. The first needs only the reference sealed to the huvudman (HPKE,
bound to the assignment id and key, so it cannot be moved to another assignment); the second a
keyed pseudonym (`pseudonym.py`). So the reference itself is never stored in clear.
"""

from __future__ import annotations

import hashlib
import uuid

from cryptography.exceptions import InvalidTag

from gateway.crypto.errors import IntegrityError, WrongRecipientError
from gateway.crypto.keys import HuvudmanPrivateKey, HuvudmanPublicKey, hpke_suite

_DOMAIN = b"vgr-gateway/subject-ref/v1\x00"
_KEY_ID_LEN = 16
_DIGEST_DOMAIN = b"vgr-gateway/subject-digest/v1\x00"


def _info(assignment_id: uuid.UUID, key_id: bytes) -> bytes:
    return _DOMAIN + assignment_id.bytes + key_id


def subject_digest(sealed: bytes) -> bytes:
    """What a sealed copy carries instead of the sealed reference itself (issue 12): the
    reference is sealed once per assignment and delivered once; each copy names the assignment
    and this digest, inside its AEAD, so the node can tell the reference it holds is the one the
    copy was sealed with."""
    return hashlib.sha256(_DIGEST_DOMAIN + sealed).digest()


def seal_subject(public_key: HuvudmanPublicKey, assignment_id: uuid.UUID,
                 subject_ref: str) -> bytes:
    """key id (16 bytes) || HPKE ciphertext of the reference."""
    sealed = hpke_suite(public_key.suite).encrypt(
        subject_ref.encode(), public_key.hpke_key, info=_info(assignment_id, public_key.key_id))
    return public_key.key_id + sealed


def open_subject(private_key: HuvudmanPrivateKey, assignment_id: uuid.UUID,
                 sealed: bytes) -> str:
    key_id, ciphertext = sealed[:_KEY_ID_LEN], sealed[_KEY_ID_LEN:]
    if key_id != private_key.key_id:
        raise WrongRecipientError(f"assignment {assignment_id}: subject sealed to key "
                                  f"{key_id.hex()}, not {private_key.key_id.hex()}")
    try:
        plain = hpke_suite(private_key.suite).decrypt(
            ciphertext, private_key.hpke_key, info=_info(assignment_id, key_id))
    except (InvalidTag, ValueError) as exc:
        raise IntegrityError(f"assignment {assignment_id}: subject reference does not open "
                             "(tampered, or moved from another assignment)") from exc
    return plain.decode()
