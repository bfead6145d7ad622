"""The project's production Mosquitto configuration, run as shipped: config/mosquitto/
mosquitto.conf and its ACL and durability settings, with only the host's paths (certificates,
password file, store) and the port replaced. TLS-only, no anonymous clients, client ids tied to
users."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.demo import embedded
from tests.paths import ROOT
from tests.support import tls_files

SHIPPED = ROOT / "config" / "mosquitto"


@dataclass(frozen=True)
class ShippedBroker:
    port: int
    ca_file: Path

    def url(self, user: str, password: str) -> str:
        return f"mqtts://{user}:{password}@127.0.0.1:{self.port}"


def _render(folder: Path, port: int, cert: Path, key: Path, passwd: Path) -> str:
    text = (SHIPPED / "mosquitto.conf").read_text("utf-8")
    for line, replacement in (
            (r"include_dir \S+", f"include_dir {SHIPPED / 'include'}"),
            (r"listener 8883", f"listener {port} 127.0.0.1"),
            (r"certfile \S+", f"certfile {cert}"),
            (r"keyfile \S+", f"keyfile {key}"),
            (r"password_file \S+", f"password_file {passwd}"),
            (r"acl_file \S+", f"acl_file {SHIPPED / 'acl'}"),
            (r"persistence_location \S+", f"persistence_location {folder}/")):
        text, found = re.subn(rf"^{line}$", replacement, text, flags=re.M)
        assert found == 1, f"the shipped mosquitto.conf has no line `{line}` to place"
    # As root Mosquitto would drop to its own user, who cannot read a private temporary folder.
    user = "user root\n" if os.geteuid() == 0 else ""
    return f"{text}\n{user}log_dest file {folder}/mosquitto.log\n"


class ShippedBrokerProcess:
    """The shipped broker in `folder` on a free loopback port, knowing `users` (name:
    password); stopped and started again on the same port with the same persistent store."""

    def __init__(self, folder: Path, users: Mapping[str, str]) -> None:
        binary = embedded.mosquitto_binary()
        assert binary is not None
        self.binary = binary
        folder.mkdir(parents=True, exist_ok=True)
        ca, cert, key = tls_files(folder, "test broker CA")
        passwd = folder / "passwd"
        for n, (name, password) in enumerate(users.items()):
            subprocess.run(["mosquitto_passwd", *(["-c"] if n == 0 else []), "-b", str(passwd),
                            name, password], check=True, capture_output=True)
        self.broker = ShippedBroker(embedded.free_port(), ca)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(_render(folder, self.broker.port, cert, key, passwd))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ShippedBroker:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        embedded.wait_for_port(self.broker.port)
        return self.broker

    def stop(self) -> None:
        """A clean stop (SIGTERM): Mosquitto writes its persistent store first."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@contextmanager
def shipped_broker(folder: Path, users: Mapping[str, str]) -> Iterator[ShippedBroker]:
    """The shipped broker on a free loopback port, knowing `users` (name: password)."""
    process = ShippedBrokerProcess(folder, users)
    try:
        yield process.start()
    finally:
        process.stop()
