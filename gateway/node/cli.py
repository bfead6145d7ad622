"""`gateway node`: run the huvudman node (gateway/node/), installed by gateway/cli.py."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gateway import logs
from gateway.node import fhir_bundle
from gateway.store.migrate import MigrationError

console = Console(stderr=True)


def install(app: typer.Typer) -> None:
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
        """Run a huvudman node: receive, open and keep that huvudman's deliveries
        (NODE_DATABASE_URL; its schema is migrated at start), and forward its readings to
        its FHIR server when --fhir-url is given."""
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
