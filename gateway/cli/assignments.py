"""`gateway assignment add|end|list`: who uses a device, for which huvudman, from when to when.
An assignment added here moves its device into `assigned` by the lifecycle's rules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from gateway.cli import common
from gateway.cli.options import (
    TIME_FORMATS,
    AlarmRoute,
    DoseAlarm,
    Kinds,
    LegalBasisOption,
    SubjectRef,
    ValidFrom,
)
from gateway.ownership import registration
from gateway.ownership.lifecycle import InvalidRequest

app = typer.Typer(name="assignment", no_args_is_help=True,
                  help="Who uses a device, for whom, when.")


@app.command("add")
def assignment_add(
    device: str, huvudman: str, subject_ref: SubjectRef, legal_basis: LegalBasisOption,
    kinds: Kinds, valid_from: ValidFrom = None, alarm_route: AlarmRoute = None,
    position_consent: bool = False, dose_alarm: DoseAlarm = False,
) -> None:
    """Lend a device to a person under a huvudman and legal basis, from a time on."""
    start = common.aware(valid_from) if valid_from else datetime.now(UTC)
    try:
        spec = registration.AssignmentSpec(
            device=device, huvudman=huvudman, subject_ref=subject_ref, legal_basis=legal_basis,
            kinds=kinds, valid_from=start, alarm_route=alarm_route,
            position_consent=position_consent, dose_alarm=dose_alarm)
    except ValidationError as err:  # named by field; the input (maybe personal) is not shown
        common.fail(str(InvalidRequest.from_validation(err)))
    new_id = common.with_store(lambda s: registration.add_assignment(s, spec))
    common.console.print(f"assignment {new_id}")


@app.command("end")
def assignment_end(
    assignment_id: uuid.UUID,
    at: Annotated[datetime | None, typer.Option(formats=TIME_FORMATS)] = None,
) -> None:
    """End an assignment (device returned): readings measured from then on are not covered."""
    when = common.aware(at) if at else datetime.now(UTC)
    common.with_store(lambda s: registration.end_assignment(s, assignment_id, when))
    common.console.print(f"assignment {assignment_id} ends {when.isoformat()}")


@app.command("list")
def assignment_list(device: Annotated[str | None, typer.Option()] = None) -> None:
    rows = common.with_store(lambda s: s.registration.assignments(device))
    table = Table("id", "device", "huvudman", "basis", "kinds", "from", "to", "alarm route",
                  "positions", "dose alarm")
    for r in rows:
        table.add_row(str(r.id), r.device_id, r.huvudman, r.legal_basis, ",".join(r.kinds),
                      r.valid_from.isoformat(), r.valid_to.isoformat() if r.valid_to else "",
                      r.alarm_route or "", "consent" if r.position_consent else "",
                      "yes" if r.dose_alarm else "")
    common.console.print(table)
