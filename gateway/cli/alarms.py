"""`gateway alarms list|history`: what happened to alarms, ids and times only
(gateway/delivery/alarm_history.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from gateway.cli import common
from gateway.delivery import alarm_history

app = typer.Typer(name="alarms", no_args_is_help=True,
                  help="What happened to alarms (ids and times).")


@app.command("history")
def alarms_history(event_id: uuid.UUID) -> None:
    """Received, committed, each delivery and any incident of one alarm, in time order."""
    result = common.with_store(lambda s: alarm_history.history(s, event_id))
    if result is None:
        common.fail(f"no alarm {event_id}")
    common.console.print(f"alarm {result.event_id} from device {result.device_id}")
    for step in result.steps:
        common.console.print(f"  {step.at.isoformat()}  {step.what}")


@app.command("list")
def alarms_list(
    hours: Annotated[float, typer.Option(help="Alarms received in the last hours")] = 24,
    last: Annotated[int, typer.Option(help="At most this many")] = 50,
) -> None:
    since = datetime.now(UTC) - timedelta(hours=hours)
    rows = common.with_store(lambda s: s.alarms.recent(since, last))
    table = Table("event id", "device", "received", "committed", "delivered", "incident")
    for r in rows:
        table.add_row(str(r.event_id), r.device_id, r.received_at.isoformat(),
                      r.stored_at.isoformat(), f"{r.delivered}/{r.deliveries}",
                      "yes" if r.incident else "")
    common.console.print(table)
