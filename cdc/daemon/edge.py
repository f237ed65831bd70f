"""``cdc edge``: a delivery-only node whose event source is the JetStream stream.

An edge is the daemon without a store: a JetStream consumer (:class:`EdgeSource`) writes the
stream's records, with the ids they carry, into a local LMDB journal mirror
(``<state-dir>/mirror``, :meth:`cdc.journal.Journal.append_raw`), and the usual hub and server
serve that mirror: same routes, auth, filters, frames and close codes as ``cdc serve``, and the
capture node's ids, so a client moves between edges (and the capture node) with ``since``.

Invariants:
- The mirror only grows by ``latest_id + 1``: a record whose id is at or below the mirror's
  latest is a duplicate (skipped); a jump means the stream no longer holds the ids in between,
  so the mirror drops everything older (``oldest_id`` moves) and a cursor before the jump gets
  ``reset`` — never a silent gap.
- The consumer is ephemeral, push, no acks, started at the stream sequence that follows the
  mirror's latest id (binary search on ``Cdc-Last-Id``); on a consumer-sequence gap, missing
  heartbeats or a reconnect it is recreated after the last stream sequence applied.
- A ``since`` ahead of this edge's mirror (the client comes from an edge that is a little
  further) waits up to ``CATCH_UP_S`` for the mirror instead of answering ``cursor_ahead``.
- ``POST /publish`` is checked here (same auth and validation) and forwarded to the capture
  node over NATS request/reply; the answer carries the journal's id.
- Readiness ``nats_lag``: not ready until the mirror first caught up with the stream, nor while
  NATS has been unreachable for ``nats_max_down_s`` or the mirror is ``nats_max_lag_events``
  behind. The edge's own health transitions are not events (its journal is a mirror).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections import deque
from typing import Any

import msgspec

from cdc.delivery.auth import Authenticator
from cdc.model.config import Config
from cdc.errors import ConfigError, JournalError
from cdc.delivery.health import Health
from cdc.delivery.hub import Hub
from cdc.journal.lmdb_journal import Journal
from cdc.server import Server
from cdc.delivery.metrics import Metrics
from cdc.delivery.natsbus import H_EPOCH, H_LAST, close_connection, connect, publish_subject, require_nats, retry_until_stopped, unpack_records
from cdc.daemon.preflight import require_auth_source
from cdc.daemon.wiring import NodeContext, close_server, exit_code_of, open_journal, run_guarded, run_until_signal, start_server

__all__ = ["EdgeApp", "EdgeHub", "EdgeSource", "ForwardingBus", "edge_serve"]

log = logging.getLogger("cdc.edge")

CATCH_UP_S = 5.0
"""Longest wait for the mirror to reach a client's ``since`` before answering ``cursor_ahead``."""
HEARTBEAT_S = 1.0
"""Idle heartbeat asked of the consumer; 3 missed -> the consumer is recreated."""


class EdgeHub(Hub):
    """The hub, plus: wait for the mirror when a cursor is ahead of it."""

    source: EdgeSource | None = None

    async def catch_up(self, since: int, timeout_s: float = CATCH_UP_S) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        src = self.source
        if src is not None:
            last = await src.stream_last_id_now()
            if last is not None and since > last:
                return  # the stream itself has nothing that far: cursor_ahead is the answer
        while self.latest_id < since:
            left = deadline - loop.time()
            if left <= 0:
                return
            await self.wait_published(min(left, 0.2))

    async def start(self, sub: Any, since: int | None, *, epoch: str | None = None) -> None:
        if since and since > self.latest_id:
            await self.catch_up(since)
        await super().start(sub, since, epoch=epoch)


