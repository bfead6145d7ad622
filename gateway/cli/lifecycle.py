"""`gateway device register|assign|reissue|return|recondition|ready|retire|show` and
`gateway operator add|list|disable`: the device lifecycle (gateway/ownership/lifecycle.py) and the
operators of the admin HTTP API (gateway/ownership/operators.py). Loaded by gateway/cli/main.py.

`device add`, `assignment add` and `assignment end` stay as they were (they predate the state
machine and config files and tests use them); the lifecycle commands are the checked way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from gateway.cli.options import (
    TIME_FORMATS,
    AlarmRoute,
    DoseAlarm,
    Kinds,
    LegalBasisOption,
    SubjectRef,
    ValidFrom,
)
from gateway.ownership import lifecycle, operators
from gateway.store.connector import Store

T = TypeVar("T")


def _run(work: Callable[[Store], Awaitable[T]]) -> T:
    from gateway.cli import main as cli

    return cli._with_store(work)


def _console() -> Console:
    from gateway.cli import main as cli

    return cli.console  # looked up per call: tests replace it



def _aware(ts: datetime | None) -> datetime | None:
    return None if ts is None else ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _report(outcome: lifecycle.LifecycleResult) -> None:
    _console().print(f"device {outcome.device} is now {outcome.state.value}")
    if outcome.assignments:
        _console().print("assignments: " + ", ".join(str(a) for a in outcome.assignments))
    if outcome.ended:
        _console().print("ended assignments: " + ", ".join(str(a) for a in outcome.ended))
    if outcome.unpaired:
        _console().print("unpaired: " + ", ".join(outcome.unpaired))
    if outcome.token is not None:
        _console().print("Its new credential (shown only now; the old one no longer works):")
        print(outcome.token)


def device_register(
    device_id: str, device_type: str, model: Annotated[str | None, typer.Option()] = None,
    heartbeat_interval_s: Annotated[int | None, typer.Option()] = None,
    hub: Annotated[str | None, typer.Option(help="Hub (gateway) that uploads for it")] = None,
) -> None:
    """Register a new device, in stock, and issue its credential (printed once)."""
    outcome = _run(lambda s: lifecycle.register(
        s, device_id, device_type, model, heartbeat_interval_s, hub))
    _console().print(f"device {device_id} registered, in stock. "
                      "Its credential (shown only now):")
    print(outcome.token)


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
        _console().print(str(lifecycle.InvalidRequest.from_validation(err)), style="red",
                          markup=False)
        raise typer.Exit(1) from None
    _report(_run(lambda s: lifecycle.assign(s, device_id, [spec],
                                                       _aware(valid_from))))


def device_return(
    device_id: str,
    at: Annotated[datetime | None, typer.Option(formats=TIME_FORMATS,
                                                help="When it came back; default now")] = None,
) -> None:
    """Return (återlämning): every open assignment ends; later readings reach no huvudman."""
    _report(_run(lambda s: lifecycle.return_device(s, device_id, _aware(at))))


def device_recondition(device_id: str) -> None:
    """Recondition (rekonditionering): unbind everything and rotate the credential."""
    _report(_run(lambda s: lifecycle.recondition(s, device_id)))


def device_ready(device_id: str) -> None:
    """Reconditioning is done: back in stock, ready to be reissued."""
    _report(_run(lambda s: lifecycle.ready(s, device_id)))


def device_retire(device_id: str) -> None:
    """Take a device out of service for good; its credential is removed."""
    _report(_run(lambda s: lifecycle.retire(s, device_id)))


def device_show(device_id: str) -> None:
    """State, credential yes/no, hub and assignments (no subject references)."""
    view = _run(lambda s: lifecycle.show(s, device_id))
    _console().print(
        f"device {view['id']} ({view['type']}{', ' + view['model'] if view['model'] else ''})\n"
        f"state: {view['state']} since {view['state_since']}\n"
        f"credential: {'yes' if view['credential'] else 'no'}\n"
        f"hub: {view['hub'] or '—'}   paired devices: {', '.join(view['paired']) or '—'}\n"
        f"possible: {', '.join(view['possible']) or 'nothing (retired)'}", markup=False)
    table = Table("assignment", "huvudman", "basis", "kinds", "from", "to", "dose alarm")
    for a in view["assignments"]:
        table.add_row(a["id"], a["huvudman"], a["legal_basis"], ",".join(a["kinds"]),
                      a["valid_from"], a["valid_to"] or "", "yes" if a["dose_alarm"] else "no")
    _console().print(table)


def operator_add(name: str) -> None:
    """Create an operator; prints its bearer token once (only its hash is stored)."""
    token = _run(lambda s: operators.add(s, name))
    _console().print(f"operator {name} added. Its token (shown only now):")
    print(token)


def operator_list() -> None:
    rows = _run(operators.listing)
    table = Table("name", "enabled", "created", "disabled")
    for o in rows:
        table.add_row(o.name, "yes" if o.enabled else "no", o.created_at.isoformat(),
                      o.disabled_at.isoformat() if o.disabled_at else "")
    _console().print(table)


def operator_disable(name: str) -> None:
    """Refuse the operator's token from the next request on."""
    _run(lambda s: operators.disable(s, name))
    _console().print(f"operator {name} disabled")


def install(app: typer.Typer, device_app: typer.Typer) -> None:
    """Add the lifecycle commands to `gateway device` and the `gateway operator` group."""
    operator_app = typer.Typer(
        no_args_is_help=True, help="Operators of the admin HTTP API (/admin/v1) and their tokens.")
    device_app.command("register")(device_register)
    device_app.command(
        "assign", help="Lend an in-stock device to a person under a huvudman (refused unless "
        "in stock). For a second huvudman of the same person use `gateway assignment add`.",
    )(_assign)
    device_app.command(
        "reissue", help="Assign a reconditioned device (back in stock) to someone else, "
        "possibly under another huvudman; the same checks as `assign`.")(_assign)
    device_app.command("return")(device_return)
    device_app.command("recondition")(device_recondition)
    device_app.command("ready")(device_ready)
    device_app.command("retire")(device_retire)
    device_app.command("show")(device_show)
    operator_app.command("add")(operator_add)
    operator_app.command("list")(operator_list)
    operator_app.command("disable")(operator_disable)
    app.add_typer(operator_app, name="operator")
