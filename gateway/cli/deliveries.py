"""`gateway deliveries`: the outbox and its dead letters, metadata only
(gateway.delivery.dead_letters).

`replay` and `purge` are audit-logged; `purge` is a dry run unless --execute, like `erase`.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from gateway.delivery import dead_letters
from gateway.store.connector import Store

T = TypeVar("T")
deliveries_app = typer.Typer(no_args_is_help=True,
                             help="Deliveries: pending ones and the dead-letter queue.")


class State(enum.StrEnum):
    pending = "pending"
    dead = "dead"


def _run(work: Callable[[Store], Awaitable[T]]) -> T:
    from gateway.cli import main as cli

    return cli._with_store(work)


def _console() -> Console:
    from gateway.cli import main as cli

    return cli.console


def _time(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def _target(delivery_id: int | None, all_dead: bool) -> int | None:
    if (delivery_id is None) == (not all_dead):
        _console().print("[red]give either a delivery ID or --all-dead[/]")
        raise typer.Exit(2)
    return delivery_id


@deliveries_app.command("list")
def deliveries_list(
    state: Annotated[State | None, typer.Option(help="Only this state (default: both)")] = None,
    huvudman: Annotated[str | None, typer.Option(help="Only this huvudman's")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, oldest first")] = 100,
) -> None:
    """Pending and dead deliveries: ids, huvudman, lane, attempts, last error, times."""
    rows = _run(lambda s: dead_letters.list_deliveries(
        s, state=state.value if state else None, huvudman=huvudman, limit=limit))
    table = Table("id", "event", "huvudman", "lane", "state", "attempts", "last error",
                  "next attempt", "created", "ended")
    for r in rows:
        table.add_row(str(r["id"]), str(r["event_id"]), r["huvudman"] or f"({r['receiver']})",
                      r["lane"], r["state"], str(r["attempts"]), r["last_error"] or "",
                      _time(r["next_attempt_at"]), _time(r["created_at"]),
                      _time(r["finished_at"]))
    _console().print(table)


@deliveries_app.command("inspect")
def deliveries_inspect(delivery_id: int) -> None:
    """One delivery's metadata (never its sealed payload)."""
    row = _run(lambda s: dead_letters.inspect(s, delivery_id))
    if row is None:
        _console().print(f"[red]no delivery {delivery_id}[/]")
        raise typer.Exit(1)
    for key, value in row.items():
        shown = _time(value) if isinstance(value, datetime) else "" if value is None else value
        _console().print(f"{key:16} {shown}")


@deliveries_app.command("replay")
def deliveries_replay(
    delivery_id: Annotated[int | None, typer.Argument(help="A dead delivery's id")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="Every dead delivery")] = False,
    huvudman: Annotated[str | None, typer.Option(help="Only this huvudman's")] = None,
) -> None:
    """Dead letters back to pending, attempts reset (audit-logged)."""
    target = _target(delivery_id, all_dead)
    ids = _run(lambda s: dead_letters.replay(s, target, huvudman=huvudman))
    _console().print(f"{len(ids)} dead deliveries back to pending")


@deliveries_app.command("purge")
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
    plan = _run(lambda s: dead_letters.purge(s, target, huvudman=huvudman,
                                             older_than_days=older_than,
                                      dry_run=dry_run))
    _console().print(plan.describe())
    if dry_run:
        _console().print("dry run: nothing was changed. Run again with --execute to do it.")


def install(app: typer.Typer) -> None:
    app.add_typer(deliveries_app, name="deliveries")