class ForwardingBus:
    """What the server's ``POST /publish`` needs of a bus, answered by the capture node."""

    def __init__(self, source: EdgeSource) -> None:
        self.source = source

    @property
    def journal_ok(self) -> bool:
        nc = self.source.nc
        return nc is not None and nc.is_connected

    async def emit_and_wait(self, events: list[Any]) -> list[int]:
        ev = events[0]
        body = msgspec.to_builtins(ev) if not isinstance(ev, dict) else dict(ev)
        body.pop("id", None)
        nc = self.source.nc
        if nc is None:
            raise TimeoutError
        try:
            msg = await nc.request(publish_subject(self.source.stream), msgspec.json.encode(body), timeout=10.0)
        except Exception as exc:  # noqa: BLE001 - no responders, timeout, disconnected
            raise TimeoutError from exc
        ans = msgspec.json.decode(msg.data)
        if isinstance(ans, dict) and isinstance(ans.get("id"), int):
            return [ans["id"]]
        if isinstance(ans, dict) and ans.get("status") == 503:
            raise TimeoutError
        return []


class EdgeSource:
    """JetStream stream -> mirror journal -> hub (a component of :class:`EdgeApp`)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stream = config.nats_stream
        self.nc: Any = None
        self.connected = False
        self.caught_up = False  # mirror reached the stream's end at least once
        self.stream_last_id: int | None = None
        self.pending = 0  # messages the consumer still has to deliver (from the last message)
        self.last_sseq = 0  # stream sequence of the last message applied
        self.holes = 0
        self._down_since: float | None = time.monotonic()
        self._queue: deque[Any] = deque()
        self._arrived = asyncio.Event()
        self._last_seen = time.monotonic()
        self._epoch: str | None = None
        self._gen = 0

    async def stream_last_id_now(self) -> int | None:
        """The id of the stream's last record, asked now (None when NATS cannot say quickly)."""
        nc = self.nc
        if nc is None or not nc.is_connected:
            return None
        try:
            js = nc.jetstream(timeout=1.0)
            info = await js.stream_info(self.stream)
            if not info.state.messages:
                return 0
            msg = await js.get_msg(self.stream, seq=info.state.last_seq)
            raw = (msg.headers or {}).get(H_LAST)
            return int(raw) if raw is not None else None
        except Exception:  # noqa: BLE001 - NATS trouble: the caller just waits
            return None

    def _on_state(self, up: bool) -> None:
        self.connected = up
        if up:
            self._gen += 1  # a (re)connect: the ephemeral consumer may be gone
            self._down_since = None
        elif self._down_since is None:
            self._down_since = time.monotonic()
        self._arrived.set()

    def _report(self, ctx: _EdgeContext) -> None:
        m = ctx.metrics
        lag = self.pending
        if self.stream_last_id is not None:
            lag = max(lag, self.stream_last_id - ctx.journal.latest_id)
        m.set("edge_lag_messages", lag)
        m.set("nats_connected", 1 if self.connected else 0)
        reason = ""
        if self._down_since is not None and time.monotonic() - self._down_since > self.config.nats_max_down_s:
            reason = f"NATS unreachable for {time.monotonic() - self._down_since:.0f} s"
        elif not self.caught_up:
            reason = "mirror not caught up with the stream yet"
        elif lag > self.config.nats_max_lag_events:
            reason = f"mirror is {lag} behind the stream"
        ctx.health.set("readiness", "nats_lag", not reason, reason)

    async def run(self, ctx: _EdgeContext) -> None:
        require_nats()
        stop = ctx.stop
        reporter = asyncio.create_task(self._reporter(ctx))
        waker = asyncio.create_task(self._wake_on(stop))
        try:
            await retry_until_stopped(stop, lambda: self._attempt(ctx), self._interrupted)
        finally:
            reporter.cancel()
            waker.cancel()
            await self._close()

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._arrived.set()

    async def _reporter(self, ctx: _EdgeContext) -> None:
        while True:
            self._report(ctx)
            await asyncio.sleep(0.5)

    async def _attempt(self, ctx: _EdgeContext) -> None:
        if self.nc is None:
            self.nc = await connect(self.config, f"cdc-edge:{self.stream}", self._on_state)
        await self._consume(ctx)

    async def _interrupted(self, exc: Exception) -> None:  # keep serving the mirror
        log.warning("edge: stream consumer interrupted (%s: %s); retrying", type(exc).__name__, str(exc)[:200])
        if self.nc is not None and not self.nc.is_connected and not self.nc.is_reconnecting:
            await self._close()

    async def _close(self) -> None:
        nc, self.nc = self.nc, None
        await close_connection(nc)
        self._on_state(False)

    async def _start_seq(self, js: Any, latest: int) -> tuple[int, int]:
        """(stream sequence to start at for ids after ``latest``, the stream's last id)."""
        info = await js.stream_info(self.stream)
        st = info.state
        if not st.messages:
            return st.last_seq + 1, 0

        async def last_id_at(seq: int) -> int | None:
            try:
                msg = await js.get_msg(self.stream, seq=seq)
            except Exception:  # noqa: BLE001 - deleted / not found
                return None
            raw = (msg.headers or {}).get(H_LAST)
            return int(raw) if raw is not None else None

        stream_last = await last_id_at(st.last_seq)
        if stream_last is None:
            raise ValueError(f"stream {self.stream}: last message was not written by cdc")
        if latest == 0:
            return st.first_seq, stream_last
        lo, hi = st.first_seq, st.last_seq + 1  # first seq whose last id > latest, in [lo, hi]
        while lo < hi:
            mid = (lo + hi) // 2
            lid = await last_id_at(mid)
            if lid is None:
                return st.first_seq, stream_last  # a hole: start at the beginning, ids skip duplicates
            if lid > latest:
                hi = mid
            else:
                lo = mid + 1
        return lo, stream_last

    async def _consume(self, ctx: _EdgeContext) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        nc = self.nc
        js = nc.jetstream(timeout=5.0)
        journal: Journal = ctx.journal
        start, stream_last = await self._start_seq(js, journal.latest_id)
        if stream_last < journal.latest_id:
            log.warning(
                "edge: the stream's last id %d is below this mirror's %d (the stream was recreated?): discarding the mirror",
                stream_last, journal.latest_id,
            )
            ctx.reopen_mirror()
            journal = ctx.journal
            start, stream_last = await self._start_seq(js, 0)
        self.stream_last_id = stream_last
        if journal.latest_id >= stream_last:
            self.caught_up = True
        inbox = nc.new_inbox()
        self._queue.clear()
        self._last_seen = time.monotonic()

        async def on_msg(msg: Any) -> None:
            self._last_seen = time.monotonic()
            self._queue.append(msg)
            self._arrived.set()

        sub = await nc.subscribe(inbox, cb=on_msg, pending_msgs_limit=1_000_000, pending_bytes_limit=1 << 30)
        cfg = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(1, start),
            ack_policy=AckPolicy.NONE,
            deliver_subject=inbox,
            idle_heartbeat=HEARTBEAT_S,
            flow_control=True,
            mem_storage=True,
            inactive_threshold=30.0,
            num_replicas=1,
            filter_subject=None,
        )
        try:
            info = await js.add_consumer(self.stream, cfg)
        except Exception:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            raise
        consumer = info.name
        gen = self._gen
        log.info("edge: consuming stream %s from sequence %d (mirror latest id %d)", self.stream, start, journal.latest_id)
        cseq = 0  # last consumer sequence seen
        try:
            while not ctx.stop.is_set():
                if gen != self._gen:
                    raise ConnectionError("reconnected to NATS: recreating the consumer")
                if not self._queue:
                    self._arrived.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(HEARTBEAT_S):
                            await self._arrived.wait()
                    if ctx.stop.is_set():
                        return
                    if not self._queue:
                        if time.monotonic() - self._last_seen > 3 * HEARTBEAT_S + 1:
                            raise TimeoutError("no message or heartbeat from the consumer")
                        continue
                batch: list[tuple[int, bytes, bytes]] = []
                while self._queue:
                    msg = self._queue.popleft()
                    hdr = msg.headers or {}
                    status = hdr.get("Status")
                    if status is not None or not msg.reply and not msg.data:
                        if status == "100":
                            if msg.reply:  # flow control request
                                await nc.publish(msg.reply, b"")
                            stalled = hdr.get("Nats-Consumer-Stalled")
                            if stalled:
                                await nc.publish(stalled, b"")
                            last_c = hdr.get("Nats-Last-Consumer")
                            if last_c is not None and int(last_c) != cseq:
                                raise RuntimeError(f"consumer sequence gap (heartbeat says {last_c}, have {cseq})")
                            if not self._queue and not batch and journal.latest_id >= (self.stream_last_id or 0):
                                self.caught_up = True
                                self.pending = 0
                        continue
                    md = msg.metadata
                    if md.sequence.consumer != cseq + 1:
                        raise RuntimeError(f"consumer sequence gap ({md.sequence.consumer} after {cseq})")
                    cseq = md.sequence.consumer
                    self.last_sseq = md.sequence.stream
                    self.pending = md.num_pending
                    epoch = hdr.get(H_EPOCH)
                    if epoch and epoch != self._epoch:
                        self._epoch = epoch
                        journal.set_epoch(epoch)  # the stream's journal identity, in hello
                    try:
                        items = unpack_records(msg.data)
                    except ValueError as exc:
                        log.error("edge: skipped a malformed stream message (seq %d): %s", md.sequence.stream, exc)
                        ctx.metrics.inc("edge_bad_messages")
                        continue
                    for it in items:
                        if batch and it[0] != batch[-1][0] + 1:
                            self._apply(ctx, batch)
                            batch = []
                        batch.append(it)
                    if len(batch) >= 5000:
                        self._apply(ctx, batch)
                        batch = []
                if batch:
                    self._apply(ctx, batch)
                if self.pending == 0 and (self.stream_last_id is None or journal.latest_id >= self.stream_last_id):
                    self.caught_up = True
                self.stream_last_id = max(self.stream_last_id or 0, journal.latest_id)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            if nc.is_connected:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2.0):
                        await js.delete_consumer(self.stream, consumer)

    def _apply(self, ctx: _EdgeContext, items: list[tuple[int, bytes, bytes]]) -> None:
        journal: Journal = ctx.journal
        items = [it for it in items if it[0] > journal.latest_id]
        if not items:
            return
        try:
            records, hole = journal.append_raw(items)
        except JournalError:
            raise
        if hole:
            self.holes += hole
            ctx.metrics.inc("edge_missing_ids", hole)
            log.error(
                "edge: ids %d..%d are not in the stream any more (pruned before this edge read them): "
                "cursors before %d get reset", items[0][0] - hole, items[0][0] - 1, items[0][0],
            )
        ctx.hub.publish(records)


