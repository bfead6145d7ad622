"""Running a node: its configuration from files, migrations at start, the app under uvicorn.

`gateway node` (gateway/cli/node.py) calls `serve_node`; tests call `start_node` and stop the
`RunningNode` it returns, in their own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from gateway.crypto import HuvudmanPrivateKey, KeyFormatError, load_private_key
from gateway.node.app import Receiver, create_app
from gateway.node.fhir_forward import FhirConfig, FhirForwarder
from gateway.node.opening import ItemOpener
from gateway.observability import logs
from gateway.store.node import NodeStore, migrate_node
from gateway.transports.http.guard import guarded

log = logs.get("gateway.node")
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024  # a 500-item batch is well under 2 MiB


class NodeConfigError(Exception):
    """A refusal naming the file or option at fault (never key material)."""


@dataclass(frozen=True)
class NodeConfig:
    huvudman: str
    private_keys: tuple[HuvudmanPrivateKey, ...]
    secret: bytes
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8090
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    fhir: FhirConfig | None = None  # forward readings to the huvudman's FHIR server

    def __repr__(self) -> str:  # never the secret or the keys
        return (f"NodeConfig(huvudman={self.huvudman!r}, keys={len(self.private_keys)}, "
                f"listen={self.host}:{self.port}, fhir={self.fhir!r})")


def load_config(*, huvudman: str, private_keys: Sequence[Path], secret_file: Path,
                database_url: str, listen: str,
                max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                fhir: FhirConfig | None = None) -> NodeConfig:
    if not private_keys:
        raise NodeConfigError("give at least one --private-key")
    keys = []
    for path in private_keys:
        try:
            key = load_private_key(path.read_bytes())
        except OSError as err:
            raise NodeConfigError(f"{path}: cannot read: {err.strerror}") from None
        except (KeyFormatError, ValueError):
            raise NodeConfigError(f"{path}: not a huvudman private key") from None
        if key.huvudman != huvudman:
            raise NodeConfigError(f"{path}: key {key.key_id.hex()} belongs to huvudman "
                                  f"{key.huvudman}, not {huvudman}")
        keys.append(key)
    try:
        secret = secret_file.read_text("utf-8").strip()
    except OSError as err:
        raise NodeConfigError(f"{secret_file}: cannot read: {err.strerror}") from None
    if not secret:
        raise NodeConfigError(f"{secret_file}: is empty")
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise NodeConfigError(f"--listen {listen!r}: give host:port, e.g. 127.0.0.1:8090")
    if not database_url:
        raise NodeConfigError("NODE_DATABASE_URL is not set")
    return NodeConfig(huvudman, tuple(keys), secret.encode(), database_url, host, int(port),
                      max_body_bytes, fhir)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers (for a node inside another process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningNode:
    config: NodeConfig
    store: NodeStore
    server: uvicorn.Server
    task: asyncio.Task[None]
    forwarder: FhirForwarder | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        try:
            await self.task
        finally:
            if self.forwarder is not None:
                await self.forwarder.stop()
            await self.store.close()
        log.info("node_stopped", huvudman=self.config.huvudman)


async def start_node(config: NodeConfig, *, install_signals: bool = False) -> RunningNode:
    """Migrate the node's schema, connect, and serve until `stop()` (or a signal, when
    `install_signals`)."""
    applied = await migrate_node(config.database_url)
    store = await NodeStore.connect(config.database_url, config.huvudman)
    try:
        receiver = Receiver(store, ItemOpener(config.huvudman, config.private_keys),
                            config.secret)
        app = create_app(receiver, max_body_bytes=config.max_body_bytes)
        server_cls = uvicorn.Server if install_signals else _Server
        # Its only client is the gateway, but its port is reachable: slow or idle connections
        # are closed. A batch is up to 16 MiB over a WAN, so a minute for one request.
        server = server_cls(uvicorn.Config(app, host=config.host, port=config.port,
                                           log_level="warning", access_log=False,
                                           lifespan="off", http=guarded(60.0, 200, "node")))
        task = asyncio.create_task(server.serve(), name=f"node-{config.huvudman}")
        while not server.started:
            if task.done():
                task.result()  # raises why it could not start
                raise RuntimeError("the node's HTTP server stopped before it started")
            await asyncio.sleep(0.01)
    except BaseException:
        await store.close()
        raise
    forwarder = None
    if config.fhir is not None:  # after the server started: nothing to stop if it did not
        forwarder = FhirForwarder(store.queries, config.fhir)
        receiver.on_stored = forwarder.wake
        forwarder.start()
    log.info("node_started", huvudman=config.huvudman, keys=len(config.private_keys),
             migrations=applied, http=f"http://{config.host}:{config.port}",
             fhir=forwarder is not None)
    return RunningNode(config, store, server, task, forwarder)


async def serve_node(config: NodeConfig) -> None:
    """Run until SIGINT or SIGTERM (uvicorn's own handlers), then close the pool."""
    node = await start_node(config, install_signals=True)
    try:
        await node.task
    finally:
        if node.forwarder is not None:
            await node.forwarder.stop()
        await node.store.close()
