"""The keys ingest holds: huvudmän's public keys (from the database), HMC's quarantine public key
and the pseudonym secret (from files). No private key of a huvudman is ever loaded here."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from gateway.crypto import HuvudmanPublicKey, Pseudonymizer, Sealer, load_public_key
from gateway.registry import Registry
from gateway.sealing import QUARANTINE, Sealing
from gateway.settings import Settings


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


def build_sealing(settings: Settings, registry: Registry) -> Sealing:
    quarantine = quarantine_key(settings)
    sealer = Sealer(registry.snapshot.public_keys | {QUARANTINE: quarantine},
                    pseudonymizer(settings))
    return Sealing(sealer, registry.assignment_index,
                   fallback_alarm_receiver=settings.fallback_alarm_receiver,
                   quarantine_ttl=timedelta(seconds=settings.quarantine_ttl_s),
                   quarantine_key=quarantine)
