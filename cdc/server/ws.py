"""The WebSocket session of ``/ws/events`` (CONTRACT.md section 5), after websockets' upgrade:
auth and query parameters (close 4401 / 4403 / 4400), the ``hello`` frame, replay then live
through the hub, client ops (``ping``, ``subscribe``, ``auth``) answered with control frames,
token expiry, and the ``ws open`` / ``ws rejected`` / ``ws closed`` access lines.

:class:`WsSessions` is a part of :class:`cdc.server.endpoints.Server` (a mixin); ``_handler`` is
websockets' connection handler.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

from cdc import __version__
from cdc.format.speedups import NAME as SPEEDUPS
from cdc.delivery.auth import Authenticator, Grant, narrow
from cdc.delivery.hub import Filter, Hub, Subscriber
from cdc.model.wire import Auth, ClientMessageError, Ping, Subscribe, SubState, WireFormat, control_frame, decode_client_message
from cdc.delivery.stats import STATS_TYPE
from cdc.delivery.wsconn import ServerConnection, forget_handshake
from cdc.errors import AuthError
from cdc.model.events import EVENT_TYPES
from cdc.server.logsafe import _clean, _peer
from cdc.server.query import _list_field, narrow_keys, parse_subscription

__all__ = ["WsSessions", "WS_RESULTS"]

log = logging.getLogger("cdc.server")
access_log = logging.getLogger("cdc.access")

WS_RESULTS = ("accepted", "unauthorized", "forbidden", "origin", "limit", "bad_request", "shutting_down")
"""Label values of ``cdc_ws_connections_total{result}`` (all exported from the start, at 0)."""

_json_decode = msgspec.json.decode
_msgpack_decode = msgspec.msgpack.decode


class WsSessions:
    """WebSocket sessions of :class:`~cdc.server.endpoints.Server`."""

    hub: Hub
    auth: Authenticator
    heartbeat_ms: int
    ws_results: dict[str, int]
    _closing: bool
    clock: Callable[[], float]  # Server.clock (token expiry)
    _token: Callable[[Request, list[tuple[str, str]]], str | None]  # HttpRoutes._token

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
            "speedups": SPEEDUPS,
            "latest_id": latest,
            "oldest_id": hub.journal.oldest_id,
            "heartbeat_ms": self.heartbeat_ms,
            "epoch": hub.journal.epoch,
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
        forget_handshake(conn)
        del request, params, req, hello, path, query, grant, types, cfs, prefixes, keys
        on_message = self._on_message
        recv = conn.recv
        try:
            await hub.start(sub, since, epoch=epoch)
            if sub.state != SubState.LIVE:
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
            if sub.state != SubState.CLOSED:
                sub.state = SubState.CLOSED
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
        code = sub.close_code
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
        try:
            msg = decode_client_message(m)
        except ClientMessageError as exc:
            err: dict[str, Any] = {"type": "error", "error": str(exc)}
            if exc.op is not None:
                err["op"] = exc.op
            sub.send_control(err)
            return
        op = msg.__struct_config__.tag
        ref = msg.ref
        try:
            if isinstance(msg, Ping):
                out: dict[str, Any] = {"type": "pong", "latest_id": self.hub.latest_id}
            elif isinstance(msg, Subscribe):
                out = self._subscribe(sub, msg)
            else:
                out = self._reauth(sub, msg)
                if not out:
                    return
        except ValueError as exc:
            out = {"type": "error", "error": str(exc), "op": op}
        except AuthError as exc:
            out = {"type": "error", "error": str(exc), "op": op, "code": exc.code}
        if ref is not None:
            out["ref"] = ref
        sub.send_control(out)

    def _subscribe(self, sub: Subscriber, m: Subscribe) -> dict[str, Any]:
        cur = sub.filter
        has_t, types = _list_field(m.types, "types")
        has_c, cfs = _list_field(m.cf, "cf")
        has_p, prefixes = _list_field(m.prefix, "prefix")
        has_k, keys = _list_field(m.key, "key")
        if has_t and types is not None:
            for t in types:
                if t not in EVENT_TYPES and "." not in t and t != STATS_TYPE:
                    raise ValueError(f"unknown event type {t[:40]!r}")
        values = m.values
        want_values = values if values is not None else sub.fmt.values
        t = types if has_t else (sorted(cur.types) if cur.types is not None else None)
        c = cfs if has_c else (sorted(cur.cfs) if cur.cfs is not None else None)
        p = [x.encode() for x in prefixes] if has_p and prefixes is not None else (None if has_p else (list(cur.prefixes) if cur.prefixes is not None else None))
        k = [x.encode("utf-8", "surrogateescape") for x in keys] if has_k and keys is not None else (None if has_k else (list(cur.keys) if cur.keys is not None else None))
        nt, nc, np_ = narrow(sub.grant, t, c, p, want_values)  # AuthError 4403 -> error frame, filter kept
        nk = narrow_keys(sub.grant, k)
        self.hub.set_filter(sub, Filter(nt, nc, np_, nk))
        sub.fmt = WireFormat.of(not sub.text, want_values)
        return {"type": "subscribed", "filter": sub.filter.to_json(), "values": want_values}

    def _reauth(self, sub: Subscriber, m: Auth) -> dict[str, Any] | None:
        try:
            grant = self.auth.verify(m.token)
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
                sub.fmt.values,
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

