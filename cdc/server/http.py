"""HTTP/1.1 on the shared port: every request parsed by h11; plain requests answered with h11.

Every connection's first bytes go to an ``h11.Connection`` (server role), which parses the
request line, headers, ``Content-Length`` / chunked framing and the head-size limit. Once the
request is complete (head and body), :class:`_Connection` decides:

- a bodiless ``GET`` with ``Upgrade: websocket``: the client's own bytes go to websockets, which
  calls ``Server._process_request`` (the same routes: Origin/Host, limits) and performs the
  handshake; the session is ``cdc.server.ws``;
- anything else (including a refused or malformed request): routed by the same
  ``Server._process_request`` and answered here, serialized by h11 (``Server: cdc/<version>``
  added as websockets adds it), then the connection is closed. websockets never sees it.

The method and body stay on the connection (``cdc_method``, ``cdc_body``).

Rules kept here (module docstring of ``endpoints`` has the full list):
- a request must be complete within ``HEADER_TIMEOUT_S``; unfinished ones are capped in total and
  per client address, the oldest closed first (:class:`_Gate`);
- ``Content-Length`` must be ASCII digits and repeated values must agree (400, h11's check);
  ``Transfer-Encoding`` or a POST without ``Content-Length`` -> 411; a body over
  ``max_message_bytes`` -> 413 (read and dropped up to 64 MiB so that the client sees it);
  a head over 16 KiB -> 431; a repeated ``Host`` or any other malformed head -> 400 (a request
  without ``Host``, which h11 refuses for HTTP/1.1, is served as before: see ``_without_host``);
- bytes after the request (pipelining, junk) are never parsed: the answer closes the connection.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import h11
import msgspec
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from cdc.delivery.wsconn import FrontConnection

__all__ = ["HEADER_TIMEOUT_S", "MAX_UNFINISHED", "MAX_UNFINISHED_PER_IP", "MAX_HEAD_BYTES", "_Gate", "_Connection", "_response", "_json_response", "_error", "_SINGLE_HEADERS"]

log = logging.getLogger("cdc.server")
_json = msgspec.json.Encoder()

MAX_HEAD_BYTES = 16384
"""Longest request head (request line and headers); longer -> 431."""
MAX_DRAIN_BYTES = 64 << 20
"""An oversized body up to this size is read and dropped before the 413 (else answered at once)."""

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



class _Connection(FrontConnection):
    """One TCP connection: h11 parses its request; a WebSocket upgrade is handed to websockets,
    any other request is answered here with h11.

    ``cdc_method`` / ``cdc_body`` hold the request's method and body; ``cdc_error`` an HTTP status
    when the request cannot be served (400 malformed, 411, 413, 431) with ``cdc_error_msg``;
    ``cdc_extra`` says bytes after the request were dropped (the answer closes the connection).
    """

    cdc_method = "GET"
    cdc_body = b""
    cdc_error = 0
    cdc_error_msg = ""
    cdc_limit = 64 * 1024
    cdc_gate: _Gate | None = None
    cdc_extra = False
    _h11: h11.Connection | None = None
    _head: h11.Request | None = None
    _body: bytearray | None = None
    _raw: bytearray | None = None
    _no_host = False
    _skipping = False
    _handed_over = False
    cdc_plain = False  # answered here, never a WebSocket (websockets' own lines about it are noise)
    _answer_task: asyncio.Task[None] | None = None
    cdc_router: Callable[[_Connection, Request], Awaitable[Response | None]] | None = None
    cdc_server_header = ""
    _gate_ip: str | None = None
    _gate_timer: asyncio.TimerHandle | None = None

    # -- unfinished-request gate: caps + header timeout (see _Gate)

    def on_connect(self, transport: asyncio.BaseTransport) -> None:
        gate = self.cdc_gate
        if gate is None:
            return
        try:
            ip = str(transport.get_extra_info("peername")[0])
        except Exception:  # noqa: BLE001 - pragma: no cover - no peer address
            ip = "?"
        gate.admit(self, ip)
        self._gate_ip = ip
        self._gate_timer = self.call_later(gate.timeout_s, self._gate_expired)

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
        self.abort()

    def _gate_expired(self) -> None:
        self._gate_timer = None
        if self._gate_ip is not None:
            assert self.cdc_gate is not None
            self.cdc_gate.refused["header_timeout"] += 1
            self._gate_release()
            self.abort()

    def on_handshake_request(self) -> None:
        self._gate_release()  # the request is complete: no longer counted as unfinished

    def on_lost(self) -> None:
        self._gate_release()

    # -- parsing (h11)

    def on_bytes(self, data: bytes) -> None:
        if self._handed_over:
            if self.cdc_plain or self.awaiting_answer():
                # Bytes after a complete request, before our answer: never hand them to
                # websockets' parser (it would take them for frames); the answer closes.
                self.cdc_extra = True
                return
            self.pass_to_websockets(data)  # WebSocket frames after the upgrade
            return
        conn = self._h11
        if conn is None:
            conn = self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
            self._raw = bytearray()
        if self._head is None:
            self._raw += data  # kept until the head is parsed (see _without_host)
        conn.receive_data(data)
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if self._head is None and not self._no_host and "Missing mandatory Host" in str(exc):
                    conn = self._without_host()
                    continue
                self._malformed(exc)
                return
            if isinstance(event, h11.Request):
                if self._on_head(event):
                    return
            elif isinstance(event, h11.Data):
                if not self._skipping:
                    assert self._body is not None
                    self._body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self._hand_over()
                return
            else:  # NEED_DATA (or PAUSED, which only follows EndOfMessage)
                return

    def _without_host(self) -> h11.Connection:
        """An HTTP/1.1 request without ``Host`` (not a browser) is served as before h11, which
        requires one: the bytes so far are parsed again with an empty ``Host`` line added after
        the request line, and that line is left out when the request is handed to websockets."""
        self._no_host = True
        raw = bytes(self._raw or b"")
        eol = raw.find(b"\n") + 1
        conn = self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        conn.receive_data(raw[:eol] + b"Host: \r\n" + raw[eol:])
        return conn

    def _on_head(self, event: h11.Request) -> bool:
        """Check the head's body framing; True when the request is answered without its body."""
        self._head = event
        self.cdc_method = event.method.decode("ascii", "replace").upper()
        assert self._h11 is not None and self._raw is not None
        if len(self._raw) - len(self._h11.trailing_data[0]) > MAX_HEAD_BYTES:  # h11 checks only while incomplete
            self._fail(431, f"request head larger than {MAX_HEAD_BYTES} bytes")
            self._hand_over()
            return True
        length: int | None = None
        chunked = False
        for name, value in event.headers:  # names lower-cased; repeated Content-Length merged by h11
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = True
        if chunked or (self.cdc_method == "POST" and length is None):
            self._fail(411, "a Content-Length is required (chunked bodies are not supported)")
            self._hand_over()
            return True
        if length is not None and length > self.cdc_limit:
            self._fail(413, f"body larger than {self.cdc_limit} bytes")
            if length > MAX_DRAIN_BYTES:
                self._hand_over()
                return True
            self._skipping = True  # read and drop it so that the client sees the 413
        self._body = bytearray()
        return False

    def _fail(self, status: int, message: str) -> None:
        if not self.cdc_error:
            self.cdc_error = status
            self.cdc_error_msg = message

    def _malformed(self, exc: h11.RemoteProtocolError) -> None:
        """h11 refused the head: answer with a status and one fixed line (no peer bytes echoed)."""
        text = str(exc)
        if "multiple Host" in text:
            self._fail(400, "repeated Host header")
        elif "Content-Length" in text:
            self._fail(400, "bad content-length (ASCII digits only)")
        elif "Transfer-Encoding" in text:
            self._fail(411, "a Content-Length is required (chunked bodies are not supported)")
        elif exc.error_status_hint == 431:
            self._fail(431, f"request head larger than {MAX_HEAD_BYTES} bytes")
        else:
            self._fail(400, "malformed HTTP request")
        self._head = None
        self._hand_over()

    def _hand_over(self) -> None:
        """The request is complete (or refused early): a WebSocket upgrade goes to websockets as
        the client's own bytes; anything else is answered here (:meth:`_answer`)."""
        conn, head, body, raw = self._h11, self._head, self._body, self._raw
        self._h11 = self._head = self._body = self._raw = None
        self._handed_over = True
        self._gate_release()  # the request is complete: no longer counted as unfinished
        assert conn is not None
        rest, _closed = conn.trailing_data
        if rest:
            self.cdc_extra = True  # never parsed (no pipelining): the answer closes
        if head is not None and not self.cdc_error and raw is not None and _is_upgrade(head):
            # h11 has checked the head; websockets parses it again and performs the handshake
            self.pass_to_websockets(bytes(raw[: len(raw) - len(rest)]))
            return
        self.cdc_plain = True
        if not self.cdc_error and body:
            self.cdc_body = bytes(body)
        if head is None:
            request = Request("/", Headers())
        else:
            request = Request(
                head.target.decode("ascii", "surrogateescape"),
                Headers(
                    (name.decode("ascii"), value.decode("ascii", "surrogateescape"))
                    for name, value in head.headers.raw_items()
                    if not (self._no_host and not value and name.lower() == b"host")
                ),
            )
        self._answer_task = self.loop.create_task(self._answer(conn, request), name="cdc-http")

    async def _answer(self, conn: h11.Connection, request: Request) -> None:
        """Route a plain HTTP request (``cdc_router``), write the answer with h11, close."""
        try:
            assert self.cdc_router is not None
            response = await self.cdc_router(self, request)
        except Exception:  # noqa: BLE001 - a bug must not leave the client hanging
            log.error("HTTP request failed", exc_info=True)
            response = _error(500, "internal error; see the server log")
        if response is None:  # /ws/events without an upgrade
            response = _error(426, "not a WebSocket upgrade: /ws/events needs a WebSocket client", [("Upgrade", "websocket")])
        headers = response.headers
        if self.cdc_server_header:
            headers["Server"] = self.cdc_server_header
        try:
            data = conn.send(
                h11.Response(
                    status_code=response.status_code,
                    reason=response.reason_phrase.encode("ascii", "replace"),
                    headers=[(k.encode("ascii"), v.encode("latin-1", "replace")) for k, v in headers.raw_items()],
                )
            ) or b""
            if response.body and self.cdc_method != "HEAD":
                data += conn.send(h11.Data(data=response.body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError as exc:  # pragma: no cover - our own response is malformed
            log.error("HTTP response not sent: %s", exc)
            self.abort()
            return
        self.write_and_close(data)


def _is_upgrade(head: h11.Request) -> bool:
    """A bodiless GET asking for ``Upgrade: websocket``."""
    if head.method != b"GET":
        return False
    upgrade = False
    for name, value in head.headers:
        if name == b"upgrade" and b"websocket" in value.lower():
            upgrade = True
        elif name in (b"content-length", b"transfer-encoding") and value != b"0":
            return False
    return upgrade


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


_SINGLE_HEADERS = ("Host", "Origin", "Authorization", "Content-Type", "Upgrade", "Sec-WebSocket-Key")
"""Headers a request may carry at most once (400 otherwise)."""
