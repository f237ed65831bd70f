"""``cdc tail``: a debugging subscriber that prints events as NDJSON or readable lines.

Invariants:
- stdout carries only events (one per line, flushed per line); notices go to stderr;
- after a drop it reconnects with ``since`` = the last id printed (or the ``latest_id`` of the
  first ``hello`` when nothing was printed yet), so no event is lost or printed twice;
- the token travels in an ``Authorization`` header (never in the URL) and is never printed;
- ``--count N`` exits 0 right after the N-th event.

Exit codes: 0 done (count reached), 2 token rejected (4401/4403) or bad URL, 3 the daemon
cannot be reached (first connection) or refuses the upgrade.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import urllib.parse
from dataclasses import dataclass
from typing import IO, Any

import msgspec

from cdc.errors import UserError

__all__ = ["TailOptions", "normalize_ws_url", "format_pretty", "run_tail"]

_decoder = msgspec.json.Decoder()


@dataclass
class TailOptions:
    url: str
    token: str | None = None
    since: int | None = None
    epoch: str | None = None  # journal identity of `since` (hello.epoch); another journal -> reset
    types: list[str] | None = None
    cf: list[str] | None = None
    prefix: list[str] | None = None
    count: int | None = None
    values: bool = False
    fmt: str = "ndjson"
    quiet: bool = False
    max_backoff_s: float = 5.0
    open_timeout_s: float = 10.0


class TailError(UserError):
    """A failure of ``cdc tail``: one line, with the exit code it carries (cdc.cli.errors)."""


def normalize_ws_url(url: str) -> str:
    """``http://h:p`` / ``ws://h:p`` / ``h:p`` -> ``ws://h:p/ws/events`` (path kept if given).

    Raises:
        ValueError: not an http(s)/ws(s) URL.
    """
    from cdc.cli.publish import split_daemon_url

    scheme, parts = split_daemon_url(url, "ws")
    path = parts.path if parts.path not in ("", "/") else "/ws/events"
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def _with_query(url: str, params: list[tuple[str, str]]) -> str:
    """Add ``params`` to the URL's query; names given in ``params`` replace the URL's own."""
    parts = urllib.parse.urlsplit(url)
    names = {k for k, _ in params}
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k not in names]
    query.extend(params)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, safe=",")))


def _ts(ms: Any) -> str:
    if not isinstance(ms, int | float):
        return "--:--:--.---"
    t = time.localtime(ms / 1000)
    return time.strftime("%H:%M:%S", t) + f".{int(ms) % 1000:03d}"


def _short(v: Any, limit: int = 80) -> str:
    s = v if isinstance(v, str) else msgspec.json.encode(v).decode()
    return s if len(s) <= limit else s[: limit - 1] + "…"


def format_pretty(ev: dict[str, Any]) -> str:
    """One readable line for an event: ``#id HH:MM:SS.mmm type ...``."""
    head = f"#{ev.get('id')} {_ts(ev.get('timestamp'))} {ev.get('type')}"
    t = ev.get("type")
    if t == "key_change":
        key = ev.get("key", "")
        if ev.get("key_encoding"):
            key = f"b64:{key}"
        line = f"{head} {ev.get('operation')} [{ev.get('cf', 'default')}] {_short(key)}"
        if "end_key" in ev:
            end = ev["end_key"] if not ev.get("end_key_encoding") else f"b64:{ev['end_key']}"
            line += f" .. {_short(end)}"
        if "value" in ev:
            val = ev["value"] if not ev.get("value_encoding") else f"b64:{ev['value']}"
            line += f" = {_short(val)}"
        if "seq" in ev:
            line += f" (seq {ev['seq']})"
        return line
    rest = {k: v for k, v in ev.items() if k not in ("id", "timestamp", "type")}
    parts = []
    for k in ("status", "probe", "cf", "name", "job", "reason"):
        if k in rest and rest[k] not in ("", None):
            parts.append(f"{k}={_short(rest.pop(k), 40)}")
    for k, v in rest.items():
        parts.append(f"{k}={_short(v)}")
    return f"{head} " + " ".join(parts)