class _EdgeContext(NodeContext):
    """What the server and the source use (the AppContext of an edge): satisfies
    ``cdc.delivery.context.ServerContext``; no store and no local components."""

    hub: EdgeHub

    def __init__(self, config: Config, journal: Journal, health: Health, metrics: Metrics, stop: asyncio.Event, hub: EdgeHub, auth: Authenticator) -> None:
        super().__init__(config, journal, health, metrics, stop, hub, auth)
        self.store = None
        self.bus: ForwardingBus | None = None
        self.capture: None = None  # stats frames: no local capture ...
        self.infolog: None = None  # ... and no info LOG on an edge

    def reopen_mirror(self) -> None:
        """Discard the mirror (another stream history) and start an empty one."""
        path = self.journal.path
        self.journal.close()
        shutil.rmtree(path, ignore_errors=True)
        self.journal = _open_mirror(self.config)
        self.hub.journal = self.journal
        self.hub.latest_id = self.journal.latest_id
        self.metrics.bind(journal=self.journal)


def _open_mirror(cfg: Config) -> Journal:
    # sync off: the mirror is a cache of the stream (rebuilt from it after any loss)
    return open_journal(cfg, "mirror", sync=False)


class EdgeApp:
    """The running edge (``await EdgeApp(config).run(started)``; ``stop`` ends it)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stop = asyncio.Event()
        self.ctx: _EdgeContext | None = None

    async def run(self, started: asyncio.Event | None = None) -> None:
        cfg = self.config
        if not cfg.nats_url:
            raise ConfigError("cdc edge needs --nats-url (or CDC_NATS_URL, or nats-url in --config)")
        require_nats()
        require_auth_source(cfg)
        auth = Authenticator(cfg.tokens_file, cfg.jwt_secret_file, insecure_no_auth=cfg.insecure_no_auth)
        if cfg.insecure_no_auth:
            log.warning("AUTHENTICATION IS DISABLED (--insecure-no-auth): anyone who can reach %s:%s can read every event and publish", cfg.host, cfg.port)
        journal = _open_mirror(cfg)
        ctx: _EdgeContext | None = None
        server = None
        try:
            metrics = Metrics()
            hub = EdgeHub(journal, queue_limit=cfg.subscriber_queue)
            health = Health(None, beat_timeout_s=30.0)
            ctx = _EdgeContext(cfg, journal, health, metrics, self.stop, hub, auth)
            self.ctx = ctx
            source = EdgeSource(cfg)
            hub.source = source
            ctx.bus = ForwardingBus(source)
            metrics.bind(hub=hub, journal=journal, health=health)
            health.set("readiness", "nats_lag", False, "mirror not caught up with the stream yet")
            server = Server(ctx, hub, auth)
            ctx.server = server
            await start_server(server, cfg)
            ctx.port = server.port
            log.info("edge listening on http://%s:%d (stream %s, mirror latest id %d)", server.host, server.port, cfg.nats_stream, journal.latest_id)
            async with asyncio.TaskGroup() as tg:
                aux_stop = asyncio.Event()
                tg.create_task(health.watchdog(aux_stop), name="cdc-watchdog")
                tg.create_task(server.heartbeats(aux_stop), name="cdc-heartbeats")
                src_task = tg.create_task(run_guarded("EdgeSource", source.run(ctx), health), name="cdc-edge-source")
                tg.create_task(self._notify_loop(ctx, aux_stop), name="cdc-notify")
                if started is not None:
                    started.set()
                await self.stop.wait()
                log.info("shutting down")
                try:
                    async with asyncio.timeout(cfg.shutdown_timeout_s):
                        server.stop_accepting()
                        await asyncio.wait([src_task])
                        await server.close()
                except TimeoutError:
                    log.error("shutdown took longer than %.1f s", cfg.shutdown_timeout_s)
                aux_stop.set()
                src_task.cancel()
        finally:
            await close_server(server)
            (ctx.journal if ctx is not None else journal).close()
            log.info("stopped")

    async def _notify_loop(self, ctx: _EdgeContext, stop: asyncio.Event) -> None:
        """systemd: READY=1 once listening, STATUS= every 2 s, WATCHDOG=1 while live."""
        from cdc.daemon.sdnotify import Notifier

        n = Notifier()
        if not n.enabled:
            return
        n.ready(f"edge of stream {self.config.nats_stream}")
        wd = n.watchdog_interval_s
        interval = min(2.0, wd) if wd else 2.0
        while not stop.is_set():
            ready, reason = ctx.health.status("readiness")
            n.status(f"{ctx.hub.count} subscribers, mirror latest id {ctx.journal.latest_id}" + ("" if ready else f", NOT READY: {reason}"))
            if ctx.health.healthy("liveness"):
                n.watchdog()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stop.wait()
        n.stopping()


def check_edge_config(config: Config, *, bind: bool = True) -> None:
    """``cdc serve``'s start-up checks without the store (ConfigError / StartupError)."""
    from cdc.daemon import preflight as pf

    if not config.nats_url:
        raise ConfigError("cdc edge needs --nats-url (or CDC_NATS_URL, or nats-url in --config)")
    if config.nats_creds:
        pf._dir_ok(os.path.dirname(os.path.abspath(config.nats_creds)), "--nats-creds")  # noqa: SLF001
        if not os.path.isfile(config.nats_creds):
            raise ConfigError(f"--nats-creds: {config.nats_creds}: no such file")
    if config.tokens_file:
        pf._check_tokens_file(config.tokens_file)  # noqa: SLF001
    if config.jwt_secret_file:
        pf._check_secret_file(config.jwt_secret_file)  # noqa: SLF001
    pf.require_auth_source(config)
    require_nats()
    pf._check_state_dir(config.state_dir)  # noqa: SLF001
    if bind:
        pf.check_port(config.host, config.port)


def edge_serve(config: Config) -> int:
    """``cdc edge``: run until SIGTERM/SIGINT; returns the exit code (errors raise: the CLI prints them)."""
    app = EdgeApp(config)
    return exit_code_of(lambda: run_until_signal(app))

