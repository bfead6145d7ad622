"""What an assignment stores about its subject: a keyed pseudonym and the sealed reference.

Used by every path that creates an assignment (config files, CLI, admin API), so the subject
reference a huvudman supplies is never written to the database in clear. The pseudonym uses the
same secret as the data-key pseudonyms (PSEUDONYM_SECRET_FILE); the huvudman's public key must
be registered before devices can be assigned under it.
"""

from __future__ import annotations

import uuid

from gateway.crypto import Pseudonymizer, load_public_key
from gateway.crypto.subject import seal_subject
from gateway.settings import Settings
from gateway.store.connector import Transaction


class SubjectError(Exception):
    """The subject reference cannot be protected; the message says what to set up."""


def subject_key(pseudonyms: Pseudonymizer, huvudman: str, subject_ref: str) -> str:
    """The stored stand-in for a subject reference (hex of a keyed HMAC)."""
    return pseudonyms.of(huvudman, subject_ref).hex()


def pseudonymizer() -> Pseudonymizer:
    from gateway.ownership.keyring import KeyringError
    from gateway.ownership.keyring import pseudonymizer as load

    try:
        return load(Settings())
    except KeyringError as err:
        raise SubjectError(f"assignments need the pseudonym secret: {err}") from None


async def protect(tx: Transaction, huvudman: str, assignment_id: uuid.UUID,
                  subject_ref: str) -> tuple[str, bytes]:
    """(subject key, reference sealed to the huvudman's active key) for a new assignment."""
    pem = await tx.keys.active_pem(huvudman)
    if pem is None:
        if not await tx.registration.huvudman_exists(huvudman):
            raise SubjectError(f"unknown huvudman {huvudman}")
        raise SubjectError(f"huvudman {huvudman} has no registered public key; register it "
                           "(`gateway keys register`) before assigning devices under it")
    sealed = seal_subject(load_public_key(pem), assignment_id, subject_ref)
    return subject_key(pseudonymizer(), huvudman, subject_ref), sealed
