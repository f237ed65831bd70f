"""The one place that touches ``websockets`` internals (everything else uses its public API).

The hub writes pre-encoded frames straight into a connection without awaiting (the fan-out
never waits for a subscriber) and the server front-end sees a connection's bytes before
websockets' handshake parser does. Neither is public API, so both live here:

- :func:`write_frames`: ``protocol.state``, ``protocol.extensions``, ``protocol.writes``,
  ``ServerConnection.send_data()`` and ``transport``: the frames are encoded once per list (a
  filter group's subscribers share it) and written straight into the transport, the bytes
  ``protocol.send_text`` / ``send_binary`` would queue (``broadcast()`` encodes per connection);
- :func:`is_paused` / :func:`wait_writable`: ``ServerConnection.paused`` and ``drain()``
  (the transport's high-water-mark flow control);
- :func:`abort` / :func:`lost_waiter`: ``transport.abort()`` and ``connection_lost_waiter``;
- :func:`forget_handshake`: drops ``request`` / ``response`` after the upgrade (memory);
- :class:`FrontConnection`: a ``ServerConnection`` whose ``connection_made`` /
  ``data_received`` / ``process_event`` / ``connection_lost`` call overridable hooks, so the
  server's HTTP front-end (``cdc.server.http``, h11) sees the bytes first, hands a WebSocket
  upgrade to websockets (:meth:`~FrontConnection.pass_to_websockets`) and answers anything else
  itself (:meth:`~FrontConnection.write_and_close`, straight on the transport). For such a
  plain request websockets' handshake task just waits for ``connection_lost``.

pyproject pins ``websockets>=17.0,<18``. On an upgrade re-check, in websockets' source:
``asyncio/connection.py`` (``send_data``, ``paused``, ``drain``, ``connection_lost_waiter``,
``data_received``/``process_event`` being the only entry for received bytes),
``asyncio/server.py`` (``ServerConnection.handshake`` waits for ``request_rcvd`` *or*
``connection_lost_waiter``, reads ``self.request`` once and sends ``self.response``;
``process_event`` takes the first ``Request`` as the handshake; the protocol handler aborts a
connection that is not OPEN after the handshake),
``protocol.py`` (``State``, ``send_text``/``send_binary`` queue bytes that ``send_data`` writes),
``broadcast()`` (still writes this way). Then run ``tests/daemon`` and ``tests/cli/test_security_*``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request
from websockets.protocol import State

__all__ = ["FrontConnection", "write_frames", "encode_frames", "is_paused", "wait_writable", "abort", "lost_waiter", "forget_handshake", "ServerConnection"]

_OPEN = State.OPEN
_CONNECTING = State.CONNECTING


_TEXT = 0x81  # FIN + text opcode
_BINARY = 0x82  # FIN + binary opcode


def encode_frames(frames: list[bytes], text: bool) -> bytes:
    """The bytes of ``frames`` as unfragmented, unmasked server frames (RFC 6455 5.2) with no
    extension: what websockets' ``Frame.serialize`` writes for a server without compression."""
    op = _TEXT if text else _BINARY
    parts: list[bytes] = []
    for f in frames:
        parts.append(_header(op, len(f)))
        parts.append(f)
    return b"".join(parts)


def _header(op: int, n: int) -> bytes:
    """A final, unmasked frame's header for a payload of ``n`` bytes."""
    if n < 126:
        return bytes((op, n))
    if n < 0x10000:
        return bytes((op, 126)) + n.to_bytes(2, "big")
    return bytes((op, 127)) + n.to_bytes(8, "big")


BIG_FRAME = 64 << 10
"""Frames at least this long are written as their header and their payload (no copy of the
payload into one buffer: a whole chunk's frame is a view of the stored value)."""


def _encode_parts(frames: list[bytes], text: bool) -> list[bytes]:
    """:func:`encode_frames` as pieces to write in turn: runs of small frames joined, a big
    frame's payload passed as it is (same bytes on the wire)."""
    if all(len(f) < BIG_FRAME for f in frames):
        return [encode_frames(frames, text)]
    out: list[bytes] = []
    small: list[bytes] = []
    for f in frames:
        if len(f) < BIG_FRAME:
            small.append(f)
            continue
        if small:
            out.append(encode_frames(small, text))
            small = []
        out += (_header(_TEXT if text else _BINARY, len(f)), f)
    if small:
        out.append(encode_frames(small, text))
    return out


