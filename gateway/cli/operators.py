"""`gateway operator add|list|disable`: the operators of the admin HTTP API (/admin/v1) and
their tokens (gateway/ownership/operators.py)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from gateway.cli import common
from gateway.ownership import operators
from gateway.ownership.operators import TASKS, Role

ROLE_HELP = "; ".join(f"{r.value}: {', '.join(sorted(t.value for t in TASKS[r]))}"
                      for r in Role) + " (an integrator within its huvudman's assignments)"

app = typer.Typer(name="operator", no_args_is_help=True,
                  help="Operators of the admin HTTP API (/admin/v1) and their tokens.")


@app.command("add")
def operator_add(
    name: str,
    role: Annotated[list[Role], typer.Option(help=f"Repeat for several ({ROLE_HELP})")],
    huvudman: Annotated[str | None, typer.Option(
        help="With --role integrator: the huvudman whose assignments it acts on")] = None,
) -> None:
    """Create an operator with the roles of its tasks; prints its bearer token once (only its
    hash is stored)."""
    token = common.with_store(lambda s: operators.add(s, name, role, huvudman))
    common.console.print(f"operator {name} added. Its token (shown only now):")
    print(token)


@app.command("list")
def operator_list() -> None:
    rows = common.with_store(operators.listing)
    table = Table("name", "roles", "huvudman", "enabled", "created", "disabled")
    for o in rows:
        table.add_row(o.name, ", ".join(o.roles), o.huvudman or "",
                      "yes" if o.enabled else "no", o.created_at.isoformat(),
                      o.disabled_at.isoformat() if o.disabled_at else "")
    common.console.print(table)


@app.command("disable")
def operator_disable(name: str) -> None:
    """Refuse the operator's token from the next request on."""
    common.with_store(lambda s: operators.disable(s, name))
    common.console.print(f"operator {name} disabled")
