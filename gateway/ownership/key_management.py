"""Key operations for huvudmän: generate a pair, register the public half, rotate.

The private key is written to a folder meant for the huvudman's node, never to the database and
never read by ingest. Registering or rotating a public key notifies every ingest instance, which
seals new data under the new key from then on; data sealed under a retired key stays readable
with the retired private key, which the node keeps.
"""

from __future__ import annotations

import os
from pathlib import Path

from gateway.crypto import (
    DEFAULT_SUITE,
    HuvudmanPrivateKey,
    HuvudmanPublicKey,
    KeySuite,
    generate_keypair,
    generate_secret,
    load_public_key,
)
from gateway.ownership import audit
from gateway.ownership.keyring import QUARANTINE, RELAY
from gateway.ownership.specs import Refusal
from gateway.store.connector import Store
from gateway.store.errors import UnknownReference


def key_paths(folder: Path, owner: str) -> tuple[Path, Path]:
    return folder / f"{owner}.private.pem", folder / f"{owner}.public.pem"


def write_keypair(folder: Path, owner: str,
                  suite: KeySuite = DEFAULT_SUITE) -> tuple[HuvudmanPrivateKey, Path, Path]:
    """A new key pair in `folder`; the private file is readable by its owner only."""
    folder.mkdir(parents=True, exist_ok=True)
    private_path, public_path = key_paths(folder, owner)
    if private_path.exists():
        raise Refusal(f"{private_path} exists; move it away before generating a new pair")
    private, public = generate_keypair(owner, suite)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private.to_pem())
    public_path.write_bytes(public.to_pem())
    return private, private_path, public_path


def relay_paths(folder: Path) -> tuple[Path, Path]:
    """Where `provision` leaves the alarm relay's keys: the public half beside ingest's
    files, the private half with the key holders (the relay role: docs/delivery.md)."""
    return folder / "ingest" / f"{RELAY}.public.pem", key_paths(folder / "node", RELAY)[0]


def write_secret(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(generate_secret())


def read_public(path: Path) -> HuvudmanPublicKey:
    try:
        return load_public_key(path.read_bytes())
    except OSError as err:
        raise Refusal(f"{path}: {err.strerror}") from None


async def register(store: Store, key: HuvudmanPublicKey, *, rotate: bool = False) -> None:
    """Make `key` the huvudman's active key; with `rotate`, retire the one it replaces."""
    async with store.transaction() as tx:
        active = await tx.keys.active_key_id(key.huvudman)
        if active == key.key_id:
            return  # already the active key: registering again changes nothing
        if active is not None:
            if not rotate:
                raise Refusal(f"huvudman {key.huvudman} already has an active key; "
                              "use `gateway keys rotate` to replace it")
            retired = await tx.keys.retire(key.huvudman)
            await audit.record(tx, "key.retire", key.huvudman,
                               key_ids=[k.hex() for k in retired])
        try:
            await tx.keys.insert(key.key_id, key.huvudman, key.suite.value,
                                 key.to_pem().decode())
        except UnknownReference:
            raise Refusal(f"unknown huvudman {key.huvudman}") from None
        await audit.record(tx, "key.register", key.huvudman, key_id=key.key_id.hex(),
                           suite=key.suite.value)


async def provision(store: Store, folder: Path, huvudmän: list[str],
                    suite: KeySuite = DEFAULT_SUITE) -> tuple[Path, Path]:
    """Keys for a demo or a test: a pair per huvudman and for HMC's quarantine in
    `folder/node` (what the huvudman nodes would hold), the public keys registered, and ingest's
    own files in `folder/ingest`. Reuses what an earlier run made. Returns ingest's
    (pseudonym secret, quarantine public key) paths."""
    node, ingest = folder / "node", folder / "ingest"
    for owner in [*huvudmän, QUARANTINE, RELAY]:
        private_path, public_path = key_paths(node, owner)
        if not private_path.exists():
            write_keypair(node, owner, suite)
        if owner not in (QUARANTINE, RELAY):
            await register(store, read_public(public_path), rotate=True)
    ingest.mkdir(parents=True, exist_ok=True)
    quarantine_public = ingest / f"{QUARANTINE}.public.pem"
    quarantine_public.write_bytes(key_paths(node, QUARANTINE)[1].read_bytes())
    relay_public, _ = relay_paths(folder)
    relay_public.write_bytes(key_paths(node, RELAY)[1].read_bytes())
    secret = ingest / "pseudonym.secret"
    if not secret.exists():
        write_secret(secret)
    return secret, quarantine_public
