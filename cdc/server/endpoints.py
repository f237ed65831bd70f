"""The network side: WebSocket ``/ws/events`` and plain HTTP on one port (``websockets``).

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
- ``websockets`` only parses GET requests without a body, so a request with another method is
  buffered by :class:`_Connection` (body limited to ``max_message_bytes``), re-presented to
  websockets as a GET, and the method and body are kept on the connection object.
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
import http
import logging
import ipaddress
import os
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import msgspec
from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers, MultipleValuesError
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from cdc import __version__
from cdc.delivery.auth import Authenticator, Grant, narrow
from cdc.errors import AuthError, JournalCorrupt
from cdc.model.events import EVENT_TYPES, Event
from cdc.model.published import validate_published
from cdc.delivery.hub import LIVE, Filter, Hub, Subscriber, build_frames, check_filter_lists, coalesce_page, control_frame, fmt_index
from cdc.delivery.stats import STATS_TYPE, StatsCollector

if TYPE_CHECKING:  # pragma: no cover
    from cdc.model.context import Context as AppContext

__all__ = ["Server", "parse_subscription", "SubscriptionRequest"]

log = logging.getLogger("cdc.server")
access_log = logging.getLogger("cdc.access")

WS_RESULTS = ("accepted", "unauthorized", "forbidden", "origin", "limit", "bad_request", "shutting_down")
"""Label values of ``cdc_ws_connections_total{result}`` (all exported from the start, at 0)."""

STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")
_STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/client.js": ("client.js", "text/javascript; charset=utf-8"),
    "/cdc.d.ts": ("cdc.d.ts", "text/plain; charset=utf-8"),
}
_HEALTH = {"/health/live": "liveness", "/health/ready": "readiness", "/health/startup": "startup"}
MAX_POLL_LIMIT = 10_000
DEFAULT_POLL_LIMIT = 1000
DEFAULT_POLL_TIMEOUT_S = 25.0
MAX_ID = (1 << 63) - 1
"""Largest ``since`` accepted (ids are int64 on the wire; msgpack cannot carry more)."""
MAX_REF_CHARS = 256
MAX_COALESCE_MS = 60_000
"""Longest ``coalesce`` window (milliseconds)."""

_json = msgspec.json.Encoder()
_json_decode = msgspec.json.decode
_msgpack_decode = msgspec.msgpack.decode
_TOKEN_RE = re.compile(r"(token=)[^&\s\"']+|(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


_QUERY_RE = re.compile(r"(/[^\s?]*)\?[^\s]*")


def _redact(text: str) -> str:
    return _TOKEN_RE.sub(lambda m: (m.group(1) or m.group(2)) + "[redacted]", text)


_SECRET_HEADER_RE = re.compile(r"^([<>] (?:Cookie|Set-Cookie|Authorization|Proxy-Authorization|Sec-WebSocket-Protocol):).*$", re.IGNORECASE)


def _redact_ws(text: str) -> str:
    """websockets' lines: tokens redacted, credential headers blanked, query strings dropped
    (``/ws/events?[query]``)."""
    return _QUERY_RE.sub(r"\1?[query]", _SECRET_HEADER_RE.sub(r"\1 [redacted]", _redact(text)))


def _peer(conn: Any) -> str:
    """``host:port`` of a connection's peer ("?" when unknown); never raises."""
    try:
        addr = conn.remote_address
    except Exception:  # pragma: no cover - transport gone
        return "?"
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return "?" if addr is None else str(addr)


def _clean(text: str, limit: int = 120) -> str:
    """A log-safe one-line rendering of a peer- or token-controlled string (no credentials)."""
    text = _redact(text[:limit])
    return "".join(c if c.isprintable() and not c.isspace() or c == " " else "?" for c in text)