class _Tail:
    def __init__(self, opts: TailOptions, out: IO[str], err: IO[str]) -> None:
        self.opts = opts
        self.out = out
        self.err = err
        self.cursor: int | None = opts.since
        self.epoch: str | None = opts.epoch
        self.printed = 0
        self.connected_once = False

    def note(self, text: str) -> None:
        if not self.opts.quiet:
            print(f"cdc tail: {text}", file=self.err, flush=True)

    def url(self) -> str:
        params: list[tuple[str, str]] = []
        if self.cursor is not None:
            params.append(("since", str(self.cursor)))
            if self.epoch:
                params.append(("epoch", self.epoch))
        if self.opts.types:
            params.append(("types", ",".join(self.opts.types)))
        if self.opts.cf:
            params.append(("cf", ",".join(self.opts.cf)))
        # one query value per prefix: keys (and so prefixes) may contain commas
        params.extend(("prefix", p) for p in self.opts.prefix or ())
        if self.opts.values:
            params.append(("values", "1"))
        return _with_query(normalize_ws_url(self.opts.url), params)

    def emit(self, ev: dict[str, Any], raw: str | bytes) -> bool:
        """Print one event; True when --count is reached."""
        eid = ev.get("id")
        if isinstance(eid, int):
            if self.cursor is not None and eid <= self.cursor and self.connected_once and self.printed:
                return False  # duplicate after a reconnect (defensive; the server should not send it)
            self.cursor = eid
        if self.opts.fmt == "pretty":
            line = format_pretty(ev)
        else:
            line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            line = line.strip()
        self.out.write(line + "\n")
        self.out.flush()
        self.printed += 1
        return self.opts.count is not None and self.printed >= self.opts.count

    def control(self, msg: dict[str, Any]) -> None:
        t = msg.get("type")
        if t == "hello":
            latest = msg.get("latest_id")
            if self.cursor is None and isinstance(latest, int):
                self.cursor = latest  # resume point if the first connection drops before any event
            epoch = msg.get("epoch")
            self.note(f"connected (server {msg.get('version', '?')}, latest id {latest}" + (f", epoch {epoch})" if epoch else ")"))
            if isinstance(epoch, str) and epoch:
                self.epoch = epoch  # a reset follows when it differs from the one sent
        elif t == "reset":
            if msg.get("reason") == "epoch_changed":
                self.note(
                    f"the daemon has another journal (epoch {msg.get('epoch')}, latest {msg.get('latest_id')}): "
                    "ids restarted; continuing live from there"
                )
            else:
                self.note(
                    f"cursor expired (oldest retained id {msg.get('oldest_id')}, latest {msg.get('latest_id')}):"
                    " events were missed; continuing live"
                )
            latest = msg.get("latest_id")
            if isinstance(latest, int):
                self.cursor = latest
        elif t == "error":
            self.note(f"server error: {msg.get('message') or msg.get('reason') or msg}")

    async def session(self) -> bool:
        """One connection; True when done (count reached)."""
        from websockets.asyncio.client import connect

        headers = {"Authorization": f"Bearer {self.opts.token}"} if self.opts.token else None
        async with connect(
            self.url(),
            additional_headers=headers,
            open_timeout=self.opts.open_timeout_s,
            max_size=64 << 20,
            ping_interval=20,
            ping_timeout=20,
            # leaving early (--count) with unread frames queued: don't wait long for the close
            # handshake, whose answer sits behind frames we will never read
            close_timeout=0.5,
        ) as ws:
            self.connected_once = True
            async for frame in ws:
                try:
                    msg = _decoder.decode(frame)
                except msgspec.DecodeError:
                    self.note("ignored a frame that is not JSON")
                    continue
                items = msg if isinstance(msg, list) else [msg]
                for item in items:
                    if not isinstance(item, dict):
                        continue
                    if "id" in item and item.get("type") not in ("hello", "heartbeat", "pong", "error", "subscribed", "reset"):
                        raw = frame if len(items) == 1 else msgspec.json.encode(item)
                        if self.emit(item, raw):
                            return True
                    else:
                        self.control(item)
        return False

    async def run(self) -> int:
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

        delay = 0.2
        while True:
            try:
                if await self.session():
                    return 0
                self.note("connection closed; reconnecting")
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                reason = exc.rcvd.reason if exc.rcvd is not None else ""
                if code == 4401:
                    raise TailError("token rejected (missing, invalid or expired) - close 4401", 2) from None
                if code == 4403:
                    raise TailError(f"token not allowed what was asked - close 4403 {reason}".strip(), 2) from None
                if code == 4400 or code == 1008 or (code is not None and 4000 <= code < 5000 and code != 4429):
                    raise TailError(f"the server rejected the subscription (close {code}): {reason or 'no reason'}", 2) from None
                if code == 4429:
                    self.note("server closed us as too slow (4429); resuming")
                    delay = 0.05
                elif code == 1001:
                    self.note("server shutting down (1001); reconnecting")
                else:
                    self.note(f"connection lost ({code or 'no close frame'}); reconnecting")
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    what = "token rejected" if status == 401 else "forbidden (Origin or token)"
                    raise TailError(f"{what}: HTTP {status}", 2) from None
                if not self.connected_once:
                    raise TailError(f"the server refused the WebSocket upgrade: HTTP {status}", 3) from None
                self.note(f"upgrade refused (HTTP {status}); retrying")
            except InvalidURI as exc:
                raise TailError(f"bad URL: {exc}", 2) from None
            except (OSError, InvalidHandshake, TimeoutError, asyncio.TimeoutError) as exc:
                if not self.connected_once:
                    target = normalize_ws_url(self.opts.url)
                    if isinstance(exc, ConnectionRefusedError):
                        why = "connection refused (is the daemon running?)"
                    else:
                        why = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                    raise TailError(f"cannot connect to {target}: {why}", 3) from None
                self.note(f"reconnecting ({type(exc).__name__})")
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(self.opts.max_backoff_s, max(0.2, delay * 2))


def run_tail(opts: TailOptions, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Run ``cdc tail``; returns the exit code. Raises UserError (one line) on failures."""
    try:
        normalize_ws_url(opts.url)
    except ValueError as exc:
        raise UserError(str(exc), 2) from None
    tail = _Tail(opts, out or sys.stdout, err or sys.stderr)
    return asyncio.run(tail.run())  # a TailError (a UserError) carries its exit code
