"""The `gateway` command: serve, demo, migrate, simulate and the registry's admin commands."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from gateway.cli.options import (
    AlarmRoute,
    DoseAlarm,
    Kinds,
    LegalBasisOption,
    SubjectRef,
    ValidFrom,
)
from gateway.crypto import CryptoError, HuvudmanPublicKey, KeySuite
from gateway.delivery import alarm_history
from gateway.observability import logs
from gateway.ownership import audit, erasure, key_management, registration
from gateway.settings import Settings
from gateway.store.connector import Store
from gateway.store.migrate import MigrationError, migrate

app = typer.Typer(no_args_is_help=True, help="Telemetry gateway for assistive devices.")
device_app = typer.Typer(no_args_is_help=True, help="Devices and their credentials.")
assignment_app = typer.Typer(no_args_is_help=True, help="Who uses a device, for whom, when.")
huvudman_app = typer.Typer(no_args_is_help=True, help="The 50 huvudmän.")
config_app = typer.Typer(no_args_is_help=True, help="Load registry files from config/.")
keys_app = typer.Typer(no_args_is_help=True, help="Huvudmän's encryption keys.")
app.add_typer(keys_app, name="keys")
erase_app = typer.Typer(no_args_is_help=True,
                        help="Crypto-shredding: destroy the keys that open data.")
app.add_typer(erase_app, name="erase")
audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit log.")
app.add_typer(audit_app, name="audit")
retention_app = typer.Typer(no_args_is_help=True, help="Retention by key epoch and partition.")
app.add_typer(retention_app, name="retention")
alarms_app = typer.Typer(no_args_is_help=True, help="What happened to alarms (ids and times).")
app.add_typer(alarms_app, name="alarms")
app.add_typer(device_app, name="device")
app.add_typer(assignment_app, name="assignment")
app.add_typer(huvudman_app, name="huvudman")
app.add_typer(config_app, name="config")

console = Console()
T = TypeVar("T")


def _dsn() -> str:
    dsn = Settings().database_url
    if not dsn:
        console.print("[red]DATABASE_URL is not set.[/] Example: "
                      "postgresql://gateway@127.0.0.1:5432/gateway")
        raise typer.Exit(2)
    return dsn


def _with_store(work: Callable[[Store], Awaitable[T]]) -> T:
    async def main() -> T:
        store = await Store.connect(_dsn())
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except registration.AdminError as err:
        console.print(f"[red]{err}[/]")
        raise typer.Exit(1) from None


@app.command("migrate")
def migrate_cmd() -> None:
    """Apply database migrations (idempotent)."""
    try:
        done = asyncio.run(migrate(_dsn()))
    except MigrationError as err:
        console.print(f"[red]{err}[/]")
        raise typer.Exit(1) from None
    console.print(f"applied: {', '.join(done)}" if done else "schema is up to date")


@app.command()
def serve() -> None:
    """Run ingest (MQTT and HTTP) against DATABASE_URL and MQTT_URL."""
    from gateway.delivery.sink_config import SinkConfigError
    from gateway.ownership.keyring import KeyringError
    from gateway.roles.ingest import serve as run_serve

    settings = Settings()
    logs.configure(settings.log_format)
    _dsn()
    try:
        asyncio.run(run_serve(settings))
    except (KeyringError, SinkConfigError) as err:
        console.print(f"[red]{err}[/]")
        raise typer.Exit(2) from None


@app.command()
def demo(
    interval: Annotated[float, typer.Option(help="Seconds between simulator rounds")] = 2.0,
    http_port: Annotated[int, typer.Option(help="Port of the HTTP API")] = 8080,
) -> None:
    """Run the whole system on embedded defaults, with a simulated fleet. Ctrl-C stops it."""
    from gateway.demo.run import run_demo

    run_demo(interval_s=interval, http_port=http_port)


@app.command()
def simulate(
    mqtt_url: Annotated[str, typer.Option(envvar="MQTT_URL")],
    http_url: Annotated[str, typer.Option(help="Base URL of the gateway's HTTP API")] =
        "http://127.0.0.1:8080",
    fleet: Annotated[Path, typer.Option(help="Fleet file with devices and tokens")] =
        Path("config/demo/fleet.toml"),
    interval: float = 2.0,
    rounds: Annotated[int | None, typer.Option(help="Stop after this many rounds")] = None,
) -> None:
    """Drive a simulated fleet against a running gateway."""
    from simulator.run import run

    tally = run(fleet, mqtt_url=mqtt_url, http_url=http_url, interval_s=interval, rounds=rounds)
    console.print({"sent": dict(tally.sent), "confirmed": dict(tally.confirmed),
                   "rejected": dict(tally.rejected), "errors": dict(tally.errors)})


@config_app.command("load")
def config_load(path: Annotated[Path, typer.Argument(help="A .toml file or a folder of them")]
                ) -> None:
    """Load huvudmän, devices and assignments from TOML (idempotent)."""
    try:
        config = registration.read_config(path)
    except registration.AdminError as err:
        console.print(f"[red]{err}[/]")
        raise typer.Exit(1) from None
    counts = _with_store(lambda store: registration.apply_config(store, config))
    console.print(f"loaded {counts}")


@huvudman_app.command("list")
def huvudman_list() -> None:
    rows = _with_store(lambda s: s.fetch("list_huvudman"))
    table = Table("code", "name", "kind")
    for r in rows:
        table.add_row(r["code"], r["name"], r["kind"])
    console.print(table)


@huvudman_app.command("add")
def huvudman_add(code: str, name: str, kind: str) -> None:
    """Register or rename a huvudman (code: SCB code, kind: region or kommun)."""
    try:
        spec = registration.HuvudmanSpec.model_validate({"code": code, "name": name, "kind": kind})
    except ValueError as err:
        console.print(f"[red]{err}[/]")
        raise typer.Exit(1) from None
    _with_store(lambda s: s.execute("upsert_huvudman", spec.code, spec.name, spec.kind))
    console.print(f"huvudman {spec.code} registered")


@device_app.command("add")
def device_add(
    device_id: str, device_type: str, model: Annotated[str | None, typer.Option()] = None,
    heartbeat_interval_s: Annotated[int | None, typer.Option()] = None,
    hub: Annotated[str | None, typer.Option(help="Hub (gateway) that uploads for it")] = None,
) -> None:
    """Register a device and issue its credential (printed once; only its hash is stored)."""
    try:
        registration.DeviceSpec(id=device_id, type=device_type, model=model, hub=hub)
    except ValueError as err:
        console.print(f"[red]{err}[/]")
        raise typer.Exit(1) from None
    token = _with_store(lambda s: registration.add_device(s, device_id, device_type, model,
                                                   heartbeat_interval_s, hub))
    console.print(f"device {device_id} registered. Its credential (shown only now):")
    print(token)


@device_app.command("list")
def device_list() -> None:
    rows = _with_store(lambda s: s.fetch("list_devices"))
    table = Table("id", "type", "model", "state", "credential", "active assignments")
    for r in rows:
        table.add_row(r["id"], r["device_type"], r["model"] or "", r["state"],
                      "yes" if r["has_credential"] else "no", str(r["active_assignments"]))
    console.print(table)


@assignment_app.command("add")
def assignment_add(
    device: str, huvudman: str, subject_ref: SubjectRef, legal_basis: LegalBasisOption,
    kinds: Kinds, valid_from: ValidFrom = None, alarm_route: AlarmRoute = None,
    position_consent: bool = False, dose_alarm: DoseAlarm = False,
) -> None:
    """Lend a device to a person under a huvudman and legal basis, from a time on."""
    start = _aware(valid_from) if valid_from else datetime.now(UTC)
    try:
        spec = registration.AssignmentSpec(device=device, huvudman=huvudman,
                                           subject_ref=subject_ref,
                                    legal_basis=legal_basis, kinds=kinds, valid_from=start,
                                    alarm_route=alarm_route, position_consent=position_consent,
                                    dose_alarm=dose_alarm)
    except ValidationError as err:  # named by field; the input (maybe personal) is not shown
        first = err.errors()[0]
        console.print(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}", style="red",
                      markup=False)
        raise typer.Exit(1) from None
    new_id = _with_store(lambda s: registration.add_assignment(s, spec))
    console.print(f"assignment {new_id}")


@assignment_app.command("end")
def assignment_end(
    assignment_id: uuid.UUID,
    at: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%dT%H:%M:%S%z"])] = None,
) -> None:
    """End an assignment (device returned): readings measured from then on are not covered."""
    when = _aware(at) if at else datetime.now(UTC)
    _with_store(lambda s: registration.end_assignment(s, assignment_id, when))
    console.print(f"assignment {assignment_id} ends {when.isoformat()}")


@assignment_app.command("list")
def assignment_list(device: Annotated[str | None, typer.Option()] = None) -> None:
    rows = _with_store(lambda s: s.fetch("list_assignments", device))
    table = Table("id", "device", "huvudman", "basis", "kinds", "from", "to", "alarm route",
                  "positions", "dose alarm")
    for r in rows:
        table.add_row(str(r["id"]), r["device_id"], r["huvudman"], r["legal_basis"],
                      ",".join(r["kinds"]), r["valid_from"].isoformat(),
                      r["valid_to"].isoformat() if r["valid_to"] else "",
                      r["alarm_route"] or "", "consent" if r["position_consent"] else "",
                      "yes" if r["dose_alarm"] else "")
    console.print(table)


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


SUITES = {"mlkem768-x25519": KeySuite.MLKEM768_X25519, "x25519": KeySuite.X25519}


@keys_app.command("generate")
def keys_generate(
    owner: Annotated[str, typer.Argument(help="Huvudman code, or hmc-quarantine")],
    out: Annotated[Path, typer.Option(help="Folder for the pair (the node's, not ingest's)")],
    suite: Annotated[str, typer.Option(help="mlkem768-x25519 (default) or x25519")] =
        "mlkem768-x25519",
    register: Annotated[bool, typer.Option(help="Also register the public key")] = False,
) -> None:
    """Generate a key pair; the private key file is written with mode 0600."""
    if suite not in SUITES:
        console.print(f"[red]unknown suite {suite}; choose {', '.join(SUITES)}[/]")
        raise typer.Exit(2)
    try:
        private, private_path, public_path = key_management.write_keypair(out, owner, SUITES[suite])
    except (registration.AdminError, ValueError) as err:
        console.print(f"[red]{err}[/]")
        raise typer.Exit(1) from None
    console.print(f"private key: {private_path}\npublic key:  {public_path}\n"
                  f"key id: {private.key_id.hex()}")
    if register:
        _with_store(lambda s: key_management.register(s, private.public_key()))
        console.print(f"registered as the active key of {owner}")


@keys_app.command("register")
def keys_register(public_key: Path) -> None:
    """Make a public key file its huvudman's active key (refused if one is active)."""
    key = _read_public(public_key)
    _with_store(lambda s: key_management.register(s, key))
    console.print(f"{key.huvudman}: active key {key.key_id.hex()}")


