"""The hub: subscriber registry, filters, live fan-out and replay from the journal.

Invariants:
- Each committed record is encoded at most once per wire format (``Record.frame`` caches), and
  subscribers that share a filter share the matching work and the very same frame bytes
  (a ``batch=1`` array frame is built once per filter group and format).
- The fan-out never awaits a subscriber: it writes frames synchronously into the connection's
  transport while that transport is below its high-water mark; otherwise the frames go to the
  subscriber's bounded ``pending`` queue and one drain task per backlogged subscriber sends
  them. A subscriber whose backlog exceeds ``queue_limit`` events is closed with 4429 (it
  resumes from the journal with ``since`` and loses nothing).
- Every subscriber receives each matching event exactly once and in id order: ``last_id`` is
  the id of the last event handed to its connection; nothing with ``id <= last_id`` is ever
  sent again.
- Resume (``since``): the subscriber is registered in REPLAY state (live fan-out skips it),
  replays the journal up to the hub's latest published id, and switches to LIVE with no await
  between the final "caught up" check and the switch, so no event can fall in between. Events
  read from the journal before the hub published them are skipped by ``last_id`` when they
  arrive live.
- Journal identity: a ``since`` sent with an ``epoch`` other than the journal's (the journal was
  replaced, emptied or restored) gets a ``reset`` (``epoch_changed``), then live, never another
  journal's events under old ids. Damage met while replaying (``JournalCorrupt``) closes that
  subscriber with 1011 and a short reason and calls ``on_journal_damage`` (readiness, metric,
  one log line), never a traceback per reconnect.
- Closing: a subscriber the server closes (4429, 4401, ...) keeps counting in :attr:`Hub.closing`
  until its TCP connection is gone; the closing handshake is bounded by :data:`CLOSE_BOUND_S`, then
  the transport is aborted (a peer that never reads cannot hold the socket).
- Filters: ``types`` (event type), ``cf`` (column family; events without a cf pass), ``prefix``
  (raw key bytes; a delete_range matches when its range overlaps the prefix; events without a
  key pass), ``key`` (exact raw keys; a delete_range matches when its range holds one of them;
  events without a key pass). Absent = everything; the parts combine with AND (``prefix`` and
  ``key`` too: a key must be listed and lie under a listed prefix).
- ``coalesce=MS`` (a :class:`Coalescer` per subscriber): key_changes are held for the window and
  reduced to the latest per (cf, key) at its own position; the held events go out in id order
  when the window closes, so ids stay increasing; ``last_id`` then covers the skipped ones too.
- ``stats`` frames are not records: :mod:`cdc.stats` sends them to the groups whose ``types``
  list ``stats`` (never to "all types").
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any


from cdc.errors import JournalCorrupt
from cdc.delivery.wsconn import abort, is_paused, lost_waiter, wait_writable, write_frames
from cdc.delivery.waits import wait_event
from cdc.journal.lmdb_journal import Journal
from cdc.model.chunk import ACCEPT, REJECT, Chunk, Committed
from cdc.model.wire import Record, SubState, WireFormat, build_frames, control_frame

if TYPE_CHECKING:
    from cdc.delivery.wsconn import ServerConnection

__all__ = ["Filter", "Subscriber", "Hub", "prefix_successor", "check_filter_lists", "MAX_FILTER_ENTRIES", "MAX_FILTER_ENTRY_BYTES"]

log = logging.getLogger("cdc.hub")

REPLAY = SubState.REPLAY
LIVE = SubState.LIVE
CLOSED = SubState.CLOSED

REPLAY_CHUNK = 10_000
"""Events read from the journal per replay step."""

CLOSE_BOUND_S = 2.0
"""Longest wait for a server-initiated closing handshake before the transport is aborted."""



MAX_FILTER_ENTRIES = 256
"""Most entries in each filter list (``types`` / ``cf`` / ``prefix``) of one subscription."""
MAX_FILTER_ENTRY_BYTES = 1024
"""Longest filter entry (UTF-8 bytes for types/cf, raw bytes for a prefix)."""


def check_filter_lists(
    types: Iterable[str] | None, cfs: Iterable[str] | None, prefixes: Iterable[bytes] | None, keys: Iterable[bytes] | None = None
) -> None:
    """Refuse filter lists that would make fan-out expensive (the caps above).

    Raises:
        ValueError: one line naming the list and the limit (never echoing the entries).
    """
    for name, items in (("types", types), ("cf", cfs), ("prefix", prefixes), ("key", keys)):
        if items is None:
            continue
        n = 0
        for x in items:
            n += 1
            if n > MAX_FILTER_ENTRIES:
                raise ValueError(f"{name}: at most {MAX_FILTER_ENTRIES} entries")
            size = len(x) if isinstance(x, bytes) else len(x.encode("utf-8", "surrogateescape"))
            if size > MAX_FILTER_ENTRY_BYTES:
                raise ValueError(f"{name}: entries of at most {MAX_FILTER_ENTRY_BYTES} bytes")


def prefix_successor(prefix: bytes) -> bytes | None:
    """Smallest byte string greater than every string that starts with ``prefix`` (None: no bound)."""
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return None


class Filter:
    """What a subscriber receives (immutable; ``key`` identifies equal filters)."""

    __slots__ = ("types", "cfs", "prefixes", "keys", "key", "accept_all", "_ranges", "_sorted_keys")

    def __init__(
        self,
        types: Iterable[str] | None = None,
        cfs: Iterable[str] | None = None,
        prefixes: Iterable[bytes] | None = None,
        keys: Iterable[bytes] | None = None,
    ) -> None:
        self.types = frozenset(types) if types is not None else None
        self.cfs = frozenset(cfs) if cfs is not None else None
        self.prefixes = tuple(sorted(set(prefixes))) if prefixes is not None else None
        self.keys = frozenset(keys) if keys is not None else None
        self._sorted_keys = sorted(self.keys) if self.keys is not None else None
        self.key = (self.types, self.cfs, self.prefixes, self.keys)
        self.accept_all = self.types is None and self.cfs is None and self.prefixes is None and self.keys is None
        self._ranges = [(p, prefix_successor(p)) for p in self.prefixes] if self.prefixes is not None else None

    def _key_match(self, key: bytes, end: bytes | None) -> bool:
        """The ``key`` part: the key is listed, or a delete_range [key, end) holds a listed key."""
        if end is None:
            return key in self.keys  # type: ignore[operator]
        sk = self._sorted_keys
        i = bisect.bisect_left(sk, key)  # type: ignore[arg-type]
        return i < len(sk) and sk[i] < end  # type: ignore[arg-type]

    def match(self, rec: Record) -> bool:
        """True when the record passes every part of the filter."""
        if self.types is not None and rec.type not in self.types:
            return False
        if self.cfs is not None and rec.cf is not None and rec.cf not in self.cfs:
            return False
        if self.keys is not None and rec.key is not None and not self._key_match(rec.key, rec.end_key):
            return False
        if self.prefixes is not None and rec.key is not None:
            key = rec.key
            if rec.end_key is None:
                return key.startswith(self.prefixes)
            end = rec.end_key
            for lo, hi in self._ranges:  # type: ignore[union-attr]
                # [key, end) overlaps [lo, hi)
                if (hi is None or key < hi) and end > lo:
                    return True
            return False
        return True

    def parts(self, chunks: list[Chunk]) -> list[Chunk | list[Record]]:
        """The events of ``chunks`` that pass: whole chunks where the chunk's summary decides
        (no per-event work), else the matching Records of the chunk (see ``Chunk.verdict``)."""
        if self.accept_all:
            return list(chunks)
        out: list[Chunk | list[Record]] = []
        for c in chunks:
            v = c.verdict(self.types, self.cfs, self._ranges, self.keys)
            if v == ACCEPT:
                out.append(c)
            elif v != REJECT:
                recs = self.select(c.records())
                if recs:
                    out.append(recs)
        return out

    def select(self, records: list[Record]) -> list[Record]:
        """``[r for r in records if self.match(r)]``, with the common filters as one comprehension."""
        types, prefixes = self.types, self.prefixes
        if self.keys is not None:
            keys = self.keys
            if self.cfs is None and prefixes is None:
                if types is None:
                    return [r for r in records if r.key is None or (r.key in keys if r.end_key is None else self._key_match(r.key, r.end_key))]
                return [
                    r
                    for r in records
                    if r.type in types and (r.key is None or (r.key in keys if r.end_key is None else self._key_match(r.key, r.end_key)))
                ]
            match = self.match
            return [r for r in records if match(r)]
        if self.cfs is None:
            if prefixes is None:
                if types is None:
                    return list(records)
                return [r for r in records if r.type in types]
            match = self.match
            if types is None:
                return [r for r in records if r.key is None or (r.key.startswith(prefixes) if r.end_key is None else match(r))]
            return [
                r
                for r in records
                if r.type in types and (r.key is None or (r.key.startswith(prefixes) if r.end_key is None else match(r)))
            ]
        match = self.match
        return [r for r in records if match(r)]

    def to_json(self) -> dict[str, Any]:
        from cdc.model.events import encode_bytes

        out: dict[str, Any] = {
            "types": sorted(self.types) if self.types is not None else None,
            "cf": sorted(self.cfs) if self.cfs is not None else None,
            "prefix": [encode_bytes(p)[0] for p in self.prefixes] if self.prefixes is not None else None,
        }
        if self.keys is not None:
            out["key"] = [encode_bytes(k)[0] for k in self._sorted_keys]  # type: ignore[union-attr]
        return out


def _wire_id(wire: bytes) -> int:
    """Id of a wire JSON record (it always starts with ``{"id":N,``)."""
    return int(wire[6 : wire.index(b",", 6)])


class Coalescer:
    """``coalesce=MS``: at most one key_change per (cf, key) per window -- the latest, at its own
    position; every other event passes untouched; ids stay increasing.

    Live, a window opens with the first event held and closes ``ms`` later (a timer); replay and
    ``/events`` pages use windows of the events' journal time (``ts // ms``). A delete_range is
    identified by its start and end keys. Skipped changes are gone for this subscriber
    (intermediate values and merge operands included); the last one of each key is kept.
    """

    __slots__ = ("ms", "buf", "where", "hi", "timer", "win")

    def __init__(self, ms: int) -> None:
        self.ms = ms
        self.buf: list[Record | None] = []
        self.where: dict[tuple[Any, ...], int] = {}
        self.hi = 0  # highest id taken in (dropped ones included)
        self.timer: asyncio.TimerHandle | None = None
        self.win: int | None = None

    def add(self, records: Iterable[Record]) -> None:
        buf, where = self.buf, self.where
        for r in records:
            if r.type == "key_change" and r.key is not None:
                k = (r.cf, r.key, r.end_key)
                i = where.get(k)
                if i is not None:
                    buf[i] = None
                where[k] = len(buf)
            buf.append(r)
            self.hi = r.id

    def add_windowed(self, records: Iterable[Record]) -> list[Record]:
        """Add records windowed by their journal time; returns the windows that closed."""
        out: list[Record] = []
        ms = self.ms
        for r in records:
            w = r.ts // ms
            if w != self.win:
                if self.buf:
                    out += self.take()[0]
                self.win = w
            self.add((r,))
        return out

    def take(self) -> tuple[list[Record], int]:
        """(the held events in id order, highest id taken in); empties the window."""
        out = [r for r in self.buf if r is not None]
        self.buf = []
        self.where = {}
        return out, self.hi


def coalesce_page(records: list[Record], ms: int) -> list[Record]:
    """A whole page coalesced (``/events``): journal-time windows of ``ms``."""
    co = Coalescer(ms)
    out = co.add_windowed(records)
    return out + co.take()[0]


def _records(parts: list[Chunk | list[Record]]) -> list[Record]:
    """The Records of matched parts (chunks materialized)."""
    out: list[Record] = []
    for p in parts:
        out += p.records() if type(p) is Chunk else p  # type: ignore[union-attr,operator]
    return out


def _frames(parts: list[Chunk | list[Record]], fmt: int, batch: bool, merge: bool = True) -> list[bytes]:
    """Frames of matched parts: one per event, or (``batch``) arrays -- one of them all when
    ``merge`` (replay: the same frames whatever the chunking), else one per part (live: a whole
    chunk's array is a slice of the stored value, cached on the chunk for every subscriber)."""
    if len(parts) == 1:
        p = parts[0]
        return p.frames(fmt, batch) if type(p) is Chunk else build_frames(p, fmt, batch)  # type: ignore[union-attr,arg-type]
    if merge and batch:
        if fmt == 0:
            bodies = [p.region() if type(p) is Chunk else b",".join([r.wire for r in p]) for p in parts]  # type: ignore[union-attr]
            return [b"[" + b",".join(bodies) + b"]"]
        return build_frames(_records(parts), fmt, True)
    out: list[bytes] = []
    for p in parts:
        out += p.frames(fmt, batch) if type(p) is Chunk else build_frames(p, fmt, batch)  # type: ignore[union-attr,arg-type]
    return out


class Subscriber:
    """One WebSocket subscriber (kept small: thousands of these are idle at once)."""

    __slots__ = (
        "conn",
        "hub",
        "filter",
        "fmt",
        "batch",
        "text",
        "state",
        "last_id",
        "pending",
        "pending_n",
        "drainer",
        "grant",
        "exp_handle",
        "close_code",
        "co",
        "__weakref__",
    )

    def __init__(
        self, conn: ServerConnection, hub: Hub, flt: Filter, *, values: bool, msgpack: bool, batch: bool, grant: Any = None, coalesce_ms: int = 0
    ) -> None:
        self.conn = conn
        self.hub = hub
        self.filter = flt
        self.fmt = WireFormat.of(msgpack, values)
        self.batch = batch
        self.text = not msgpack
        self.state = REPLAY
        self.last_id = 0
        self.pending: deque[tuple[list[bytes], int, int]] | None = None
        self.pending_n = 0
        self.drainer: asyncio.Task[None] | None = None
        self.grant = grant
        self.exp_handle: asyncio.TimerHandle | None = None
        self.close_code: int | None = None
        self.co: Coalescer | None = Coalescer(coalesce_ms) if coalesce_ms > 0 else None

    # --------------------------------------------------------------- sending

    def _write(self, frames: list[bytes]) -> bool:
        """Write frames into the transport now; False when the connection is not open."""
        return write_frames(self.conn, frames, self.text)

    def push(self, frames: list[bytes], last_id: int, n_events: int) -> None:
        """Hand frames to the connection without ever waiting (fan-out path)."""
        if self.pending is None and self.drainer is None and not is_paused(self.conn):
            if self._write(frames):
                if last_id > self.last_id:
                    self.last_id = last_id
                self.hub.delivered += n_events
            return
        if self.pending is None:
            self.pending = deque()
        self.pending.append((frames, last_id, n_events))
        self.pending_n += n_events
        if self.pending_n > self.hub.queue_limit:
            self.close(4429, "subscriber too slow: reconnect with since to resume")
        elif self.drainer is None:
            self.drainer = asyncio.get_running_loop().create_task(self._drain(), name="cdc-drain")

    def send_control(self, body: dict[str, Any]) -> None:
        """Send a control frame, in order with any events still queued for this subscriber."""
        if self.state == CLOSED:
            return
        self.push([control_frame(body, not self.text)], 0, 0)

    async def send_now(self, frames: list[bytes]) -> bool:
        """Send frames, waiting while the transport is above its high-water mark (replay path)."""
        conn = self.conn
        while is_paused(conn):
            await wait_writable(conn)
            if self.state == CLOSED:
                return False
        return self._write(frames)

    async def _drain(self) -> None:
        try:
            while self.pending and self.state != CLOSED:
                if is_paused(self.conn):
                    await wait_writable(self.conn)
                    continue
                frames, last_id, n = self.pending.popleft()
                self.pending_n -= n
                if not self._write(frames):
                    break
                if last_id > self.last_id:
                    self.last_id = last_id
                self.hub.delivered += n
                if not self.pending:
                    break
                await asyncio.sleep(0)
        except Exception:  # connection lost while waiting
            pass
        finally:
            self.drainer = None
            if not self.pending:
                self.pending = None
                self.pending_n = 0

    # --------------------------------------------------------------- lifecycle

    def close(self, code: int, reason: str) -> None:
        """Unregister and close the connection with ``code`` (never waits)."""
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self.close_code = code
        self.hub.remove(self)
        self.pending = None
        self.pending_n = 0
        if self.exp_handle is not None:
            self.exp_handle.cancel()
            self.exp_handle = None
        if self.co is not None and self.co.timer is not None:
            self.co.timer.cancel()
            self.co.timer = None
        self.hub.closed_by_code[code] = self.hub.closed_by_code.get(code, 0) + 1
        self.hub.closing += 1  # until the connection is gone (see _close_bounded)
        self.hub.spawn(self._close_bounded(code, reason))

    async def _close_bounded(self, code: int, reason: str) -> None:
        """Close with ``code``; abort the transport if the handshake takes over CLOSE_BOUND_S (a
        peer that never reads blocks the close frame behind a full send buffer). Counted in
        ``hub.closing`` until the connection is gone."""
        hub = self.hub
        conn = self.conn
        try:
            try:
                async with asyncio.timeout(CLOSE_BOUND_S):
                    await conn.close(code, reason)
            except TimeoutError:
                pass
            except Exception:  # noqa: BLE001 - a broken transport: aborted below
                pass
            waiter = lost_waiter(conn)
            if not waiter.done():
                abort(conn)  # ends the connection (idempotent on a closed transport)
                with contextlib.suppress(TimeoutError):  # bounded all the same
                    async with asyncio.timeout(CLOSE_BOUND_S):
                        await asyncio.shield(waiter)
        finally:
            hub.closing -= 1


class _Group:
    __slots__ = ("filter", "subs")

    def __init__(self, flt: Filter) -> None:
        self.filter = flt
        self.subs: dict[int, Subscriber] = {}


class Hub:
    """Registry of subscribers and the live fan-out of committed records."""

    def __init__(self, journal: Journal, *, queue_limit: int = 10_000) -> None:
        self.journal = journal
        self.queue_limit = queue_limit
        self.latest_id = journal.latest_id
        self._groups: dict[tuple[Any, ...], _Group] = {}
        self._count = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._published: asyncio.Event | None = None
        # statistics
        self.delivered = 0
        self.published = 0
        self.published_by_type: dict[str, int] = {}
        self.closed_by_code: dict[int, int] = {}
        self.closing = 0
        """Subscribers closed by the server whose connection is not gone yet (count toward the cap)."""
        self.on_journal_damage: Any = None
        """Called with a reason when replay meets a damaged journal (the server sets readiness)."""

    # --------------------------------------------------------------- registry

    @property
    def count(self) -> int:
        return self._count

    def subscribers(self) -> list[Subscriber]:
        return [s for g in self._groups.values() for s in g.subs.values()]

    def add(self, sub: Subscriber) -> None:
        g = self._groups.get(sub.filter.key)
        if g is None:
            g = self._groups[sub.filter.key] = _Group(sub.filter)
        g.subs[id(sub)] = sub
        self._count += 1

    def remove(self, sub: Subscriber) -> None:
        g = self._groups.get(sub.filter.key)
        if g is not None and g.subs.pop(id(sub), None) is not None:
            self._count -= 1
            if not g.subs:
                del self._groups[sub.filter.key]

    def intern_filter(
        self,
        types: Iterable[str] | None = None,
        cfs: Iterable[str] | None = None,
        prefixes: Iterable[bytes] | None = None,
        keys: Iterable[bytes] | None = None,
    ) -> Filter:
        """A Filter equal to the arguments, shared with the subscribers that already use it."""
        flt = Filter(types, cfs, prefixes, keys)
        g = self._groups.get(flt.key)
        return g.filter if g is not None else flt

    def set_filter(self, sub: Subscriber, flt: Filter) -> None:
        """Change a registered subscriber's filter (runtime ``subscribe``)."""
        registered = sub.state != CLOSED
        if registered:
            self.remove(sub)
        sub.filter = flt
        if registered:
            self.add(sub)

    def spawn(self, coro: Any) -> None:
        """Run a fire-and-forget coroutine, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)  # callers run in the loop
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("background task failed: %r", task.exception())

    # --------------------------------------------------------------- fan-out

    def publish(self, records: list[Record] | Committed) -> None:
        """Fan committed records out to every LIVE subscriber whose filter matches (never waits).

        A journal commit (:class:`Committed`) goes out chunk by chunk: a chunk that wholly
        passes a filter is sent as its prebuilt frame(s), shared by every subscriber of that
        format; Records are made only for chunks a filter splits (and for non-JSON formats)."""
        if not records:
            return
        if type(records) is Committed:
            chunks = records.chunks
        else:  # a plain list of Records (the bus's event-by-event salvage)
            chunks = None
        self.latest_id = records.last_id if chunks is not None else records[-1].id  # type: ignore[union-attr]
        self.published += len(records)
        by_type = self.published_by_type
        if chunks is not None:
            for c in chunks:
                types = c.summary()[0] if len(c) == c.size else ()
                if len(types) == 1:
                    for t in types:
                        by_type[t] = by_type.get(t, 0) + len(c)
                else:
                    for r in c.records():
                        by_type[r.type] = by_type.get(r.type, 0) + 1
        else:
            for r in records:
                by_type[r.type] = by_type.get(r.type, 0) + 1
        for g in list(self._groups.values()):
            flt = g.filter
            if chunks is not None:
                parts = flt.parts(chunks)
                if not parts:
                    continue
                first_id = parts[0].first if type(parts[0]) is Chunk else parts[0][0].id  # type: ignore[union-attr,index]
                last_id = parts[-1].last if type(parts[-1]) is Chunk else parts[-1][-1].id  # type: ignore[union-attr,index]
                n = sum(map(len, parts))
            else:
                matched = records if flt.accept_all else flt.select(records)  # type: ignore[arg-type]
                if not matched:
                    continue
                parts = [matched]  # type: ignore[list-item]
                first_id = matched[0].id
                last_id = matched[-1].id
                n = len(matched)
            cache: dict[int, list[bytes]] = {}
            for sub in list(g.subs.values()):
                if sub.state != LIVE:
                    continue
                if sub.co is not None:
                    self._coalesce(sub, sub.co, _records(parts))
                    continue
                if first_id <= sub.last_id:  # already sent by its replay
                    rest = [r for r in _records(parts) if r.id > sub.last_id]
                    if rest:
                        sub.push(build_frames(rest, sub.fmt, sub.batch), rest[-1].id, len(rest))
                    continue
                ck = sub.fmt * 2 + sub.batch
                frames = cache.get(ck)
                if frames is None:
                    frames = cache[ck] = _frames(parts, sub.fmt, sub.batch, merge=False)
                sub.push(frames, last_id, n)
        ev = self._published
        if ev is not None:
            self._published = None
            ev.set()

    def _coalesce(self, sub: Subscriber, co: Coalescer, matched: list[Record]) -> None:
        floor = max(sub.last_id, co.hi)
        co.add(matched if matched[0].id > floor else [r for r in matched if r.id > floor])
        if co.timer is None and co.buf:
            co.timer = asyncio.get_running_loop().call_later(co.ms / 1000.0, self._coalesce_flush, sub)

    def _coalesce_flush(self, sub: Subscriber) -> None:
        co = sub.co
        if co is None:
            return
        co.timer = None
        if sub.state == CLOSED:
            return
        out, hi = co.take()
        if out:
            sub.push(build_frames(out, sub.fmt, sub.batch), hi, len(out))
        elif hi > sub.last_id:
            sub.last_id = hi

    async def catch_up(self, since: int, timeout_s: float = 0.0) -> None:
        """Wait (bounded) until ``latest_id`` reaches ``since`` when that may still happen. The
        daemon's hub holds everything its journal does: nothing to wait for. (An edge's hub,
        whose mirror may be a little behind its stream, waits: ``cdc.daemon.edge.EdgeHub``.)"""

    async def wait_published(self, timeout_s: float) -> bool:
        """Wait until the next publish (True) or the timeout (False)."""
        if self._published is None:
            self._published = asyncio.Event()
        return await wait_event(self._published, timeout_s)

    def broadcast_control(self, body: dict[str, Any]) -> None:
        """Send a control frame (e.g. heartbeat) to every LIVE subscriber."""
        frames: dict[bool, list[bytes]] = {}
        for g in list(self._groups.values()):
            for sub in list(g.subs.values()):
                if sub.state != LIVE:
                    continue
                f = frames.get(sub.text)
                if f is None:
                    f = frames[sub.text] = [control_frame(body, not sub.text)]
                sub.push(f, 0, 0)

    # --------------------------------------------------------------- resume

    def cursor_expired(self, since: int) -> bool:
        """True when events after ``since`` were pruned (or ``since`` is ahead of the journal)."""
        if since == 0:
            return False
        return since < self.journal.oldest_id - 1 or since > self.latest_id

    async def start(self, sub: Subscriber, since: int | None, *, epoch: str | None = None) -> None:
        """Register ``sub`` and bring it LIVE, replaying the journal from ``since`` first.

        Sends a ``reset`` control frame when the cursor expired or belongs to another journal
        (``epoch`` given and not this journal's), then live from now. A damaged journal closes
        the subscriber with 1011 (see the module docstring).
        """
        self.add(sub)
        if since is None:
            sub.last_id = self.latest_id
            sub.state = LIVE
            return
        other_epoch = bool(since) and epoch is not None and epoch != self.journal.epoch
        if other_epoch or self.cursor_expired(since):
            sub.last_id = self.latest_id
            sub.state = LIVE
            reason = "epoch_changed" if other_epoch else "cursor_ahead" if since > self.latest_id else "cursor_expired"
            sub.send_control(
                {
                    "type": "reset",
                    "reason": reason,
                    "since": since,
                    "oldest_id": self.journal.oldest_id,
                    "latest_id": self.latest_id,
                    "epoch": self.journal.epoch,
                }
            )
            return
        try:
            await self._replay(sub, since)
        except JournalCorrupt as exc:
            self.journal_damaged(exc.reason)
            sub.close(1011, "journal damaged: see /health/ready")

    def journal_damaged(self, reason: str) -> None:
        """Report journal damage found while reading (once per reason: see ``on_journal_damage``)."""
        cb = self.on_journal_damage
        if cb is not None:
            cb(reason)

    async def _replay(self, sub: Subscriber, since: int) -> None:
        pos = since if since else max(0, self.journal.oldest_id - 1)  # 0 = from the oldest retained
        co = sub.co
        flt = sub.filter
        journal = self.journal
        gap = False
        while sub.state == REPLAY and pos < self.latest_id:
            chunks = await asyncio.to_thread(journal.read_chunks, pos, REPLAY_CHUNK)
            if not chunks or chunks[0].first != pos + 1:
                gap = True  # pruned under our feet
                break
            cut = self.latest_id
            if chunks[-1].last > cut:  # committed but not published yet: stop at what was published
                chunks = [c.view(c.first, cut) for c in chunks if c.first <= cut]
            last = chunks[-1].last
            parts = flt.parts(chunks)
            if co is not None:
                matched = co.add_windowed(_records(parts))
                n = len(matched)
                frames = build_frames(matched, sub.fmt, sub.batch) if matched else []
            else:
                n = sum(map(len, parts))
                frames = _frames(parts, sub.fmt, sub.batch) if parts else []
            if sub.state != REPLAY:
                return
            if frames:
                if not await sub.send_now(frames):
                    return
                self.delivered += n
            pos = last
            sub.last_id = last
        if sub.state != REPLAY:
            return
        # Caught up: no await between the loop's last check and the switch below.
        if co is not None:  # the last replay window goes out now; live windows follow
            held, hi = co.take()
            co.win = None
            if held:
                sub.push(build_frames(held, sub.fmt, sub.batch), hi, len(held))
        if gap:
            sub.send_control(
                {"type": "reset", "reason": "cursor_expired", "since": pos, "oldest_id": journal.oldest_id, "latest_id": self.latest_id}
            )
            sub.last_id = self.latest_id
        else:
            sub.last_id = pos
        sub.state = LIVE

    def wake_pollers(self) -> None:
        """Wake every :meth:`wait_published` waiter now (shutdown)."""
        ev = self._published
        if ev is not None:
            self._published = None
            ev.set()

    async def close_all(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Close every subscriber and wait (bounded by the caller) for the closes to finish."""
        self.wake_pollers()
        for sub in self.subscribers():
            sub.close(code, reason)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

