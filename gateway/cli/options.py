"""Typer options that several commands share, declared once so their names, help and formats
stay the same everywhere (`gateway assignment add`, `gateway device assign`/`reissue`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from adapters.codes import Kind
from gateway.ownership.assignment import LegalBasis

TIME_FORMATS = ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%d"]

SubjectRef = Annotated[str, typer.Option(help="The huvudman's opaque reference")]
LegalBasisOption = Annotated[LegalBasis, typer.Option()]
Kinds = Annotated[list[Kind], typer.Option("--kind", help="Repeat for each kind")]
ValidFrom = Annotated[datetime | None, typer.Option(formats=TIME_FORMATS, help="Default: now")]
AlarmRoute = Annotated[str | None, typer.Option(help="The alarm receiver its alarms go to")]
DoseAlarm = Annotated[bool, typer.Option(
    help="A missed medicine dose is an alarm (needs --kind medication and --alarm-route)")]
DryRun = Annotated[bool, typer.Option("--dry-run/--execute",
                                      help="Only say what would become unreadable (default)")]
