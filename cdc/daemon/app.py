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
import gc
import logging
from collections.abc import Callable

from cdc.delivery.auth import Authenticator
from cdc.delivery.bus import EventBus
from cdc.model.config import Config
from cdc.errors import ConfigError, StoreError
from cdc.delivery.health import Health
from cdc.delivery.hub import Hub
from cdc.journal.lmdb_journal import Journal
from cdc.delivery.metrics import Metrics
from cdc.daemon.preflight import require_auth_source
from cdc.daemon.sdnotify import Notifier
from cdc.daemon.wiring import NodeContext, close_server, exit_code_of, open_journal, run_guarded, run_until_signal, start_server
from cdc.capture import WalCapture
from cdc.delivery.natsbus import NatsPublisher, require_nats
from cdc.model.context import Component
from cdc.ops.watchers import COMPONENTS as OPS_COMPONENTS
from cdc.ops.watchers import InfoLogWatcher
from cdc.sources.manifest import ManifestFollower
from cdc.server import Server
from cdc.sources.store import StoreInfo, detect_store

__all__ = ["AppContext", "run_app", "serve", "App"]

log = logging.getLogger("cdc.app")

GC_THRESHOLD0 = 20_000
"""Young-generation GC threshold while the daemon runs (CPython default: 700)."""


class AppContext(NodeContext):
    """What components get (docs/design.md, "The daemon's internal API"): satisfies
    ``cdc.model.context.Context`` (components), ``StatsSources`` (stats frames) and
    ``cdc.delivery.context.ServerContext`` / ``PublisherContext``."""

    def __init__(
        self,
        config: Config,
        store: StoreInfo | None,
        bus: EventBus,
        journal: Journal,
        health: Health,
        metrics: Metrics,
        stop: asyncio.Event,
        hub: Hub,
        auth: Authenticator,
    ) -> None:
        super().__init__(config, journal, health, metrics, stop, hub, auth)
        self.store = store
        self.bus = bus
        self.components: list[Component] = []  # the running components
        self.capture: WalCapture | None = None  # stats frames read its counters
        self.infolog: InfoLogWatcher | None = None  # ... and its SST sizes

    def set_components(self, comps: list[Component]) -> None:
        self.components = comps
        self.capture = next((c for c in comps if isinstance(c, WalCapture)), None)
        self.infolog = next((c for c in comps if isinstance(c, InfoLogWatcher)), None)


def _components(config: Config) -> list[Component]:
    manifest = ManifestFollower(config.db)  # one MANIFEST reader for capture and the compaction fallback
    comps: list[Component] = [WalCapture(manifest=manifest)]
    comps.extend(cls(config, manifest=manifest) if cls is InfoLogWatcher else cls(config) for cls in OPS_COMPONENTS)
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

    def __init__(self, config: Config, *, components: list[Component] | None = None, journal_sync: bool | None = None) -> None:
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
        self._notifier: Notifier | None = None

    async def run(self, started: asyncio.Event | None = None) -> None:
        """Run until ``self.stop`` is set; ordered shutdown; raises CdcError on start-up failures."""
        cfg = self.config
        require_auth_source(cfg)
        auth = Authenticator(cfg.tokens_file, cfg.jwt_secret_file, insecure_no_auth=cfg.insecure_no_auth)
        if cfg.insecure_no_auth:
            log.warning("AUTHENTICATION IS DISABLED (--insecure-no-auth): anyone who can reach %s:%s can read every event and publish", cfg.host, cfg.port)
        store = _detect_store(cfg)
        journal = open_journal(cfg, "journal", sync=self.journal_sync)
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
            ctx.set_components(comps)
            health.set("startup", "server", False, "not listening yet")
            if ctx.capture is not None:
                health.set("startup", "capture", False, "initial WAL catch-up not done")
            health.emit = bus.emit_nowait  # from here on, transitions are events
            server = Server(ctx, hub, auth)
            ctx.server = server
            await start_server(server, cfg)
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
                comp_tasks = [tg.create_task(run_guarded(type(c).__name__, c.run(ctx), health), name=f"cdc-{type(c).__name__}") for c in comps]
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
            await close_server(server)
            journal.close()
            log.info("stopped")

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
        lag = ctx.metrics.capture_lag()
        ready, reason = ctx.health.status("readiness")
        return (
            f"{ctx.hub.count} subscribers, latest id {ctx.journal.latest_id}, capture lag {int(lag)} bytes"
            + ("" if ready else f", NOT READY: {reason}")
        )


async def run_app(config: Config, *, started: asyncio.Event | None = None, app: App | None = None) -> None:
    """Run the daemon until SIGTERM/SIGINT (or ``app.stop``); see the module docstring."""
    await run_until_signal(app or App(config), started)


def serve(config: Config) -> int:
    """``cdc serve``: run the daemon; returns the process exit code (0 clean stop, 1 cancelled by a
    second signal). Start-up failures raise their :class:`CdcError` (each carries its exit code;
    the CLI prints the one line)."""
    return exit_code_of(lambda: run_app(config))
