"""Services for a machine that has none: embedded PostgreSQL (pgserver) and MQTT (amqtt), and a
Mosquitto started from the project's own configuration where the binary exists.

Used by `gateway demo`, the tests and the benchmark. Production points DATABASE_URL and MQTT_URL
at real servers instead.

amqtt is only good for a demo: version 0.12 does not redeliver unacknowledged QoS 1 messages to a
persistent session after the subscriber reconnects (checked here), so it cannot honour ack after
commit across a gateway crash. The tests that prove that invariant run against Mosquitto.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import shutil
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.observability.logs import get as get_logger

log = get_logger("embedded")

Stop = Callable[[], None]

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


@dataclass(frozen=True, slots=True)
class Service:
    url: str
    stop: Stop
    kind: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether both TCP and UDP `port` can be bound on `host` now."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


class MissingExtra(RuntimeError):
    """An embedded service's package is not installed (the `demo` extra)."""


def _extra(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(
            f"{module.split('.')[0]} is not installed: it comes with the demo extra "
            "(`pip install -e '.[demo]'`, which `make demo` and `make test` do), or set "
            "DATABASE_URL and MQTT_URL to use your own PostgreSQL and broker") from None


def start_postgres(data_dir: Path) -> Service:
    # pgserver asks platformdirs for a runtime dir it does not use; the warning is noise.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    pgserver = _extra("pgserver")  # imported here: it is heavy, and only the demo needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(data_dir), cleanup_mode="stop")
    return Service(server.get_uri(), server.cleanup, "pgserver")


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
        None)


def start_mosquitto(data_dir: Path, port: int | None = None) -> Service:
    """Mosquitto with the shipped durability settings, on loopback, anonymous, in `data_dir`."""
    binary = mosquitto_binary()
    if binary is None:
        raise FileNotFoundError("mosquitto is not installed")
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    durability = (CONFIG_DIR / "mosquitto" / "include" / "durability.conf").read_text()
    conf = data_dir / "mosquitto.conf"
    # Started as root, Mosquitto drops to its own user, which cannot write to a private
    # temporary folder: persistence would then fail silently and a restart lose every session.
    # This broker is a test and benchmark fixture on loopback, so it stays the caller's user.
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"{durability}\n"
        f"listener {port} 127.0.0.1\nallow_anonymous true\n{user}"
        f"persistence_location {data_dir}/\n"
        f"log_dest file {data_dir}/mosquitto.log\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,  # noqa: S603
                            stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
    except TimeoutError:
        proc.kill()
        raise

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()

    return Service(f"mqtt://127.0.0.1:{port}", stop, "mosquitto")


def start_amqtt(port: int | None = None) -> Service:
    """amqtt in a background thread with its own event loop (demo use only, see module doc)."""
    broker_class = _extra("amqtt.broker").Broker

    port = port or free_port()
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "sys_interval": 0,
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                    {"allow_anonymous": True}},
    }
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop_requested: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop_requested
        stop_requested = asyncio.Event()
        broker = broker_class(config)
        await broker.start()
        ready.set()
        await stop_requested.wait()
        await broker.shutdown()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True,
                              name="amqtt")
    thread.start()
    if not ready.wait(15):
        raise TimeoutError("amqtt did not start")

    def stop() -> None:
        if stop_requested is not None:
            loop.call_soon_threadsafe(stop_requested.set)
        thread.join(5)

    return Service(f"mqtt://127.0.0.1:{port}", stop, "amqtt")
