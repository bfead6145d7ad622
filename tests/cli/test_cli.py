"""The `gateway` admin commands against the real database."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from gateway.cli import common
from gateway.cli.main import app
from tests.paths import ROOT
from tests.support import Keys

pytestmark = pytest.mark.integration



@pytest.fixture
def run(database_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setattr(common, "console", Console(width=250, force_terminal=False))
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True) -> str:
        result = runner.invoke(app, list(args))
        assert (result.exit_code == 0) == ok, result.output
        return result.output

    return invoke


def test_migrate_as_the_owner_and_only_as_the_owner(  # type: ignore[no-untyped-def]
        run, owner_database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    refused = run("migrate", ok=False)  # DATABASE_URL: the gateway's runtime role
    assert "database role gateway_test_runtime may not change the schema: migrate as the " \
        "schema's owner (MIGRATION_DATABASE_URL" in refused
    monkeypatch.setenv("MIGRATION_DATABASE_URL", owner_database_url)
    assert "schema is up to date" in run("migrate")


def test_config_folder_loads_all_50_huvudman(run) -> None:  # type: ignore[no-untyped-def]
    out = run("config", "load", str(ROOT / "config"))
    assert "'huvudman': 50" in out
    listing = run("huvudman", "list")
    assert "Västra Götalandsregionen" in listing and "Falköping" in listing
    assert "loaded" in run("config", "load", str(ROOT / "config" / "demo" / "fleet.toml"))


def test_bad_config_names_file_entry_and_field(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[huvudman]]\ncode = "9"\nname = "X"\nkind = "kommun"\n')
    out = run("config", "load", str(bad), ok=False)
    assert "bad.toml: huvudman.0.code" in out


def test_device_assignment_lifecycle(run) -> None:  # type: ignore[no-untyped-def]
    device = f"T-CLI-{uuid.uuid4().hex[:8]}"
    out = run("device", "add", device, "scale", "--model", "Test scale")
    token = out.strip().splitlines()[-1]
    assert len(token) >= 40  # 256 random bits, printed once
    assert device in run("device", "list")
    out = run("assignment", "add", device, "1480", "--subject-ref", "test-subject-3",
              "--legal-basis", "SoL", "--kind", "weight", "--kind", "status",
              "--valid-from", "2026-01-01")
    assignment_id = re.search(r"assignment ([0-9a-f-]{36})", out).group(1)  # type: ignore[union-attr]
    assert "weight,status" in run("assignment", "list", "--device", device)
    assert "ends" in run("assignment", "end", assignment_id, "--at", "2026-06-01T00:00:00+0000")
    refused = run("assignment", "end", assignment_id, "--at", "2026-07-01T00:00:00+0000",
                  ok=False)
    assert "already ended" in refused
    unknown = run("assignment", "add", device, "1234", "--subject-ref", "s",
                  "--legal-basis", "HSL", "--kind", "weight", ok=False)
    assert "unknown huvudman" in unknown
