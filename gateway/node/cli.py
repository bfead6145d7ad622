"""`gateway node`: run the huvudman node (gateway/node/), installed by gateway/cli.py."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gateway import logs
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
    ) -> None:
        """Run a huvudman node: receive, open and keep that huvudman's deliveries
        (NODE_DATABASE_URL; its schema is migrated at start)."""
        from gateway.node.server import NodeConfigError, load_config, serve_node

        logs.configure(log_format)
        try:
            config = load_config(huvudman=huvudman, private_keys=private_key,
                                 secret_file=secret_file,
                                 database_url=os.environ.get("NODE_DATABASE_URL", ""),
                                 listen=listen, max_body_bytes=max_body_bytes)
        except NodeConfigError as err:
            console.print(f"[red]{err}[/]")
            raise typer.Exit(2) from None
        try:
            asyncio.run(serve_node(config))
        except MigrationError as err:
            console.print(f"[red]{err}[/]")
            raise typer.Exit(1) from None
