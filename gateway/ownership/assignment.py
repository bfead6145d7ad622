"""Assignments: device D is used by subject S under huvudman H, for kinds K, from T1 to T2.

The in-memory shape routing works on; the `assignment` table (store/migrations) holds the same
fields. See docs/architecture.md, Ownership.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

import msgspec

from adapters.codes import Kind


class LegalBasis(StrEnum):
    HSL = "HSL"
    SOL = "SoL"
    LSS = "LSS"


class Assignment(msgspec.Struct, frozen=True):
    id: uuid.UUID
    device_id: str
    huvudman: str
    # A keyed pseudonym of the huvudman's subject reference, and the reference sealed to the
    # huvudman (gateway/ownership/subjects.py): the gateway never holds the reference in clear.
    subject_key: str
    legal_basis: LegalBasis
    kinds: frozenset[Kind]
    valid_from: datetime
    valid_to: datetime | None = None
    alarm_route: str | None = None
    position_consent: bool = False
    subject_sealed: bytes | None = None
    subject_digest: bytes | None = None  # of subject_sealed (gateway/crypto/subject.py)
    # A missed medicine dose is an alarm for this person (gateway/ingest/dose_alarms.py); only with
    # the medication kind and an alarm route (checked on every path that creates one).
    dose_alarm: bool = False

    def covers(self, at: datetime) -> bool:
        """Half-open [valid_from, valid_to): a return at 10:00 ends coverage of 10:00 itself."""
        return self.valid_from <= at and (self.valid_to is None or at < self.valid_to)
