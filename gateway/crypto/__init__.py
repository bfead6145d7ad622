"""Per-huvudman encryption: HPKE-wrapped AES-256-GCM data keys (docs/architecture.md, Encryption).

- `keys`: huvudman key pairs, suites, key files.
- `envelope`: `Sealer` (ingest, public keys only) and `Opener` (huvudman node, private key).
- `pseudonym`: keyed pseudonyms for subject references in stored key rows.
- `errors`: exceptions whose messages carry ids only.
"""

from gateway.crypto.envelope import (
    EnvelopeHeader,
    Opener,
    Sealed,
    Sealer,
    WrappedKey,
    parse_header,
)
from gateway.crypto.errors import (
    CryptoError,
    IntegrityError,
    KeyFormatError,
    MalformedEnvelopeError,
    UnknownDataKeyError,
    WrongRecipientError,
)
from gateway.crypto.keys import (
    DEFAULT_SUITE,
    HuvudmanPrivateKey,
    HuvudmanPublicKey,
    KeySuite,
    generate_keypair,
    load_private_key,
    load_public_key,
)
from gateway.crypto.pseudonym import Pseudonymizer, generate_secret

__all__ = [
    "DEFAULT_SUITE",
    "CryptoError",
    "EnvelopeHeader",
    "HuvudmanPrivateKey",
    "HuvudmanPublicKey",
    "IntegrityError",
    "KeyFormatError",
    "KeySuite",
    "MalformedEnvelopeError",
    "Opener",
    "Pseudonymizer",
    "Sealed",
    "Sealer",
    "UnknownDataKeyError",
    "WrappedKey",
    "WrongRecipientError",
    "generate_keypair",
    "generate_secret",
    "load_private_key",
    "load_public_key",
    "parse_header",
]
