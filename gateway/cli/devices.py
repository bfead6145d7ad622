"""`gateway device add|list` and the device lifecycle: `register|assign|reissue|return|
recondition|ready|retire|show` (gateway/ownership/lifecycle.py, docs/lifecycle.md).

`device add` predates the state machine and stays for scripts and config-style use: it
registers a new device in stock or gives an existing one a new credential, through the
lifecycle (a retired device is refused). The lifecycle commands are the checked way."""

from __future__ import annotations

from datetime import datetime
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
from gateway.ownership import lifecycle, registration
from gateway.ownership.specs import DeviceSpec

app = typer.Typer(name="device", no_args_is_help=True, help="Devices and their credentials.")

Model = Annotated[str | None, typer.Option()]
HeartbeatInterval = Annotated[int | None, typer.Option()]
Hub = Annotated[str | None, typer.Option(help="Hub (gateway) that uploads for it")]


@app.command("add")
def device_add(device_id: str, device_type: str, model: Model = None,
               heartbeat_interval_s: HeartbeatInterval = None, hub: Hub = None) -> None:
    """Register a device and issue its credential (printed once; only its hash is stored)."""
    try:
        DeviceSpec(id=device_id, type=device_type, model=model, hub=hub,
                   heartbeat_interval_s=heartbeat_interval_s)
    except ValidationError as err:  # named by field
        common.fail(str(lifecycle.InvalidRequest.from_validation(err)))
    token = common.with_store(lambda s: registration.add_device(
        s, device_id, device_type, model, heartbeat_interval_s, hub))
    common.console.print(f"device {device_id} registered. Its credential (shown only now):")
    print(token)


@app.command("list")
def device_list() -> None:
    rows = common.with_store(lambda s: s.registration.devices())
    table = Table("id", "type", "model", "state", "credential", "active assignments")
    for r in rows:
        table.add_row(r.id, r.device_type, r.model or "", r.state,
                      "yes" if r.has_credential else "no", str(r.active_assignments))
    common.console.print(table)


def _report(result: lifecycle.LifecycleResult) -> None:
    out = common.console
    out.print(f"device {result.device} is now {result.state.value}")
    if result.assignments:
        out.print("assignments: " + ", ".join(str(a) for a in result.assignments))
    if result.ended:
        out.print("ended assignments: " + ", ".join(str(a) for a in result.ended))
    if result.unpaired:
        out.print("unpaired: " + ", ".join(result.unpaired))
    if result.token is not None:
        out.print("Its new credential (shown only now; the old one no longer works):")
        print(result.token)


@app.command("register")
def device_register(device_id: str, device_type: str, model: Model = None,
                    heartbeat_interval_s: HeartbeatInterval = None, hub: Hub = None) -> None:
    """Register a new device, in stock, and issue its credential (printed once)."""
    result = common.with_store(lambda s: lifecycle.register(
        s, device_id, device_type, model, heartbeat_interval_s, hub))
    common.console.print(f"device {device_id} registered, in stock. "
                         "Its credential (shown only now):")
    print(result.token)


def _assign(
    device_id: str, huvudman: str, subject_ref: SubjectRef, legal_basis: LegalBasisOption,
    kinds: Kinds, valid_from: ValidFrom = None, alarm_route: AlarmRoute = None,
    position_consent: bool = False, dose_alarm: DoseAlarm = False,
) -> None:
    try:
        spec = lifecycle.NewAssignment(huvudman=huvudman, subject_ref=subject_ref,
                                       legal_basis=legal_basis, kinds=kinds,
                                       alarm_route=alarm_route,
                                       position_consent=position_consent,
                                       dose_alarm=dose_alarm)
    except ValidationError as err:  # named by field; the input (maybe personal) is not shown
        common.fail(str(lifecycle.InvalidRequest.from_validation(err)))
    start = common.aware(valid_from) if valid_from else None
    _report(common.with_store(lambda s: lifecycle.assign(s, device_id, [spec], start)))


app.command("assign", help="Lend an in-stock device to a person under a huvudman (refused unless "
            "in stock). For a second huvudman of the same person use `gateway assignment add`."
            )(_assign)
app.command("reissue", help="Assign a reconditioned device (back in stock) to someone else, "
            "possibly under another huvudman; the same checks as `assign`.")(_assign)


@app.command("return")
def device_return(
    device_id: str,
    at: Annotated[datetime | None, typer.Option(formats=TIME_FORMATS,
                                                help="When it came back; default now")] = None,
) -> None:
    """Return (återlämning): every open assignment ends; later readings reach no huvudman."""
    when = common.aware(at) if at else None
    _report(common.with_store(lambda s: lifecycle.return_device(s, device_id, when)))


@app.command("recondition")
def device_recondition(device_id: str) -> None:
    """Recondition (rekonditionering): unbind everything and rotate the credential."""
    _report(common.with_store(lambda s: lifecycle.recondition(s, device_id)))


@app.command("ready")
def device_ready(device_id: str) -> None:
    """Reconditioning is done: back in stock, ready to be reissued."""
    _report(common.with_store(lambda s: lifecycle.ready(s, device_id)))


@app.command("retire")
def device_retire(device_id: str) -> None:
    """Take a device out of service for good; its credential is removed."""
    _report(common.with_store(lambda s: lifecycle.retire(s, device_id)))


@app.command("show")
def device_show(device_id: str) -> None:
    """State, credential yes/no, hub and assignments (no subject references)."""
    view = common.with_store(lambda s: lifecycle.show(s, device_id))
    common.console.print(
        f"device {view['id']} ({view['type']}{', ' + view['model'] if view['model'] else ''})\n"
        f"state: {view['state']} since {view['state_since']}\n"
        f"credential: {'yes' if view['credential'] else 'no'}\n"
        f"hub: {view['hub'] or '—'}   paired devices: {', '.join(view['paired']) or '—'}\n"
        f"possible: {', '.join(view['possible']) or 'nothing (retired)'}", markup=False)
    table = Table("assignment", "huvudman", "basis", "kinds", "from", "to", "dose alarm")
    for a in view["assignments"]:
        table.add_row(a["id"], a["huvudman"], a["legal_basis"], ",".join(a["kinds"]),
                      a["valid_from"], a["valid_to"] or "", "yes" if a["dose_alarm"] else "no")
    common.console.print(table)
