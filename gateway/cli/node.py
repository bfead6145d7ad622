"""`gateway node`: run the huvudman node (gateway/node/); `gateway node-fhir`: its readings the
FHIR server refused for good, and sending them again."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from gateway.cli import common
from gateway.node import fhir_bundle
from gateway.observability import logs
from gateway.store.errors import DB_ERRORS
from gateway.store.migrate import MigrationError
from gateway.store.node import NodeStore

console = Console(stderr=True)
T = TypeVar("T")
Huvudman = Annotated[str, typer.Option(help="The huvudman whose node database this is")]


app = typer.Typer()


@app.command("node")
def node(
    huvudman: Annotated[str, typer.Option(help="The huvudman this node receives for")],
    private_key: Annotated[list[Path], typer.Option(
        help="The huvudman's private key file; repeat during a key rotation")],
    secret_file: Annotated[Path, typer.Option(
        help="The webhook secret shared with the gateway for this huvudman")],
    listen: Annotated[str, typer.Option(help="host:port to listen on")] =
        "127.0.0.1:8090",
    max_body_bytes: Annotated[int, typer.Option(help="Largest batch accepted")] =
        16 * 1024 * 1024,
    log_format: Annotated[str, typer.Option(help="json or console")] = "json",
    fhir_url: Annotated[str | None, typer.Option(
        help="The huvudman's FHIR R4 server (base URL): readings are forwarded to it as "
             "transaction Bundles (docs/fhir-forwarding.md)")] = None,
    fhir_patient_system: Annotated[str, typer.Option(
        help="Identifier system of the subject references (default: personnummer)")] =
        fhir_bundle.PERSONNUMMER_SYSTEM,
    fhir_device_system: Annotated[str, typer.Option(
        help="Identifier system for device ids that are not EUI-64")] =
        fhir_bundle.DEFAULT_DEVICE_SYSTEM,
    fhir_subject: Annotated[str, typer.Option(
        help="conditional: Patient?identifier=… reference; identifier: logical only")] =
        "conditional",
    fhir_token_file: Annotated[Path | None, typer.Option(
        help="A bearer token for the FHIR server")] = None,
    fhir_batch_max: Annotated[int, typer.Option(help="Observations per Bundle")] = 100,
    fhir_timeout_s: Annotated[float, typer.Option(help="Per FHIR request")] = 30.0,
) -> None:
    """Run a huvudman node: receive, open and keep one huvudman's deliveries.

    Its database is NODE_DATABASE_URL (the schema is migrated at start); with --fhir-url it
    forwards the readings to the huvudman's FHIR server."""
    from gateway.node.fhir_forward import FhirConfigError, load_fhir_config
    from gateway.node.server import NodeConfigError, load_config, serve_node

    logs.configure(log_format)
    try:
        fhir = None if fhir_url is None else load_fhir_config(
            url=fhir_url, patient_system=fhir_patient_system,
            device_system=fhir_device_system, subject_mode=fhir_subject,
            token_file=fhir_token_file, batch_max=fhir_batch_max, timeout_s=fhir_timeout_s)
        config = load_config(huvudman=huvudman, private_keys=private_key,
                             secret_file=secret_file,
                             database_url=os.environ.get("NODE_DATABASE_URL", ""),
                             listen=listen, max_body_bytes=max_body_bytes, fhir=fhir)
    except (NodeConfigError, FhirConfigError) as err:
        console.print(f"[red]{err}[/]")
        raise typer.Exit(2) from None
    try:
        asyncio.run(serve_node(config))
    except MigrationError as err:
        console.print(f"[red]{err}[/]")
        raise typer.Exit(1) from None

fhir_app = typer.Typer(
    name="node-fhir", no_args_is_help=True,
    help="The node's FHIR forwarding (NODE_DATABASE_URL): readings the FHIR server "
         "refused for good, and sending them again (docs/fhir-forwarding.md).")

@fhir_app.command("dead")
def fhir_dead(huvudman: Huvudman,
              limit: Annotated[int, typer.Option(help="At most this many")] = 100) -> None:
    """Readings the FHIR server refused for good (metadata only).

    Oldest first: event id, kind, when measured, the FHIR server's status and reason;
    never their content."""
    rows = _with_node_store(huvudman, lambda s: s.fhir_dead(limit))
    table = Table("event id", "kind", "measured at", "status", "reason", "attempts",
                  "dead since")
    for r in rows:
        table.add_row(str(r.event_id), r.kind, r.measured_at.isoformat(),
                      str(r.status or ""), r.reason or "", str(r.attempts),
                      r.done_at.isoformat() if r.done_at else "")
    out = common.console
    out.print(table)
    out.print(f"{len(rows)} dead readings" + (" (limit reached)" if len(rows) == limit
                                              else ""))

@fhir_app.command("replay")
def fhir_replay(
    huvudman: Huvudman,
    event_id: Annotated[uuid.UUID | None, typer.Argument(
        help="A dead reading's event id")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead",
                                           help="Every dead reading")] = False,
) -> None:
    """Send dead readings again, once the cause is fixed.

    Say the Patient now exists at the FHIR server: the readings are due now, attempts
    reset. A running node sends them at its next poll; conditional create keeps a reading
    the server already has from being doubled."""
    if (event_id is None) == (not all_dead):
        console.print("[red]give either an event id or --all-dead[/]")
        raise typer.Exit(2)
    ids = _with_node_store(huvudman, lambda s: s.fhir_replay(event_id))
    common.console.print(f"{len(ids)} dead readings back to pending")
    if event_id is not None and not ids:
        console.print(f"[yellow]{event_id} is not a dead reading of {huvudman}[/]")
        raise typer.Exit(1)


def _with_node_store(huvudman: str, action: Callable[[NodeStore], Awaitable[T]]) -> T:
    dsn = os.environ.get("NODE_DATABASE_URL", "")
    if not dsn:
        console.print("[red]NODE_DATABASE_URL is not set: the node's database[/]")
        raise typer.Exit(2)

    async def run() -> T:
        store = await NodeStore.connect(dsn, huvudman, max_size=1)
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except DB_ERRORS as err:
        # The class only: a connection string can carry a password.
        console.print(f"[red]the node's database could not be used ({type(err).__name__})[/]")
        raise typer.Exit(1) from None
