"""The daemon: wiring, components in a TaskGroup, signals, ordered graceful shutdown.

Start-up: check the auth source (refuse to start without one unless ``insecure_no_auth``),
detect the store, open the journal, build the :class:`AppContext`, bind the server, then run
the bus writer, the health watchdog, the heartbeats, the sd_notify loop and every component
(``cdc.capture.WalCapture`` and ``cdc.ops.COMPONENTS`` when those modules exist).

Shutdown (SIGTERM/SIGINT only *set* ``ctx.stop``; a second signal cancels): inside
``shutdown_timeout_s``: stop accepting connections -> components finish and persist their
positions (they watch ``ctx.stop``) -> the bus commits everything queued -> subscribers are
closed with 1001 -> the LMDB environment is closed. Safe after a partial start-up.

Exit codes of :func:`serve`: 0 clean stop, 1 cancelled; errors raise (their ``exit_code``: 2 configuration, 3 start-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from cdc.delivery.auth import Authenticator
from cdc.delivery.bus import EventBus
from cdc.model.config import Config
from cdc.errors import ConfigError, StoreError
from cdc.delivery.health import Health
from cdc.delivery.hub import Hub
from cdc.journal.lmdb_journal import Journal
from cdc.delivery.metrics import Metrics
from cdc.errors import StartupError
from cdc.daemon.preflight import require_auth_source
from cdc.daemon.sdnotify import Notifier
from cdc.capture.wal_capture import WalCapture
from cdc.delivery.natsbus import NatsPublisher, require_nats
from cdc.ops.watchers import COMPONENTS as OPS_COMPONENTS
from cdc.server import Server
from cdc.sources.store import StoreInfo, detect_store

__all__ = ["AppContext", "run_app", "serve", "App"]

log = logging.getLogger("cdc.app")

GC_THRESHOLD0 = 20_000
"""Young-generation GC threshold while the daemon runs (CPython default: 700)."""


class AppContext:
    """What components get (docs/design.md, "The daemon's internal API")."""

    def __init__(
        self,
        config: Config,
        store: Any,
        bus: EventBus,
        journal: Journal,
        health: Health,
        metrics: Metrics,
        stop: asyncio.Event,
        hub: Hub,
        auth: Authenticator,
    ) -> None:
        self.config = config
        self.store = store
        self.bus = bus
        self.journal = journal
        self.health = health
        self.metrics = metrics
        self.stop = stop
        self.hub = hub
        self.auth = auth
        self.server: Any = None
        self.port = 0
        self.components: list[Any] = []  # the running components (stats read their counters)


def _components(config: Config) -> list[Any]:
    comps: list[Any] = [WalCapture()]
    comps.extend(cls(config) for cls in OPS_COMPONENTS)
    if config.nats_url:  # scale-out: publish the journal to JetStream
        require_nats()
        comps.append(NatsPublisher(config))
    return comps


def _detect_store(config: Config) -> StoreInfo:
    try:
        return detect_store(config.db, config.wal_dir)
    except StoreError as exc:
        raise ConfigError(str(exc)) from None


def _journal_commit_alarm(health: Health, hold_s: float) -> Callable[[str], None]:
    """Readiness condition ``journal_commit``: a journal commit failed for a reason other than a
    full map (events may have been dropped: see ``cdc_events_dropped_total``). It clears by
    itself ``hold_s`` seconds after the last failure, like a capture gap."""
    timer: list[asyncio.TimerHandle] = []

    def clear() -> None:
        timer.clear()
        health.set("readiness", "journal_commit", True, "")

    def alarm(reason: str) -> None:
        health.set("readiness", "journal_commit", False, f"{reason}; events may have been dropped")
        if timer:
            timer.pop().cancel()
        timer.append(asyncio.get_running_loop().call_later(hold_s, clear))

    return alarm


class App:
    """The running daemon (``async with App(config) as app`` in tests, or :func:`run_app`)."""

    def __init__(self, config: Config, *, components: list[Any] | None = None, journal_sync: bool | None = None) -> None:
        self.config = config
        self._components = components
        # fsync per journal commit (durable across power loss). Without it a commit is still
        # kill -9 safe (the OS has the pages) and p99 latency drops; see BENCHMARKS.md.
        if journal_sync is None:
            mode = config.journal_fsync
            journal_sync = mode not in ("off", False)
        self.journal_sync = bool(journal_sync)
        self.ctx: AppContext | None = None
        self.stop = asyncio.Event()
        self._notifier: Any = None

    async def run(self, started: asyncio.Event | None = None) -> None:
        """Run until ``self.stop`` is set; ordered shutdown; raises CdcError on start-up failures."""
        cfg = self.config
        require_auth_source(cfg)
        auth = Authenticator(cfg.tokens_file, cfg.jwt_secret_file, insecure_no_auth=cfg.insecure_no_auth)
        if cfg.insecure_no_auth:
            log.warning("AUTHENTICATION IS DISABLED (--insecure-no-auth): anyone who can reach %s:%s can read every event and publish", cfg.host, cfg.port)
        store = _detect_store(cfg)
        journal = Journal(
            os.path.join(cfg.state_dir, "journal"),
            map_size=cfg.journal_map_size,
            retention_count=cfg.retention_count,
            retention_bytes=cfg.retention_bytes,
            retention_age_s=cfg.retention_age_s,
            sync=self.journal_sync,
        )
        server = None
        try:
            metrics = Metrics()
            hub = Hub(journal, queue_limit=cfg.subscriber_queue)
            health_ref: list[Health] = []

            def journal_state(ok: bool, reason: str) -> None:
                health_ref[0].set("readiness", "journal", ok, reason)

            bus = EventBus(journal, on_commit=hub.publish, on_journal_state=journal_state, max_pending_bytes=cfg.max_pending_bytes)
            health = Health(None, beat_timeout_s=max(30.0, 10 * cfg.rescan_interval_s))
            health_ref.append(health)
            bus.on_error = _journal_commit_alarm(health, hold_s=300.0)
            metrics.bind(hub=hub, bus=bus, journal=journal, health=health)
            ctx = AppContext(cfg, store, bus, journal, health, metrics, self.stop, hub, auth)
            self.ctx = ctx
            comps = self._components if self._components is not None else _components(cfg)
            ctx.components = comps
            health.set("startup", "server", False, "not listening yet")
            if any(isinstance(c, WalCapture) for c in comps):
                health.set("startup", "capture", False, "initial WAL catch-up not done")
            health.emit = bus.emit_nowait  # from here on, transitions are events
            server = Server(ctx, hub, auth)
            ctx.server = server
            try:
                await server.start()
            except OSError as exc:
                # the environment (port in use, address not available), not the configuration: exit 3
                raise StartupError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}") from None
            ctx.port = server.port
            health.set("startup", "server", True)
            log.info("listening on http://%s:%d (journal %s, latest id %d)", server.host, server.port, journal.path, journal.latest_id)
            self._notifier = Notifier()
            async with asyncio.TaskGroup() as tg:
                bus_task = tg.create_task(bus.run(), name="cdc-bus")
                aux_stop = asyncio.Event()
                tg.create_task(health.watchdog(aux_stop), name="cdc-watchdog")
                tg.create_task(server.heartbeats(aux_stop), name="cdc-heartbeats")
                tg.create_task(self._notify_loop(aux_stop), name="cdc-notify")
                comp_tasks = [tg.create_task(self._run_component(c, ctx), name=f"cdc-{type(c).__name__}") for c in comps]
                # Start-up objects live as long as the daemon: keep them out of GC scans, and
                # collect the young generation less often (the pipeline allocates per event).
                gc.freeze()
                if gc.get_threshold()[0] < GC_THRESHOLD0:
                    gc.set_threshold(GC_THRESHOLD0, 20, 50)
                if started is not None:
                    started.set()
                await self.stop.wait()
                log.info("shutting down")
                if self._notifier is not None:
                    self._notifier.stopping()
                try:
                    async with asyncio.timeout(cfg.shutdown_timeout_s):
                        server.stop_accepting()
                        if comp_tasks:
                            await asyncio.wait(comp_tasks)
                        await bus.close()
                        await asyncio.shield(bus_task)
                        await server.close()
                except TimeoutError:
                    log.error("shutdown took longer than %.1f s; %d events not committed", cfg.shutdown_timeout_s, bus.pending)
                aux_stop.set()
                for t in comp_tasks:
                    t.cancel()
                bus_task.cancel()
                if server.ws is not None:
                    server.ws.close(close_connections=True)
        finally:
            if server is not None and server.ws is not None:
                server.ws.close(close_connections=True)
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2.0):
                        await server.ws.wait_closed()
            journal.close()
            log.info("stopped")

    async def _run_component(self, comp: Any, ctx: AppContext) -> None:
        name = type(comp).__name__
        try:
            await comp.run(ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a component bug must not take the daemon down
            log.exception("component %s failed", name)
            ctx.health.set("readiness", f"component:{name}", False, f"{name} stopped: {type(exc).__name__}")

    async def _notify_loop(self, stop: asyncio.Event) -> None:
        """READY=1 once startup is healthy; STATUS= every few s; WATCHDOG=1 while live."""
        n = self._notifier
        ctx = self.ctx
        if n is None or ctx is None or not n.enabled:
            return
        ready = False
        wd = n.watchdog_interval_s
        interval = min(2.0, wd) if wd else 2.0
        while not stop.is_set():
            health = ctx.health
            if not ready and health.healthy("startup"):
                ready = True
                n.ready(self._status_line())
            elif ready:
                n.status(self._status_line())
            if health.healthy("liveness"):
                n.watchdog()
            try:
                async with asyncio.timeout(interval if ready else 0.05):
                    await stop.wait()
            except TimeoutError:
                pass

    def _status_line(self) -> str:
        ctx = self.ctx
        assert ctx is not None
        lag = 0.0
        g = getattr(ctx.metrics, "capture_lag_bytes", None)
        if g is not None:
            with contextlib.suppress(Exception):
                lag = g._value.get()  # noqa: SLF001 - read our own gauge
        ready, reason = ctx.health.status("readiness")
        return (
            f"{ctx.hub.count} subscribers, latest id {ctx.journal.latest_id}, capture lag {int(lag)} bytes"
            + ("" if ready else f", NOT READY: {reason}")
        )


async def run_app(config: Config, *, started: asyncio.Event | None = None, app: App | None = None) -> None:
    """Run the daemon until SIGTERM/SIGINT (or ``app.stop``); see the module docstring."""
    app = app or App(config)
    loop = asyncio.get_running_loop()
    signals_seen = 0
    main_task = asyncio.current_task()

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            app.stop.set()
        elif main_task is not None:
            main_task.cancel()

    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover - not main thread
            pass
    try:
        await app.run(started)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def serve(config: Config) -> int:
    """``cdc serve``: run the daemon; returns the process exit code (0 clean stop, 1 cancelled by a
    second signal). Start-up failures raise their :class:`CdcError` (each carries its exit code;
    the CLI prints the one line)."""
    try:
        asyncio.run(run_app(config))
    except KeyboardInterrupt:  # pragma: no cover
        return 0
    except asyncio.CancelledError:  # second signal
        return 1
    return 0