@keys_app.command("rotate")
def keys_rotate(public_key: Path) -> None:
    """Replace a huvudman's active key; new data is sealed to the new key from now on."""
    key = _read_public(public_key)
    _with_store(lambda s: key_management.register(s, key, rotate=True))
    console.print(f"{key.huvudman}: active key {key.key_id.hex()} (the previous one retired)")


@keys_app.command("list")
def keys_list() -> None:
    rows = _with_store(lambda s: s.fetch("list_public_keys"))
    table = Table("huvudman", "name", "key id", "suite", "since", "retired")
    for r in rows:
        table.add_row(r["code"], r["name"], bytes(r["key_id"]).hex() if r["key_id"] else "—",
                      r["suite"] or "", r["created_at"].isoformat() if r["created_at"] else "",
                      r["retired_at"].isoformat() if r["retired_at"] else "")
    console.print(table)


@keys_app.command("pseudonym-secret")
def keys_pseudonym_secret(path: Path) -> None:
    """Write a new pseudonym secret for ingest (PSEUDONYM_SECRET_FILE), mode 0600."""
    try:
        key_management.write_secret(path)
    except FileExistsError:
        console.print(f"[red]{path} exists; a new secret would orphan the stored pseudonyms[/]")
        raise typer.Exit(1) from None
    console.print(f"pseudonym secret written to {path}")


