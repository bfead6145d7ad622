"""`gateway config load` and `gateway huvudman list|add`: the registry from files in config/,
and the 50 huvudmän."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from gateway.cli import common
from gateway.ownership import registration
from gateway.ownership.specs import Refusal

config_app = typer.Typer(name="config", no_args_is_help=True,
                         help="Load registry files from config/.")
huvudman_app = typer.Typer(name="huvudman", no_args_is_help=True, help="The 50 huvudmän.")


@config_app.command("load")
def config_load(path: Annotated[Path, typer.Argument(help="A .toml file or a folder of them")]
                ) -> None:
    """Load huvudmän, devices and assignments from TOML (idempotent)."""
    try:
        config = registration.read_config(path)
    except Refusal as err:
        common.fail(str(err))
    counts = common.with_store(lambda store: registration.apply_config(store, config))
    common.console.print(f"loaded {counts}")


@huvudman_app.command("list")
def huvudman_list() -> None:
    rows = common.with_store(lambda s: s.registration.huvudman_listing())
    table = Table("code", "name", "kind")
    for r in rows:
        table.add_row(r.code, r.name, r.kind)
    common.console.print(table)


@huvudman_app.command("add")
def huvudman_add(code: str, name: str, kind: str) -> None:
    """Register or rename a huvudman (code: SCB code, kind: region or kommun)."""
    try:
        spec = registration.HuvudmanSpec.model_validate({"code": code, "name": name, "kind": kind})
    except ValidationError as err:
        common.fail(str(err))
    common.with_store(lambda s: registration.add_huvudman(s, spec))
    common.console.print(f"huvudman {spec.code} registered")
