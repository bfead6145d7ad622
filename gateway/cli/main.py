"""The `gateway` command: one Typer app per area, added here in the order `--help` shows them.

Each area's module holds its own commands (service: serve, demo, migrate, simulate; then the
registry, devices and their lifecycle, keys, erasure and retention, audit, alarms, deliveries,
alarm centres, operators, and the huvudman node); common.py holds what they share."""

from __future__ import annotations

import typer

from gateway.cli import (
    alarms,
    arc,
    assignments,
    audit,
    deliveries,
    devices,
    erasure,
    keys,
    node,
    operators,
    registry,
    service,
)

app = typer.Typer(no_args_is_help=True, help="Telemetry gateway for assistive devices.")
for area in (service.app, registry.config_app, registry.huvudman_app, devices.app,
             assignments.app, keys.app, erasure.erase_app, erasure.retention_app, audit.app,
             alarms.app, deliveries.app, arc.app, operators.app, node.app, node.fhir_app):
    app.add_typer(area)
