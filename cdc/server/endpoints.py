"""The network side: WebSocket ``/ws/events`` and plain HTTP on one port (``websockets`` + h11).

``Server`` here (lifecycle, heartbeats, journal-damage reporting); the rest of it lives in
``routes`` (HTTP routes, :class:`~cdc.server.routes.HttpRoutes`), ``ws`` (WebSocket sessions,
:class:`~cdc.server.ws.WsSessions`), ``http`` (h11 parsing, limits, responses), ``query``
(query parameters) and ``logsafe`` (redaction); websockets internals only in
``cdc.delivery.wsconn``.

Routes (CONTRACT.md sections 5 and 6): ``GET /ws/events``, ``GET /events`` (long-poll),
``GET /health/live|ready|startup``, ``GET /metrics``, ``POST /publish``, ``GET /``,
``GET /client.js``, ``GET /cdc.d.ts``, ``GET /schema.json``; ``OPTIONS`` answers CORS preflights.

Invariants:
- Tokens never reach a log line: the websockets logger passes through a redacting filter, and
  no error message includes a token.
- Origin: when ``allow_origin`` is set, a request whose ``Origin`` is neither listed nor the
  server's own origin (same ``Host``) gets HTTP 403 before the upgrade. Requests without an
  ``Origin`` (non-browser clients) are not restricted by it; they still need a token. With
  ``--insecure-no-auth`` and no ``allow_origin``, a browser ``Origin`` other than the daemon's
  own host is refused (403), so a random web page cannot read events or publish.
- Host (DNS rebinding): with ``--insecure-no-auth`` a request's ``Host`` must name an address the
  daemon serves (an IP literal, ``localhost``, the ``--host`` name) with its port, or an
  ``--allow-host`` entry; anything else gets 403 before routing (a rebound name cannot read or publish).
- Malformed heads: a repeated ``Origin``/``Host``/``Authorization``/... header, or a ``/publish``
  body nested too deeply, is a 400 with one line, never a 500 with a traceback.
- Unfinished requests: a connection must complete its request (head and body) within
  ``HEADER_TIMEOUT_S`` (10 s; the long-poll wait starts after that); at most
  ``MAX_UNFINISHED`` such connections in total and ``MAX_UNFINISHED_PER_IP`` per client address
  exist at once: at a cap the oldest unfinished one is closed at once to make room
  (``cdc_http_connections_refused_total{reason}``), so a client that sends its request
  promptly always gets in.
  Running out of file descriptors on accept is logged once a minute, not per attempt.
- HTTP bodies: ``Content-Length`` must be ASCII digits (else 400); POST without one or chunked
  -> 411; bytes after the request are never handed to websockets (the answer closes the
  connection). ``/publish`` needs ``Content-Type: application/json`` (415) and takes the token
  only from the ``Authorization`` header. HEAD answers carry headers only.
- Client messages never close a connection with 1011: anything that fails (deep nesting, an
  unencodable ``ref``) gets an ``error`` frame; ``ref`` is echoed only as an int64 or a string of
  <= 256 characters; ``since`` > 2**63-1 -> 4400 / 400; filter lists <= 256 entries of <= 1 KiB.
- Auth happens after the upgrade for WebSockets (browsers cannot read HTTP statuses), with
  close codes 4401 / 4403; bad query parameters close with 4400. HTTP endpoints answer
  401 / 403 / 400.
- Requests are parsed by h11 (``cdc.server.http``; body limited to ``max_message_bytes``). A
  WebSocket upgrade is handed to websockets (``process_request`` runs the routes' checks, then
  the handshake); every other request is routed by the same ``_process_request`` and answered
  with h11, never by websockets. The method and body are kept on the connection object.
- Control frames (hello, heartbeat, pong, error, subscribed, authenticated, reset) carry no
  ``id``; every event frame does.
- Access log (logger ``cdc.access``, INFO): one ``ws open`` line per accepted WebSocket and one
  ``ws closed`` / ``ws rejected`` line per end, with the peer address, the token's subject,
  the close code and reason and the duration -- never a token, a query string or a header.
  websockets' own per-connection lines stay at DEBUG and carry ``peer=`` instead of the
  connection object's repr.
- ``cdc_ws_connections_total{result}`` counts every ``/ws/events`` attempt: ``accepted``,
  ``unauthorized`` (4401), ``forbidden`` (4403 scope), ``origin`` (403), ``limit`` (503 too many
  subscribers), ``bad_request`` (4400 / 405 / not a WebSocket upgrade), ``shutting_down``.
- Shutdown: :meth:`Server.stop_accepting` wakes every waiting long-poll, which answers at once
  with ``{"events": [], "cursor": N}``; ``cdc_http_polls_waiting`` shows how many are parked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import serve

from cdc import __version__
from cdc.delivery.auth import Authenticator
from cdc.delivery.hub import Hub
from cdc.delivery.stats import StatsCollector
from cdc.server.http import _Connection, _Gate
from cdc.server.logsafe import _ws_logger
from cdc.server.query import SubscriptionRequest, parse_subscription
from cdc.server.routes import HttpRoutes
from cdc.server.ws import WS_RESULTS, WsSessions

if TYPE_CHECKING:
    from cdc.delivery.context import ServerContext

__all__ = ["Server", "parse_subscription", "SubscriptionRequest"]

log = logging.getLogger("cdc.server")


class Server(HttpRoutes, WsSessions):
    """Binds the port and serves every route; see the module docstring."""

    def __init__(self, ctx: ServerContext, hub: Hub, auth: Authenticator) -> None:
        self.ctx = ctx
        self.hub = hub
        self.auth = auth
        cfg = ctx.config
        self.allow_origin = frozenset(o.rstrip("/") for o in cfg.allow_origin)
        self.allow_host = frozenset(h.lower().rstrip(".") for h in cfg.allow_host)
        self.max_subscribers = cfg.max_subscribers
        self.heartbeat_ms = cfg.heartbeat_ms
        self.max_poll_timeout_s = min(cfg.max_poll_timeout_s, 30.0)
        self.max_message_bytes = cfg.max_message_bytes
        self.ws: WsServer | None = None
        self.host = cfg.host
        self.port = cfg.port
        self._schema: bytes | None = None
        self._static: dict[str, bytes] = {}
        self._closing = False
        self.clock: Callable[[], float] = time.time
        """Wall clock that token expiry is measured against (tests inject one instead of sleeping)."""
        self.ws_results: dict[str, int] = dict.fromkeys(WS_RESULTS, 0)
        """``/ws/events`` attempts by result (``cdc_ws_connections_total{result}``)."""
        self.polls_waiting = 0
        """Long-polls parked waiting for an event (``cdc_http_polls_waiting``)."""
        self.gate = _Gate(max_total=cfg.max_pending_connections, max_per_ip=cfg.max_pending_per_ip)
        """Unfinished requests: caps and header timeout; ``gate.refused`` feeds
        ``cdc_http_connections_refused_total{reason}``."""
        self._accept_error_logged = 0.0
        self._damage_logged: set[str] = set()
        hub.on_journal_damage = self._journal_damaged
        self.stats = StatsCollector(ctx, hub, cfg.stats_interval_ms)
        """``stats`` frames: computed every ``stats_interval_ms`` (also the ``stats`` field of /events)."""
        self._stats_task: asyncio.Task[None] | None = None
        ctx.metrics.bind(server=self)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind the listening socket (raises OSError when the port is taken)."""
        limit = self.max_message_bytes

        gate = self.gate
        server_header = f"cdc/{__version__}"

        class Conn(_Connection):
            cdc_limit = limit
            cdc_gate = gate
            cdc_router = staticmethod(self._process_request)
            cdc_server_header = server_header

        self._install_accept_error_handler()

        self.ws = await serve(
            self._handler,
            self.ctx.config.host,
            self.ctx.config.port,
            process_request=self._process_request,
            create_connection=Conn,
            max_size=self.max_message_bytes,
            max_queue=16,
            compression=None,
            ping_interval=None,  # one app-wide heartbeat task instead of one keepalive task per socket
            open_timeout=self.max_poll_timeout_s + 10.0,
            close_timeout=5.0,
            logger=_ws_logger(),
            server_header=server_header,
        )
        sock = next(iter(self.ws.sockets))
        self.host, self.port = sock.getsockname()[:2]
        self._stats_task = asyncio.get_running_loop().create_task(self.stats.run(self.ctx.stop), name="cdc-stats")

    def _install_accept_error_handler(self) -> None:
        """Out of file descriptors, asyncio logs a traceback per failed accept (it already backs
        off 1 s before accepting again): log one line a minute instead and count them."""
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()

        def handler(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            msg = str(context.get("message", ""))
            if "accept" in msg and "out of system resource" in msg:
                self.gate.refused["accept_error"] += 1
                now = time.monotonic()
                if now - self._accept_error_logged >= 60.0:
                    self._accept_error_logged = now
                    exc = context.get("exception")
                    log.error(
                        "cannot accept connections: %s (too many open files?); retrying every second, logged once a minute",
                        getattr(exc, "strerror", None) or type(exc).__name__,
                    )
                return
            if previous is not None:
                previous(lp, context)
            else:
                lp.default_exception_handler(context)

        loop.set_exception_handler(handler)

    def stop_accepting(self) -> None:
        """Stop accepting new connections (existing ones stay until :meth:`close`)."""
        self._closing = True
        self.hub.wake_pollers()  # long-polls answer now instead of at their timeout
        if self.ws is not None:
            self.ws.close(close_connections=False)

    async def close(self) -> None:
        """Close every connection with 1001 and wait for the handlers to finish."""
        self._closing = True
        if self._stats_task is not None:
            self._stats_task.cancel()
        await self.hub.close_all(1001, "server shutting down")
        if self.ws is not None:
            self.ws.close(close_connections=True)
            await self.ws.wait_closed()

    async def heartbeats(self, stop: asyncio.Event) -> None:
        """Send a ``heartbeat`` control frame to every live subscriber every ``heartbeat_ms``."""
        interval = self.heartbeat_ms / 1000.0
        while not stop.is_set():
            try:
                async with asyncio.timeout(interval):
                    await stop.wait()
                return
            except TimeoutError:
                pass
            self.hub.broadcast_control({"type": "heartbeat", "latest_id": self.hub.latest_id, "ts": int(time.time() * 1000)})

    # ------------------------------------------------------------------ helpers

    def _journal_damaged(self, reason: str) -> None:
        """Replay met a damaged journal: readiness ``journal_corrupt``, a metric, one log line."""
        health = self.ctx.health
        health.set("readiness", "journal_corrupt", False, f"journal damaged ({reason}); see README \"Recovering the journal\"")
        self.ctx.metrics.inc("cdc_journal_damage_reads")
        if reason not in self._damage_logged and len(self._damage_logged) < 16:
            self._damage_logged.add(reason)
            log.error(
                'journal %s is damaged (%s): replays fail with close 1011 until it is moved away or restored; see README "Recovering the journal"',
                self.hub.journal.path, reason,
            )
