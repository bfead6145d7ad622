"""`gateway serve | demo | migrate | simulate`: running the system."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli import common
from gateway.observability import logs
from gateway.settings import Settings
from gateway.store.migrate import MigrationError, migrate

app = typer.Typer()


@app.command("migrate")
def migrate_cmd() -> None:
    """Apply database migrations (idempotent) as the schema's owner: MIGRATION_DATABASE_URL,
    or DATABASE_URL where one role does both."""
    try:
        done = asyncio.run(migrate(Settings().migration_database_url or common.dsn()))
    except MigrationError as err:
        common.fail(str(err))
    common.console.print(f"applied: {', '.join(done)}" if done else "schema is up to date")


@app.command()
def serve() -> None:
    """Run ingest (MQTT and HTTP) against DATABASE_URL and MQTT_URL."""
    from gateway.delivery.sink_config import SinkConfigError
    from gateway.ownership.keyring import KeyringError
    from gateway.roles.ingest import PipelineFailed
    from gateway.roles.ingest import serve as run_serve
    from gateway.transports.mqtt_ingest import MqttConfigError

    settings = Settings()
    logs.configure(settings.log_format)
    common.dsn()
    try:
        asyncio.run(run_serve(settings))
    except (KeyringError, SinkConfigError, MqttConfigError) as err:
        common.fail(str(err), 2)
    except PipelineFailed as err:  # logged; the service manager starts it again
        common.fail(str(err), 1)


@app.command()
def demo(
    interval: Annotated[float, typer.Option(help="Seconds between simulator rounds")] = 2.0,
    http_port: Annotated[int, typer.Option(help="Port of the HTTP API")] = 8080,
) -> None:
    """Run the whole system on embedded defaults, with a simulated fleet. Ctrl-C stops it."""
    from gateway.demo.embedded import MissingExtra
    from gateway.demo.run import run_demo

    try:
        run_demo(interval_s=interval, http_port=http_port)
    except MissingExtra as err:
        common.fail(str(err), 2)


@app.command()
def simulate(
    mqtt_url: Annotated[str, typer.Option(envvar="MQTT_URL")],
    http_url: Annotated[str, typer.Option(help="Base URL of the gateway's HTTP API")] =
        "http://127.0.0.1:8080",
    fleet: Annotated[Path, typer.Option(help="Fleet file with devices and tokens")] =
        Path("config/demo/fleet.toml"),
    interval: float = 2.0,
    rounds: Annotated[int | None, typer.Option(help="Stop after this many rounds")] = None,
) -> None:
    """Drive a simulated fleet against a running gateway."""
    from simulator.run import run

    tally = run(fleet, mqtt_url=mqtt_url, http_url=http_url, interval_s=interval, rounds=rounds)
    common.console.print({"sent": dict(tally.sent), "confirmed": dict(tally.confirmed),
                          "rejected": dict(tally.rejected), "errors": dict(tally.errors)})
