"""Errors of the crypto package.

Messages name ids only (huvudman code, key ids in hex, event ids): never a subject reference,
never plaintext, never key material. They can go to logs as they are.
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base class: something could not be sealed, unwrapped or opened."""


class KeyFormatError(CryptoError):
    """A key file or raw key is malformed, of another suite, or fails its own check."""


class WrongRecipientError(CryptoError):
    """The wrapped data key or envelope is for another huvudman or another key pair."""


class UnknownDataKeyError(CryptoError):
    """The envelope names a data key this opener has not been given."""


class MalformedEnvelopeError(CryptoError):
    """The bytes are not an envelope of a version this code reads."""


class IntegrityError(CryptoError):
    """Authentication failed: tampered bytes, or moved to another event, huvudman or kind."""