class _RedactFilter(logging.Filter):
    """Removes tokens from websockets' log records (messages, args and tracebacks).

    websockets attaches the connection object as the ``websocket`` extra; it is replaced by
    ``peer=host:port`` so that log lines say who it was instead of an object address.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        conn = record.__dict__.pop("websocket", None)
        if conn is not None:
            record.peer = _peer(conn)
        try:
            msg = record.getMessage()
        except Exception:  # pragma: no cover
            return True
        if record.exc_info:
            msg += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg = _redact_ws(msg)
        record.args = None
        return True


def _ws_logger() -> logging.Logger:
    lg = logging.getLogger("cdc.websockets")
    if not any(isinstance(f, _RedactFilter) for f in lg.filters):
        lg.addFilter(_RedactFilter())
    if lg.level == logging.NOTSET and logging.getLogger("cdc").getEffectiveLevel() > logging.DEBUG:
        lg.setLevel(logging.WARNING)  # one INFO line per connection open/close is noise at scale
    return lg


# ---------------------------------------------------------------------------- requests


class SubscriptionRequest:
    """Parsed query parameters of ``/ws/events`` and ``/events``."""

    __slots__ = ("types", "cfs", "prefixes", "keys", "coalesce_ms", "values", "batch", "msgpack", "since", "timeout_s", "limit", "epoch")

    def __init__(self) -> None:
        self.types: list[str] | None = None
        self.cfs: list[str] | None = None
        self.prefixes: list[bytes] | None = None
        self.keys: list[bytes] | None = None
        self.coalesce_ms = 0
        self.values = False
        self.batch = False
        self.msgpack = False
        self.since: int | None = None
        self.timeout_s: float | None = None
        self.limit = DEFAULT_POLL_LIMIT
        self.epoch: str | None = None


def _csv(v: str) -> list[str]:
    return [x for x in (p.strip() for p in v.split(",")) if x]


def _bool(name: str, v: str) -> bool:
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{name} must be 0 or 1")


def parse_subscription(params: list[tuple[str, str]]) -> SubscriptionRequest:
    """Parse query parameters; repeated ``types``/``cf``/``prefix`` accumulate (comma lists too).

    ``prefix`` values are taken as-is (not split on commas: keys may contain commas).

    Raises:
        ValueError: a parameter that is not what the contract says (one line).
    """
    req = SubscriptionRequest()
    for name, v in params:
        if name == "types":
            req.types = (req.types or []) + _csv(v)
        elif name == "cf":
            req.cfs = (req.cfs or []) + _csv(v)
        elif name == "prefix":
            req.prefixes = (req.prefixes or []) + [v.encode("utf-8", "surrogateescape")]
        elif name == "key":
            req.keys = (req.keys or []) + [v.encode("utf-8", "surrogateescape")]
        elif name == "coalesce":
            try:
                ms = int(v)
            except ValueError:
                raise ValueError(f"coalesce must be an integer from 0 to {MAX_COALESCE_MS} (milliseconds)") from None
            if not 0 <= ms <= MAX_COALESCE_MS:
                raise ValueError(f"coalesce must be an integer from 0 to {MAX_COALESCE_MS} (milliseconds)")
            req.coalesce_ms = ms
        elif name == "values":
            req.values = _bool("values", v)
        elif name == "batch":
            req.batch = _bool("batch", v)
        elif name == "format":
            if v not in ("json", "msgpack"):
                raise ValueError("format must be json or msgpack")
            req.msgpack = v == "msgpack"
        elif name == "since":
            if v == "":
                continue
            try:
                since = int(v)
            except ValueError:
                raise ValueError("since must be a non-negative integer") from None
            if since < 0 or since > MAX_ID:
                raise ValueError(f"since must be an integer from 0 to {MAX_ID}")
            req.since = since
        elif name == "epoch":
            if len(v) > 64:
                raise ValueError("epoch: at most 64 characters")
            req.epoch = v or None
        elif name == "timeout":
            try:
                t = float(v)
            except ValueError:
                raise ValueError("timeout must be a number of seconds") from None
            if not t >= 0:
                raise ValueError("timeout must be a number of seconds")
            req.timeout_s = t
        elif name == "limit":
            try:
                n = int(v)
            except ValueError:
                raise ValueError("limit must be a positive integer") from None
            if n <= 0:
                raise ValueError("limit must be a positive integer")
            req.limit = min(n, MAX_POLL_LIMIT)
    check_filter_lists(req.types, req.cfs, req.prefixes, req.keys)
    if req.types is not None:
        for t in req.types:
            if t not in EVENT_TYPES and "." not in t and t != STATS_TYPE:
                raise ValueError(f"unknown event type {t[:40]!r}")
    return req


def _list_field(m: dict[str, Any], name: str) -> tuple[bool, list[str] | None]:
    """(present, value) of an optional list-of-strings field of a client message."""
    if name not in m:
        return False, None
    v = m[name]
    if v is None:
        return True, None
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"{name} must be a list of strings")
    raw = [x.encode("utf-8", "surrogateescape") for x in v] if name in ("prefix", "key") else None
    check_filter_lists(v if name == "types" else None, v if name == "cf" else None, raw if name == "prefix" else None, raw if name == "key" else None)
    return True, v


def narrow_keys(grant: Grant, keys: list[bytes] | None) -> frozenset[bytes] | None:
    """The ``key`` filter under a token: a token scoped by prefix may watch keys under its prefixes only.

    Raises:
        AuthError: (4403) a key outside the token's prefixes.
    """
    if keys is None:
        return None
    if grant.prefixes is not None:
        for k in keys:
            if not k.startswith(grant.prefixes):
                raise AuthError("token does not allow this key", 4403)
    return frozenset(keys)


def _ref_ok(ref: Any) -> bool:
    """A client ``ref`` is echoed only when every format can carry it: an int64 or a short string."""
    if isinstance(ref, bool):
        return True
    if type(ref) is int:
        return -MAX_ID - 1 <= ref <= MAX_ID
    return isinstance(ref, str) and len(ref) <= MAX_REF_CHARS


# ---------------------------------------------------------------------------- HTTP plumbing

_CONNECTING = State.CONNECTING

HEADER_TIMEOUT_S = 10.0
"""A connection must deliver its whole request (head and body) within this time (separate from
the long-poll wait, which starts once the request is complete)."""
MAX_UNFINISHED = 1024
"""Most connections, in total, that have not completed their request yet."""
MAX_UNFINISHED_PER_IP = 64
"""Most such connections from one client address."""


class _Gate:
    """Tracks connections whose request is not complete yet, per client IP and in total.

    Invariants: ``admit`` is called once per accepted socket and ``release`` exactly once for
    each admitted one (request complete, header timeout, eviction or connection lost). At a cap,
    the OLDEST unfinished connection (of that IP, or overall) is closed at once to make room
    (``refused`` counts it by reason): a client that completes its request in time always gets
    in, even from an address that also holds half-open sockets. Tests may lower the limits.
    """

    def __init__(self, timeout_s: float = HEADER_TIMEOUT_S, max_total: int = MAX_UNFINISHED, max_per_ip: int = MAX_UNFINISHED_PER_IP) -> None:
        self.timeout_s = timeout_s
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.conns: dict[_Connection, str] = {}  # insertion order = age
        self.per_ip: dict[str, dict[_Connection, None]] = {}
        self.refused: dict[str, int] = {"unfinished_total": 0, "unfinished_per_ip": 0, "header_timeout": 0, "accept_error": 0}

    @property
    def total(self) -> int:
        return len(self.conns)

    def admit(self, conn: _Connection, ip: str) -> None:
        mine = self.per_ip.get(ip)
        while mine and len(mine) >= max(1, self.max_per_ip):
            self.refused["unfinished_per_ip"] += 1
            next(iter(mine))._gate_evict()
        while self.conns and len(self.conns) >= max(1, self.max_total):
            self.refused["unfinished_total"] += 1
            next(iter(self.conns))._gate_evict()
        self.conns[conn] = ip
        self.per_ip.setdefault(ip, {})[conn] = None

    def release(self, conn: _Connection) -> None:
        ip = self.conns.pop(conn, None)
        if ip is None:
            return
        mine = self.per_ip.get(ip)
        if mine is not None:
            mine.pop(conn, None)
            if not mine:
                del self.per_ip[ip]



class _Connection(ServerConnection):
    """A ServerConnection that also accepts HTTP requests with a method other than GET.

    websockets parses only GET without a body; for POST/OPTIONS/... the request head and body
    are buffered here, then handed to websockets as a GET with the body removed. The method is
    in ``cdc_method``, the body in ``cdc_body``; ``cdc_error`` holds an HTTP status when the
    request could not be accepted (413 too large, 411 chunked).
    """

    cdc_method = "GET"
    cdc_body = b""
    cdc_error = 0
    cdc_limit = 64 * 1024
    cdc_sub: Subscriber | None = None
    cdc_gate: _Gate | None = None
    cdc_extra = False  # bytes after the request were dropped (the answer closes the connection)
    _pre: bytearray | None = None
    _pre_done = False
    _gate_ip: str | None = None
    _gate_timer: asyncio.TimerHandle | None = None

    _skip_left = 0
    _skip_head = b""

    # -- unfinished-request gate: caps + header timeout (see _Gate)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        gate = self.cdc_gate
        if gate is None:
            return
        try:
            ip = str(transport.get_extra_info("peername")[0])
        except Exception:  # noqa: BLE001 - pragma: no cover - no peer address
            ip = "?"
        gate.admit(self, ip)
        self._gate_ip = ip
        self._gate_timer = self.loop.call_later(gate.timeout_s, self._gate_expired)

    def _gate_release(self) -> None:
        if self._gate_ip is not None:
            self._gate_ip = None
            assert self.cdc_gate is not None
            self.cdc_gate.release(self)
            if self._gate_timer is not None:
                self._gate_timer.cancel()
                self._gate_timer = None

    def _gate_evict(self) -> None:
        """Closed to make room for a newer connection (see _Gate)."""
        self._gate_release()
        self.transport.abort()

    def _gate_expired(self) -> None:
        self._gate_timer = None
        if self._gate_ip is not None:
            assert self.cdc_gate is not None
            self.cdc_gate.refused["header_timeout"] += 1
            self._gate_release()
            self.transport.abort()

    def process_event(self, event: Any) -> None:
        if self._gate_ip is not None and isinstance(event, Request):
            self._gate_release()  # the request is complete: no longer counted as unfinished
        super().process_event(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._gate_release()
        super().connection_lost(exc)

    # -- request buffering

    def data_received(self, data: bytes) -> None:
        if self._pre_done:
            if self.request is not None and self.protocol.state is _CONNECTING:
                # Bytes after a complete request, before our answer: never hand them to
                # websockets' parser (it would take them for frames); the answer closes.
                self.cdc_extra = True
                return
            super().data_received(data)
            return
        if self._skip_left:
            take = min(self._skip_left, len(data))
            self._skip_left -= take
            if not self._skip_left:
                self._pass(self._skip_head + (b"" if take == len(data) else self._drop_rest(data[take:])))
            return
        if self._pre is None:
            if data[:4] == b"GET " and data[-4:] == b"\r\n\r\n" and data.find(b"\r\n\r\n") == len(data) - 4:
                self._pre_done = True  # the whole head of a GET in one chunk (the common case)
                super().data_received(data)
                return
            self._pre = bytearray()
        self._pre += data
        buf = self._pre
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            if len(buf) > 16384:  # let websockets reject the oversized head
                self._pass(bytes(buf))
            return
        head = bytes(buf[:head_end])
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) != 3:
            self._pass(bytes(buf))
            return
        method = parts[0].decode("ascii", "replace").upper()
        length = 0
        seen_length: bytes | None = None
        kept = [b"GET " + parts[1] + b" " + parts[2]]
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"content-length":
                v = value.strip()
                # ASCII digits only (no sign, no "_", no spaces); repeated values must agree
                if not v or not v.isdigit() or len(v) > 18 or (seen_length is not None and v != seen_length):
                    self.cdc_error = self.cdc_error or 400
                else:
                    seen_length = v
                    length = int(v)
                continue
            if lname == b"transfer-encoding":
                self.cdc_error = 411
                continue
            kept.append(line)
        if method == "POST" and seen_length is None and not self.cdc_error:
            self.cdc_error = 411  # POST needs a Content-Length
        if self.cdc_error:
            length = 0  # the body (if any) is not read: answer and close
        body_start = head_end + 4
        if length > self.cdc_limit:
            # Read and drop the body (up to 64 MiB) so that the client sees the 413.
            self.cdc_error = 413
            if length > 64 << 20:
                self._pass(b"\r\n".join(kept) + b"\r\n\r\n")
                return
            got = len(buf) - body_start
            if got < length:
                self._skip_left = length - got
                self._skip_head = b"\r\n".join(kept) + b"\r\n\r\n"
                self._pre = bytearray()
                return
            self._pass(b"\r\n".join(kept) + b"\r\n\r\n" + self._drop_rest(bytes(buf[body_start + length :])))
            return
        if len(buf) - body_start < length:
            return  # wait for the rest of the body
        self.cdc_method = method
        self.cdc_body = bytes(buf[body_start : body_start + length])
        rest = self._drop_rest(bytes(buf[body_start + length :]))
        self._pass(b"\r\n".join(kept) + b"\r\n\r\n" + rest)

    def _drop_rest(self, rest: bytes) -> bytes:
        """Bytes after the request are never parsed (no pipelining): drop them, close after answering."""
        if rest or self.cdc_error:
            self.cdc_extra = self.cdc_extra or bool(rest)
        return b""

    def _pass(self, data: bytes) -> None:
        self._pre = None
        self._pre_done = True
        super().data_received(data)


def _response(status: int, body: bytes, content_type: str, extra: list[tuple[str, str]] | None = None) -> Response:
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ]
    )
    if extra:
        for k, v in extra:
            if k in headers:  # replace (e.g. Cache-Control), never send a header twice
                del headers[k]
            headers[k] = v
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


def _json_response(status: int, obj: Any, extra: list[tuple[str, str]] | None = None) -> Response:
    return _response(status, _json.encode(obj), "application/json", extra)


def _error(status: int, message: str, extra: list[tuple[str, str]] | None = None) -> Response:
    return _json_response(status, {"error": message}, extra)


# ---------------------------------------------------------------------------- server

_SINGLE_HEADERS = ("Host", "Origin", "Authorization", "Content-Type", "Upgrade", "Sec-WebSocket-Key")
"""Headers a request may carry at most once (400 otherwise)."""

_DONE_REQUEST = Request("/", Headers())
"""Shared stand-in for a connection's handshake request once it has been read (memory)."""


