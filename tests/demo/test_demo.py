"""`gateway demo` as a new user runs it: embedded services, simulator, clean Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.demo import embedded
from tests.paths import ROOT

pytestmark = pytest.mark.integration

_DELIVERED = re.compile(r"region FHIR: ([1-9]\d*) Observations · Göteborg webhook: ([1-9]\d*) "
                        r"items · alarm centre: ([1-9]\d*) alarms accepted")


def _delivered(status_line: str) -> bool:
    return _DELIVERED.search(status_line) is not None


def test_demo_runs_on_embedded_services_and_stops_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MQTT_URL")}
    env |= {"GATEWAY_STATE_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1", "COLUMNS": "200",
            "SIP_PORT": str(embedded.free_port())}
    port = embedded.free_port()
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "demo", "--interval", "0.5",
                                 "--http-port", str(port)], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            # Readings (native, PCD-01, FHIR, OMH), positions (vendor GPS, SCAIP) and alarms
            # stored; and delivered: Observations at the region's FHIR server, items at
            # Göteborg's webhook, alarms accepted by the simulated alarm centre.
            while not any(all(f"'{kind}'" in line for kind in ("reading", "position", "alarm"))
                          and _delivered(line)
                          for line in log.read_text().splitlines()
                          if line.startswith("stored events")):
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert "registry loaded: 50 huvudmän" in text
    assert f"http://127.0.0.1:{port}/docs" in text
    assert "simulator: sent" in text and "demo stopped" in text
    assert "Traceback" not in text


def test_without_the_demo_extra_the_embedded_services_say_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pgserver and amqtt are the `demo` extra (production never needs them): without them the
    demo names the extra, or says to point at a real database and broker."""
    monkeypatch.setitem(sys.modules, "pgserver", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "amqtt.broker", None)
    with pytest.raises(embedded.MissingExtra, match=r"pgserver is not installed.*\[demo\]"):
        embedded.start_postgres(tmp_path / "pg")
    with pytest.raises(embedded.MissingExtra, match="DATABASE_URL and MQTT_URL"):
        embedded.start_amqtt()
