"""`gateway keys generate|register|rotate|list|pseudonym-secret`: huvudmän's encryption keys
(gateway/ownership/key_management.py). Private keys are written for the huvudman's node and
never read by ingest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gateway.cli import common
from gateway.crypto import CryptoError, HuvudmanPublicKey, KeySuite
from gateway.ownership import key_management
from gateway.ownership.specs import Refusal

app = typer.Typer(name="keys", no_args_is_help=True, help="Huvudmän's encryption keys.")

SUITES = {"mlkem768-x25519": KeySuite.MLKEM768_X25519, "x25519": KeySuite.X25519}


@app.command("generate")
def keys_generate(
    owner: Annotated[str, typer.Argument(help="Huvudman code, or hmc-quarantine")],
    out: Annotated[Path, typer.Option(help="Folder for the pair (the node's, not ingest's)")],
    suite: Annotated[str, typer.Option(help="mlkem768-x25519 (default) or x25519")] =
        "mlkem768-x25519",
    register: Annotated[bool, typer.Option(help="Also register the public key")] = False,
) -> None:
    """Generate a key pair; the private key file is written with mode 0600."""
    if suite not in SUITES:
        common.fail(f"unknown suite {suite}; choose {', '.join(SUITES)}", 2)
    try:
        private, private_path, public_path = key_management.write_keypair(out, owner,
                                                                          SUITES[suite])
    except (Refusal, ValueError) as err:
        common.fail(str(err))
    common.console.print(f"private key: {private_path}\npublic key:  {public_path}\n"
                         f"key id: {private.key_id.hex()}")
    if register:
        common.with_store(lambda s: key_management.register(s, private.public_key()))
        common.console.print(f"registered as the active key of {owner}")


@app.command("register")
def keys_register(public_key: Path) -> None:
    """Make a public key file its huvudman's active key (refused if one is active)."""
    key = _read_public(public_key)
    common.with_store(lambda s: key_management.register(s, key))
    common.console.print(f"{key.huvudman}: active key {key.key_id.hex()}")


@app.command("rotate")
def keys_rotate(public_key: Path) -> None:
    """Replace a huvudman's active key; new data is sealed to the new key from now on."""
    key = _read_public(public_key)
    common.with_store(lambda s: key_management.register(s, key, rotate=True))
    common.console.print(f"{key.huvudman}: active key {key.key_id.hex()} "
                         "(the previous one retired)")


@app.command("list")
def keys_list() -> None:
    rows = common.with_store(lambda s: s.keys.listing())
    table = Table("huvudman", "name", "key id", "suite", "since", "retired")
    for r in rows:
        table.add_row(r.code, r.name, r.key_id.hex() if r.key_id else "—", r.suite or "",
                      r.created_at.isoformat() if r.created_at else "",
                      r.retired_at.isoformat() if r.retired_at else "")
    common.console.print(table)


@app.command("pseudonym-secret")
def keys_pseudonym_secret(path: Path) -> None:
    """Write a new pseudonym secret for ingest (PSEUDONYM_SECRET_FILE), mode 0600."""
    try:
        key_management.write_secret(path)
    except FileExistsError:
        common.fail(f"{path} exists; a new secret would orphan the stored pseudonyms")
    common.console.print(f"pseudonym secret written to {path}")


def _read_public(path: Path) -> HuvudmanPublicKey:
    try:
        return key_management.read_public(path)
    except (Refusal, CryptoError) as err:
        common.fail(str(err))
