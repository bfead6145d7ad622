"""The ingest role as one running process: store, registry, pipeline, MQTT and HTTP together.

Start-up order matters for "ack after commit": the pipeline runs before any transport accepts a
message; shutdown stops the transports' intake, lets the pipeline commit and ack what it holds,
and only then disconnects from the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn

from gateway.delivery.arc import ArcForwarder
from gateway.delivery.dispatcher import Dispatcher
from gateway.delivery.scaip_client import ScaipClient
from gateway.delivery.sink_config import arc_password, build_sinks, read_arcs
from gateway.ingest.pipeline import Pipeline
from gateway.ingest.sealing import build_sealing
from gateway.ingest.supervision import Supervisor
from gateway.observability import metrics
from gateway.observability.logs import get as get_logger
from gateway.observability.tasks import keep_running
from gateway.ownership import erasure
from gateway.ownership.keyring import relay_opener
from gateway.ownership.registry import Registry
from gateway.settings import Settings
from gateway.store.connector import Store
from gateway.transports.http.app import create_app
from gateway.transports.http.guard import guarded
from gateway.transports.mqtt_ingest import MqttIngest, check_settings
from gateway.transports.sip_listener import SipListener

log = get_logger("runtime")

MAINTENANCE_INTERVAL_S = 3600
# After SHUTDOWN_TIMEOUT_S, at most this long for tidying up (history, sinks, connections).
TIDY_UP_S = 8.0
# Commits failing this long make the instance not ready (shorter blips do not flap it).
STALL_LIMIT_S = 2.0
LISTENED = ("registry_changed", "keys_erased")


class PipelineFailed(RuntimeError):
    """The commit loop itself ended: the process stops (exit 1) so that its service manager
    starts it again; the broker and the devices resend what was not acknowledged."""


class StopIncomplete(PipelineFailed):
    """A stop could not commit everything within SHUTDOWN_TIMEOUT_S (the database away): what
    was left is unacknowledged, never half committed, and is sent again."""


@dataclass
class Runtime:
    settings: Settings
    store: Store
    registry: Registry = field(default_factory=Registry)
    pipeline: Pipeline | None = None
    mqtt: MqttIngest | None = None
    mqtt_alarm: MqttIngest | None = None
    sip: SipListener | None = None
    dispatcher: Dispatcher | None = None
    supervisor: Supervisor | None = None
    arc: ArcForwarder | None = None
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    # Set while the LISTEN of each channel is established (a revoked credential and an erased
    # key take effect through them).
    listening: dict[str, asyncio.Event] = field(
        default_factory=lambda: {channel: asyncio.Event() for channel in LISTENED})
    pipeline_task: asyncio.Task[None] | None = None

    async def ready(self) -> dict[str, bool]:
        checks = {
            "database": await self.store.ping(),
            "registry": self.registry.version > 0,
            "commits": self.pipeline is not None and self.pipeline_task is not None
            and not self.pipeline_task.done() and (
                self.pipeline.stalled_since is None
                or time.monotonic() - self.pipeline.stalled_since < STALL_LIMIT_S),
            "listening": all(flag.is_set() for flag in self.listening.values()),
        }
        if self.mqtt is not None:
            checks["mqtt"] = self.mqtt.connected.is_set()
        if self.mqtt_alarm is not None:
            checks["mqtt_alarm"] = self.mqtt_alarm.connected.is_set()
        return checks


async def serve(settings: Settings, *, install_signals: bool = True,
                started: asyncio.Future[Runtime] | None = None,
                stop_event: asyncio.Event | None = None) -> None:
    """Run ingest until SIGINT/SIGTERM or until `stop_event` is set."""
    assert settings.database_url is not None
    check_settings(settings)  # before anything connects: a mistake refuses start-up at once
    sys.setswitchinterval(settings.gil_switch_interval_s)
    store = await Store.connect(settings.database_url, max_size=6,
                                application_name="gateway-ingest")
    rt = Runtime(settings, store, stop_event=stop_event or asyncio.Event())
    delivery_store: Store | None = None
    arc_store: Store | None = None
    loop = asyncio.get_running_loop()
    if install_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, rt.stop_event.set)
    try:
        too_powerful = (await store.privileges.standing()).too_powerful()
        if too_powerful:  # it works, but a compromise of this process would reach further
            log.warning("database_role_too_powerful", reason=too_powerful,
                        see="docs/operations.md, Database roles")
        await store.events.ensure_partitions()
        await rt.registry.reload(store)
        arcs = read_arcs(settings.sinks_file) if settings.delivery_enabled else {}
        if arcs:  # docs/delivery.md, "Alarm centres"
            arc_store = await Store.connect(settings.database_url, max_size=2,
                                            application_name="gateway-arc")
            rt.arc = ArcForwarder(
                arc_store, arcs, opener=relay_opener(settings),
                client=ScaipClient(settings.arc_sip_host, settings.arc_sip_port),
                lease_s=settings.arc_lease_s,
                passwords={receiver: password for receiver, spec in arcs.items()
                           if (password := arc_password(settings.sinks_file, receiver, spec))})
        sealing = build_sealing(settings, rt.registry,
                                arc_receivers=frozenset(arcs) if rt.arc else frozenset(),
                                arc_lease_s=settings.arc_lease_s if rt.arc else 0.0)

        async def registry_changed() -> None:
            await rt.registry.reload(store)
            sealing.replace_public_keys(rt.registry.snapshot.public_keys)

        if settings.delivery_enabled:  # its own connections: never queued behind ingest's
            sinks = build_sinks(settings.sinks_file)
            delivery_store = await Store.connect(settings.database_url, max_size=4,
                                                 application_name="gateway-delivery")
            rt.dispatcher = Dispatcher(
                delivery_store, sinks, max_attempts=settings.delivery_max_attempts,
                backoff_base_s=settings.delivery_backoff_base_s,
                breaker_open_s=settings.delivery_breaker_open_s)
        rt.pipeline = Pipeline(store, sealing, max_events=settings.batch_max_events,
                               max_wait_s=settings.batch_max_wait_s)
        if settings.supervision_enabled:  # docs/supervision.md; its alarms go to the pipeline
            rt.supervisor = Supervisor(store, rt.registry, settings, sink=rt.pipeline)
            await rt.supervisor.load()
        if rt.arc is not None:  # alarms leave for their centres while they are committed
            rt.pipeline.before_commit(rt.arc)
        for hears_commits in (rt.arc, rt.dispatcher, rt.supervisor):
            if hears_commits is not None:  # each in its stage's turn (ingest.pipeline.Stage)
                rt.pipeline.listen(hears_commits)
        pipeline_task = rt.pipeline_task = asyncio.create_task(rt.pipeline.run(),
                                                               name="pipeline")

        def pipeline_ended(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                log.critical("pipeline_failed", error=type(task.exception()).__name__)
                metrics.TASK_FAILURES.labels("pipeline").inc()
                rt.stop_event.set()

        pipeline_task.add_done_callback(pipeline_ended)
        if rt.dispatcher is not None:
            rt.dispatcher.start()
        if rt.arc is not None:
            await rt.arc.start()
        listen_stop = asyncio.Event()
        listener = keep_running("registry-listener", lambda: store.listen(
            "registry_changed", registry_changed, listen_stop,
            listening=rt.listening["registry_changed"]))

        async def keys_erased() -> None:
            sealing.forget_cached_keys()

        erasure_listener = keep_running("erasure-listener", lambda: store.listen(
            "keys_erased", keys_erased, listen_stop, safety_interval=None,
            listening=rt.listening["keys_erased"]))
        maintenance = keep_running("maintenance", lambda: _maintain(store))
        supervisor = rt.supervisor
        supervision = keep_running("supervision", supervisor.run) \
            if supervisor is not None else None
        if settings.mqtt_url:
            if "alarm" in settings.mqtt_channels:  # first: alarms never wait for bulk's session
                rt.mqtt_alarm = MqttIngest(settings, rt.registry, rt.pipeline, loop, "alarm")
                rt.mqtt_alarm.start()
            if "up" in settings.mqtt_channels:
                rt.mqtt = MqttIngest(settings, rt.registry, rt.pipeline, loop)
                rt.mqtt.start()
        if settings.sip_port:
            rt.sip = SipListener(settings, rt.registry, rt.pipeline)
            if rt.supervisor is not None:
                rt.sip.on_hbi_granted = rt.supervisor.heartbeat_granted
            await rt.sip.start()
        app = create_app(settings, rt.registry, rt.pipeline, rt)
        server = _Server(uvicorn.Config(
            app, host=settings.http_host, port=settings.http_port, log_level="warning",
            access_log=False, lifespan="off", http=guarded(
                settings.http_request_timeout_s, settings.http_max_connections, "http")))
        http_task = asyncio.create_task(server.serve(), name="http")
        log.info("ingest_started", http=f"http://{settings.http_host}:{settings.http_port}",
                 mqtt=bool(settings.mqtt_url))
        if started is not None:
            started.set_result(rt)
        await rt.stop_event.wait()

        log.info("ingest_stopping", pending_events=rt.pipeline.pending)
        stop_by = loop.time() + settings.shutdown_timeout_s
        server.should_exit = True
        # Requests and SIP transactions waiting for their commit get the time that is left;
        # past it they are cut (unanswered: the device sends again).
        await _within(http_task, stop_by, "http")
        if rt.sip is not None:  # answers what it received: the pipeline still commits
            await _within(asyncio.ensure_future(rt.sip.stop()), stop_by, "sip")
        if supervision is not None:  # before the pipeline stops: its alarms are committed
            supervision.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervision
        rt.pipeline.stop()
        cut_short = 0
        with contextlib.suppress(Exception):  # a failed pipeline is raised below, once stopped
            # Everything received is committed and acknowledged, unless that takes too long:
            # then the commit in flight is abandoned whole (its transaction rolls back, or it
            # committed and the resend is absorbed) and nothing more is acknowledged.
            done, _ = await asyncio.wait({pipeline_task},
                                         timeout=max(0.0, stop_by - loop.time()))
            if not done:
                cut_short = rt.pipeline.pending
                log.warning("stop_deadline_passed", timeout_s=settings.shutdown_timeout_s,
                            unacknowledged_events=cut_short)
                pipeline_task.cancel()
                await asyncio.gather(pipeline_task, return_exceptions=True)
        try:  # the rest is tidying up: bounded, whatever the database does meanwhile
            async with asyncio.timeout_at(max(stop_by, loop.time()) + TIDY_UP_S):
                if rt.supervisor is not None:
                    with contextlib.suppress(Exception):  # logged; next start re-learns it
                        await rt.supervisor.flush()
                for client in (rt.mqtt, rt.mqtt_alarm):
                    if client is not None:
                        await asyncio.to_thread(client.stop)
                if rt.dispatcher is not None:
                    await rt.dispatcher.stop()
                if rt.arc is not None:
                    await rt.arc.stop()
        except TimeoutError:
            log.warning("stop_tidy_up_cut", timeout_s=TIDY_UP_S)
        listen_stop.set()
        maintenance.cancel()
        await asyncio.gather(listener, erasure_listener, return_exceptions=True)
        with contextlib.suppress(asyncio.CancelledError):
            await maintenance
        log.info("ingest_stopped")
        if pipeline_task.cancelled():
            raise StopIncomplete(f"stopped after {settings.shutdown_timeout_s:g} s with "
                                 f"{cut_short} events unacknowledged, to be sent again")
        if pipeline_task.exception() is not None:
            raise PipelineFailed("the commit loop failed; see pipeline_failed in the log")
    finally:
        if delivery_store is not None:
            await delivery_store.close(timeout_s=2.0)
        if arc_store is not None:
            await arc_store.close(timeout_s=2.0)
        await store.close(timeout_s=2.0)


async def _within(task: asyncio.Future[Any], deadline: float, what: str) -> None:
    """Wait for `task` until `deadline` (loop time), then cancel it."""
    done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - asyncio.get_running_loop()
                                                     .time()))
    if not done:
        log.warning("stop_deadline_passed", waiting_for=what)
        task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception:  # the stop goes on: what was received is still committed
        log.exception("stop_step_failed", step=what)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: shutdown order is the runtime's to decide."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _maintain(store: Store) -> None:
    """Hourly: next months' partitions, and quarantined copies whose time is over."""
    while True:
        await asyncio.sleep(MAINTENANCE_INTERVAL_S)
        try:
            created = await store.events.ensure_partitions()
            if created:
                log.info("partitions_created", partitions=created)
            purged = await erasure.purge_quarantine(store, datetime.now(UTC), dry_run=False)
            if purged:
                log.info("quarantine_purged", copies=purged)
        except Exception:
            log.exception("maintenance_failed")
