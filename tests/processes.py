"""`gateway serve` as a separate process, as in production: for the crash tests and the fault
runs (tests/faults/), which kill and stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gateway.demo import embedded
from tests.paths import ROOT


class IngestProcess:
    """`gateway serve` as a separate process, as in production."""

    def __init__(self, env: dict[str, str], log: Path | None = None) -> None:
        self.port = embedded.free_port()
        self.env = os.environ | env | {"HTTP_PORT": str(self.port), "LOG_FORMAT": "json",
                                       "SIP_PORT": "off"}
        self.log = log  # its output, appended across restarts; None: discarded
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, **overrides: str) -> None:
        out = self.log.open("ab") if self.log is not None else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"],
                                         env=self.env | overrides, cwd=ROOT, stdout=out,
                                         stderr=subprocess.STDOUT)
        finally:
            if self.log is not None:
                out.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, "gateway serve exited during start-up"
            time.sleep(0.1)
        raise TimeoutError("gateway serve never became ready")

    def metric(self, name: str, transport: str) -> float:
        for line in httpx.get(f"{self.url}/metrics", timeout=2).text.splitlines():
            if line.startswith(f'{name}{{transport="{transport}"}}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout_s: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)
