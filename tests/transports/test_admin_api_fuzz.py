"""schemathesis against the running gateway's admin API (/admin/v1), once with each kind of
credential: none, a wrong token, a disabled operator's, and each role's. Generated requests,
valid and invalid, must never get a server error, and every answer must be one the OpenAPI
document declares. Bounded by examples per operation, so it runs in `make test`: 100 for an
admin (who reaches every step; that found the overflowing heartbeat interval of issue 11 where
25 did not), 40 for each narrower role, 10 where the token is refused before anything else is
looked at. FUZZ_SCALE multiplies them for a longer hunt."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gateway.ownership import operators
from gateway.store.connector import Store
from tests.paths import ROOT
from tests.support import RunningGateway

pytestmark = pytest.mark.integration

SCALE = float(os.environ.get("FUZZ_SCALE", "1"))
EXAMPLES = {"none": 10, "wrong": 10, "disabled": 10, "admin": 100}
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance"
ST = Path(sys.executable).with_name("st")

CREDENTIALS = ["none", "wrong", "disabled", "admin", "inventory", "dispatch", "workshop",
               "integrator"]


async def _token(store: Store, kind: str) -> str | None:
    if kind == "none":
        return None
    if kind == "wrong":
        return "not-a-token-" + uuid.uuid4().hex
    name = f"test-fuzz-{kind}-{uuid.uuid4().hex[:6]}"
    if kind == "integrator":
        return await operators.add(store, name, ["integrator"], "1490")
    token = await operators.add(store, name, ["admin" if kind == "disabled" else kind])
    if kind == "disabled":
        await operators.disable(store, name)
    return token


@pytest.mark.parametrize("kind", CREDENTIALS)
async def test_no_server_error_with_any_credential(
        gateway: RunningGateway, store: Store, tmp_path: Path, kind: str) -> None:
    token = await _token(store, kind)
    report = tmp_path / "junit.xml"
    examples = max(1, round(EXAMPLES.get(kind, 40) * SCALE))
    args = [str(ST), "run", f"{gateway.http}/openapi.json", "--include-path-regex",
            "^/admin/v1/", "--checks", CHECKS, "--max-examples", str(examples),
            "--phases", "examples,coverage,fuzzing,stateful", "--seed", "11",
            "--generation-database", "none", "--workers", "1", "--no-color",
            "--report", "junit", "--report-junit-path", str(report),
            "--output-sanitize", "true"]
    if token is not None:
        args += ["--header", f"Authorization: Bearer {token}"]
    # A subprocess, so this event loop goes on serving the gateway it fuzzes.
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.transports.fuzz_hooks",
           "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, env=env,
                                                cwd=tmp_path)  # its caches go there
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    suites = ET.parse(report).getroot()
    cases = suites.findall(".//testcase")
    # Every operation was tried: a run that reached nothing cannot pass.
    assert len(cases) == 8, text[-3000:]  # 7 operations and the stateful run
    assert not suites.findall(".//failure") and not suites.findall(".//error"), text[-6000:]
