"""An alarm's history is queryable: received, committed, its deliveries and incidents."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from adapters import native
from gateway.cli import common
from gateway.cli.main import app
from gateway.delivery import alarm_history
from gateway.store.connector import Store
from tests.support import FakeDevice, RunningGateway, register_device

pytestmark = pytest.mark.integration
NO_SINK = "1447"  # a huvudman without a webhook in the test gateway: its deliveries wait


async def _alarm(gateway: RunningGateway, device: FakeDevice, minute: int) -> uuid.UUID:
    body = native.encode_message([], alarms=[{"type": "button", "priority": 9,
                                              "time": f"2026-11-22T04:{minute:02d}:00+00:00"}])
    async with httpx.AsyncClient(base_url=gateway.http) as client:
        answer = await client.post(f"/v1/devices/{device.id}/readings", content=body,
                                   headers={"Authorization": f"Bearer {device.token}"})
    assert answer.status_code == 200, answer.text
    return uuid.UUID(answer.json()["accepted"][0])


async def test_history_of_a_routed_and_an_unclaimed_alarm(
        gateway: RunningGateway, store: Store, database_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    routed_device = await register_device(store, device_type="gps_alarm", assignments=[
        {"huvudman": NO_SINK, "subject_ref": "test-alarm-history", "legal_basis": "SoL",
         "kinds": ["alarm"], "valid_from": "2026-01-01T00:00:00+00:00",
         "alarm_route": "test-larmcentral"}])
    in_stock = await register_device(store, device_type="gps_alarm")
    await gateway.knows(routed_device)
    await gateway.knows(in_stock)
    routed = await _alarm(gateway, routed_device, 1)
    unclaimed = await _alarm(gateway, in_stock, 2)

    first = await alarm_history.history(store, routed)
    assert first is not None and first.device_id == routed_device.id
    texts = [s.what for s in first.steps]
    assert texts[0].startswith("raised by the device")
    assert any(t.startswith("received by the gateway") for t in texts)
    assert any(t.startswith("committed") for t in texts)
    assert any(t.startswith(f"pending for huvudman {NO_SINK} (alarm route test-larmcentral)")
               for t in texts)
    assert [s.at for s in first.steps] == sorted(s.at for s in first.steps)

    second = await alarm_history.history(store, unclaimed)
    assert second is not None
    texts = [s.what for s in second.steps]
    assert "incident raised: unclaimed_alarm" in texts
    assert any("fallback receiver" in t for t in texts)
    assert await alarm_history.history(store, uuid.uuid4()) is None

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setattr(common, "console", Console(width=250, force_terminal=False))
    # The CLI runs its own event loop, so it is invoked from a thread, as an operator's shell would.
    out = await asyncio.to_thread(CliRunner().invoke, app,
                                  ["alarms", "history", str(unclaimed)])
    assert out.exit_code == 0, out.output
    assert "incident raised: unclaimed_alarm" in out.output
    assert "test-alarm-history" not in out.output  # ids and times only
