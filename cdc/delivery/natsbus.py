"""NATS JetStream scale-out: shared conventions and the capture node's publisher.

``cdc serve --nats-url ...`` runs :class:`NatsPublisher` as a component: it copies the journal,
in id order, into a JetStream stream; ``cdc edge`` (cdc/edge.py) mirrors that stream into a
local journal and serves it with the same ids.

Conventions (the stream is the wire between capture node and edges):

- Stream ``<name>`` (``--nats-stream``, default ``CDC``) with subjects ``cdc.<name>.*.*``;
  created if missing (file storage, ``--nats-replicas`` replicas, no limits: set limits on the
  stream with the ``nats`` tool if wanted; an edge answers ``reset`` to a cursor older than
  what the stream keeps).
- A message holds a run of consecutive journal records of one type and cf, on subject
  ``cdc.<name>.<type>.<cf>`` (tokens escaped by :func:`subject_token`; ``~`` = no cf), so that a
  consumer can filter by type and cf server-side. Payload (:func:`pack_records`): ``>QI`` (first
  id, n), n ``>I`` lengths of the ``ev`` values, n of the ``ix`` values, then the journal's stored
  ``ev`` values (the events' wire JSON with id, without value) and ``ix`` values (see
  cdc/journal.py): an edge stores them verbatim, so its frames are byte-identical to the capture
  node's. Ids within a message are consecutive. Headers: ``Cdc-First-Id``, ``Cdc-Last-Id``,
  ``Nats-Msg-Id: <epoch or stream>:<first id>`` and, when the journal has an identity,
  ``Cdc-Epoch``.
- ``POST /publish`` on an edge is a NATS request to ``cdc.<name>.publish`` (outside the stream's
  subjects) with the validated event as JSON; the capture node answers ``{"id": N}`` or
  ``{"error": "...", "status": 400|503}``.

Exactly once into the stream: the publisher has at most ``window`` messages in flight (small
ones only while fewer than ``EAGER_INFLIGHT`` are: the rest wait for acks and leave together), each
with ``Nats-Expected-Last-Sequence`` (the stream's sequence it must follow) and a
``Nats-Msg-Id``: a message can only land right after its predecessor, so the stream never has a
hole or a reordering, and a resend is de-duplicated. On any failure (timeout, NATS down,
leader change) it waits, reads the stream's last message (``Cdc-Last-Id``) and resumes after
it. The journal stays the source of truth: capture and local subscribers never wait for NATS.
Lag is ``cdc_nats_publish_lag_events``; the readiness condition ``nats_lag`` fails when the lag
exceeds ``nats_max_lag_events`` or NATS has been unreachable for ``nats_max_down_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
import sys
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from itertools import accumulate, repeat
from operator import add, and_
from typing import TYPE_CHECKING, Any

import msgspec

from cdc.errors import ConfigError
from cdc.journal.lmdb_journal import Journal
from cdc.model.chunk import IX, ix_type_cf, ix_type_cf_len

if TYPE_CHECKING:
    from cdc.delivery.context import PublisherContext

__all__ = [
    "NatsPublisher",
    "require_nats",
    "subject_token",
    "event_subject",
    "stream_subjects",
    "publish_subject",
    "pack_records",
    "unpack_records",
    "ix_type_cf",
]

log = logging.getLogger("cdc.nats")

_json_decode = msgspec.json.Decoder().decode

H_FIRST = "Cdc-First-Id"
H_LAST = "Cdc-Last-Id"
H_EPOCH = "Cdc-Epoch"
H_MSG_ID = "Nats-Msg-Id"
H_EXPECT_SEQ = "Nats-Expected-Last-Sequence"

MAX_MSG_RECORDS = 1000
EAGER_INFLIGHT = 1
"""Messages in flight below which new records go out at once; above it they wait for acks and
leave together (up to the publisher's window of full messages)."""
"""Most records in one stream message."""
MAX_MSG_BYTES = 512 << 10
"""About the largest payload of one stream message (a single bigger record travels alone;
NATS' default max_payload is 1 MiB)."""


def require_nats() -> Any:
    """Import nats-py or raise a one-line ConfigError saying how to get it."""
    try:
        import nats  # noqa: F401
        import nats.js  # noqa: F401
    except ImportError:
        raise ConfigError("--nats-url needs the nats-py package: pip install 'cdc[nats]'") from None
    return nats


# ---------------------------------------------------------------------------- conventions

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def subject_token(text: str | None) -> str:
    """One NATS subject token for a type or cf: ``~`` for None, ``%`` for "", bytes outside
    ``[A-Za-z0-9_-]`` as ``%XX`` (so ``.``, ``*``, ``>``, spaces never reach the subject);
    a token over 128 characters becomes ``%h`` + the first 32 hex digits of its SHA-256."""
    if text is None:
        return "~"
    if not text:
        return "%"
    raw = text.encode("utf-8", "surrogateescape")
    if all(b in _SAFE for b in raw):
        tok = text
    else:
        tok = "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in raw)
    if len(tok) > 128:
        import hashlib

        tok = "%h" + hashlib.sha256(raw).hexdigest()[:32]
    return tok


def event_subject(stream: str, etype: str, cf: str | None) -> str:
    return f"cdc.{stream}.{subject_token(etype)}.{subject_token(cf)}"


def stream_subjects(stream: str) -> list[str]:
    return [f"cdc.{stream}.*.*"]


def publish_subject(stream: str) -> str:
    return f"cdc.{stream}.publish"


_HEAD = struct.Struct(">QI")  # first id, record count
_SWAP = sys.byteorder == "little"  # array("I") is native-endian; the payload is big-endian
_lens_structs: dict[int, struct.Struct] = {}


def _lens_struct(n: int) -> struct.Struct:
    st = _lens_structs.get(n)
    if st is None:
        st = struct.Struct(f">{2 * n}I")
        if len(_lens_structs) < 4096:
            _lens_structs[n] = st
    return st


def _pack(first: int, wires: Sequence[bytes], ixs: Sequence[bytes]) -> bytes:
    lens = array("I", map(len, wires))
    lens.extend(map(len, ixs))
    if _SWAP:
        lens.byteswap()
    return b"".join((_HEAD.pack(first, len(wires)), lens.tobytes(), b"".join(wires), b"".join(ixs)))


def pack_records(items: list[tuple[int, bytes, bytes]]) -> bytes:
    """Payload of one message: ``>QI`` (first id, n), ``n`` x ``>I`` len(ev), ``n`` x ``>I``
    len(ix), every record's ev bytes, then every record's ix bytes. The ids of a message are
    consecutive (first .. first+n-1)."""
    return _pack(items[0][0], [it[1] for it in items], [it[2] for it in items])


def unpack_records(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Inverse of :func:`pack_records`. Raises ValueError on a malformed payload."""
    if len(data) < _HEAD.size:
        raise ValueError("truncated header")
    first, n = _HEAD.unpack_from(data)
    if n == 0 or n > (len(data) - _HEAD.size) // 8:
        raise ValueError("bad record count")
    try:
        lens = _lens_struct(n).unpack_from(data, _HEAD.size)
    except struct.error:
        raise ValueError("truncated lengths") from None
    p = _HEAD.size + 8 * n
    if p + sum(lens) != len(data):
        raise ValueError("payload size does not match the record lengths")
    q = p + sum(lens[:n])  # start of the ix bytes
    out: list[tuple[int, bytes, bytes]] = []
    for i in range(n):
        wl = lens[i]
        il = lens[n + i]
        if il < 20:
            raise ValueError("record index too short")
        out.append((first + i, data[p : p + wl], data[q : q + il]))
        p += wl
        q += il
    return out


def _run_end(ixs: Sequence[bytes], i: int, limit: int) -> int:
    """First index in (i, limit] whose (type, cf) differs from ixs[i]'s (compared as raw bytes:
    the length fields at ix[8:12] and the type+cf bytes after the 20-byte header), or limit.
    C-level maps over growing windows: a long run costs little per record, a short one little."""
    ix = ixs[i]
    hdr = ix[8:12]
    tc = ix[IX.size : IX.size + ix_type_cf_len(ix)]
    j = i + 1
    step = 8
    while j < limit:
        hi = min(limit, j + step)
        window = ixs[j:hi]
        k = len(window)
        ok = list(map(and_, map(bytes.startswith, window, repeat(hdr, k), repeat(8, k)), map(bytes.startswith, window, repeat(tc, k), repeat(20, k))))
        if not all(ok):
            return j + ok.index(False)
        j = hi
        step *= 8
    return limit


def build_messages(stream: str, items: list[tuple[int, bytes, bytes]]) -> list[tuple[str, bytes, int, int]]:
    """Group consecutive records of one (type, cf) into messages: (subject, payload, first, last),
    at most MAX_MSG_RECORDS records and about MAX_MSG_BYTES each (one record at least)."""
    if not items:
        return []
    return build_messages_cols(stream, items[0][0], [it[1] for it in items], [it[2] for it in items])


def build_messages_cols(stream: str, first: int, wires: list[bytes], ixs: list[bytes]) -> list[tuple[str, bytes, int, int]]:
    """:func:`build_messages` on columns (ids first, first+1, ...): no per-record Python work."""
    n = len(ixs)
    cum = list(accumulate(map(add, map(len, wires), map(len, ixs)), initial=0))  # bytes before index i
    out: list[tuple[str, bytes, int, int]] = []
    i = 0
    while i < n:
        limit = min(n, i + MAX_MSG_RECORDS, max(i + 1, bisect_right(cum, cum[i] + MAX_MSG_BYTES) - 1))
        j = _run_end(ixs, i, limit)
        etype, cf = ix_type_cf(ixs[i])
        out.append((event_subject(stream, etype, cf), _pack(first + i, wires[i:j], ixs[i:j]), first + i, first + j - 1))
        i = j
    return out


async def connect(config: Any, name: str, on_state: Any = None) -> Any:
    """Connect to NATS (reconnecting forever once connected). Raises on the first failure."""
    nats = require_nats()

    async def disconnected() -> None:
        if on_state is not None:
            on_state(False)

    async def reconnected() -> None:
        if on_state is not None:
            on_state(True)

    async def error(exc: Exception) -> None:
        log.debug("nats: %s", exc)

    opts: dict[str, Any] = dict(
        servers=list(config.nats_url),
        name=name,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=2,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        error_cb=error,
        pending_size=64 << 20,
    )
    if config.nats_creds:
        opts["user_credentials"] = config.nats_creds
    nc = await nats.connect(**opts)
    if on_state is not None:
        on_state(True)
    return nc


async def close_connection(nc: Any) -> None:
    """Close a NATS connection (``None``: nothing), bounded to 2 s, ignoring its errors."""
    if nc is not None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await nc.close()


async def retry_until_stopped(
    stop: asyncio.Event,
    attempt: Callable[[], Awaitable[None]],
    on_error: Callable[[Exception], Awaitable[None]],
    after: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run ``attempt`` until ``stop`` is set. An exception goes to ``on_error``; ``after`` runs
    after every attempt; the next attempt waits a backoff (0.2 s doubling to 2 s, reset by an
    attempt that returned) or ``stop``."""
    backoff = 0.2
    while not stop.is_set():
        try:
            await attempt()
            backoff = 0.2
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - NATS trouble: the caller logs it, then retry
            await on_error(exc)
        if after is not None:
            await after()
        if stop.is_set():
            break
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(backoff):
                await stop.wait()
        backoff = min(backoff * 2, 2.0)


async def ensure_stream(js: Any, config: Any) -> Any:
    """The stream's info; creates the stream when it does not exist."""
    from nats.js.api import StorageType, StreamConfig
    from nats.js.errors import NotFoundError

    name = config.nats_stream
    try:
        return await js.stream_info(name)
    except NotFoundError:
        pass
    cfg = StreamConfig(name=name, subjects=stream_subjects(name), storage=StorageType.FILE, num_replicas=config.nats_replicas)
    try:
        await js.add_stream(cfg)
    except Exception as exc:  # noqa: BLE001 - created by someone else meanwhile
        log.debug("add_stream: %s", exc)
    return await js.stream_info(name)


async def stream_tail(js: Any, stream: str) -> tuple[int, int, int, int, str | None]:
    """(first seq, last seq, messages, id of the last record in the stream or 0 when empty, the
    journal epoch of that message or None)."""
    info = await js.stream_info(stream)
    st = info.state
    last_id = 0
    epoch = None
    if st.messages:
        msg = await js.get_msg(stream, seq=st.last_seq)
        hdr = msg.headers or {}
        raw = hdr.get(H_LAST)
        if raw is None:
            raise ValueError(f"stream {stream}: last message (seq {st.last_seq}) was not written by cdc (no {H_LAST} header)")
        last_id = int(raw)
        epoch = hdr.get(H_EPOCH)
    return st.first_seq, st.last_seq, st.messages, last_id, epoch


def _epoch(journal: Journal) -> str | None:
    """The journal identity (``epoch``), None when empty."""
    return journal.epoch or None


# ---------------------------------------------------------------------------- publisher


class NatsPublisher:
    """Component of ``cdc serve``: journal -> JetStream stream, exactly once, in id order."""

    def __init__(self, config: Any, *, window: int = 64) -> None:
        self.config = config
        self.window = window
        self.stream = config.nats_stream
        self.published_id = -1  # last id known to be in the stream (-1: unknown yet)
        self.connected = False
        self._down_since: float | None = time.monotonic()
        self._problem = ""  # a reason publishing is stopped (stream ahead of the journal, ...)
        self.messages = 0
        self.errors = 0
        self._wake = asyncio.Event()
        self._nc: Any = None
        self._pub: tuple[Any, Any] | None = None

    # -------------------------------------------------------------- health / metrics

    def _on_state(self, up: bool) -> None:
        self.connected = up
        if up:
            self._down_since = None
        elif self._down_since is None:
            self._down_since = time.monotonic()
        self._wake.set()

    def _report(self, ctx: PublisherContext) -> None:
        latest = ctx.journal.latest_id
        lag = max(0, latest - self.published_id) if self.published_id >= 0 else latest
        m = ctx.metrics
        m.set("nats_publish_lag_events", lag)
        m.set("nats_published_id", max(0, self.published_id))
        m.set("nats_connected", 1 if self.connected else 0)
        reason = ""
        if self._problem:
            reason = self._problem
        elif self._down_since is not None and time.monotonic() - self._down_since > self.config.nats_max_down_s:
            reason = f"NATS unreachable for {time.monotonic() - self._down_since:.0f} s; publishing {lag} events behind"
        elif lag > self.config.nats_max_lag_events:
            reason = f"NATS publishing is {lag} events behind the journal"
        ctx.health.set("readiness", "nats_lag", not reason, reason)

    async def _reporter(self, ctx: PublisherContext, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._report(ctx)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await stop.wait()

    # -------------------------------------------------------------- main loop

    async def run(self, ctx: PublisherContext) -> None:
        require_nats()
        stop = ctx.stop
        done = asyncio.Event()
        reporter = asyncio.create_task(self._reporter(ctx, done))
        stopper = asyncio.create_task(self._wake_on(stop))
        try:
            await retry_until_stopped(stop, lambda: self._session(ctx), self._interrupted, self._close_if_down)
        finally:
            await self._close()
            done.set()
            stopper.cancel()
            reporter.cancel()
            self._report(ctx)

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _interrupted(self, exc: Exception) -> None:  # capture goes on
        self.errors += 1
        if self.connected or self.errors == 1:
            log.warning("NATS publishing interrupted (%s: %s); retrying", type(exc).__name__, str(exc)[:200])
        else:
            log.debug("NATS publishing: %s", exc)

    async def _close_if_down(self) -> None:
        nc = self._nc
        if nc is not None and (nc.is_closed or not (nc.is_connected or nc.is_reconnecting)):
            await self._close()  # otherwise nats-py reconnects by itself: resync on the same connection

    async def _close(self) -> None:
        nc, self._nc = self._nc, None
        await close_connection(nc)
        self._on_state(False)

    async def _session(self, ctx: PublisherContext) -> None:
        """One connection: ensure the stream, answer /publish requests, publish until an error."""
        nc = self._nc
        if nc is None:
            nc = self._nc = await connect(self.config, f"cdc-capture:{self.stream}", self._on_state)

            async def on_request(msg: Any) -> None:
                await self._answer(ctx, msg)

            await nc.subscribe(publish_subject(self.stream), queue="cdc-capture", cb=on_request)
        js = nc.jetstream(timeout=5.0)
        await ensure_stream(js, self.config)
        log.info("NATS: publishing the journal to stream %s", self.stream)
        while not ctx.stop.is_set():
            await self._publish_loop(ctx, nc, js)

    async def _publish_loop(self, ctx: PublisherContext, nc: Any, js: Any) -> None:
        """Resync with the stream's tail, then publish until an error (raised) or stop."""
        journal = ctx.journal
        _first, last_seq, _n, last_id, stream_epoch = await stream_tail(js, self.stream)
        # A stream whose last message carries another journal's epoch belongs to another journal
        # (ids there mean other events): refuse, as for a stream ahead of this journal. Edges pass
        # the epoch on to their mirror (EdgeSource calls journal.set_epoch) for `hello`.
        mine = _epoch(journal)
        foreign = bool(stream_epoch and mine and stream_epoch != mine)
        if foreign or last_id > journal.latest_id:
            why = (
                f"its last message belongs to journal epoch {stream_epoch}, this journal is {mine}"
                if foreign
                else f"it holds ids up to {last_id} but this journal only to {journal.latest_id} (another journal?)"
            )
            self._problem = (
                f"stream {self.stream}: {why}: not publishing; use a new --nats-stream or purge the stream"
            )
            log.error("%s", self._problem)
            self._report(ctx)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30.0):
                    await ctx.stop.wait()
            return
        self._problem = ""
        if last_id == 0:
            last_id = max(0, journal.oldest_id - 1)  # new stream: every retained event
        self.published_id = last_id
        pos = last_id  # last id handed to NATS
        expect = last_seq  # stream seq the next message must follow
        epoch = _epoch(journal)
        id_prefix = epoch or self.stream
        inflight: deque[tuple[Any, int, int]] = deque()  # (future, last id, expected seq after)
        if self._pub is None or self._pub[0] is not nc:
            self._pub = (nc, self._pub_async(nc, js))
        pub = self._pub[1]
        while not ctx.stop.is_set():
            # fill the window; while a message is in flight, small amounts wait for its ack and
            # go out together (self-clocking batching: no added latency when idle, few messages
            # per event under load)
            backlog = journal.latest_id - pos
            if backlog > 0 and (len(inflight) < EAGER_INFLIGHT or len(inflight) < self.window and backlog >= MAX_MSG_RECORDS):
                if pos < journal.oldest_id - 1:
                    lost = journal.oldest_id - 1 - pos
                    log.error("NATS publisher fell behind the journal's retention: %d events were pruned before being published", lost)
                    ctx.metrics.inc("nats_publish_skipped_events", lost)
                    pos = journal.oldest_id - 1
                if journal.latest_id - pos > 512:
                    cols = await asyncio.to_thread(journal.read_columns, pos, MAX_MSG_RECORDS * 4, MAX_MSG_BYTES * 4)
                else:
                    cols = journal.read_columns(pos, MAX_MSG_RECORDS * 4, MAX_MSG_BYTES * 4)
                if cols is None:  # not consecutive (never in a capture journal): record by record
                    items = journal.read_raw(pos, MAX_MSG_RECORDS * 4, MAX_MSG_BYTES * 4)
                    cols = (items[0][0], [it[1] for it in items], [it[2] for it in items]) if items else (pos + 1, [], [])
                if cols[1] and cols[0] != pos + 1:
                    continue  # pruned meanwhile: the check above counts it
                for subject, payload, first, last in build_messages_cols(self.stream, *cols):
                    if len(inflight) >= self.window:
                        break
                    hdr = {H_MSG_ID: f"{id_prefix}:{first}", H_FIRST: str(first), H_LAST: str(last), H_EXPECT_SEQ: str(expect)}
                    if epoch:
                        hdr[H_EPOCH] = epoch
                    fut = await pub(subject, payload, hdr)
                    expect += 1
                    inflight.append((fut, last, expect))
                    pos = last
                continue
            if inflight:
                fut, last, seq = inflight[0]
                try:
                    async with asyncio.timeout(5.0):
                        ack = await fut
                except BaseException:
                    for f, _l, _s in inflight:
                        f.cancel()
                    raise
                inflight.popleft()
                if ack.get("duplicate") or ack.get("seq") != seq:
                    for f, _l, _s in inflight:
                        f.cancel()
                    raise RuntimeError(f"stream out of step (ack seq {ack.get('seq')}, expected {seq}); resyncing")
                self.published_id = last
                self.messages += 1
                ctx.metrics.inc("nats_published_messages")
                continue
            # idle: wait for the next commit (hub.publish follows every commit; no await between
            # the check above and the wait, so none is missed) or a periodic re-check
            await ctx.hub.wait_published(0.5)
            if not nc.is_connected:
                raise ConnectionError("NATS connection lost")

    @staticmethod
    def _pub_async(nc: Any, js: Any) -> Any:
        """``await pub(subject, payload, headers)`` -> a future of the PubAck as a dict (pipelined)."""
        inbox_prefix = nc.new_inbox()
        futures: dict[str, asyncio.Future[Any]] = {}
        counter = [0]

        async def on_reply(msg: Any) -> None:
            fut = futures.pop(msg.subject, None)
            if fut is None or fut.done():
                return
            if not msg.data:
                fut.set_exception(RuntimeError(f"JetStream: status {msg.headers and msg.headers.get('Status')}"))
                return
            try:
                resp = _json_decode(msg.data)
            except Exception as exc:  # noqa: BLE001
                fut.set_exception(RuntimeError(f"JetStream: bad ack ({type(exc).__name__})"))
                return
            if not isinstance(resp, dict):
                fut.set_exception(RuntimeError("JetStream: bad ack"))
            elif "error" in resp:
                err = resp["error"]
                fut.set_exception(RuntimeError(f"JetStream: {err.get('description', err) if isinstance(err, dict) else err}"))
            else:
                fut.set_result(resp)

        sub_ready: list[Any] = []

        async def pub(subject: str, payload: bytes, hdr: dict[str, str]) -> asyncio.Future[Any]:
            if not sub_ready:
                sub_ready.append(await nc.subscribe(inbox_prefix + ".*", cb=on_reply))
            counter[0] += 1
            reply = f"{inbox_prefix}.{counter[0]}"
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            futures[reply] = fut
            fut.add_done_callback(lambda _f, r=reply: futures.pop(r, None))
            await nc.publish(subject, payload, reply=reply, headers=hdr)
            return fut

        return pub

    # -------------------------------------------------------------- /publish forwarded by edges

    async def _answer(self, ctx: PublisherContext, msg: Any) -> None:
        from cdc.model.published import validate_published

        async def reply(body: dict[str, Any]) -> None:
            if msg.reply:
                with contextlib.suppress(Exception):
                    await self._nc.publish(msg.reply, json.dumps(body).encode())

        try:
            body = json.loads(msg.data)
            event = validate_published(body, now_ms=int(time.time() * 1000))
        except (ValueError, TypeError) as exc:
            await reply({"status": 400, "error": (str(exc).splitlines() or ["invalid event"])[0]})
            return
        bus = ctx.bus
        if not bus.journal_ok:
            await reply({"status": 503, "error": "journal is not writable; try again later"})
            return

        async def commit() -> None:
            try:
                async with asyncio.timeout(10.0):
                    ids = await bus.emit_and_wait([event])
            except TimeoutError:
                await reply({"status": 503, "error": "journal commit timed out; the event is queued"})
                return
            if not ids:
                await reply({"status": 400, "error": "event could not be encoded"})
            else:
                await reply({"id": ids[0]})

        ctx.hub.spawn(commit())
