"""`gateway deliveries list|inspect|replay|purge`: the outbox and its dead letters, metadata only
(gateway.delivery.dead_letters).

`replay` and `purge` are audit-logged; `purge` is a dry run unless --execute, like `erase`.
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from gateway.cli import common
from gateway.delivery import dead_letters

app = typer.Typer(name="deliveries", no_args_is_help=True,
                  help="Deliveries: pending ones and the dead-letter queue.")


class State(enum.StrEnum):
    pending = "pending"
    dead = "dead"


def _target(delivery_id: int | None, all_dead: bool) -> int | None:
    if (delivery_id is None) == (not all_dead):
        common.fail("give either a delivery ID or --all-dead", 2)
    return delivery_id


@app.command("list")
def deliveries_list(
    state: Annotated[State | None, typer.Option(help="Only this state (default: both)")] = None,
    huvudman: Annotated[str | None, typer.Option(help="Only this huvudman's")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, oldest first")] = 100,
) -> None:
    """Pending and dead deliveries: ids, huvudman, lane, attempts, last error, times."""
    rows = common.with_store(lambda s: dead_letters.list_deliveries(
        s, state=state.value if state else None, huvudman=huvudman, limit=limit))
    table = Table("id", "event", "huvudman", "lane", "state", "attempts", "last error",
                  "next attempt", "created", "ended")
    for r in rows:
        table.add_row(str(r.id), str(r.event_id), r.huvudman or f"({r.receiver})", r.lane,
                      r.state, str(r.attempts), r.last_error or "",
                      common.time_text(r.next_attempt_at), common.time_text(r.created_at),
                      common.time_text(r.finished_at))
    common.console.print(table)


@app.command("inspect")
def deliveries_inspect(delivery_id: int) -> None:
    """One delivery's metadata (never its sealed payload)."""
    row = common.with_store(lambda s: dead_letters.inspect(s, delivery_id))
    if row is None:
        common.fail(f"no delivery {delivery_id}")
    for key, value in dataclasses.asdict(row).items():
        shown = (common.time_text(value) if isinstance(value, datetime)
                 else "" if value is None else value)
        common.console.print(f"{key:16} {shown}")


@app.command("replay")
def deliveries_replay(
    delivery_id: Annotated[int | None, typer.Argument(help="A dead delivery's id")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Every dead delivery")] = False,
    huvudman: Annotated[str | None, typer.Option(help="Only this huvudman's")] = None,
) -> None:
    """Dead letters back to pending, attempts reset (audit-logged)."""
    target = _target(delivery_id, all_dead)
    ids = common.with_store(lambda s: dead_letters.replay(s, target, huvudman=huvudman))
    common.console.print(f"{len(ids)} dead deliveries back to pending")


@app.command("purge")
def deliveries_purge(
    delivery_id: Annotated[int | None, typer.Argument(help="A dead delivery's id")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Every dead delivery")] = False,
    older_than: Annotated[int, typer.Option("--older-than", min=0,
                                            help="Only those dead for at least DAYS")] = 0,
    huvudman: Annotated[str | None, typer.Option(help="Only this huvudman's")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run/--execute",
                                          help="Only say what would go (default)")] = True,
) -> None:
    """Delete dead letters (audit-logged); the events' sealed copies stay."""
    target = _target(delivery_id, all_dead)
    plan = common.with_store(lambda s: dead_letters.purge(
        s, target, huvudman=huvudman, older_than_days=older_than, dry_run=dry_run))
    common.console.print(plan.describe())
    if dry_run:
        common.console.print("dry run: nothing was changed. Run again with --execute to do it.")