def _read_public(path: Path) -> HuvudmanPublicKey:
    try:
        return key_management.read_public(path)
    except (registration.AdminError, CryptoError) as err:
        console.print(f"[red]{err}[/]")
        raise typer.Exit(1) from None


DryRun = Annotated[bool, typer.Option("--dry-run/--execute",
                                      help="Only say what would become unreadable (default)")]


def _report(plan: erasure.Plan) -> None:
    console.print(plan.describe())
    if not plan.done:
        console.print("dry run: nothing was changed. Run again with --execute to do it.")


@erase_app.command("subject")
def erase_subject(huvudman: str, subject_ref: str, dry_run: DryRun = True) -> None:
    """Erase one person's data at one huvudman: their data keys are destroyed."""
    from gateway.ownership.keyring import pseudonymizer

    pseudonyms = pseudonymizer(Settings())
    _report(_with_store(lambda s: erasure.erase_subject(s, pseudonyms, huvudman, subject_ref,
                                                        dry_run=dry_run)))


@erase_app.command("huvudman")
def erase_huvudman(huvudman: str, dry_run: DryRun = True) -> None:
    """Make everything sealed for a huvudman unreadable (it leaves the collaboration)."""
    _report(_with_store(lambda s: erasure.erase_huvudman(s, huvudman, dry_run=dry_run)))


