"""`gateway audit verify|list`: the hash-chained audit log (gateway/ownership/audit.py)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from gateway.cli import common
from gateway.ownership import audit

app = typer.Typer(name="audit", no_args_is_help=True, help="The hash-chained audit log.")


@app.command("verify")
def audit_verify() -> None:
    """Recompute the hash chain; report the first broken entry (exit 1) or the head hash."""
    result = common.with_store(audit.verify)
    if result.intact:
        head = result.head.hex() if result.head else "—"
        common.console.print(f"audit log intact: {result.entries} entries, head {head}")
        return
    common.fail(f"audit log broken at entry {result.first_break}: {result.problem}")


@app.command("list")
def audit_list(last: Annotated[int, typer.Option(help="How many entries")] = 20) -> None:
    rows = common.with_store(lambda s: s.audit.recent(last))
    table = Table("seq", "at", "actor", "action", "target", "details")
    for r in rows:
        table.add_row(str(r.seq), r.at.isoformat(), r.actor, r.action, r.target, r.details)
    common.console.print(table)