_last: tuple[list[bytes] | None, bool, list[bytes]] = (None, True, [])
"""The last frames list encoded (kept alive, so its identity cannot be reused), its text flag and
its bytes: the hub hands one list to every subscriber of a filter group in turn."""


def write_frames(conn: ServerConnection, frames: list[bytes], text: bool) -> bool:
    """Write already-encoded messages into the transport now, never waiting; False when the
    connection is not open or the transport is broken (its handler sees the close).

    Fast path (no extension negotiated, the server's case: ``compression=None``): the frames are
    encoded by :func:`encode_frames` once per list and written with one ``transport.write``, the
    same bytes websockets' ``send_text``/``send_binary`` + ``send_data`` would write frame by
    frame; anything websockets queued before (a pong, a close) goes out first. A frames list must
    not change once written (the hub builds a new list per fan-out; queued lists stay as built).
    """
    global _last
    proto = conn.protocol
    if proto.state is not _OPEN:
        return False
    try:
        if proto.extensions or proto.expect_continuation_frame:
            send = proto.send_text if text else proto.send_binary
            for f in frames:
                send(bytes(f))  # frames may be memoryviews of stored chunks (cdc.model.chunk)
            conn.send_data()
            return True
        last = _last
        if last[0] is frames and last[1] is text:
            parts = last[2]
        else:
            parts = _encode_parts(frames, text)
            _last = (frames, text, parts)
        if proto.writes:
            conn.send_data()
        write = conn.transport.write
        for data in parts:
            write(memoryview(data))  # asyncio slices what the socket did not take: no copy of a view
    except Exception:  # noqa: BLE001 - a broken transport: the handler sees the close and cleans up
        return False
    return True


def is_paused(conn: ServerConnection) -> bool:
    """True while the transport is above its high-water mark."""
    return conn.paused


async def wait_writable(conn: ServerConnection) -> None:
    """Wait until the transport drops below its low-water mark (raises when the connection is lost)."""
    await conn.drain()


def abort(conn: ServerConnection) -> None:
    """Drop the TCP connection now (no closing handshake)."""
    conn.transport.abort()


def lost_waiter(conn: ServerConnection) -> asyncio.Future[None]:
    """A future done once the TCP connection is gone."""
    return conn.connection_lost_waiter


_DONE_REQUEST = Request("/", Headers())
"""Shared stand-in for a connection's handshake request once it has been read (memory)."""


def forget_handshake(conn: ServerConnection) -> None:
    """Release the handshake's request and response (idle subscribers stay small).

    websockets' parser generator keeps the Request object itself, so its headers are cleared too.
    """
    req = conn.request
    if req is not None:
        req.headers.clear()
    conn.request = _DONE_REQUEST
    conn.response = None


class FrontConnection(ServerConnection):
    """A ServerConnection with hooks for a front-end that sees the bytes first.

    Subclasses override :meth:`on_connect`, :meth:`on_bytes`, :meth:`on_handshake_request` and
    :meth:`on_lost`; they hand bytes to websockets with :meth:`pass_to_websockets`.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.on_connect(transport)

    def data_received(self, data: bytes) -> None:
        self.on_bytes(data)

    def process_event(self, event: Any) -> None:
        if self.request is None and isinstance(event, Request):
            self.on_handshake_request()
        super().process_event(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_lost()
        super().connection_lost(exc)

    # -- for subclasses

    def pass_to_websockets(self, data: bytes) -> None:
        """Feed bytes to websockets' parser (handshake request, then frames)."""
        super().data_received(data)

    def awaiting_answer(self) -> bool:
        """The handshake request is read and not answered yet (bytes now would be taken for frames)."""
        return self.request is not None and self.protocol.state is _CONNECTING

    def abort(self) -> None:
        self.transport.abort()

    def write_and_close(self, data: bytes) -> None:
        """Write bytes outside websockets' protocol (a plain HTTP answer), then close the TCP
        connection once they are flushed (a no-op when it is already gone)."""
        transport = self.transport
        if not transport.is_closing():
            transport.write(data)
            transport.close()

    def call_later(self, delay: float, callback: Any) -> asyncio.TimerHandle:
        return self.loop.call_later(delay, callback)

    # -- hooks

    def on_connect(self, transport: asyncio.BaseTransport) -> None:
        """The TCP connection is accepted."""

    def on_bytes(self, data: bytes) -> None:
        """Bytes arrived; the default hands them to websockets."""
        self.pass_to_websockets(data)

    def on_handshake_request(self) -> None:
        """websockets has parsed the request it will answer."""

    def on_lost(self) -> None:
        """The TCP connection is gone."""