@retention_app.command("apply")
def retention_apply(
    before: Annotated[datetime, typer.Option(formats=["%Y-%m"], help="First month to keep")],
    huvudman: Annotated[str | None, typer.Option(help="Only this huvudman's keys")] = None,
    dry_run: DryRun = True,
) -> None:
    """Destroy the keys of every epoch before a month and drop the partitions that held it."""
    _report(_with_store(lambda s: erasure.apply_retention(s, before.date(), huvudman=huvudman,
                                                          dry_run=dry_run)))


@retention_app.command("purge-quarantine")
def retention_purge_quarantine(dry_run: DryRun = True) -> None:
    """Delete quarantined copies whose fault-finding time is over."""
    count = _with_store(lambda s: erasure.purge_quarantine(s, datetime.now(UTC),
                                                           dry_run=dry_run))
    console.print(f"{count} expired quarantined copies {'would be' if dry_run else 'were'} "
                  "deleted")


@alarms_app.command("history")
def alarms_history(event_id: uuid.UUID) -> None:
    """Received, committed, each delivery and any incident of one alarm, in time order."""
    result = _with_store(lambda s: alarm_history.history(s, event_id))
    if result is None:
        console.print(f"[red]no alarm {event_id}[/]")
        raise typer.Exit(1)
    console.print(f"alarm {result.event_id} from device {result.device_id}")
    for step in result.steps:
        console.print(f"  {step.at.isoformat()}  {step.what}")


@alarms_app.command("list")
def alarms_list(
    hours: Annotated[float, typer.Option(help="Alarms received in the last hours")] = 24,
    last: Annotated[int, typer.Option(help="At most this many")] = 50,
) -> None:
    since = datetime.now(UTC) - timedelta(hours=hours)
    rows = _with_store(lambda s: s.fetch("recent_alarms", since, last))
    table = Table("event id", "device", "received", "committed", "delivered", "incident")
    for r in rows:
        table.add_row(str(r["event_id"]), r["device_id"], r["received_at"].isoformat(),
                      r["stored_at"].isoformat(), f"{r['delivered']}/{r['deliveries']}",
                      "yes" if r["incident"] else "")
    console.print(table)


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the hash chain; report the first broken entry (exit 1) or the head hash."""
    result = _with_store(audit.verify)
    if result.intact:
        head = result.head.hex() if result.head else "—"
        console.print(f"audit log intact: {result.entries} entries, head {head}")
        return
    console.print(f"[red]audit log broken at entry {result.first_break}: {result.problem}[/]")
    raise typer.Exit(1)


@audit_app.command("list")
def audit_list(last: Annotated[int, typer.Option(help="How many entries")] = 20) -> None:
    rows = _with_store(lambda s: s.fetch("audit_list", last))
    table = Table("seq", "at", "actor", "action", "target", "details")
    for r in rows:
        table.add_row(str(r["seq"]), r["at"].isoformat(), r["actor"], r["action"], r["target"],
                      r["details"])
    console.print(table)


# The device lifecycle and the admin API's operators add their commands to `device` and an
# `operator` group (kept in their own module).
from gateway.cli import lifecycle as cli_lifecycle  # noqa: E402

cli_lifecycle.install(app, device_app)

from gateway.cli import deliveries as cli_delivery  # noqa: E402

cli_delivery.install(app)

from gateway.cli import arc as cli_arc  # noqa: E402

cli_arc.install(app)

from gateway.cli import node as node_cli  # noqa: E402

node_cli.install(app)
