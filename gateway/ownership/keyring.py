"""The keys ingest holds: huvudmän's public keys (from the database), HMC's quarantine and
alarm-relay public keys and the pseudonym secret (from files). No private key of a huvudman is
ever loaded here; the alarm relay's private key only where ALARM_RELAY_PRIVATE_KEY_FILE says so
(docs/delivery.md, "Alarm centres")."""

from __future__ import annotations

from pathlib import Path

from gateway.crypto import (
    HuvudmanPublicKey,
    Opener,
    Pseudonymizer,
    load_private_key,
    load_public_key,
)
from gateway.settings import Settings

# HMC's own recipients of sealed copies. The quarantine: what no huvudman owns, kept a short
# time for fault-finding. The alarm relay (gateway.delivery.arc): alarms routed to an alarm
# centre get one more copy, sealed to it, so they can be sent again after a crash without
# ingest holding plaintext.
QUARANTINE = "hmc-quarantine"
RELAY = "hmc-alarm-relay"


class KeyringError(RuntimeError):
    """Ingest cannot start without its keys; the message says which and how to make it."""


def _read(path: Path | None, what: str, env: str, hint: str) -> bytes:
    if path is None:
        raise KeyringError(f"{what} is not configured: set {env} ({hint})")
    try:
        return path.read_bytes()
    except OSError as err:
        raise KeyringError(f"{what} cannot be read from {path}: {err.strerror}") from None


def quarantine_key(settings: Settings) -> HuvudmanPublicKey:
    key = load_public_key(_read(settings.quarantine_public_key_file, "HMC's quarantine key",
                                "QUARANTINE_PUBLIC_KEY_FILE",
                                f"`gateway keys generate {QUARANTINE}` makes one"))
    if key.huvudman != QUARANTINE:
        raise KeyringError(f"the quarantine key must belong to {QUARANTINE}")
    return key


def pseudonymizer(settings: Settings) -> Pseudonymizer:
    return Pseudonymizer(_read(settings.pseudonym_secret_file, "the pseudonym secret",
                               "PSEUDONYM_SECRET_FILE",
                               "`gateway keys pseudonym-secret FILE` makes one"))


def relay_key(settings: Settings) -> HuvudmanPublicKey:
    key = load_public_key(_read(settings.alarm_relay_public_key_file, "the alarm relay's key",
                                "ALARM_RELAY_PUBLIC_KEY_FILE",
                                f"`gateway keys generate {RELAY}` makes one; it is needed "
                                "because config names alarm centres ([[arc]])"))
    if key.huvudman != RELAY:
        raise KeyringError(f"the alarm relay's key must belong to {RELAY}")
    return key


def relay_opener(settings: Settings) -> Opener | None:
    """The relay's private key, when this instance is to resend what others left unfinished."""
    path = settings.alarm_relay_private_key_file
    if path is None:
        return None
    private = load_private_key(_read(path, "the alarm relay's private key",
                                     "ALARM_RELAY_PRIVATE_KEY_FILE", "or leave it unset"))
    if private.huvudman != RELAY:
        raise KeyringError(f"the alarm relay's private key must belong to {RELAY}")
    return Opener(RELAY, [private])
