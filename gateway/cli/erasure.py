"""`gateway erase subject|huvudman` and `gateway retention apply|purge-quarantine`:
crypto-shredding and retention (gateway/ownership/erasure.py). Dry runs unless --execute."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from gateway.cli import common
from gateway.cli.options import DryRun
from gateway.ownership import erasure
from gateway.settings import Settings

erase_app = typer.Typer(name="erase", no_args_is_help=True,
                        help="Crypto-shredding: destroy the keys that open data.")
retention_app = typer.Typer(name="retention", no_args_is_help=True,
                            help="Retention by key epoch and partition.")


def _report(plan: erasure.Plan) -> None:
    common.console.print(plan.describe())
    if not plan.done:
        common.console.print("dry run: nothing was changed. Run again with --execute to do it.")


@erase_app.command("subject")
def erase_subject(huvudman: str, subject_ref: str, dry_run: DryRun = True) -> None:
    """Erase one person's data at one huvudman: their data keys are destroyed."""
    from gateway.ownership.keyring import pseudonymizer

    pseudonyms = pseudonymizer(Settings())
    _report(common.with_store(lambda s: erasure.erase_subject(
        s, pseudonyms, huvudman, subject_ref, dry_run=dry_run)))


@erase_app.command("huvudman")
def erase_huvudman(huvudman: str, dry_run: DryRun = True) -> None:
    """Make everything sealed for a huvudman unreadable (it leaves the collaboration)."""
    _report(common.with_store(lambda s: erasure.erase_huvudman(s, huvudman, dry_run=dry_run)))


@retention_app.command("apply")
def retention_apply(
    before: Annotated[datetime, typer.Option(formats=["%Y-%m"], help="First month to keep")],
    huvudman: Annotated[str | None, typer.Option(help="Only this huvudman's keys")] = None,
    dry_run: DryRun = True,
) -> None:
    """Destroy the keys of every epoch before a month and drop the partitions that held it."""
    _report(common.with_store(lambda s: erasure.apply_retention(
        s, before.date(), huvudman=huvudman, dry_run=dry_run)))


@retention_app.command("purge-quarantine")
def retention_purge_quarantine(dry_run: DryRun = True) -> None:
    """Delete quarantined copies whose fault-finding time is over."""
    count = common.with_store(lambda s: erasure.purge_quarantine(s, datetime.now(UTC),
                                                                 dry_run=dry_run))
    common.console.print(f"{count} expired quarantined copies "
                         f"{'would be' if dry_run else 'were'} deleted")