class Server:
    """Binds the port and serves every route; see the module docstring."""

    def __init__(self, ctx: AppContext, hub: Hub, auth: Authenticator) -> None:
        self.ctx = ctx
        self.hub = hub
        self.auth = auth
        cfg = ctx.config
        self.allow_origin = frozenset(o.rstrip("/") for o in cfg.allow_origin)
        self.allow_host = frozenset(h.lower().rstrip(".") for h in getattr(cfg, "allow_host", ()))
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
        self.stats = StatsCollector(ctx, hub, getattr(cfg, "stats_interval_ms", 1000))
        """``stats`` frames: computed every ``stats_interval_ms`` (also the ``stats`` field of /events)."""
        self._stats_task: asyncio.Task[None] | None = None
        bind = getattr(ctx.metrics, "bind", None) if getattr(ctx, "metrics", None) is not None else None
        if bind is not None:
            try:
                bind(server=self)
            except TypeError:  # pragma: no cover - an older Metrics without the server source
                pass

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind the listening socket (raises OSError when the port is taken)."""
        limit = self.max_message_bytes

        gate = self.gate

        class Conn(_Connection):
            cdc_limit = limit
            cdc_gate = gate

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
            server_header=f"cdc/{__version__}",
        )
        sock = next(iter(self.ws.sockets))
        self.host, self.port = sock.getsockname()[:2]
        stop = getattr(self.ctx, "stop", None) or asyncio.Event()
        self._stats_task = asyncio.get_running_loop().create_task(self.stats.run(stop), name="cdc-stats")

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

    def _journal_damaged(self, reason: str) -> None:
        """Replay met a damaged journal: readiness ``journal_corrupt``, a metric, one log line."""
        health = self.ctx.health
        health.set("readiness", "journal_corrupt", False, f"journal damaged ({reason}); see README \"Recovering the journal\"")
        metrics = getattr(self.ctx, "metrics", None)
        if metrics is not None:
            try:
                metrics.inc("cdc_journal_damage_reads")
            except Exception:  # noqa: BLE001 - pragma: no cover - metrics are best effort
                pass
        if reason not in self._damage_logged and len(self._damage_logged) < 16:
            self._damage_logged.add(reason)
            log.error(
                'journal %s is damaged (%s): replays fail with close 1011 until it is moved away or restored; see README "Recovering the journal"',
                self.hub.journal.path, reason,
            )

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
            return _error(conn.cdc_error, {400: "bad content-length (ASCII digits only)",
                                           411: "a Content-Length is required (chunked bodies are not supported)",
                                           413: f"body larger than {self.max_message_bytes} bytes"}[conn.cdc_error])
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
        fmt = fmt_index(False, req.values)
        hub = self.hub
        journal = hub.journal
        timeout = DEFAULT_POLL_TIMEOUT_S if req.timeout_s is None else req.timeout_s
        timeout = min(timeout, self.max_poll_timeout_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        since = hub.latest_id if req.since is None else req.since
        if grant.exp is not None:
            deadline = min(deadline, loop.time() + max(0.0, grant.exp - self.clock()))

        epoch = getattr(journal, "epoch", None)
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
        if since > hub.latest_id and hasattr(hub, "catch_up"):  # cdc edge: its mirror may be a little behind
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

    # ------------------------------------------------------------------ WebSocket

    async def _handler(self, conn: ServerConnection) -> None:
        request = conn.request
        assert request is not None
        started = time.monotonic()
        path, _, query = request.path.partition("?")
        params = parse_qsl(query, keep_blank_values=True)
        try:
            grant = self.auth.verify(self._token(request, params))
        except AuthError as exc:
            self._rejected(conn, "unauthorized" if exc.code == 4401 else "forbidden", exc.code, str(exc))
            await conn.close(exc.code, str(exc))
            return
        try:
            req = parse_subscription(params)
        except ValueError as exc:
            self._rejected(conn, "bad_request", 4400, str(exc), grant.subject)
            await conn.close(4400, str(exc)[:120])
            return
        try:
            types, cfs, prefixes = narrow(grant, req.types, req.cfs, req.prefixes, req.values)
            keys = narrow_keys(grant, req.keys)
        except AuthError as exc:
            self._rejected(conn, "forbidden" if exc.code == 4403 else "unauthorized", exc.code, str(exc), grant.subject)
            await conn.close(exc.code, str(exc))
            return
        hub = self.hub
        sub = Subscriber(conn, hub, hub.intern_filter(types, cfs, prefixes, keys), values=req.values, msgpack=req.msgpack, batch=req.batch, grant=grant, coalesce_ms=req.coalesce_ms)
        latest = hub.latest_id
        hello: dict[str, Any] = {
            "type": "hello",
            "version": __version__,
            "latest_id": latest,
            "oldest_id": hub.journal.oldest_id,
            "heartbeat_ms": self.heartbeat_ms,
            "epoch": getattr(hub.journal, "epoch", None),
            "filter": sub.filter.to_json(),
            "values": req.values,
        }
        if req.coalesce_ms:
            hello["coalesce_ms"] = req.coalesce_ms
        if grant.exp is not None:
            hello["exp"] = int(grant.exp)
        if self._closing:
            self._rejected(conn, "shutting_down", 1001, "server shutting down", grant.subject)
            await conn.close(1001, "server shutting down")
            return
        self.ws_results["accepted"] += 1
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "ws open peer=%s sub=%s values=%d format=%s since=%s",
                _peer(conn), _clean(grant.subject) or "-", req.values, "msgpack" if req.msgpack else "json",
                "now" if req.since is None else req.since,
            )
        try:
            await conn.send(control_frame(hello, req.msgpack), text=not req.msgpack)
        except ConnectionClosed:
            self._closed_line(conn, sub, started)
            return
        self._schedule_expiry(sub, grant)
        since = req.since if req.since is not None else latest
        epoch = req.epoch
        # Idle subscribers are the common case: drop what the handshake left behind (request and
        # response headers, parsed parameters) so that each idle connection stays small.
        request.headers.clear()  # websockets' parser generator keeps the Request object itself
        conn.request = _DONE_REQUEST
        conn.response = None
        del request, params, req, hello, path, query, grant, types, cfs, prefixes, keys
        on_message = self._on_message
        recv = conn.recv
        try:
            await hub.start(sub, since, epoch=epoch)
            if sub.state != LIVE:
                # closed during replay (damage, 4429, expiry): returning would close with 1000
                # before the close task sends the code; wait for it (bounded: hub.CLOSE_BOUND_S)
                try:
                    async with asyncio.timeout(10.0):
                        await conn.wait_closed()
                except TimeoutError:  # pragma: no cover - the close task aborts long before
                    pass
                return
            while True:
                on_message(sub, await recv())
        except ConnectionClosed:
            pass
        finally:
            if sub.exp_handle is not None:
                sub.exp_handle.cancel()
                sub.exp_handle = None
            if sub.state != 2:
                sub.state = 2
                hub.remove(sub)
                sub.pending = None
            if sub.drainer is not None:
                sub.drainer.cancel()
            if access_log.isEnabledFor(logging.INFO):
                self._closed_line(conn, sub, started)

    def _rejected(self, conn: Any, result: str, code: int, reason: str, subject: str = "") -> None:
        """Count a refused ``/ws/events`` attempt and write its access line (no token, no query)."""
        self.ws_results[result] = self.ws_results.get(result, 0) + 1
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "ws rejected peer=%s sub=%s result=%s code=%d reason=%s",
                _peer(conn), _clean(subject) or "-", result, code, _clean(reason),
            )

    @staticmethod
    def _closed_line(conn: ServerConnection, sub: Subscriber, started: float) -> None:
        """The ``ws closed`` access line: peer, subject, close code/reason (ours or the peer's)."""
        code: int | None = getattr(sub, "close_code", None)
        try:
            if code is None:
                code = conn.close_code
            reason = conn.close_reason or ""
        except Exception:  # pragma: no cover - no close frame state
            reason = ""
        grant = sub.grant
        access_log.info(
            "ws closed peer=%s sub=%s code=%s reason=%s duration=%.1fs",
            _peer(conn), _clean(grant.subject if grant is not None else "") or "-",
            code if code is not None else "-", _clean(reason) or "-", time.monotonic() - started,
        )

    def _schedule_expiry(self, sub: Subscriber, grant: Grant) -> None:
        if sub.exp_handle is not None:
            sub.exp_handle.cancel()
            sub.exp_handle = None
        if grant.exp is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, grant.exp - self.clock())
        sub.exp_handle = loop.call_later(delay, sub.close, 4401, "token expired")

    def _on_message(self, sub: Subscriber, message: str | bytes) -> None:
        """Handle one client message; anything malformed gets an ``error`` frame.

        Never raises: whatever goes wrong with one message (too deeply nested JSON, an int no
        format can carry, a bug) is answered with an ``error`` frame and the connection stays up.
        """
        try:
            self._handle_message(sub, message)
        except Exception as exc:  # noqa: BLE001 - a peer's message must not close with 1011
            log.debug("client message failed: %s", type(exc).__name__)
            try:
                sub.send_control({"type": "error", "error": "message could not be handled"})
            except Exception:  # noqa: BLE001 - pragma: no cover - connection gone
                pass

    def _handle_message(self, sub: Subscriber, message: str | bytes) -> None:
        try:
            if isinstance(message, bytes):
                try:
                    m = _msgpack_decode(message)
                except msgspec.DecodeError:
                    m = _json_decode(message)
            else:
                m = _json_decode(message)
        except (msgspec.DecodeError, UnicodeDecodeError):
            sub.send_control({"type": "error", "error": "message is not valid JSON"})
            return
        except RecursionError:
            sub.send_control({"type": "error", "error": "message is nested too deeply"})
            return
        if not isinstance(m, dict) or not isinstance(m.get("op"), str):
            sub.send_control({"type": "error", "error": 'message must be an object with an "op" string'})
            return
        op = m["op"]
        ref = m.get("ref")
        if ref is not None and not _ref_ok(ref):  # checked first: the op is not applied
            sub.send_control({"type": "error", "error": f"ref must be an int64 or a string of at most {MAX_REF_CHARS} characters", "op": op[:40]})
            return
        try:
            if op == "ping":
                out: dict[str, Any] = {"type": "pong", "latest_id": self.hub.latest_id}
            elif op == "subscribe":
                out = self._subscribe(sub, m)
            elif op == "auth":
                out = self._reauth(sub, m)
                if not out:
                    return
            else:
                out = {"type": "error", "error": f"unknown op {op[:40]!r}", "op": op[:40]}
        except ValueError as exc:
            out = {"type": "error", "error": str(exc), "op": op[:40]}
        except AuthError as exc:
            out = {"type": "error", "error": str(exc), "op": op[:40], "code": exc.code}
        if ref is not None:
            out["ref"] = ref
        sub.send_control(out)

    def _subscribe(self, sub: Subscriber, m: dict[str, Any]) -> dict[str, Any]:
        cur = sub.filter
        has_t, types = _list_field(m, "types")
        has_c, cfs = _list_field(m, "cf")
        has_p, prefixes = _list_field(m, "prefix")
        has_k, keys = _list_field(m, "key")
        if has_t and types is not None:
            for t in types:
                if t not in EVENT_TYPES and "." not in t and t != STATS_TYPE:
                    raise ValueError(f"unknown event type {t[:40]!r}")
        values = m.get("values")
        if values is not None and not isinstance(values, bool):
            raise ValueError("values must be a boolean")
        want_values = values if values is not None else sub.fmt in (1, 3)
        t = types if has_t else (sorted(cur.types) if cur.types is not None else None)
        c = cfs if has_c else (sorted(cur.cfs) if cur.cfs is not None else None)
        p = [x.encode() for x in prefixes] if has_p and prefixes is not None else (None if has_p else (list(cur.prefixes) if cur.prefixes is not None else None))
        k = [x.encode("utf-8", "surrogateescape") for x in keys] if has_k and keys is not None else (None if has_k else (list(cur.keys) if cur.keys is not None else None))
        nt, nc, np_ = narrow(sub.grant, t, c, p, want_values)  # AuthError 4403 -> error frame, filter kept
        nk = narrow_keys(sub.grant, k)
        self.hub.set_filter(sub, Filter(nt, nc, np_, nk))
        sub.fmt = fmt_index(not sub.text, want_values)
        return {"type": "subscribed", "filter": sub.filter.to_json(), "values": want_values}

    def _reauth(self, sub: Subscriber, m: dict[str, Any]) -> dict[str, Any] | None:
        token = m.get("token")
        if not isinstance(token, str):
            raise ValueError("auth needs a token string")
        try:
            grant = self.auth.verify(token)
        except AuthError as exc:
            sub.close(exc.code, str(exc))
            return None
        flt = sub.filter
        try:
            narrow(
                grant,
                sorted(flt.types) if flt.types is not None else None,
                sorted(flt.cfs) if flt.cfs is not None else None,
                list(flt.prefixes) if flt.prefixes is not None else None,
                sub.fmt in (1, 3),
            )
            narrow_keys(grant, list(flt.keys) if flt.keys is not None else None)
            if flt.types is None and grant.types is not None or flt.cfs is None and grant.cfs is not None or flt.prefixes is None and grant.prefixes is not None:
                raise AuthError("new token does not allow the current subscription", 4403)
        except AuthError as exc:
            sub.close(4403, str(exc))
            return None
        sub.grant = grant
        self._schedule_expiry(sub, grant)
        out: dict[str, Any] = {"type": "authenticated"}
        if grant.exp is not None:
            out["exp"] = int(grant.exp)
        return out


def _validate_published(body: Any) -> Event | dict[str, Any]:
    """Validate a POST /publish body (``cdc.model.published``), stamped with the time now."""
    return validate_published(body, now_ms=int(time.time() * 1000))
