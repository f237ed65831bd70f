"""The plain HTTP routes (CONTRACT.md section 6): ``GET /events`` (long-poll), ``/health/*``,
``/metrics``, ``POST /publish``, ``/schema.json`` and the static files; ``OPTIONS`` (CORS), the
Origin/Host checks that also guard ``/ws/events`` before its upgrade.

:class:`HttpRoutes` is a part of :class:`cdc.server.endpoints.Server` (a mixin: it uses the
server's configuration, hub and auth); ``_process_request`` is websockets' ``process_request``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import msgspec
from websockets.datastructures import MultipleValuesError
from websockets.http11 import Request, Response

from cdc.delivery.auth import Authenticator, narrow
from cdc.delivery.hub import Filter, Hub, coalesce_page
from cdc.model.wire import WireFormat, build_frames
from cdc.delivery.stats import STATS_TYPE, StatsCollector
from cdc.errors import AuthError, JournalCorrupt
from cdc.model.events import Event
from cdc.model.published import validate_published
from cdc.server.http import _SINGLE_HEADERS, _Connection, _error, _json_response, _response
from cdc.server.query import DEFAULT_POLL_TIMEOUT_S, narrow_keys, parse_subscription

if TYPE_CHECKING:
    from cdc.delivery.context import ServerContext

__all__ = ["HttpRoutes", "STATIC_DIR"]

_json = msgspec.json.Encoder()
_json_decode = msgspec.json.decode

STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/client.js": ("client.js", "text/javascript; charset=utf-8"),
    "/cdc.d.ts": ("cdc.d.ts", "text/plain; charset=utf-8"),
}
_HEALTH = {"/health/live": "liveness", "/health/ready": "readiness", "/health/startup": "startup"}


class HttpRoutes:
    """Routing and the HTTP endpoints of :class:`~cdc.server.endpoints.Server`."""

    ctx: ServerContext
    hub: Hub
    auth: Authenticator
    allow_origin: frozenset[str]
    allow_host: frozenset[str]
    host: str
    port: int
    max_message_bytes: int
    max_poll_timeout_s: float
    polls_waiting: int
    stats: StatsCollector
    _closing: bool
    clock: Callable[[], float]  # Server.clock (token expiry)
    _schema: bytes | None
    _static: dict[str, bytes]

    _rejected: Callable[..., None]  # WsSessions._rejected (counts a refused /ws/events attempt)

    # ------------------------------------------------------------------ helpers

    def _host_ok(self, host: str | None) -> bool:
        """With auth off: is ``Host`` one of the daemon's own address:port forms (or allowed)?

        A rebinding attack needs a *name* that resolves to us: IP literals are ours by
        definition (they reached this socket), ``localhost`` and the ``--host`` name are ours;
        any other name must be listed with ``--allow-host`` (``name`` or ``name:port``).
        Requests without a ``Host`` (not a browser) pass.
        """
        if host is None:
            return True
        h = host.strip().lower()
        if h in self.allow_host:
            return True
        name, port = h, ""
        if h.startswith("["):
            end = h.find("]")
            if end < 0:
                return False
            name, rest = h[1:end], h[end + 1 :]
            if rest and not rest.startswith(":"):
                return False
            port = rest[1:]
        elif h.count(":") == 1:
            name, port = h.split(":")
        elif ":" in h:
            return False
        name = name.rstrip(".")
        if name in self.allow_host:
            return True
        if port and port != str(self.port):
            return False
        if not port and self.port != 80:
            return False
        if name in ("localhost", str(self.host).lower(), str(self.ctx.config.host).lower()):
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def _origin_ok(self, request: Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        if not self.allow_origin:
            if not self.auth.insecure:
                return True  # a token is needed anyway (browsers cannot attach one cross-site by themselves)
            # --insecure-no-auth without --allow-origin: only the daemon's own pages
            host = request.headers.get("Host")
            return bool(host) and urlsplit(origin.rstrip("/")).netloc == host
        origin = origin.rstrip("/")
        if origin in self.allow_origin or "*" in self.allow_origin:
            return True
        host = request.headers.get("Host")
        if host and urlsplit(origin).netloc == host:  # the dashboard served by this daemon
            return True
        return False

    def _cors(self, request: Request) -> list[tuple[str, str]]:
        origin = request.headers.get("Origin")
        if origin is None or not self.allow_origin:
            return []
        if origin.rstrip("/") in self.allow_origin or "*" in self.allow_origin:
            return [
                ("Access-Control-Allow-Origin", origin),
                ("Vary", "Origin"),
                ("Access-Control-Allow-Headers", "Authorization, Content-Type"),
                ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
                ("Access-Control-Max-Age", "600"),
            ]
        return []

    @staticmethod
    def _token(request: Request, params: list[tuple[str, str]]) -> str | None:
        authz = request.headers.get("Authorization")
        if authz:
            scheme, _, value = authz.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return value.strip()
        for name, v in params:
            if name == "token":
                return v
        return None

    def _static_file(self, name: str) -> bytes | None:
        data = self._static.get(name)
        if data is None:
            try:
                with open(os.path.join(STATIC_DIR, name), "rb") as f:
                    data = f.read()
            except OSError:
                return None
            self._static[name] = data
        return data

    def _schema_json(self) -> bytes:
        if self._schema is None:
            from cdc.model.events import schema_document

            self._schema = _json.encode(schema_document())
        return self._schema

    # ------------------------------------------------------------------ routing

    async def _process_request(self, conn: _Connection, request: Request) -> Response | None:
        """Route the request; a HEAD answer keeps its headers (Content-Length too) but no body."""
        try:
            resp = await self._route(conn, request)
        except MultipleValuesError as exc:
            name = str(exc.args[0])[:40] if exc.args else "a header"
            resp = _error(400, f"repeated {name} header")
        except RecursionError:
            resp = _error(400, "request nested too deeply")
        if resp is not None and conn.cdc_method == "HEAD" and resp.body:
            resp = Response(resp.status_code, resp.reason_phrase, resp.headers, b"")
        return resp

    async def _route(self, conn: _Connection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        try:
            params = parse_qsl(query, keep_blank_values=True)
        except ValueError:
            return _error(400, "bad query string")
        method = conn.cdc_method
        for name in _SINGLE_HEADERS:  # ambiguous: which one would a proxy or a check have used?
            if len(request.headers.get_all(name)) > 1:
                return _error(400, f"repeated {name} header")
        if conn.cdc_error:
            return _error(conn.cdc_error, conn.cdc_error_msg)
        if self.auth.insecure and not self._host_ok(request.headers.get("Host")):
            if path == "/ws/events":
                self._rejected(conn, "origin", 403, "host not allowed")
            return _error(403, "Host not served by this daemon (DNS rebinding?): see --allow-host")
        if not self._origin_ok(request):
            if path == "/ws/events":
                self._rejected(conn, "origin", 403, "origin not allowed")
            return _error(403, "origin not allowed")
        cors = self._cors(request)
        if method == "OPTIONS":
            return _response(204, b"", "text/plain", cors)
        if path == "/ws/events":
            if method != "GET":
                self._rejected(conn, "bad_request", 405, "use GET")
                return _error(405, "use GET", cors)
            if self._closing:
                self._rejected(conn, "shutting_down", 503, "server shutting down")
                return _error(503, "server shutting down")
            if self.hub.count + self.hub.closing >= self.max_subscribers:
                self._rejected(conn, "limit", 503, "too many subscribers")
                return _error(503, f"too many subscribers (limit {self.max_subscribers})")
            if "websocket" not in request.headers.get("Upgrade", "").lower():
                self._rejected(conn, "bad_request", 426, "not a WebSocket upgrade")
            return None  # websockets performs the upgrade (or answers 426 to a plain GET)
        if path == "/publish":
            if method != "POST":
                return _error(405, "use POST", cors + [("Allow", "POST")])
            return await self._publish(conn, request, params, cors)
        if method not in ("GET", "HEAD"):
            return _error(405, "method not allowed", cors)
        if path == "/events":
            return await self._poll(request, params, cors)
        probe = _HEALTH.get(path)
        if probe is not None:
            health = self.ctx.health
            body = health.body(probe)
            return _json_response(200 if health.healthy(probe) else 503, body, cors)
        if path == "/metrics":
            from cdc.delivery.metrics import CONTENT_TYPE

            return _response(200, self.ctx.metrics.render(), CONTENT_TYPE)
        if path == "/schema.json":
            return _response(200, self._schema_json(), "application/json", cors)
        static = _STATIC.get(path)
        if static is not None:
            data = self._static_file(static[0])
            if data is None:
                return _error(404, f"{static[0]} is not installed")
            # the client and its types may be imported by an allowed origin (module scripts need CORS);
            # the dashboard page is same-origin only
            extra = cors if path in ("/client.js", "/cdc.d.ts") else []
            return _response(200, data, static[1], [("Cache-Control", "no-cache")] + extra)
        if path == "/favicon.ico":
            return _response(204, b"", "image/x-icon")
        return _error(404, "not found", cors)

    # ------------------------------------------------------------------ POST /publish

    async def _publish(self, conn: _Connection, request: Request, params: list[tuple[str, str]], cors: list[tuple[str, str]]) -> Response:
        # Only the Authorization header carries the token here (a token in a URL ends up in
        # histories and proxy logs); application/json is required so that a cross-origin page
        # cannot POST without a CORS preflight (text/plain needs none).
        try:
            grant = self.auth.verify(self._token(request, []))
        except AuthError as exc:
            return _error(401, str(exc), cors + [("WWW-Authenticate", "Bearer")])
        if not grant.admin:
            return _error(403, "admin token required", cors)
        ctype = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            return _error(415, "Content-Type must be application/json", cors)
        try:
            body = _json_decode(conn.cdc_body)
        except msgspec.DecodeError:
            return _error(400, "body is not valid JSON", cors)
        except RecursionError:
            return _error(400, "body is nested too deeply", cors)
        try:
            event = _validate_published(body)
        except RecursionError:
            return _error(400, "body is nested too deeply", cors)
        except ValueError as exc:
            return _error(400, str(exc).splitlines()[0] if str(exc) else "invalid event", cors)
        bus = self.ctx.bus
        if not bus.journal_ok:
            return _error(503, "journal is not writable; try again later", cors)
        try:
            async with asyncio.timeout(10.0):
                ids = await bus.emit_and_wait([event])
        except TimeoutError:
            return _error(503, "journal commit timed out; the event is queued", cors)
        if not ids:
            return _error(400, "event could not be encoded", cors)
        return _json_response(202, {"id": ids[0]}, cors)

    # ------------------------------------------------------------------ GET /events

    async def _poll(self, request: Request, params: list[tuple[str, str]], cors: list[tuple[str, str]]) -> Response:
        try:
            grant = self.auth.verify(self._token(request, params))
        except AuthError as exc:
            return _error(401, str(exc), cors + [("WWW-Authenticate", "Bearer")])
        try:
            req = parse_subscription(params)
        except ValueError as exc:
            return _error(400, str(exc), cors)
        try:
            types, cfs, prefixes = narrow(grant, req.types, req.cfs, req.prefixes, req.values)
            keys = narrow_keys(grant, req.keys)
        except AuthError as exc:
            return _error(403, str(exc), cors)
        flt = Filter(types, cfs, prefixes, keys)
        want_stats = types is not None and STATS_TYPE in types
        fmt = WireFormat.of(False, req.values)
        hub = self.hub
        journal = hub.journal
        timeout = DEFAULT_POLL_TIMEOUT_S if req.timeout_s is None else req.timeout_s
        timeout = min(timeout, self.max_poll_timeout_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        since = hub.latest_id if req.since is None else req.since
        if grant.exp is not None:
            deadline = min(deadline, loop.time() + max(0.0, grant.exp - self.clock()))

        epoch = journal.epoch
        tail = b',"epoch":' + _json.encode(epoch) + b"}"

        def stats_field() -> bytes:
            if not want_stats:
                return b""
            st = self.stats.latest or self.stats.compute()
            return b',"stats":' + _json.encode(self.stats.restrict(st, cfs))

        def reset(pos: int, reason: str) -> Response:
            body = {
                "events": [],
                "cursor": hub.latest_id,
                "reset": {"reason": reason, "since": pos, "oldest_id": journal.oldest_id, "latest_id": hub.latest_id, "epoch": epoch},
                "epoch": epoch,
            }
            if want_stats:
                body["stats"] = self.stats.restrict(self.stats.latest or self.stats.compute(), cfs)
            return _json_response(200, body, cors)

        if since and req.since is not None and req.epoch is not None and req.epoch != epoch:
            return reset(since, "epoch_changed")
        if since > hub.latest_id:  # cdc edge: its mirror may be a little behind
            await hub.catch_up(since)
        if since > hub.latest_id:
            return reset(since, "cursor_ahead")
        if hub.cursor_expired(since):
            return reset(since, "cursor_expired")
        if since == 0:  # from the oldest retained
            since = max(0, journal.oldest_id - 1)
        while True:
            latest = hub.latest_id
            if since < latest:
                try:
                    recs = await asyncio.to_thread(journal.read, since, req.limit)
                except JournalCorrupt as exc:
                    hub.journal_damaged(exc.reason)
                    return _error(503, "journal damaged: see /health/ready", cors)
                if not recs or recs[0].id != since + 1:
                    return reset(since, "cursor_expired")
                recs = [r for r in recs if r.id <= latest]
                matched = recs if flt.accept_all else [r for r in recs if flt.match(r)]
                if req.coalesce_ms and matched:
                    matched = coalesce_page(matched, req.coalesce_ms)
                since = recs[-1].id
                if matched:
                    frames = build_frames(matched, fmt, False)
                    hub.delivered += len(frames)
                    body = b'{"events":[' + b",".join(frames) + b'],"cursor":%d%b' % (since, stats_field()) + tail
                    return _response(200, body, "application/json", cors)
                continue
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing:
                break
            self.polls_waiting += 1
            try:
                if want_stats:  # answer with the next stats object at the latest
                    waits = [asyncio.ensure_future(hub.wait_published(remaining)), asyncio.ensure_future(self.stats.wait_updated(remaining))]
                    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    for t in pending:
                        t.cancel()
                    if waits[1] in done and waits[1].result() and hub.latest_id <= since:
                        break
                else:
                    await hub.wait_published(remaining)  # stop_accepting() wakes it
            finally:
                self.polls_waiting -= 1
            if self._closing:
                break
        return _response(200, b'{"events":[],"cursor":%d%b' % (since, stats_field()) + tail, "application/json", cors)


def _validate_published(body: Any) -> Event | dict[str, Any]:
    """Validate a POST /publish body (``cdc.model.published``), stamped with the time now."""
    return validate_published(body, now_ms=int(time.time() * 1000))
