"""The keys ingest holds: huvudmän's public keys (from the database), HMC's quarantine and
alarm-relay public keys and the pseudonym secret (from files). No private key of a huvudman is
ever loaded here; the alarm relay's private key only where ALARM_RELAY_PRIVATE_KEY_FILE says so
(docs/delivery.md, "Alarm centres")."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from gateway.crypto import (
    HuvudmanPublicKey,
    Opener,
    Pseudonymizer,
    Sealer,
    load_private_key,
    load_public_key,
)
from gateway.ingest.sealing import QUARANTINE, RELAY, Sealing
from gateway.ownership.registry import Registry
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


def build_sealing(settings: Settings, registry: Registry, *,
                  arc_receivers: frozenset[str] = frozenset(),
                  arc_lease_s: float = 0.0) -> Sealing:
    """`arc_receivers`: the alarm routes that are alarm centres; their alarms get a relay copy
    (`arc_lease_s`: stored leased to this instance, which sends them at once)."""
    quarantine = quarantine_key(settings)
    relay = relay_key(settings) if arc_receivers else None
    own = {QUARANTINE: quarantine} | ({RELAY: relay} if relay is not None else {})
    sealer = Sealer(registry.snapshot.public_keys | own, pseudonymizer(settings))
    return Sealing(sealer, registry.assignment_index,
                   fallback_alarm_receiver=settings.fallback_alarm_receiver,
                   quarantine_ttl=timedelta(seconds=settings.quarantine_ttl_s),
                   quarantine_key=quarantine, relay_key=relay, arc_receivers=arc_receivers,
                   arc_lease_s=arc_lease_s)
